/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Apply one layer tarball to a root filesystem tree, safely.
 *
 * Two libarchive readers are chained: the first (format "raw", one
 * decompression filter chosen by magic bytes) yields the uncompressed
 * stream, which is hashed on the way (diff_id) and fed to the second (tar).
 * Nothing is extracted with archive_read_extract: every parent directory is
 * opened with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) beneath the
 * root, and the last component is created with *at() calls that never
 * follow it, so neither names nor symlinks in the tree can reach outside.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "sm/oci.h"

#define PATH_MAX_LEN 4096

/* ---- a small string set (paths created by the current layer) ------------- */

struct pathset {
	char **slot;
	size_t cap, n;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static int pathset_add(struct pathset *s, const char *p)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 1024;
		char **ns = calloc(nc, sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			if (!s->slot[i])
				continue;
			size_t j = fnv1a(s->slot[i]) & (nc - 1);
			while (ns[j])
				j = (j + 1) & (nc - 1);
			ns[j] = s->slot[i];
		}
		free(s->slot);
		s->slot = ns;
		s->cap = nc;
	}
	size_t j = fnv1a(p) & (s->cap - 1);
	while (s->slot[j]) {
		if (!strcmp(s->slot[j], p))
			return 0;
		j = (j + 1) & (s->cap - 1);
	}
	if (!(s->slot[j] = strdup(p)))
		return -ENOMEM;
	s->n++;
	return 0;
}

static int pathset_has(const struct pathset *s, const char *p)
{
	if (!s->cap)
		return 0;
	size_t j = fnv1a(p) & (s->cap - 1);
	while (s->slot[j]) {
		if (!strcmp(s->slot[j], p))
			return 1;
		j = (j + 1) & (s->cap - 1);
	}
	return 0;
}

static void pathset_free(struct pathset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slot[i]);
	free(s->slot);
	memset(s, 0, sizeof(*s));
}

/* ---- state ---------------------------------------------------------------- */

struct dirtime {
	char *path;
	struct timespec mtime;
};

struct unpack {
	int rootfd;
	int is_root;
	int chown;
	uint64_t max_file;
	struct archive *raw; /* decompressor */
	struct cache_hash hash;
	uint64_t total;
	struct pathset created;
	struct dirtime *dirs;
	size_t n_dirs, cap_dirs;
	int have_openat2;
	/* the last parent directory opened, reused while entries stay in it;
	 * dropped whenever anything is removed, so it never names a dead dir */
	char cached_parent[PATH_MAX_LEN];
	int cached_fd;
};

static void drop_parent_cache(struct unpack *u)
{
	if (u->cached_fd >= 0)
		close(u->cached_fd);
	u->cached_fd = -1;
	u->cached_parent[0] = '\0';
}

static long sys_openat2(int dirfd, const char *path, struct open_how *how)
{
	return syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
}

/* Open REL (a clean relative path, "" for the root) beneath the root as an
 * O_PATH directory fd. Symlinks resolve as if the root were "/". */
static int open_beneath(struct unpack *u, const char *rel, int extra_resolve)
{
	if (!*rel)
		return fcntl(u->rootfd, F_DUPFD_CLOEXEC, 0);
	if (u->have_openat2) {
		struct open_how how = {
			.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
			.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV |
				   (uint64_t)extra_resolve,
		};
		long fd = sys_openat2(u->rootfd, rel, &how);
		if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
			return (int)fd;
		u->have_openat2 = 0;
	}
	/* Fallback without openat2: walk with O_NOFOLLOW; a symlink in a
	 * parent is then refused instead of being resolved in the root. */
	char buf[PATH_MAX_LEN];
	snprintf(buf, sizeof(buf), "%s", rel);
	int cur = fcntl(u->rootfd, F_DUPFD_CLOEXEC, 0);
	char *save = NULL;
	for (char *c = strtok_r(buf, "/", &save); c && cur >= 0; c = strtok_r(NULL, "/", &save)) {
		int nfd = openat(cur, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(cur);
		errno = e;
		cur = nfd;
	}
	return cur;
}

/* Make REL a clean relative path in place: strip leading "/" and "./",
 * drop "." and empty components. Returns -1 on a ".." component. */
static int clean_path(const char *in, char *out, size_t outsz)
{
	size_t o = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		const char *e = strchr(p, '/');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == 0)
			break;
		if (l == 1 && p[0] == '.') {
			/* skip */
		} else if (l == 2 && p[0] == '.' && p[1] == '.') {
			return -1;
		} else {
			if (o + l + 2 > outsz)
				return -2;
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, l);
			o += l;
		}
		p += l;
	}
	out[o] = '\0';
	return 0;
}

static void split_path(char *path, const char **parent, const char **base)
{
	char *s = strrchr(path, '/');
	if (s) {
		*s = '\0';
		*parent = path;
		*base = s + 1;
	} else {
		*parent = "";
		*base = path;
	}
}

/* Open (creating missing directories) the parent REL beneath the root. */
static int open_parent(struct unpack *u, const char *rel, struct sm_error *err)
{
	int fd = open_beneath(u, rel, 0);
	if (fd >= 0 || (errno != ENOENT && errno != ENOTDIR)) {
		if (fd < 0)
			return sm_error_errno(err, errno, "cannot open directory '%s' in the layer",
					      rel);
		return fd;
	}
	char buf[PATH_MAX_LEN];
	snprintf(buf, sizeof(buf), "%s", rel);
	int cur = fcntl(u->rootfd, F_DUPFD_CLOEXEC, 0);
	for (char *p = buf;;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		int nfd = open_beneath(u, buf, 0);
		const char *comp = strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf;
		struct stat st;
		if (nfd < 0 && errno == ENOTDIR &&
		    fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
		    !S_ISLNK(st.st_mode)) {
			/* a non-directory where a later entry needs a directory */
			if (unlinkat(cur, comp, 0) < 0) {
				int e = errno;
				close(cur);
				return sm_error_errno(err, e, "cannot replace '%s'", buf);
			}
			errno = ENOENT;
		}
		if (nfd < 0 && errno == ENOENT) {
			if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST) {
				int e = errno;
				close(cur);
				return sm_error_errno(err, e, "cannot create directory '%s'", buf);
			}
			nfd = open_beneath(u, buf, 0);
		}
		if (nfd < 0) {
			int e = errno;
			close(cur);
			return sm_error_errno(err, e, "cannot open directory '%s'", buf);
		}
		close(cur);
		cur = nfd;
		if (!slash)
			break;
		*slash = '/';
		p = slash + 1;
	}
	return cur;
}

/* ---- decompression + hashing ----------------------------------------------- */

static la_ssize_t raw_read(struct archive *a, void *ud, const void **buf)
{
	struct unpack *u = ud;
	size_t size;
	la_int64_t off;
	int r = archive_read_data_block(u->raw, buf, &size, &off);
	if (r == ARCHIVE_EOF)
		return 0;
	if (r != ARCHIVE_OK) {
		archive_set_error(a, EIO, "decompressing the layer: %s",
				  archive_error_string(u->raw));
		return -1;
	}
	if ((uint64_t)off != u->total) {
		archive_set_error(a, EIO, "decompressor skipped data");
		return -1;
	}
	cache_hash_update(&u->hash, *buf, size);
	u->total += size;
	return (la_ssize_t)size;
}

/* Choose the decompression filter by magic bytes, not by media type. */
static int sniff(const char *path, const char **kind, struct sm_error *err)
{
	unsigned char m[6] = {0};
	sm_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot open layer %s", path);
	ssize_t n = read(fd, m, sizeof(m));
	if (n < 0)
		return sm_error_errno(err, errno, "cannot read layer %s", path);
	if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
		*kind = "gzip";
	else if (n >= 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
		*kind = "zstd";
	else if (n >= 6 && !memcmp(m,
				   "\xfd"
				   "7zXZ",
				   5))
		return sm_error_set(err, ENOTSUP,
				    "layer is xz-compressed; only tar, tar+gzip "
				    "and tar+zstd layers are supported");
	else if (n >= 3 && !memcmp(m, "BZh", 3))
		return sm_error_set(err, ENOTSUP,
				    "layer is bzip2-compressed; only tar, tar+gzip "
				    "and tar+zstd layers are supported");
	else
		*kind = "none";
	return 0;
}

/* ---- applying entries -------------------------------------------------------- */

/* Remove whatever is at PARENTFD/NAME unless it is a directory and KEEP_DIR. */
static int clear_slot(int parentfd, const char *name, int keep_dir, struct stat *old,
		      struct sm_error *err)
{
	struct stat st;
	if (fstatat(parentfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return sm_error_errno(err, errno, "cannot stat '%s'", name);
	}
	if (old)
		*old = st;
	if (S_ISDIR(st.st_mode)) {
		if (keep_dir)
			return 1;
		/* only children of the current (cached) parent are removed here,
		 * so the cached fd stays valid */
		return cache_rm_rf_at(parentfd, name, err);
	}
	if (unlinkat(parentfd, name, 0) < 0 && errno != ENOENT)
		return sm_error_errno(err, errno, "cannot replace '%s'", name);
	return 0;
}

static void apply_xattrs(struct archive_entry *e, int fd)
{
	const char *name;
	const void *val;
	size_t sz;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &val, &sz) == ARCHIVE_OK) {
		/* best effort: filesystems without xattrs or unprivileged
		 * callers lose them, as with umoci --rootless */
		(void)fsetxattr(fd, name, val, sz, 0);
	}
}

static int finish_fd(struct unpack *u, struct archive_entry *e, int fd, const char *path,
		     int set_times, struct sm_error *err)
{
	mode_t mode = archive_entry_perm(e) & 07777;
	if (u->chown && fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
		return sm_error_errno(err, errno, "cannot chown '%s'", path);
	apply_xattrs(e, fd);
	if (fchmod(fd, mode) < 0)
		return sm_error_errno(err, errno, "cannot chmod '%s'", path);
	if (set_times) {
		struct timespec ts[2] = {
			{.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
			{.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
		};
		if (futimens(fd, ts) < 0)
			return sm_error_errno(err, errno, "cannot set times on '%s'", path);
	}
	return 0;
}

static int write_file(struct unpack *u, struct archive *a, struct archive_entry *e, int pfd,
		      const char *base, const char *path, struct sm_error *err)
{
	int64_t size = archive_entry_size(e);
	if (size < 0 || (uint64_t)size > u->max_file)
		return sm_error_set(err, EFBIG,
				    "layer entry '%s' claims %lld bytes (limit %llu); refusing",
				    path, (long long)size, (unsigned long long)u->max_file);
	const int oflags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	sm_autoclose int fd = openat(pfd, base, oflags, 0600);
	if (fd < 0 && errno == EEXIST) {
		int r = clear_slot(pfd, base, 0, NULL, err);
		if (r < 0)
			return r;
		fd = openat(pfd, base, oflags, 0600);
	}
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot create '%s'", path);
	uint64_t end = 0;
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;
		int ar = archive_read_data_block(a, &buf, &len, &off);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN)
			return sm_error_set(err, EIO, "reading '%s' from the layer: %s", path,
					    archive_error_string(a));
		if (off < 0 || !sm_range_ok((uint64_t)off, len, (uint64_t)size))
			return sm_error_set(err, EBADMSG,
					    "layer entry '%s' has data outside its size", path);
		const char *p = buf;
		while (len) {
			ssize_t n = pwrite(fd, p, len, off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return sm_error_errno(err, errno, "cannot write '%s'", path);
			p += n;
			off += n;
			len -= (size_t)n;
		}
		if ((uint64_t)off > end)
			end = (uint64_t)off;
	}
	if (end != (uint64_t)size && ftruncate(fd, size) < 0)
		return sm_error_errno(err, errno, "cannot size '%s'", path);
	return finish_fd(u, e, fd, path, 1, err);
}

static int record_dir(struct unpack *u, const char *path, struct archive_entry *e)
{
	if (u->n_dirs == u->cap_dirs) {
		size_t nc = u->cap_dirs ? u->cap_dirs * 2 : 256;
		struct dirtime *nd = realloc(u->dirs, nc * sizeof(*nd));
		if (!nd)
			return -ENOMEM;
		u->dirs = nd;
		u->cap_dirs = nc;
	}
	if (!(u->dirs[u->n_dirs].path = strdup(path)))
		return -ENOMEM;
	u->dirs[u->n_dirs].mtime.tv_sec = archive_entry_mtime(e);
	u->dirs[u->n_dirs].mtime.tv_nsec = archive_entry_mtime_nsec(e);
	u->n_dirs++;
	return 0;
}

/* Remove the children of directory fd PFD/BASE that this layer did not create. */
static int make_opaque(struct unpack *u, const char *dirpath, struct sm_error *err)
{
	int dfd = open_beneath(u, dirpath, RESOLVE_NO_SYMLINKS);
	if (dfd < 0)
		return errno == ENOENT ? 0
				       : sm_error_errno(err, errno, "cannot open '%s'", dirpath);
	int rfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(dfd);
	if (rfd < 0)
		return sm_error_errno(err, errno, "cannot open '%s'", dirpath);
	DIR *d = fdopendir(rfd);
	if (!d) {
		close(rfd);
		return sm_error_errno(err, errno, "cannot read '%s'", dirpath);
	}
	struct dirent *de;
	int r = 0;
	char child[PATH_MAX_LEN];
	while ((de = readdir(d)) != NULL && r == 0) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(child, sizeof(child), "%s%s%s", dirpath, *dirpath ? "/" : "", de->d_name);
		if (pathset_has(&u->created, child))
			continue;
		r = cache_rm_rf_at(dirfd(d), de->d_name, err);
	}
	closedir(d);
	return r;
}

static int apply_entry(struct unpack *u, struct archive *a, struct archive_entry *e,
		       struct sm_error *err)
{
	char path[PATH_MAX_LEN], work[PATH_MAX_LEN];
	const char *name = archive_entry_pathname(e);
	if (!name)
		return sm_error_set(err, EBADMSG, "layer entry without a name");
	int c = clean_path(name, path, sizeof(path));
	if (c == -1)
		return sm_error_set(err, EPERM, "layer entry '%.200s' escapes the root (\"..\")",
				    name);
	if (c < 0)
		return sm_error_set(err, ENAMETOOLONG, "layer entry name too long");
	if (!*path)
		return 0; /* the root itself: keep ours */
	memcpy(work, path, strlen(path) + 1);
	const char *parent, *base;
	split_path(work, &parent, &base);

	/* whiteouts */
	if (!strncmp(base, ".wh.", 4)) {
		drop_parent_cache(u);
		if (!strcmp(base, ".wh..wh..opq"))
			return make_opaque(u, parent, err);
		const char *victim = base + 4;
		if (!*victim || !strcmp(victim, ".") || !strcmp(victim, ".."))
			return sm_error_set(err, EPERM, "bad whiteout '%.200s'", name);
		int pfd = open_beneath(u, parent, 0);
		if (pfd < 0)
			return errno == ENOENT || errno == ENOTDIR
				       ? 0
				       : sm_error_errno(err, errno, "whiteout '%.200s'", name);
		int r = cache_rm_rf_at(pfd, victim, err);
		close(pfd);
		return r;
	}

	if (pathset_add(&u->created, path) < 0)
		return sm_error_set(err, ENOMEM, "out of memory");
	int pfd;
	if (u->cached_fd >= 0 && !strcmp(u->cached_parent, parent)) {
		pfd = u->cached_fd;
	} else {
		drop_parent_cache(u);
		pfd = open_parent(u, parent, err);
		if (pfd < 0)
			return sm_error_wrap(err, "layer entry '%.200s'", name);
		u->cached_fd = pfd;
		snprintf(u->cached_parent, sizeof(u->cached_parent), "%s", parent);
	}

	const char *link = archive_entry_hardlink(e);
	if (link) {
		char tpath[PATH_MAX_LEN];
		int tc = clean_path(link, tpath, sizeof(tpath));
		if (tc == -1 || !*tpath)
			return sm_error_set(err, EPERM,
					    "hardlink '%.200s' -> '%.200s' points outside the root",
					    name, link);
		if (tc < 0)
			return sm_error_set(err, ENAMETOOLONG, "hardlink target too long");
		const char *tparent, *tbase;
		split_path(tpath, &tparent, &tbase);
		sm_autoclose int tfd = open_beneath(u, tparent, 0);
		struct stat tst, old;
		if (tfd < 0 || fstatat(tfd, tbase, &tst, AT_SYMLINK_NOFOLLOW) < 0)
			return sm_error_errno(err, errno, "hardlink '%.200s': target '%.200s'",
					      name, link);
		if (S_ISDIR(tst.st_mode))
			return sm_error_set(err, EPERM, "hardlink '%.200s' to a directory", name);
		memset(&old, 0, sizeof(old));
		int r = clear_slot(pfd, base, 0, &old, err);
		if (r < 0)
			return r;
		if (linkat(tfd, tbase, pfd, base, 0) < 0)
			return sm_error_errno(err, errno, "cannot link '%s' to '%s'", path, link);
		return 0;
	}

	mode_t type = archive_entry_filetype(e);
	switch (type) {
	case AE_IFDIR: {
		int r = clear_slot(pfd, base, 1, NULL, err);
		if (r < 0)
			return r;
		if (r == 0 && mkdirat(pfd, base, 0700) < 0)
			return sm_error_errno(err, errno, "cannot create directory '%s'", path);
		sm_autoclose int dfd =
			openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0)
			return sm_error_errno(err, errno, "cannot open directory '%s'", path);
		r = finish_fd(u, e, dfd, path, 0, err);
		if (r < 0)
			return r;
		return record_dir(u, path, e) < 0 ? sm_error_set(err, ENOMEM, "out of memory") : 0;
	}
	case AE_IFREG:
		return write_file(u, a, e, pfd, base, path, err);
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);
		if (!target)
			return sm_error_set(err, EBADMSG, "symlink '%.200s' without a target",
					    name);
		int r = clear_slot(pfd, base, 0, NULL, err);
		if (r < 0)
			return r;
		if (symlinkat(target, pfd, base) < 0)
			return sm_error_errno(err, errno, "cannot create symlink '%s'", path);
		if (u->chown && fchownat(pfd, base, (uid_t)archive_entry_uid(e),
					 (gid_t)archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) < 0)
			return sm_error_errno(err, errno, "cannot chown '%s'", path);
		struct timespec ts[2] = {
			{.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
			{.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
		};
		utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFIFO: {
		if (type != AE_IFIFO && !u->is_root)
			return 0; /* devices need root; rootless unpack skips them */
		int r = clear_slot(pfd, base, 0, NULL, err);
		if (r < 0)
			return r;
		mode_t m = (type == AE_IFCHR   ? S_IFCHR
			    : type == AE_IFBLK ? S_IFBLK
					       : S_IFIFO) |
			   (archive_entry_perm(e) & 07777);
		if (mknodat(pfd, base, m, archive_entry_rdev(e)) < 0)
			return sm_error_errno(err, errno, "cannot create node '%s'", path);
		if (u->chown && fchownat(pfd, base, (uid_t)archive_entry_uid(e),
					 (gid_t)archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) < 0)
			return sm_error_errno(err, errno, "cannot chown '%s'", path);
		if (fchmodat(pfd, base, archive_entry_perm(e) & 07777, 0) < 0)
			return sm_error_errno(err, errno, "cannot chmod '%s'", path);
		struct timespec ts[2] = {
			{.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
			{.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
		};
		utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	case AE_IFSOCK:
		return 0; /* sockets are meaningless in an image */
	default:
		return sm_error_set(err, EBADMSG, "layer entry '%.200s' has unknown type 0%o", name,
				    (unsigned)type);
	}
}

static void fix_dir_times(struct unpack *u)
{
	for (size_t i = u->n_dirs; i-- > 0;) {
		int fd = open_beneath(u, u->dirs[i].path, RESOLVE_NO_SYMLINKS);
		if (fd < 0)
			continue;
		struct timespec ts[2] = {u->dirs[i].mtime, u->dirs[i].mtime};
		utimensat(fd, "", ts, AT_EMPTY_PATH);
		close(fd);
	}
}

int oci_layer_apply(int rootfd, const char *layer_path, const char *diff_id,
		    const struct oci_unpack_opts *opts, struct sm_error *err)
{
	struct unpack u = {
		.rootfd = rootfd,
		.is_root = geteuid() == 0,
		.have_openat2 = 1,
		.cached_fd = -1,
	};
	struct archive *tar = NULL;
	enum cache_digest_alg alg = CACHE_DIGEST_SHA256;
	const char *kind = "none";
	int r;

	u.chown = u.is_root && !(opts && opts->no_chown);
	u.max_file = opts && opts->max_file_size ? opts->max_file_size : OCI_UNPACK_MAX_FILE;
	if (diff_id && (r = cache_digest_parse(diff_id, &alg, NULL, err)) < 0)
		return r;
	if ((r = sniff(layer_path, &kind, err)) < 0)
		return r;
	if ((r = cache_hash_init(&u.hash, alg, err)) < 0)
		return r;

	u.raw = archive_read_new();
	tar = archive_read_new();
	if (!u.raw || !tar) {
		r = sm_error_set(err, ENOMEM, "out of memory");
		goto out;
	}
	if (!strcmp(kind, "gzip"))
		archive_read_support_filter_gzip(u.raw);
	else if (!strcmp(kind, "zstd"))
		archive_read_support_filter_zstd(u.raw);
	archive_read_support_format_raw(u.raw);
	archive_read_support_format_empty(u.raw);
	if (archive_read_open_filename(u.raw, layer_path, 1 << 16) != ARCHIVE_OK) {
		r = sm_error_set(err, EIO, "cannot open layer %s: %s", layer_path,
				 archive_error_string(u.raw));
		goto out;
	}
	struct archive_entry *re;
	int hr = archive_read_next_header(u.raw, &re);
	if (hr == ARCHIVE_EOF) {
		/* an empty blob: no entries at all */
	} else if (hr != ARCHIVE_OK) {
		r = sm_error_set(err, EIO, "cannot decompress layer %s: %s", layer_path,
				 archive_error_string(u.raw));
		goto out;
	} else {
		archive_read_support_format_tar(tar);
		if (archive_read_open(tar, &u, NULL, raw_read, NULL) != ARCHIVE_OK) {
			r = sm_error_set(err, EIO, "layer %s is not a tar archive: %s", layer_path,
					 archive_error_string(tar));
			goto out;
		}
		struct archive_entry *e;
		for (;;) {
			int ar = archive_read_next_header(tar, &e);
			if (ar == ARCHIVE_EOF)
				break;
			if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
				r = sm_error_set(err, EBADMSG, "layer %s: %s", layer_path,
						 archive_error_string(tar));
				goto out;
			}
			r = apply_entry(&u, tar, e, err);
			if (r < 0) {
				sm_error_wrap(err, "layer %s", layer_path);
				goto out;
			}
		}
		/* hash the rest of the stream (tar padding beyond end-of-archive) */
		const void *b;
		for (;;) {
			la_ssize_t n = raw_read(tar, &u, &b);
			if (n == 0)
				break;
			if (n < 0) {
				r = sm_error_set(err, EIO, "layer %s: %s", layer_path,
						 archive_error_string(tar));
				goto out;
			}
		}
	}
	fix_dir_times(&u);
	if (diff_id) {
		char got[CACHE_DIGEST_MAX];
		cache_hash_final(&u.hash, got);
		if (strcmp(got, diff_id) != 0) {
			r = sm_error_set(
				err, EBADMSG,
				"layer %s: uncompressed content hashes to %s, but the image "
				"config says diff_id %s",
				layer_path, got, diff_id);
			goto out;
		}
	}
	r = 0;
out:
	drop_parent_cache(&u);
	cache_hash_abort(&u.hash);
	if (tar)
		archive_read_free(tar);
	if (u.raw)
		archive_read_free(u.raw);
	pathset_free(&u.created);
	for (size_t i = 0; i < u.n_dirs; i++)
		free(u.dirs[i].path);
	free(u.dirs);
	return r;
}
