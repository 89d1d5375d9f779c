/* SPDX-License-Identifier: Apache-2.0 */
/* What smrestore runs: the image's run config recorded in the snapshot
 * metadata, merged with the command line the way `docker run` does, and
 * user/group names resolved against the image's /etc/passwd and /etc/group
 * read (beneath the root, as untrusted text) from its root filesystem. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sm/format.h"
#include "sm/oci.h"
#include "sm/restore.h"
#include "sm/vm.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* /etc/passwd and /etc/group larger than this are refused. */
#define ETC_FILE_MAX (4u << 20)
#define ID_MAX	     0xfffffffeu /* (uid_t)-1 means "no change" */

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

void restore_runcfg_free(struct restore_runcfg *rc)
{
	if (!rc)
		return;
	strv_free(rc->argv);
	strv_free(rc->env);
	free(rc->workdir);
	free(rc->rootfs);
	memset(rc, 0, sizeof(*rc));
}

/* A growable NULL-terminated string vector. */
struct strv {
	char **v;
	uint32_t n, cap;
};

static int strv_push(struct strv *s, const char *str, size_t len)
{
	if (s->n >= VM_AGENT_MAX_ARGS)
		return -E2BIG;
	if (s->n + 2 > s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 8;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	char *c = strndup(str, len);
	if (!c)
		return -ENOMEM;
	s->v[s->n++] = c;
	s->v[s->n] = NULL;
	return 0;
}

static int strv_push_all(struct strv *s, char *const *v)
{
	for (; v && *v; v++) {
		int r = strv_push(s, *v, strlen(*v));
		if (r < 0)
			return r;
	}
	return 0;
}

static int strv_error(int r, struct sm_error *err, const char *what)
{
	if (r == -E2BIG)
		return sm_error_set(err, E2BIG, "%s: too many entries", what);
	return sm_error_set(err, -r, "%s: out of memory", what);
}

int restore_runcfg_argv(char *const *img_ep, char *const *img_cmd, const struct restore_cmd_opts *c,
			char ***argv, uint32_t *argc, struct sm_error *err)
{
	struct strv s = {0};
	int r = 0;
	*argv = NULL;
	*argc = 0;
	/* Docker (daemon merge): --entrypoint X drops the image's Entrypoint
	 * and Cmd; --entrypoint "" drops only the Entrypoint; CMD given
	 * replaces the image's Cmd. */
	if (c->entrypoint) {
		if (*c->entrypoint)
			r = strv_push(&s, c->entrypoint, strlen(c->entrypoint));
	} else {
		r = strv_push_all(&s, img_ep);
	}
	if (r == 0 && c->argc > 0) {
		for (uint32_t i = 0; i < c->argc && r == 0; i++)
			r = strv_push(&s, c->argv[i], strlen(c->argv[i]));
	} else if (r == 0 && (!c->entrypoint || !*c->entrypoint)) {
		r = strv_push_all(&s, img_cmd);
	}
	if (r < 0) {
		strv_free(s.v);
		return strv_error(r, err, "command");
	}
	*argv = s.v;
	*argc = s.n;
	return 0;
}

/* Length of the key of "K=V" (the bytes before '='), or 0 without '='. */
static size_t env_key_len(const char *e)
{
	const char *eq = strchr(e, '=');
	return eq ? (size_t)(eq - e) : 0;
}

int restore_runcfg_env(char *const *img, const char *const *over, uint32_t n, char ***env,
		       uint32_t *envc, struct sm_error *err)
{
	struct strv s = {0};
	int r = 0;
	*env = NULL;
	*envc = 0;
	for (; img && *img && r == 0; img++)
		if (env_key_len(*img) > 0)
			r = strv_push(&s, *img, strlen(*img));
	for (uint32_t i = 0; i < n && r == 0; i++) {
		size_t kl = env_key_len(over[i]);
		if (kl == 0) {
			strv_free(s.v);
			return sm_error_set(err, EINVAL, "environment entry '%.100s' is not K=V",
					    over[i]);
		}
		int replaced = 0;
		for (uint32_t j = 0; j < s.n;) {
			if (env_key_len(s.v[j]) == kl && !memcmp(s.v[j], over[i], kl)) {
				if (!replaced) {
					char *c = strdup(over[i]);
					if (!c) {
						r = -ENOMEM;
						break;
					}
					free(s.v[j]);
					s.v[j++] = c;
					replaced = 1;
				} else {
					free(s.v[j]);
					memmove(&s.v[j], &s.v[j + 1], (s.n - j) * sizeof(char *));
					s.n--;
				}
			} else {
				j++;
			}
		}
		if (r == 0 && !replaced)
			r = strv_push(&s, over[i], strlen(over[i]));
	}
	if (r < 0) {
		strv_free(s.v);
		return strv_error(r, err, "environment");
	}
	*env = s.v;
	*envc = s.n;
	return 0;
}

/* ---- /etc/passwd and /etc/group ----------------------------------------- */

/* Strict decimal id: 1-10 digits, <= ID_MAX. */
static int parse_id(const char *p, size_t len, uint32_t *out)
{
	if (len == 0 || len > 10)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (v > ID_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* Split the line P[LEN] at ':' into up to MAX fields; returns the count.
 * Fields point into the line (not NUL-terminated). */
struct field {
	const char *p;
	size_t len;
};

static unsigned split_fields(const char *p, size_t len, struct field *f, unsigned max)
{
	unsigned n = 0;
	size_t start = 0;
	for (size_t i = 0; i <= len && n < max; i++) {
		if (i == len || p[i] == ':') {
			f[n].p = p + start;
			f[n].len = i - start;
			n++;
			start = i + 1;
		}
	}
	return n;
}

static int field_is(const struct field *f, const char *s)
{
	size_t l = strlen(s);
	return f->len == l && !memcmp(f->p, s, l);
}

/* Call FN on each line of BUF[LEN] that is not empty, a comment or a NIS
 * "+"/"-" entry, and holds no NUL byte. Stops when FN returns non-zero. */
static int each_line(const char *buf, size_t len, int (*fn)(const char *, size_t, void *),
		     void *arg)
{
	size_t off = 0;
	while (off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);
		size_t l = nl ? (size_t)(nl - (buf + off)) : len - off;
		const char *line = buf + off;
		off += l + (nl ? 1 : 0);
		if (l > 0 && line[l - 1] == '\r')
			l--;
		if (l == 0 || line[0] == '#' || line[0] == '+' || line[0] == '-' ||
		    memchr(line, '\0', l))
			continue;
		int r = fn(line, l, arg);
		if (r)
			return r;
	}
	return 0;
}

struct pw_query {
	const char *name; /* or NULL: by uid */
	uint32_t uid;
	struct restore_pwent *out;
};

static int pw_line(const char *line, size_t len, void *arg)
{
	struct pw_query *q = arg;
	struct field f[7];
	unsigned n = split_fields(line, len, f, 7);
	uint32_t uid, gid;
	/* name:password:uid:gid[:gecos:home:shell] */
	if (n < 4 || f[0].len == 0 || parse_id(f[2].p, f[2].len, &uid) < 0 ||
	    parse_id(f[3].p, f[3].len, &gid) < 0)
		return 0;
	if (q->name ? !field_is(&f[0], q->name) : uid != q->uid)
		return 0;
	q->out->uid = uid;
	q->out->gid = gid;
	q->out->home[0] = '\0';
	if (n >= 6 && f[5].len < sizeof(q->out->home)) {
		memcpy(q->out->home, f[5].p, f[5].len);
		q->out->home[f[5].len] = '\0';
	}
	return 1;
}

int restore_passwd_find(const char *buf, size_t len, const char *name, uint32_t uid,
			struct restore_pwent *out)
{
	struct pw_query q = {name, uid, out};
	return each_line(buf, len, pw_line, &q);
}

static int gr_line(const char *line, size_t len, void *arg)
{
	struct pw_query *q = arg;
	struct field f[4];
	unsigned n = split_fields(line, len, f, 4);
	uint32_t gid;
	/* name:password:gid[:members] */
	if (n < 3 || f[0].len == 0 || parse_id(f[2].p, f[2].len, &gid) < 0 ||
	    !field_is(&f[0], q->name))
		return 0;
	q->out->uid = 0;
	q->out->gid = gid;
	q->out->home[0] = '\0';
	return 1;
}

int restore_group_find(const char *buf, size_t len, const char *name, struct restore_pwent *out)
{
	struct pw_query q = {name, 0, out};
	return each_line(buf, len, gr_line, &q);
}

static long sys_openat2(int dirfd, const char *path, struct open_how *how)
{
	return syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
}

/* Read REL (e.g. "etc/passwd") beneath the directory ROOT: symlinks resolve
 * inside ROOT, only a regular file up to ETC_FILE_MAX is read. *BUF is
 * malloc'ed (NULL with *LEN 0 when the file does not exist). */
static int read_beneath(const char *root, const char *rel, char **buf, size_t *len,
			struct sm_error *err)
{
	*buf = NULL;
	*len = 0;
	sm_autoclose int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return sm_error_errno(err, errno, "root filesystem %s", root);
	/* O_NONBLOCK: a FIFO planted at the path must not block the open. */
	struct open_how how = {
		.flags = O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	long lfd = sys_openat2(rootfd, rel, &how);
	if (lfd < 0 && (errno == ENOSYS || errno == EPERM)) {
		/* No openat2: walk without following any symlink. */
		const char *slash = strrchr(rel, '/');
		char dir[64];
		if (!slash || (size_t)(slash - rel) >= sizeof(dir))
			return sm_error_set(err, EINVAL, "bad path %s", rel);
		memcpy(dir, rel, (size_t)(slash - rel));
		dir[slash - rel] = '\0';
		sm_autoclose int dfd =
			openat(rootfd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		lfd = dfd < 0 ? -1
			      : openat(dfd, slash + 1,
				       O_RDONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	}
	if (lfd < 0) {
		if (errno == ENOENT)
			return 0;
		return sm_error_errno(err, errno, "image file /%s", rel);
	}
	sm_autoclose int fd = (int)lfd;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return sm_error_errno(err, errno, "image file /%s", rel);
	if (!S_ISREG(st.st_mode))
		return sm_error_set(err, EINVAL, "image file /%s is not a regular file", rel);
	if ((uint64_t)st.st_size > ETC_FILE_MAX)
		return sm_error_set(err, EFBIG, "image file /%s is larger than %u bytes", rel,
				    ETC_FILE_MAX);
	char *b = malloc((size_t)st.st_size + 1);
	if (!b)
		return sm_error_set(err, ENOMEM, "out of memory");
	size_t got = 0;
	for (;;) {
		/* It may have grown since fstat: read at most one byte more
		 * than the limit, then refuse. */
		if (got == (size_t)st.st_size + 1)
			break;
		ssize_t n = read(fd, b + got, (size_t)st.st_size + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(b);
			return sm_error_errno(err, e, "read /%s", rel);
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got > (size_t)st.st_size) {
		free(b);
		return sm_error_set(err, EAGAIN, "image file /%s changed while read", rel);
	}
	*buf = b;
	*len = got;
	return 0;
}

static int all_digits(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return len > 0;
}

int restore_user_resolve(const char *rootfs, const char *spec, uint32_t *uid, uint32_t *gid,
			 char *home, size_t home_len, struct sm_error *err)
{
	const char *colon = strchr(spec, ':');
	size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
	const char *group = colon ? colon + 1 : NULL;
	if (home_len)
		home[0] = '\0';
	if ((colon && (ulen == 0 || !*group)) || strchr(group ? group : "", ':'))
		return sm_error_set(err, EINVAL, "bad user '%.100s' (want NAME|UID[:GROUP|GID])",
				    spec);
	char uname[256];
	if (ulen >= sizeof(uname))
		return sm_error_set(err, EINVAL, "user name too long in '%.100s'", spec);
	memcpy(uname, spec, ulen);
	uname[ulen] = '\0';
	if (ulen == 0)
		snprintf(uname, sizeof(uname), "0"); /* "": root, as Docker */
	int numeric = all_digits(uname, strlen(uname));
	uint32_t u = 0;
	if (numeric && parse_id(uname, strlen(uname), &u) < 0)
		return sm_error_set(err, EINVAL, "user id '%s' out of range", uname);

	sm_autofree char *pw = NULL;
	size_t pwlen = 0;
	if (rootfs) {
		int r = read_beneath(rootfs, "etc/passwd", &pw, &pwlen, err);
		if (r < 0)
			return r;
	}
	struct restore_pwent ent;
	int found = pw ? restore_passwd_find(pw, pwlen, numeric ? NULL : uname, u, &ent) : 0;
	if (!numeric && !found) {
		if (!rootfs)
			return sm_error_set(err, ENOENT,
					    "user '%s': this snapshot has no image root filesystem "
					    "to look names up in; give a numeric UID[:GID]",
					    uname);
		return sm_error_set(err, ENOENT, "user '%s' not found in the image's /etc/passwd",
				    uname);
	}
	*uid = found ? ent.uid : u;
	*gid = found ? ent.gid : 0;
	if (found && home_len)
		snprintf(home, home_len, "%s", ent.home);
	if (!group)
		return 0;
	if (all_digits(group, strlen(group))) {
		if (parse_id(group, strlen(group), gid) < 0)
			return sm_error_set(err, EINVAL, "group id '%.20s' out of range", group);
		return 0;
	}
	if (!rootfs)
		return sm_error_set(err, ENOENT,
				    "group '%.100s': this snapshot has no image root filesystem to "
				    "look names up in; give a numeric GID",
				    group);
	sm_autofree char *gr = NULL;
	size_t grlen = 0;
	int r = read_beneath(rootfs, "etc/group", &gr, &grlen, err);
	if (r < 0)
		return r;
	if (!gr || !restore_group_find(gr, grlen, group, &ent))
		return sm_error_set(err, ENOENT,
				    "group '%.100s' not found in the image's /etc/group", group);
	*gid = ent.gid;
	return 0;
}

/* ---- metadata ------------------------------------------------------------ */

static int has_env(char *const *env, const char *key)
{
	size_t kl = strlen(key);
	for (; env && *env; env++)
		if (env_key_len(*env) == kl && !memcmp(*env, key, kl))
			return 1;
	return 0;
}

static int append_env(struct restore_runcfg *rc, const char *kv)
{
	char **v = realloc(rc->env, (rc->envc + 2) * sizeof(char *));
	if (!v)
		return -ENOMEM;
	rc->env = v;
	if (!(v[rc->envc] = strdup(kv)))
		return -ENOMEM;
	v[++rc->envc] = NULL;
	return 0;
}

int restore_runcfg_from_meta(const char *meta, const struct restore_cmd_opts *c,
			     struct restore_runcfg *out, struct sm_error *err)
{
	memset(out, 0, sizeof(*out));
	struct oci_image_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	json_error_t je;
	json_t *m = json_loads(meta, 0, &je);
	int r = 0;
	if (!m || !json_is_object(m)) {
		r = sm_error_set(err, EINVAL, "snapshot metadata is not a JSON object");
		goto out;
	}
	json_t *jc = json_object_get(m, "config");
	if (jc && !json_is_null(jc)) {
		if (!json_is_object(jc)) {
			r = sm_error_set(err, EINVAL,
					 "snapshot metadata: \"config\" is not an object");
			goto out;
		}
		char *text = json_dumps(jc, JSON_COMPACT);
		if (!text) {
			r = sm_error_set(err, ENOMEM, "out of memory");
			goto out;
		}
		r = oci_config_from_json(text, &cfg, err);
		free(text);
		if (r < 0) {
			sm_error_wrap(err, "snapshot metadata \"config\"");
			goto out;
		}
		out->image_config = 1;
	}
	json_t *jr = json_object_get(m, "rootfs");
	const char *rootfs = c->rootfs;
	if (!rootfs && jr && !json_is_null(jr)) {
		if (!json_is_string(jr) || json_string_value(jr)[0] != '/') {
			r = sm_error_set(err, EINVAL,
					 "snapshot metadata: \"rootfs\" is not an absolute path");
			goto out;
		}
		rootfs = json_string_value(jr);
	}
	if (rootfs) {
		struct stat st;
		if (stat(rootfs, &st) < 0 || !S_ISDIR(st.st_mode)) {
			r = sm_error_set(
				err, ENOENT,
				"the image root filesystem %.600s is missing (removed from "
				"the cache?); bake the snapshot again",
				rootfs);
			goto out;
		}
		if (!(out->rootfs = strdup(rootfs))) {
			r = sm_error_set(err, ENOMEM, "out of memory");
			goto out;
		}
	}

	r = restore_runcfg_argv(cfg.entrypoint, cfg.cmd, c, &out->argv, &out->argc, err);
	if (r < 0)
		goto out;
	if (out->argc == 0) {
		r = sm_error_set(err, EINVAL,
				 "snapshot has no default command; give one after -- "
				 "(smrestore SNAP -- CMD [ARGS...])");
		goto out;
	}

	const char *wd = c->workdir;
	if (wd && wd[0] != '/') {
		r = sm_error_set(err, EINVAL, "--workdir must be an absolute path, got '%.200s'",
				 wd);
		goto out;
	}
	if (!wd || !*wd)
		wd = cfg.working_dir && *cfg.working_dir ? cfg.working_dir : "/";
	if (asprintf(&out->workdir, "%s%s", wd[0] == '/' ? "" : "/", wd) < 0) {
		out->workdir = NULL;
		r = sm_error_set(err, ENOMEM, "out of memory");
		goto out;
	}

	const char *user = c->user ? c->user : cfg.user ? cfg.user : "";
	char home[256];
	r = restore_user_resolve(out->rootfs, user, &out->uid, &out->gid, home, sizeof(home), err);
	if (r < 0) {
		if (!c->user)
			sm_error_wrap(err, "the image's User");
		goto out;
	}

	r = restore_runcfg_env(cfg.env, c->env, c->envc, &out->env, &out->envc, err);
	if (r < 0)
		goto out;
	if (!has_env(out->env, "PATH") && append_env(out, DEFAULT_PATH) < 0)
		r = -ENOMEM;
	if (r == 0 && !has_env(out->env, "HOME")) {
		char kv[300];
		snprintf(kv, sizeof(kv), "HOME=%s", home[0] ? home : out->uid == 0 ? "/root" : "/");
		if (append_env(out, kv) < 0)
			r = -ENOMEM;
	}
	if (r < 0)
		r = sm_error_set(err, ENOMEM, "out of memory");
out:
	json_decref(m);
	oci_config_free(&cfg);
	if (r < 0)
		restore_runcfg_free(out);
	return r;
}

int restore_runcfg_load(const char *snapshot, const struct restore_cmd_opts *c,
			struct restore_runcfg *out, struct fmt_reader **reader,
			struct sm_error *err)
{
	memset(out, 0, sizeof(*out));
	if (reader)
		*reader = NULL;
	struct fmt_reader *rd = NULL;
	int r = fmt_reader_open(&rd, snapshot, err);
	if (r < 0)
		return sm_error_wrap(err, "snapshot %s", snapshot);
	sm_autofree char *meta = NULL;
	r = fmt_reader_meta(rd, &meta, err);
	if (r < 0) {
		fmt_reader_close(rd);
		return sm_error_wrap(err, "snapshot %s", snapshot);
	}
	r = restore_runcfg_from_meta(meta, c, out, err);
	if (r == 0 && reader)
		*reader = rd;
	else
		fmt_reader_close(rd);
	return r;
}
