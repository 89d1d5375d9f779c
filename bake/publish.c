/* SPDX-License-Identifier: Apache-2.0 */
/* Place a finished snapshot at the user's path atomically: reflink,
 * hardlink or copy into a temp file next to it, fsync, rename. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sm/bake.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* DEST's directory and base name (into DIR and BASE, PATH_MAX each). */
static int split_path(const char *dest, char *dir, char *base, struct sm_error *err)
{
	size_t len = strlen(dest);
	if (len == 0 || len >= PATH_MAX)
		return sm_error_set(err, EINVAL, "bad output path '%.100s'", dest);
	if (dest[len - 1] == '/')
		return sm_error_set(err, EISDIR, "output path %s names a directory", dest);
	const char *slash = strrchr(dest, '/');
	if (!slash) {
		snprintf(dir, PATH_MAX, ".");
		snprintf(base, PATH_MAX, "%s", dest);
	} else {
		size_t dl = (size_t)(slash - dest);
		snprintf(dir, PATH_MAX, "%.*s", (int)(dl ? dl : 1), dest);
		snprintf(base, PATH_MAX, "%s", slash + 1);
	}
	if (!strcmp(base, ".") || !strcmp(base, ".."))
		return sm_error_set(err, EINVAL, "bad output path '%.100s'", dest);
	return 0;
}

int bake_publish_precheck(const char *dest, struct sm_error *err)
{
	char dir[PATH_MAX], base[PATH_MAX];
	struct stat st;
	int r = split_path(dest, dir, base, err);
	if (r < 0)
		return r;
	if (stat(dir, &st) < 0)
		return sm_error_errno(err, errno, "cannot use output directory %s", dir);
	if (!S_ISDIR(st.st_mode))
		return sm_error_set(err, ENOTDIR, "output directory %s is not a directory", dir);
	if (access(dir, W_OK) < 0)
		return sm_error_errno(err, errno, "cannot write to output directory %s", dir);
	if (stat(dest, &st) == 0 && S_ISDIR(st.st_mode))
		return sm_error_set(err, EISDIR, "output path %s is a directory", dest);
	return 0;
}

static int copy_fd(int in, int out)
{
	/* copy_file_range first (in-kernel, may share extents), then read/write. */
	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
			    errno == EOPNOTSUPP)
				break;
			return -errno;
		}
	}
	static __thread char buf[1 << 17];
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return -errno;
			off += w;
		}
	}
}

int bake_publish(const char *src, const char *dest, int no_link, enum bake_publish_how *how,
		 struct sm_error *err)
{
	char dir[PATH_MAX], base[PATH_MAX], tmp[PATH_MAX + 64];
	enum bake_publish_how dummy;
	if (!how)
		how = &dummy;
	int r = split_path(dest, dir, base, err);
	if (r < 0)
		return r;
	sm_autoclose int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return sm_error_errno(err, errno, "cannot open %s", src);
	struct stat sst, dst;
	if (fstat(in, &sst) < 0)
		return sm_error_errno(err, errno, "cannot stat %s", src);
	if (!S_ISREG(sst.st_mode))
		return sm_error_set(err, EINVAL, "%s is not a regular file", src);
	if (lstat(dest, &dst) == 0) {
		if (S_ISDIR(dst.st_mode))
			return sm_error_set(err, EISDIR, "output path %s is a directory", dest);
		if (dst.st_dev == sst.st_dev && dst.st_ino == sst.st_ino) {
			*how = BAKE_PUBLISH_SAME;
			return 0;
		}
	}

	/* A reflink when the filesystem can (an independent copy for free),
	 * else a hardlink under the temp name, else a byte copy. */
	snprintf(tmp, sizeof(tmp), "%s/.%s.smbake-XXXXXX", dir, base);
	sm_autoclose int out = mkostemp(tmp, O_CLOEXEC);
	if (out < 0)
		return sm_error_errno(err, errno, "cannot create a temp file in %s", dir);
	if (ioctl(out, FICLONE, in) == 0) {
		*how = BAKE_PUBLISH_CLONE;
	} else {
		*how = BAKE_PUBLISH_COPY;
		if (!no_link && unlink(tmp) == 0) {
			if (link(src, tmp) == 0) {
				*how = BAKE_PUBLISH_LINK;
			} else {
				/* The placeholder is gone: make a fresh one to copy into. */
				close(out);
				snprintf(tmp, sizeof(tmp), "%s/.%s.smbake-XXXXXX", dir, base);
				out = mkostemp(tmp, O_CLOEXEC);
				if (out < 0)
					return sm_error_errno(
						err, errno, "cannot create a temp file in %s", dir);
			}
		}
	}
	if (*how == BAKE_PUBLISH_COPY) {
		r = copy_fd(in, out);
		if (r < 0) {
			unlink(tmp);
			return sm_error_errno(err, -r, "cannot copy %s to %s", src, tmp);
		}
	}
	if (*how != BAKE_PUBLISH_LINK && (fchmod(out, 0644) < 0 || fsync(out) < 0)) {
		r = -errno;
		unlink(tmp);
		return sm_error_errno(err, -r, "cannot finish %s", tmp);
	}
	if (rename(tmp, dest) < 0) {
		r = sm_error_errno(err, errno, "cannot rename %s to %s", tmp, dest);
		unlink(tmp);
		return r;
	}
	fsync_dir(dir);
	return 0;
}
