/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Passthrough backend over a host directory that the guest can never leave.
 *
 * Every node holds an O_PATH fd. A name is resolved only as one component
 * below its parent's fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) and O_NOFOLLOW, so ".." and
 * symlinks never take the host anywhere: a symlink is a node of its own whose
 * target the guest reads with READLINK and resolves itself. Files are
 * re-opened through /proc/self/fd/N of the node's own fd (never by path),
 * and only regular files and directories are ever opened.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fuse_abi.h"
#include "internal.h"
#include "sm/fuse.h"

#define NBUCKETS    16384u
#define MAX_HANDLES 65536u
#define MAX_DEPTH   4096

struct pnode {
	uint64_t nodeid, gen;
	int fd; /* O_PATH; -1 while a restored node is not resolved yet */
	dev_t dev;
	ino_t ino;
	uint64_t nlookup;
	uint64_t refs;	      /* children naming it as parent + open handles */
	struct pnode *parent; /* holds a ref; NULL for the root or a lost name */
	char *name;	      /* component inside parent; NULL when unknown */
	char *rpath;	      /* restored nodes: path under the root to resolve */
	struct pnode *next_id, *next_ino, *next_name;
	int in_ino_map, in_name_map;
};

struct phandle {
	struct pnode *node; /* NULL: slot free */
	int fd;		    /* -1: re-open on demand (after a restore) */
	uint32_t flags;
	int dir;
};

struct passthrough {
	struct fuse_backend be;
	struct pnode root;
	struct pnode *by_id[NBUCKETS];
	struct pnode *by_ino[NBUCKETS];
	struct pnode *by_name[NBUCKETS]; /* unresolved nodes by (parent, name) */
	uint64_t next_nodeid, next_gen;
	size_t unresolved; /* restored nodes without an fd */
	struct phandle *fh;
	size_t nfh;
	int use_openat2;
};

static struct passthrough *P(struct fuse_backend *be)
{
	return (struct passthrough *)be;
}

static unsigned hash64(uint64_t v)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return (unsigned)(v % NBUCKETS);
}

static unsigned hash_ino(dev_t dev, ino_t ino)
{
	return hash64((uint64_t)ino * 31 + (uint64_t)dev);
}

static void proc_path(char *buf, size_t size, int fd)
{
	snprintf(buf, size, "/proc/self/fd/%d", fd);
}

/* Open one component (or a restored relative path) below dirfd without
 * ever leaving it. Returns an fd or -errno. */
static int open_beneath(struct passthrough *p, int dirfd, const char *path, int flags, mode_t mode)
{
	if (p->use_openat2) {
		struct open_how how = {
			.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
			.mode = (flags & O_CREAT) ? mode : 0,
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
				   RESOLVE_NO_XDEV,
		};
		long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS)
			return errno == EXDEV ? -EACCES : -errno;
		p->use_openat2 = 0;
	}
	/* Fallback: component by component, each with O_NOFOLLOW. */
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	int cur = dirfd, r = 0;
	char *save = NULL;
	char *comp = strtok_r(copy, "/", &save);
	while (comp) {
		char *next = strtok_r(NULL, "/", &save);
		if (strcmp(comp, "..") == 0 || strcmp(comp, ".") == 0) {
			r = -EACCES;
			break;
		}
		int fl = next ? (O_PATH | O_DIRECTORY) : flags;
		int fd = openat(cur, comp, fl | O_NOFOLLOW | O_CLOEXEC, mode);
		if (cur != dirfd)
			close(cur);
		if (fd < 0) {
			r = -errno;
			cur = dirfd;
			break;
		}
		cur = fd;
		comp = next;
	}
	free(copy);
	if (r < 0)
		return r;
	return cur == dirfd ? -EINVAL : cur;
}

/* ---- node table -------------------------------------------------------- */

static struct pnode *find_id(struct passthrough *p, uint64_t nodeid)
{
	if (nodeid == FUSE_ROOT_ID)
		return &p->root;
	for (struct pnode *n = p->by_id[hash64(nodeid)]; n; n = n->next_id)
		if (n->nodeid == nodeid)
			return n;
	return NULL;
}

static struct pnode *find_ino(struct passthrough *p, dev_t dev, ino_t ino)
{
	for (struct pnode *n = p->by_ino[hash_ino(dev, ino)]; n; n = n->next_ino)
		if (n->dev == dev && n->ino == ino)
			return n;
	return NULL;
}

static void ino_insert(struct passthrough *p, struct pnode *n)
{
	unsigned h = hash_ino(n->dev, n->ino);
	n->next_ino = p->by_ino[h];
	p->by_ino[h] = n;
	n->in_ino_map = 1;
}

static void unlink_chain(struct pnode **head, struct pnode *n, int ino)
{
	for (struct pnode **pp = head; *pp; pp = ino ? &(*pp)->next_ino : &(*pp)->next_id)
		if (*pp == n) {
			*pp = ino ? n->next_ino : n->next_id;
			return;
		}
}

static void set_path(struct pnode *n, struct pnode *parent, char *name);

static unsigned hash_name(uint64_t parent, const char *name)
{
	uint64_t h = parent * 0x9E3779B97F4A7C15ull;
	for (const unsigned char *c = (const unsigned char *)name; *c; c++)
		h = (h ^ *c) * 0x100000001b3ull;
	return hash64(h);
}

/* Unresolved (restored) nodes never change parent or name until they get
 * their fd, so they can be indexed by both. */
static void name_insert(struct passthrough *p, struct pnode *n)
{
	unsigned h = hash_name(n->parent->nodeid, n->name);
	n->next_name = p->by_name[h];
	p->by_name[h] = n;
	n->in_name_map = 1;
}

static void name_remove(struct passthrough *p, struct pnode *n)
{
	if (!n->in_name_map)
		return;
	for (struct pnode **pp = &p->by_name[hash_name(n->parent->nodeid, n->name)]; *pp;
	     pp = &(*pp)->next_name)
		if (*pp == n) {
			*pp = n->next_name;
			break;
		}
	n->in_name_map = 0;
}

static struct pnode *find_unresolved(struct passthrough *p, struct pnode *dir, const char *name)
{
	for (struct pnode *c = p->by_name[hash_name(dir->nodeid, name)]; c; c = c->next_name)
		if (c->parent == dir && strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

/* Give a restored node its fd (taken). */
static void attach_fd(struct passthrough *p, struct pnode *n, int fd, const struct stat *st)
{
	name_remove(p, n);
	n->fd = fd;
	n->dev = st->st_dev;
	n->ino = st->st_ino;
	ino_insert(p, n);
	p->unresolved--;
	free(n->rpath);
	n->rpath = NULL;
}

/* Free N when nothing refers to it any more. */
static void maybe_free(struct passthrough *p, struct pnode *n)
{
	while (n && n != &p->root && n->nlookup == 0 && n->refs == 0) {
		unlink_chain(&p->by_id[hash64(n->nodeid)], n, 0);
		if (n->in_ino_map)
			unlink_chain(&p->by_ino[hash_ino(n->dev, n->ino)], n, 1);
		if (n->fd >= 0) {
			close(n->fd);
		} else {
			name_remove(p, n);
			p->unresolved--;
		}
		struct pnode *parent = n->parent;
		free(n->name);
		free(n->rpath);
		free(n);
		if (!parent)
			return;
		parent->refs--;
		n = parent;
	}
}

/* Record where N lives now (takes NAME; parent NULL = unknown). */
static void set_path(struct pnode *n, struct pnode *parent, char *name)
{
	struct pnode *old = n->parent;
	if (parent)
		parent->refs++;
	n->parent = parent;
	free(n->name);
	n->name = name;
	if (old)
		old->refs--; /* the caller frees old if needed (maybe_free) */
}

static void drop_path(struct passthrough *p, struct pnode *n)
{
	struct pnode *old = n->parent;
	set_path(n, NULL, NULL);
	maybe_free(p, old);
}

/* Make sure a restored node has its fd. */
static int resolve(struct passthrough *p, struct pnode *n)
{
	if (n->fd >= 0)
		return 0;
	int fd = open_beneath(p, p->root.fd, n->rpath, O_PATH, 0);
	if (fd < 0)
		return fd == -ENOENT ? -ESTALE : fd;
	struct stat st;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	attach_fd(p, n, fd, &st);
	return 0;
}

static int get_node(struct passthrough *p, uint64_t nodeid, struct pnode **out)
{
	struct pnode *n = find_id(p, nodeid);
	if (!n)
		return -ESTALE;
	int r = resolve(p, n);
	if (r < 0)
		return r;
	*out = n;
	return 0;
}

static int stat_node(struct pnode *n, struct stat *st)
{
	return fstatat(n->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static struct pnode *new_pnode(struct passthrough *p)
{
	struct pnode *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->nodeid = p->next_nodeid++;
	n->gen = p->next_gen++;
	n->fd = -1;
	unsigned h = hash64(n->nodeid);
	n->next_id = p->by_id[h];
	p->by_id[h] = n;
	return n;
}

static int pt_lookup(struct fuse_backend *be, uint64_t parent, const char *name,
		     struct fuse_entry_param *e)
{
	struct passthrough *p = P(be);
	struct pnode *d;
	int r = get_node(p, parent, &d);
	if (r < 0)
		return r;
	int fd = open_beneath(p, d->fd, name, O_PATH, 0);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	struct pnode *n = find_ino(p, st.st_dev, st.st_ino);
	if (!n && p->unresolved) {
		/* A restored node for this very name: it gets this fd. */
		n = find_unresolved(p, d, name);
		if (n) {
			attach_fd(p, n, fd, &st);
			fd = -1;
		}
	}
	if (n) {
		if (fd >= 0)
			close(fd);
		if (!n->name && n != &p->root) {
			char *nm = strdup(name);
			if (nm)
				set_path(n, d, nm);
		}
	} else {
		char *nm = strdup(name);
		n = nm ? new_pnode(p) : NULL;
		if (!n) {
			free(nm);
			close(fd);
			return -ENOMEM;
		}
		n->fd = fd;
		n->dev = st.st_dev;
		n->ino = st.st_ino;
		ino_insert(p, n);
		set_path(n, d, nm);
	}
	n->nlookup++;
	e->nodeid = n->nodeid;
	e->generation = n->gen;
	e->st = st;
	return 0;
}

static void pt_forget(struct fuse_backend *be, uint64_t nodeid, uint64_t nlookup)
{
	struct passthrough *p = P(be);
	struct pnode *n = find_id(p, nodeid);
	if (!n || n == &p->root)
		return;
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	maybe_free(p, n);
}

static int pt_getattr(struct fuse_backend *be, uint64_t nodeid, struct stat *st)
{
	struct pnode *n;
	int r = get_node(P(be), nodeid, &n);
	return r < 0 ? r : stat_node(n, st);
}

/* ---- handles ----------------------------------------------------------- */

static int handle_new(struct passthrough *p, struct pnode *n, int fd, uint32_t flags, int dir,
		      uint64_t *fh)
{
	size_t i;
	for (i = 0; i < p->nfh; i++)
		if (!p->fh[i].node)
			break;
	if (i == p->nfh) {
		if (p->nfh >= MAX_HANDLES)
			return -EMFILE;
		size_t nn = p->nfh ? p->nfh * 2 : 16;
		if (nn > MAX_HANDLES)
			nn = MAX_HANDLES;
		struct phandle *h = realloc(p->fh, nn * sizeof(*h));
		if (!h)
			return -ENOMEM;
		memset(h + p->nfh, 0, (nn - p->nfh) * sizeof(*h));
		p->fh = h;
		p->nfh = nn;
	}
	p->fh[i] = (struct phandle){.node = n, .fd = fd, .flags = flags, .dir = dir};
	n->refs++;
	*fh = i;
	return 0;
}

/* The open(2) flags a guest may pass through; everything else is dropped
 * (O_PATH, O_TMPFILE, O_NOATIME, kernel-internal bits, ...). */
#define GUEST_OPEN_FLAGS                                                                           \
	(O_ACCMODE | O_APPEND | O_TRUNC | O_NONBLOCK | O_DSYNC | O_SYNC | O_DIRECT | O_LARGEFILE | \
	 O_DIRECTORY | O_EXCL)

static int reopen(struct pnode *n, int flags)
{
	flags &= GUEST_OPEN_FLAGS;
	char path[64];
	proc_path(path, sizeof(path), n->fd);
	int fd = open(path, (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW)) | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Only regular files and directories are ever opened on the host. */
static int check_openable(struct pnode *n, int dir)
{
	struct stat st;
	int r = stat_node(n, &st);
	if (r < 0)
		return r;
	if (dir)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	return S_ISREG(st.st_mode) ? 0 : -ENXIO;
}

/* The handle's fd, re-opened from its node after a restore. */
static int handle_fd(struct passthrough *p, uint64_t nodeid, uint64_t fh, int dir, int *fd,
		     struct phandle **hp)
{
	if (fh >= p->nfh || !p->fh[fh].node || p->fh[fh].dir != dir ||
	    p->fh[fh].node->nodeid != nodeid)
		return -EBADF;
	struct phandle *h = &p->fh[fh];
	if (h->fd < 0) {
		int r = resolve(p, h->node);
		if (r == 0)
			r = check_openable(h->node, dir);
		if (r < 0)
			return r;
		int f = reopen(h->node,
			       dir ? O_RDONLY | O_DIRECTORY : (int)(h->flags & ~(uint32_t)O_TRUNC));
		if (f < 0)
			return f;
		h->fd = f;
	}
	*fd = h->fd;
	if (hp)
		*hp = h;
	return 0;
}

static int pt_open(struct fuse_backend *be, uint64_t nodeid, uint32_t flags, uint64_t *fh)
{
	struct passthrough *p = P(be);
	struct pnode *n;
	int r = get_node(p, nodeid, &n);
	if (r == 0)
		r = check_openable(n, 0);
	if (r < 0)
		return r;
	int fd = reopen(n, (int)flags);
	if (fd < 0)
		return fd;
	r = handle_new(p, n, fd, flags, 0, fh);
	if (r < 0)
		close(fd);
	return r;
}

static int pt_opendir(struct fuse_backend *be, uint64_t nodeid, uint32_t flags, uint64_t *fh)
{
	struct passthrough *p = P(be);
	struct pnode *n;
	int r = get_node(p, nodeid, &n);
	if (r == 0)
		r = check_openable(n, 1);
	if (r < 0)
		return r;
	int fd = reopen(n, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return fd;
	r = handle_new(p, n, fd, flags, 1, fh);
	if (r < 0)
		close(fd);
	return r;
}

static int release_any(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int dir)
{
	struct passthrough *p = P(be);
	if (fh >= p->nfh || !p->fh[fh].node || p->fh[fh].dir != dir ||
	    p->fh[fh].node->nodeid != nodeid)
		return -EBADF;
	struct phandle *h = &p->fh[fh];
	if (h->fd >= 0)
		close(h->fd);
	struct pnode *n = h->node;
	*h = (struct phandle){.fd = -1};
	n->refs--;
	maybe_free(p, n);
	return 0;
}

static int pt_release(struct fuse_backend *be, uint64_t nodeid, uint64_t fh)
{
	return release_any(be, nodeid, fh, 0);
}

static int pt_releasedir(struct fuse_backend *be, uint64_t nodeid, uint64_t fh)
{
	return release_any(be, nodeid, fh, 1);
}

static ssize_t pt_read(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint64_t off,
		       const struct iovec *iov, int iovcnt)
{
	int fd, r = handle_fd(P(be), nodeid, fh, 0, &fd, NULL);
	if (r < 0)
		return r;
	if (iovcnt == 0)
		return 0;
	ssize_t n = preadv(fd, iov, iovcnt, (off_t)off);
	return n < 0 ? -errno : n;
}

static ssize_t pt_write(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint64_t off,
			const struct iovec *iov, int iovcnt)
{
	int fd, r = handle_fd(P(be), nodeid, fh, 0, &fd, NULL);
	if (r < 0)
		return r;
	if (iovcnt == 0)
		return 0;
	ssize_t n = pwritev(fd, iov, iovcnt, (off_t)off);
	return n < 0 ? -errno : n;
}

static int pt_flush(struct fuse_backend *be, uint64_t nodeid, uint64_t fh)
{
	int fd, r = handle_fd(P(be), nodeid, fh, 0, &fd, NULL);
	if (r < 0)
		return r;
	/* close() semantics (POSIX locks, NFS flush) without losing the fd. */
	int d = dup(fd);
	if (d < 0)
		return -errno;
	return close(d) < 0 ? -errno : 0;
}

static int pt_fsync(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int datasync)
{
	int fd, r = handle_fd(P(be), nodeid, fh, 0, &fd, NULL);
	if (r < 0)
		return r;
	return (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
}

static int pt_fsyncdir(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int datasync)
{
	int fd, r = handle_fd(P(be), nodeid, fh, 1, &fd, NULL);
	if (r < 0)
		return r;
	return (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
}

static int64_t pt_lseek(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int64_t off,
			int whence)
{
	int fd, r = handle_fd(P(be), nodeid, fh, 0, &fd, NULL);
	if (r < 0)
		return r;
	off_t o = lseek(fd, (off_t)off, whence);
	return o < 0 ? -errno : (int64_t)o;
}

static int pt_fallocate(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint32_t mode,
			uint64_t off, uint64_t len)
{
	int fd, r = handle_fd(P(be), nodeid, fh, 0, &fd, NULL);
	if (r < 0)
		return r;
	return fallocate(fd, (int)mode, (off_t)off, (off_t)len) < 0 ? -errno : 0;
}

static int pt_readdir(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint64_t off,
		      fuse_fill_dir_fn fill, void *ctx)
{
	int fd, r = handle_fd(P(be), nodeid, fh, 1, &fd, NULL);
	if (r < 0)
		return r;
	if (off > INT64_MAX || lseek(fd, (off_t)off, SEEK_SET) < 0)
		return -EINVAL;
	char buf[32768] __attribute__((aligned(8)));
	for (;;) {
		long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		for (long pos = 0; pos < n;) {
			struct dirent64 *de = (struct dirent64 *)(buf + pos);
			if (de->d_reclen == 0 || de->d_reclen > n - pos)
				return -EIO;
			pos += de->d_reclen;
			r = fill(ctx, de->d_name, de->d_ino, de->d_type, (uint64_t)de->d_off);
			if (r != 0)
				return r < 0 ? r : 0;
		}
	}
}

static int pt_statfs(struct fuse_backend *be, uint64_t nodeid, struct statvfs *sv)
{
	struct pnode *n;
	int r = get_node(P(be), nodeid, &n);
	if (r < 0)
		return r;
	return fstatvfs(n->fd, sv) < 0 ? -errno : 0;
}

static int pt_access(struct fuse_backend *be, uint64_t nodeid, uint32_t mask)
{
	(void)mask; /* the guest mounts with default_permissions */
	struct pnode *n;
	struct stat st;
	int r = get_node(P(be), nodeid, &n);
	return r < 0 ? r : stat_node(n, &st);
}

/* ---- changes to the tree ----------------------------------------------- */

static int pt_setattr(struct fuse_backend *be, uint64_t nodeid, const struct fuse_setattr_req *q,
		      struct stat *st)
{
	struct passthrough *p = P(be);
	struct pnode *n;
	int r = get_node(p, nodeid, &n);
	if (r < 0)
		return r;
	struct stat cur;
	r = stat_node(n, &cur);
	if (r < 0)
		return r;
	char path[64];
	proc_path(path, sizeof(path), n->fd);
	int special = !S_ISREG(cur.st_mode) && !S_ISDIR(cur.st_mode);
	if (q->valid & FUSE_SET_MODE) {
		if (S_ISLNK(cur.st_mode))
			return -EOPNOTSUPP;
		if (special)
			return -EPERM; /* never reach a host device through /proc */
		if (fchmodat(AT_FDCWD, path, q->mode & 07777, 0) < 0)
			return -errno;
	}
	if (q->valid & (FUSE_SET_UID | FUSE_SET_GID)) {
		uid_t u = (q->valid & FUSE_SET_UID) ? q->uid : (uid_t)-1;
		gid_t g = (q->valid & FUSE_SET_GID) ? q->gid : (gid_t)-1;
		if (fchownat(n->fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (q->valid & FUSE_SET_SIZE) {
		if (S_ISDIR(cur.st_mode))
			return -EISDIR;
		if (!S_ISREG(cur.st_mode))
			return -EINVAL;
		int fd;
		if (q->fh != FUSE_BACKEND_NO_FH) {
			r = handle_fd(p, nodeid, q->fh, 0, &fd, NULL);
			if (r < 0)
				return r;
			r = ftruncate(fd, (off_t)q->size) < 0 ? -errno : 0;
		} else {
			fd = reopen(n, O_WRONLY);
			if (fd < 0)
				return fd;
			r = ftruncate(fd, (off_t)q->size) < 0 ? -errno : 0;
			close(fd);
		}
		if (r < 0)
			return r;
	}
	if (q->valid &
	    (FUSE_SET_ATIME | FUSE_SET_MTIME | FUSE_SET_ATIME_NOW | FUSE_SET_MTIME_NOW)) {
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
		if (q->valid & FUSE_SET_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (q->valid & FUSE_SET_ATIME)
			ts[0] = q->atime;
		if (q->valid & FUSE_SET_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (q->valid & FUSE_SET_MTIME)
			ts[1] = q->mtime;
		if (S_ISLNK(cur.st_mode)) {
			if (!n->parent || !n->name)
				return -EOPNOTSUPP;
			r = utimensat(n->parent->fd, n->name, ts, AT_SYMLINK_NOFOLLOW);
		} else if (special) {
			r = utimensat(n->fd, "", ts, AT_EMPTY_PATH);
		} else {
			r = utimensat(AT_FDCWD, path, ts, 0);
		}
		if (r < 0)
			return -errno;
	}
	return stat_node(n, st);
}

static int pt_readlink(struct fuse_backend *be, uint64_t nodeid, char *buf, size_t size)
{
	struct pnode *n;
	int r = get_node(P(be), nodeid, &n);
	if (r < 0)
		return r;
	struct stat st;
	r = stat_node(n, &st);
	if (r < 0)
		return r;
	if (!S_ISLNK(st.st_mode))
		return -EINVAL;
	ssize_t l = readlinkat(n->fd, "", buf, size);
	return l < 0 ? -errno : (int)l;
}

static int pt_mknod(struct fuse_backend *be, uint64_t parent, const char *name, uint32_t mode,
		    dev_t rdev, const struct fuse_ctx *c, struct fuse_entry_param *e)
{
	struct pnode *d;
	int r = get_node(P(be), parent, &d);
	if (r < 0)
		return r;
	mode_t t = mode & S_IFMT;
	int whiteout = t == S_IFCHR && rdev == 0;
	if (t != S_IFREG && t != S_IFIFO && t != S_IFSOCK && !whiteout)
		return -EPERM; /* no host device nodes made by a guest */
	if (mknodat(d->fd, name, t | (mode & 07777 & ~c->umask), whiteout ? 0 : rdev) < 0)
		return -errno;
	return pt_lookup(be, parent, name, e);
}

static int pt_mkdir(struct fuse_backend *be, uint64_t parent, const char *name, uint32_t mode,
		    const struct fuse_ctx *c, struct fuse_entry_param *e)
{
	struct pnode *d;
	int r = get_node(P(be), parent, &d);
	if (r < 0)
		return r;
	if (mkdirat(d->fd, name, mode & 07777 & ~c->umask) < 0)
		return -errno;
	return pt_lookup(be, parent, name, e);
}

static int pt_symlink(struct fuse_backend *be, uint64_t parent, const char *name,
		      const char *target, const struct fuse_ctx *c, struct fuse_entry_param *e)
{
	(void)c;
	struct pnode *d;
	int r = get_node(P(be), parent, &d);
	if (r < 0)
		return r;
	if (symlinkat(target, d->fd, name) < 0)
		return -errno;
	return pt_lookup(be, parent, name, e);
}

/* The node currently known by (dir, name), if any; a restored node with
 * that name is resolved first, so that it follows the file and not the
 * name. */
static struct pnode *node_at(struct passthrough *p, struct pnode *dir, const char *name)
{
	struct stat st;
	if (fstatat(dir->fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return NULL;
	for (struct pnode *n = p->by_ino[hash_ino(st.st_dev, st.st_ino)]; n; n = n->next_ino)
		if (n->dev == st.st_dev && n->ino == st.st_ino && n->parent == dir && n->name &&
		    strcmp(n->name, name) == 0)
			return n;
	struct pnode *u = p->unresolved ? find_unresolved(p, dir, name) : NULL;
	if (u && resolve(p, u) == 0 && u->dev == st.st_dev && u->ino == st.st_ino)
		return u;
	return NULL;
}

static int pt_remove(struct fuse_backend *be, uint64_t parent, const char *name, int dir)
{
	struct passthrough *p = P(be);
	struct pnode *d;
	int r = get_node(p, parent, &d);
	if (r < 0)
		return r;
	struct pnode *n = node_at(p, d, name);
	if (unlinkat(d->fd, name, dir ? AT_REMOVEDIR : 0) < 0)
		return -errno;
	if (n)
		drop_path(p, n);
	return 0;
}

static int pt_unlink(struct fuse_backend *be, uint64_t parent, const char *name)
{
	return pt_remove(be, parent, name, 0);
}

static int pt_rmdir(struct fuse_backend *be, uint64_t parent, const char *name)
{
	return pt_remove(be, parent, name, 1);
}

static int pt_rename(struct fuse_backend *be, uint64_t olddir, const char *oldname, uint64_t newdir,
		     const char *newname, uint32_t flags)
{
	struct passthrough *p = P(be);
	struct pnode *od, *nd;
	int r = get_node(p, olddir, &od);
	if (r == 0)
		r = get_node(p, newdir, &nd);
	if (r < 0)
		return r;
	struct pnode *src = node_at(p, od, oldname);
	struct pnode *dst = node_at(p, nd, newname);
	char *n1 = strdup(newname), *n2 = strdup(oldname);
	if (!n1 || !n2) {
		free(n1);
		free(n2);
		return -ENOMEM;
	}
	if (syscall(SYS_renameat2, od->fd, oldname, nd->fd, newname, flags) < 0) {
		free(n1);
		free(n2);
		return -errno;
	}
	/* Pin both directories while names move between them. */
	od->refs++;
	nd->refs++;
	if (flags & RENAME_EXCHANGE) {
		if (dst)
			set_path(dst, od, n2);
		else
			free(n2);
	} else {
		free(n2);
		if (dst && dst != src)
			drop_path(p, dst);
	}
	if (src)
		set_path(src, nd, n1);
	else
		free(n1);
	od->refs--;
	nd->refs--;
	maybe_free(p, od);
	maybe_free(p, nd);
	return 0;
}

static int pt_link(struct fuse_backend *be, uint64_t nodeid, uint64_t newparent,
		   const char *newname, struct fuse_entry_param *e)
{
	struct passthrough *p = P(be);
	struct pnode *n, *d;
	int r = get_node(p, nodeid, &n);
	if (r == 0)
		r = get_node(p, newparent, &d);
	if (r < 0)
		return r;
	struct stat st;
	r = stat_node(n, &st);
	if (r < 0)
		return r;
	if (S_ISDIR(st.st_mode))
		return -EPERM;
	if (S_ISLNK(st.st_mode)) {
		/* /proc would follow it; a symlink is linked through its name. */
		if (!n->parent || !n->name)
			return -ENOENT;
		r = linkat(n->parent->fd, n->name, d->fd, newname, 0);
	} else {
		char path[64];
		proc_path(path, sizeof(path), n->fd);
		r = linkat(AT_FDCWD, path, d->fd, newname, AT_SYMLINK_FOLLOW);
	}
	if (r < 0)
		return -errno;
	return pt_lookup(be, newparent, newname, e);
}

static int pt_create(struct fuse_backend *be, uint64_t parent, const char *name, uint32_t mode,
		     uint32_t flags, const struct fuse_ctx *c, struct fuse_entry_param *e,
		     uint64_t *fh)
{
	struct passthrough *p = P(be);
	struct pnode *d;
	int r = get_node(p, parent, &d);
	if (r < 0)
		return r;
	int fd = open_beneath(p, d->fd, name, (int)(flags & GUEST_OPEN_FLAGS) | O_CREAT,
			      (mode & 07777) & ~c->umask);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	r = pt_lookup(be, parent, name, e);
	if (r < 0) {
		close(fd);
		return r;
	}
	struct pnode *n = find_id(p, e->nodeid);
	r = handle_new(p, n, fd, flags, 0, fh);
	if (r < 0) {
		close(fd);
		pt_forget(be, e->nodeid, 1);
	}
	return r;
}

/* ---- xattrs: only on regular files and directories ----------------------- */

static int xattr_fd(struct passthrough *p, uint64_t nodeid, int *fd, int *kind)
{
	struct pnode *n;
	struct stat st;
	int r = get_node(p, nodeid, &n);
	if (r == 0)
		r = stat_node(n, &st);
	if (r < 0)
		return r;
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		*kind = 0;
		return 0;
	}
	*kind = 1;
	*fd = reopen(n, O_RDONLY | O_NONBLOCK);
	return *fd < 0 ? *fd : 0;
}

static int pt_setxattr(struct fuse_backend *be, uint64_t nodeid, const char *name,
		       const void *value, size_t size, uint32_t flags)
{
	int fd, kind, r = xattr_fd(P(be), nodeid, &fd, &kind);
	if (r < 0)
		return r;
	if (!kind)
		return -EPERM;
	r = fsetxattr(fd, name, value, size, (int)flags) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static ssize_t pt_getxattr(struct fuse_backend *be, uint64_t nodeid, const char *name, void *buf,
			   size_t size)
{
	int fd, kind, r = xattr_fd(P(be), nodeid, &fd, &kind);
	if (r < 0)
		return r;
	if (!kind)
		return -ENODATA;
	ssize_t n = fgetxattr(fd, name, buf, size);
	if (n < 0)
		n = -errno;
	close(fd);
	return n;
}

static ssize_t pt_listxattr(struct fuse_backend *be, uint64_t nodeid, char *buf, size_t size)
{
	int fd, kind, r = xattr_fd(P(be), nodeid, &fd, &kind);
	if (r < 0)
		return r;
	if (!kind)
		return 0;
	ssize_t n = flistxattr(fd, buf, size);
	if (n < 0)
		n = -errno;
	close(fd);
	return n;
}

static int pt_removexattr(struct fuse_backend *be, uint64_t nodeid, const char *name)
{
	int fd, kind, r = xattr_fd(P(be), nodeid, &fd, &kind);
	if (r < 0)
		return r;
	if (!kind)
		return -EPERM;
	r = fremovexattr(fd, name) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static int pt_open_fd(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int writable, int *fd)
{
	struct passthrough *p = P(be);
	if (fh != FUSE_BACKEND_NO_FH) {
		int hfd;
		struct phandle *h;
		int r = handle_fd(p, nodeid, fh, 0, &hfd, &h);
		if (r < 0)
			return r;
		if (writable && (h->flags & O_ACCMODE) == O_RDONLY)
			return -EBADF;
		*fd = fcntl(hfd, F_DUPFD_CLOEXEC, 0);
		return *fd < 0 ? -errno : 0;
	}
	struct pnode *n;
	int r = get_node(p, nodeid, &n);
	if (r == 0)
		r = check_openable(n, 0);
	if (r < 0)
		return r;
	int f = reopen(n, writable ? O_RDWR : O_RDONLY);
	if (f < 0)
		return f;
	*fd = f;
	return 0;
}

/* ---- snapshot ---------------------------------------------------------- *
 * header: next_nodeid u64, next_gen u64, nodes u32, handles u32   (24 bytes)
 * node:   nodeid u64, generation u64, nlookup u64, parent u64,
 *         path_len u32, reserved u32, path bytes (no NUL)         (40 + len)
 * handle: fh u64, nodeid u64, flags u32, dir u32                  (24 bytes)
 * Nodes are written parents first; a node whose path is lost is left out. */
#define PT_HDR	24
#define PT_NODE 40
#define PT_HAND 24

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static int buf_room(struct buf *b, size_t n)
{
	if (n <= b->cap - b->len)
		return 0;
	size_t nc = b->cap ? b->cap : 4096;
	while (nc - b->len < n)
		nc *= 2;
	uint8_t *np = realloc(b->p, nc);
	if (!np)
		return -ENOMEM;
	b->p = np;
	b->cap = nc;
	return 0;
}

/* Path of N under the root into out (size PATH_MAX); -ENOENT when lost. */
static int node_path(struct passthrough *p, struct pnode *n, char *out, size_t size)
{
	const char *comps[MAX_DEPTH];
	int depth = 0;
	for (struct pnode *c = n; c != &p->root; c = c->parent) {
		if (!c->parent || !c->name)
			return -ENOENT;
		if (depth == MAX_DEPTH)
			return -ELOOP;
		comps[depth++] = c->name;
	}
	size_t pos = 0;
	for (int i = depth - 1; i >= 0; i--) {
		size_t l = strlen(comps[i]);
		if (pos + l + 2 > size)
			return -ENAMETOOLONG;
		memcpy(out + pos, comps[i], l);
		pos += l;
		if (i)
			out[pos++] = '/';
	}
	out[pos] = '\0';
	return 0;
}

struct order {
	uint64_t depth, id;
};

/* Parents before children: by depth, then node id. */
static int cmp_order(const void *a, const void *b)
{
	const struct order *x = a, *y = b;
	if (x->depth != y->depth)
		return x->depth < y->depth ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static uint64_t depth_of(struct passthrough *p, struct pnode *n)
{
	uint64_t d = 0;
	for (struct pnode *c = n; c && c != &p->root && d <= MAX_DEPTH; c = c->parent)
		d++;
	return d;
}

static int pt_snapshot(struct fuse_backend *be, void **blob, size_t *len, struct sm_error *err)
{
	struct passthrough *p = P(be);
	struct buf b = {0};
	if (buf_room(&b, PT_HDR) < 0)
		return sm_error_errno(err, ENOMEM, "passthrough snapshot");
	b.len = PT_HDR;
	/* Parents first: a node's parent is one level closer to the root. */
	uint32_t nn = 0;
	char *path = malloc(PATH_MAX);
	struct order *ids = NULL;
	size_t nids = 0, aids = 0;
	if (!path)
		goto nomem;
	for (unsigned h = 0; h < NBUCKETS; h++)
		for (struct pnode *n = p->by_id[h]; n; n = n->next_id) {
			if (nids == aids) {
				aids = aids ? aids * 2 : 256;
				struct order *ni = realloc(ids, aids * sizeof(*ni));
				if (!ni)
					goto nomem;
				ids = ni;
			}
			ids[nids].depth = depth_of(p, n);
			ids[nids++].id = n->nodeid;
		}
	qsort(ids, nids, sizeof(*ids), cmp_order);
	for (size_t i = 0; i < nids; i++) {
		struct pnode *n = find_id(p, ids[i].id);
		if (node_path(p, n, path, PATH_MAX) < 0)
			continue;
		uint64_t parent = n->parent ? n->parent->nodeid : 0;
		size_t pl = strlen(path);
		if (buf_room(&b, PT_NODE + pl) < 0)
			goto nomem;
		uint8_t *e = b.p + b.len;
		fuse_put_le64(e, n->nodeid);
		fuse_put_le64(e + 8, n->gen);
		fuse_put_le64(e + 16, n->nlookup);
		fuse_put_le64(e + 24, parent);
		fuse_put_le32(e + 32, (uint32_t)pl);
		fuse_put_le32(e + 36, 0);
		memcpy(e + PT_NODE, path, pl);
		b.len += PT_NODE + pl;
		nn++;
	}
	uint32_t nh = 0;
	for (size_t i = 0; i < p->nfh; i++) {
		struct phandle *h = &p->fh[i];
		if (!h->node)
			continue;
		if (h->node != &p->root && node_path(p, h->node, path, PATH_MAX) < 0)
			continue;
		if (buf_room(&b, PT_HAND) < 0)
			goto nomem;
		uint8_t *e = b.p + b.len;
		fuse_put_le64(e, i);
		fuse_put_le64(e + 8, h->node->nodeid);
		fuse_put_le32(e + 16, h->flags);
		fuse_put_le32(e + 20, (uint32_t)h->dir);
		b.len += PT_HAND;
		nh++;
	}
	fuse_put_le64(b.p, p->next_nodeid);
	fuse_put_le64(b.p + 8, p->next_gen);
	fuse_put_le32(b.p + 16, nn);
	fuse_put_le32(b.p + 20, nh);
	free(path);
	free(ids);
	*blob = b.p;
	*len = b.len;
	return 0;
nomem:
	free(path);
	free(ids);
	free(b.p);
	return sm_error_errno(err, ENOMEM, "passthrough snapshot");
}

/* A relative path the guest could have built: components that are
 * acceptable names, separated by single slashes. */
static int path_ok(const char *path)
{
	if (!*path || *path == '/' || strlen(path) >= PATH_MAX)
		return 0;
	char comp[256];
	for (const char *s = path;;) {
		const char *slash = strchr(s, '/');
		size_t l = slash ? (size_t)(slash - s) : strlen(s);
		if (l == 0 || l > 255)
			return 0;
		memcpy(comp, s, l);
		comp[l] = '\0';
		if (fuse_check_name(comp) < 0)
			return 0;
		if (!slash)
			return 1;
		s = slash + 1;
	}
}

static int pt_restore(struct fuse_backend *be, const void *blob, size_t len, struct sm_error *err)
{
	struct passthrough *p = P(be);
	const uint8_t *b = blob;
	if (p->next_nodeid != FUSE_ROOT_ID + 1 || p->nfh)
		return sm_error_set(err, EBUSY, "node table: backend already in use");
	if (len < PT_HDR)
		return sm_error_set(err, EINVAL, "node table: truncated header");
	uint64_t next_id = fuse_get_le64(b), next_gen = fuse_get_le64(b + 8);
	uint32_t nn = fuse_get_le32(b + 16), nh = fuse_get_le32(b + 20);
	size_t pos = PT_HDR;
	int r = 0;
	const char *why = NULL;
	for (uint32_t i = 0; i < nn; i++) {
		if (len - pos < PT_NODE) {
			why = "truncated node entry";
			break;
		}
		const uint8_t *e = b + pos;
		uint64_t id = fuse_get_le64(e), parent = fuse_get_le64(e + 24);
		uint32_t pl = fuse_get_le32(e + 32);
		if (fuse_get_le32(e + 36) != 0 || pl == 0 || pl >= PATH_MAX ||
		    len - pos - PT_NODE < pl) {
			why = "bad node entry";
			break;
		}
		char *path = strndup((const char *)e + PT_NODE, pl);
		if (!path) {
			r = -ENOMEM;
			break;
		}
		struct pnode *par = find_id(p, parent);
		const char *slash = strrchr(path, '/');
		char *parent_path = NULL;
		int okparent = 0;
		if (par && path_ok(path) && strlen(path) == pl) {
			if (par == &p->root)
				okparent = slash == NULL;
			else if (slash &&
				 node_path(p, par, (parent_path = malloc(PATH_MAX)), PATH_MAX) == 0)
				okparent = strlen(parent_path) == (size_t)(slash - path) &&
					   memcmp(parent_path, path, (size_t)(slash - path)) == 0;
		}
		free(parent_path);
		if (!okparent || id <= FUSE_ROOT_ID || id >= next_id || find_id(p, id)) {
			free(path);
			why = "node path, parent or id invalid";
			break;
		}
		char *name = strdup(slash ? slash + 1 : path);
		struct pnode *n = calloc(1, sizeof(*n));
		if (!name || !n) {
			free(name);
			free(n);
			free(path);
			r = -ENOMEM;
			break;
		}
		n->nodeid = id;
		n->gen = fuse_get_le64(e + 8);
		n->nlookup = fuse_get_le64(e + 16);
		n->fd = -1;
		n->rpath = path;
		unsigned h = hash64(id);
		n->next_id = p->by_id[h];
		p->by_id[h] = n;
		p->unresolved++;
		set_path(n, par, name);
		name_insert(p, n);
		pos += PT_NODE + pl;
	}
	for (uint32_t i = 0; !why && r == 0 && i < nh; i++) {
		if (len - pos < PT_HAND) {
			why = "truncated handle entry";
			break;
		}
		const uint8_t *e = b + pos;
		uint64_t fh = fuse_get_le64(e), id = fuse_get_le64(e + 8);
		uint32_t flags = fuse_get_le32(e + 16), dir = fuse_get_le32(e + 20);
		struct pnode *n = find_id(p, id);
		if (fh >= MAX_HANDLES || dir > 1 || !n || (fh < p->nfh && p->fh[fh].node)) {
			why = "bad handle entry";
			break;
		}
		if (fh >= p->nfh) {
			size_t nc = fh + 1;
			struct phandle *nhp = realloc(p->fh, nc * sizeof(*nhp));
			if (!nhp) {
				r = -ENOMEM;
				break;
			}
			memset(nhp + p->nfh, 0, (nc - p->nfh) * sizeof(*nhp));
			p->fh = nhp;
			p->nfh = nc;
		}
		p->fh[fh] = (struct phandle){.node = n, .fd = -1, .flags = flags, .dir = (int)dir};
		n->refs++;
		pos += PT_HAND;
	}
	if (!why && r == 0 && pos != len)
		why = "trailing bytes";
	if (!why && r == 0) {
		/* Nodes that only existed as parents keep living through refs. */
		p->next_nodeid = next_id;
		p->next_gen = next_gen;
		return 0;
	}
	/* Undo: drop every handle and node taken so far. */
	for (size_t i = 0; i < p->nfh; i++)
		if (p->fh[i].node) {
			p->fh[i].node->refs--;
			p->fh[i].node = NULL;
		}
	for (int pass = 0; pass < 2; pass++)
		for (unsigned h = 0; h < NBUCKETS; h++) {
			struct pnode *n = p->by_id[h];
			while (n) {
				struct pnode *next = n->next_id;
				n->nlookup = 0;
				if (n->refs == 0)
					maybe_free(p, n);
				n = next;
			}
		}
	if (r < 0)
		return sm_error_errno(err, -r, "node table restore");
	return sm_error_set(err, EINVAL, "node table: %s", why);
}

/* ---- lifecycle --------------------------------------------------------- */

static void pt_destroy(struct fuse_backend *be)
{
	struct passthrough *p = P(be);
	for (size_t i = 0; i < p->nfh; i++)
		if (p->fh[i].node && p->fh[i].fd >= 0)
			close(p->fh[i].fd);
	free(p->fh);
	for (unsigned h = 0; h < NBUCKETS; h++) {
		struct pnode *n = p->by_id[h];
		while (n) {
			struct pnode *next = n->next_id;
			if (n->fd >= 0)
				close(n->fd);
			free(n->name);
			free(n->rpath);
			free(n);
			n = next;
		}
	}
	if (p->root.fd >= 0)
		close(p->root.fd);
	free(p);
}

static const struct fuse_backend_ops passthrough_ops = {
	.name = "passthrough",
	.destroy = pt_destroy,
	.lookup = pt_lookup,
	.forget = pt_forget,
	.getattr = pt_getattr,
	.setattr = pt_setattr,
	.readlink = pt_readlink,
	.mknod = pt_mknod,
	.mkdir = pt_mkdir,
	.symlink = pt_symlink,
	.unlink = pt_unlink,
	.rmdir = pt_rmdir,
	.rename = pt_rename,
	.link = pt_link,
	.open = pt_open,
	.create = pt_create,
	.read = pt_read,
	.write = pt_write,
	.flush = pt_flush,
	.fsync = pt_fsync,
	.release = pt_release,
	.statfs = pt_statfs,
	.setxattr = pt_setxattr,
	.getxattr = pt_getxattr,
	.listxattr = pt_listxattr,
	.removexattr = pt_removexattr,
	.opendir = pt_opendir,
	.readdir = pt_readdir,
	.releasedir = pt_releasedir,
	.fsyncdir = pt_fsyncdir,
	.access = pt_access,
	.lseek = pt_lseek,
	.fallocate = pt_fallocate,
	.open_fd = pt_open_fd,
	.snapshot = pt_snapshot,
	.restore = pt_restore,
};

int fuse_passthrough_new(const char *root, struct fuse_backend **out, struct sm_error *err)
{
	*out = NULL;
	struct passthrough *p = calloc(1, sizeof(*p));
	if (!p)
		return sm_error_errno(err, ENOMEM, "passthrough");
	p->be.ops = &passthrough_ops;
	p->use_openat2 = 1;
	p->next_nodeid = FUSE_ROOT_ID + 1;
	p->next_gen = 1;
	p->root.nodeid = FUSE_ROOT_ID;
	p->root.fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (p->root.fd < 0) {
		int e = errno;
		free(p);
		return sm_error_errno(err, e, "passthrough: cannot open root %s", root);
	}
	struct stat st;
	if (fstat(p->root.fd, &st) < 0) {
		int e = errno;
		close(p->root.fd);
		free(p);
		return sm_error_errno(err, e, "passthrough: cannot stat root %s", root);
	}
	p->root.dev = st.st_dev;
	p->root.ino = st.st_ino;
	p->root.nlookup = 1;
	*out = &p->be;
	return 0;
}
