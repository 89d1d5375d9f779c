/* SPDX-License-Identifier: Apache-2.0 */
/* The boot initramfs: a cpio "newc" archive, written with libarchive, that
 * holds the static agent as /init and optionally busybox with its applets. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sm/vm.h"

extern char **environ;

struct membuf {
	uint8_t *p;
	size_t len, cap;
};

static la_ssize_t mem_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
	(void)a;
	struct membuf *m = ctx;
	if (m->len + len > m->cap) {
		size_t cap = m->cap ? m->cap : 1 << 20;
		while (cap < m->len + len)
			cap *= 2;
		uint8_t *n = realloc(m->p, cap);
		if (!n)
			return -1;
		m->p = n;
		m->cap = cap;
	}
	memcpy(m->p + m->len, buf, len);
	m->len += len;
	return (la_ssize_t)len;
}

static int add_entry(struct archive *a, const char *path, mode_t mode, const void *data, size_t len,
		     const char *link, dev_t rdev, int64_t ino, struct sm_error *err)
{
	struct archive_entry *e = archive_entry_new();
	if (!e)
		return sm_error_set(err, ENOMEM, "out of memory");
	archive_entry_set_pathname(e, path);
	archive_entry_set_mode(e, mode);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_nlink(e, S_ISDIR(mode) ? 2 : 1);
	archive_entry_set_ino64(e, ino);
	archive_entry_set_size(e, S_ISREG(mode) ? (la_int64_t)len : 0);
	if (link)
		archive_entry_set_symlink(e, link);
	if (S_ISCHR(mode))
		archive_entry_set_rdev(e, rdev);
	int r = archive_write_header(a, e);
	if (r == ARCHIVE_OK && S_ISREG(mode) && len &&
	    archive_write_data(a, data, len) != (la_ssize_t)len)
		r = ARCHIVE_FATAL;
	archive_entry_free(e);
	if (r != ARCHIVE_OK)
		return sm_error_set(err, EIO, "initramfs: cannot add %s: %s", path,
				    archive_error_string(a));
	return 0;
}

static int read_file(const char *path, uint8_t **out, size_t *len, struct sm_error *err)
{
	sm_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot open %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return sm_error_set(err, EINVAL, "%s is not a regular file", path);
	uint8_t *p = malloc((size_t)st.st_size + 1);
	if (!p)
		return sm_error_set(err, ENOMEM, "out of memory");
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(p);
			return sm_error_errno(err, n < 0 ? errno : EIO, "read %s", path);
		}
		got += (size_t)n;
	}
	*out = p;
	*len = got;
	return 0;
}

/* Output of `busybox --list-full` (paths like "bin/sh"), malloc'ed. */
static int busybox_applets(const char *busybox, char **out, struct sm_error *err)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return sm_error_errno(err, errno, "pipe");
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	char *const argv[] = {(char *)busybox, (char *)"--list-full", NULL};
	pid_t pid;
	int r = posix_spawn(&pid, busybox, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (r) {
		close(pfd[0]);
		return sm_error_errno(err, r, "cannot run %s --list-full", busybox);
	}
	struct membuf m = {0};
	char buf[4096];
	ssize_t n;
	while ((n = read(pfd[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0 && mem_write(NULL, &m, buf, (size_t)n) < 0)
			break;
	close(pfd[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || mem_write(NULL, &m, "", 1) < 0) {
		free(m.p);
		return sm_error_set(err, EIO, "%s --list-full failed", busybox);
	}
	*out = (char *)m.p;
	return 0;
}

int vm_initramfs_build(const char *agent_path, const char *busybox_path, void **out,
		       size_t *out_len, struct sm_error *err)
{
	*out = NULL;
	*out_len = 0;
	sm_autofree uint8_t *agent = NULL;
	sm_autofree uint8_t *bb = NULL;
	sm_autofree char *applets = NULL;
	size_t agent_len = 0, bb_len = 0;
	int r = read_file(agent_path, &agent, &agent_len, err);
	if (r < 0)
		return sm_error_wrap(err, "initramfs agent");
	if (busybox_path) {
		r = read_file(busybox_path, &bb, &bb_len, err);
		if (r == 0)
			r = busybox_applets(busybox_path, &applets, err);
		if (r < 0)
			return sm_error_wrap(err, "initramfs busybox");
	}
	struct membuf m = {0};
	struct archive *a = archive_write_new();
	if (!a)
		return sm_error_set(err, ENOMEM, "out of memory");
	if (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
	    archive_write_open(a, &m, NULL, mem_write, NULL) != ARCHIVE_OK) {
		r = sm_error_set(err, EIO, "initramfs: %s", archive_error_string(a));
		goto fail;
	}
	static const char *const dirs[] = {"dev",      "proc", "sys",  "tmp", "run",
					   "root",     "bin",  "sbin", "usr", "usr/bin",
					   "usr/sbin", "etc",  "mnt",  "var", "var/tmp"};
	int64_t ino = 1;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		mode_t mode = S_IFDIR | (strstr(dirs[i], "tmp") ? 01777 : 0755);
		r = add_entry(a, dirs[i], mode, NULL, 0, NULL, 0, ino++, err);
		if (r < 0)
			goto fail;
	}
	r = add_entry(a, "dev/console", S_IFCHR | 0600, NULL, 0, NULL, makedev(5, 1), ino++, err);
	if (r == 0)
		r = add_entry(a, "init", S_IFREG | 0755, agent, agent_len, NULL, 0, ino++, err);
	if (r == 0)
		r = add_entry(a, "sbin/sminit", S_IFLNK | 0777, NULL, 0, "/init", 0, ino++, err);
	if (r == 0 && bb)
		r = add_entry(a, "bin/busybox", S_IFREG | 0755, bb, bb_len, NULL, 0, ino++, err);
	for (char *line = applets, *next; r == 0 && line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		else
			next = line + strlen(line);
		/* Only simple relative paths into the directories we created. */
		if (!*line || line[0] == '/' || strstr(line, "..") ||
		    !strcmp(line, "bin/busybox") || !strcmp(line, "sbin/sminit") ||
		    !strcmp(line, "init"))
			continue;
		if (strncmp(line, "bin/", 4) && strncmp(line, "sbin/", 5) &&
		    strncmp(line, "usr/bin/", 8) && strncmp(line, "usr/sbin/", 9))
			continue;
		r = add_entry(a, line, S_IFLNK | 0777, NULL, 0, "/bin/busybox", 0, ino++, err);
	}
	if (r < 0)
		goto fail;
	if (archive_write_close(a) != ARCHIVE_OK) {
		r = sm_error_set(err, EIO, "initramfs: %s", archive_error_string(a));
		goto fail;
	}
	archive_write_free(a);
	*out = m.p;
	*out_len = m.len;
	return 0;
fail:
	archive_write_free(a);
	free(m.p);
	return r;
}
