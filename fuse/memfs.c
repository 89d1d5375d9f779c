/* SPDX-License-Identifier: Apache-2.0 */
/*
 * In-memory backend for tests: a tree of nodes whose ids are the node ids
 * the guest sees. No permission model; files are capped at 64 MiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "fuse_abi.h"
#include "internal.h"
#include "sm/fuse.h"

#define MEMFS_MAX_FILE	(64ull << 20)
#define MEMFS_MAX_NODES (1u << 20)

struct ment {
	char *name;
	uint64_t ino;
};

struct mxattr {
	char *name;
	void *value;
	size_t size;
};

struct mnode {
	uint64_t ino, gen, parent;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	nlink_t nlink;
	dev_t rdev;
	struct timespec atime, mtime, ctime;
	uint8_t *data;
	size_t size;
	char *target;
	struct ment *ents;
	size_t nents;
	struct mxattr *xa;
	size_t nxa;
	uint64_t nlookup;
	uint32_t opens;
};

struct mhandle {
	uint64_t ino;
	uint32_t flags;
	int used, dir;
};

struct memfs {
	struct fuse_backend be;
	struct mnode **nodes;
	size_t cap;
	uint64_t next_ino, gen;
	struct mhandle *fh;
	size_t nfh;
};

static struct memfs *M(struct fuse_backend *be)
{
	return (struct memfs *)be;
}

static struct mnode *get(struct memfs *m, uint64_t ino)
{
	if (ino == 0 || ino >= m->cap)
		return NULL;
	return m->nodes[ino];
}

static void now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

static void node_free(struct mnode *n)
{
	free(n->data);
	free(n->target);
	for (size_t i = 0; i < n->nents; i++)
		free(n->ents[i].name);
	free(n->ents);
	for (size_t i = 0; i < n->nxa; i++) {
		free(n->xa[i].name);
		free(n->xa[i].value);
	}
	free(n->xa);
	free(n);
}

/* Drop a node nobody refers to any more. */
static void maybe_free(struct memfs *m, struct mnode *n)
{
	if (n->ino == FUSE_ROOT_ID || n->nlink || n->nlookup || n->opens)
		return;
	m->nodes[n->ino] = NULL;
	node_free(n);
}

static struct mnode *new_node(struct memfs *m, mode_t mode, const struct fuse_ctx *c)
{
	if (m->next_ino >= MEMFS_MAX_NODES)
		return NULL;
	if (m->next_ino >= m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 64;
		struct mnode **nn = realloc(m->nodes, nc * sizeof(*nn));
		if (!nn)
			return NULL;
		memset(nn + m->cap, 0, (nc - m->cap) * sizeof(*nn));
		m->nodes = nn;
		m->cap = nc;
	}
	struct mnode *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->ino = m->next_ino++;
	n->gen = ++m->gen;
	n->mode = mode;
	n->uid = c ? c->uid : 0;
	n->gid = c ? c->gid : 0;
	now(&n->atime);
	n->mtime = n->ctime = n->atime;
	m->nodes[n->ino] = n;
	return n;
}

static void stat_of(const struct mnode *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = n->mode;
	st->st_nlink = n->nlink;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_rdev = n->rdev;
	st->st_size = S_ISLNK(n->mode) ? (off_t)strlen(n->target) : (off_t)n->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
	st->st_atim = n->atime;
	st->st_mtim = n->mtime;
	st->st_ctim = n->ctime;
}

static int dir_of(struct memfs *m, uint64_t ino, struct mnode **d)
{
	*d = get(m, ino);
	if (!*d)
		return -ESTALE;
	if (!S_ISDIR((*d)->mode))
		return -ENOTDIR;
	if ((*d)->nlink == 0)
		return -ENOENT;
	return 0;
}

static ssize_t find_ent(const struct mnode *d, const char *name)
{
	for (size_t i = 0; i < d->nents; i++)
		if (strcmp(d->ents[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static int add_ent(struct mnode *d, const char *name, uint64_t ino)
{
	struct ment *ne = realloc(d->ents, (d->nents + 1) * sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	d->ents = ne;
	char *nm = strdup(name);
	if (!nm)
		return -ENOMEM;
	d->ents[d->nents].name = nm;
	d->ents[d->nents].ino = ino;
	d->nents++;
	now(&d->mtime);
	d->ctime = d->mtime;
	return 0;
}

static void del_ent(struct mnode *d, size_t i)
{
	free(d->ents[i].name);
	memmove(&d->ents[i], &d->ents[i + 1], (d->nents - i - 1) * sizeof(struct ment));
	d->nents--;
	now(&d->mtime);
	d->ctime = d->mtime;
}

static int entry_of(struct mnode *n, struct fuse_entry_param *e)
{
	n->nlookup++;
	e->nodeid = n->ino;
	e->generation = n->gen;
	stat_of(n, &e->st);
	return 0;
}

static int mfs_lookup(struct fuse_backend *be, uint64_t parent, const char *name,
		      struct fuse_entry_param *e)
{
	struct memfs *m = M(be);
	struct mnode *d;
	int r = dir_of(m, parent, &d);
	if (r < 0)
		return r;
	ssize_t i = find_ent(d, name);
	if (i < 0)
		return -ENOENT;
	return entry_of(get(m, d->ents[i].ino), e);
}

static void mfs_forget(struct fuse_backend *be, uint64_t nodeid, uint64_t nlookup)
{
	struct memfs *m = M(be);
	struct mnode *n = get(m, nodeid);
	if (!n)
		return;
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	maybe_free(m, n);
}

static int mfs_getattr(struct fuse_backend *be, uint64_t nodeid, struct stat *st)
{
	struct mnode *n = get(M(be), nodeid);
	if (!n)
		return -ESTALE;
	stat_of(n, st);
	return 0;
}

static int resize(struct mnode *n, uint64_t size)
{
	if (size > MEMFS_MAX_FILE)
		return -EFBIG;
	if (size > n->size) {
		uint8_t *nd = realloc(n->data, size ? size : 1);
		if (!nd)
			return -ENOMEM;
		memset(nd + n->size, 0, size - n->size);
		n->data = nd;
	}
	n->size = size;
	return 0;
}

static int mfs_setattr(struct fuse_backend *be, uint64_t nodeid, const struct fuse_setattr_req *q,
		       struct stat *st)
{
	struct mnode *n = get(M(be), nodeid);
	if (!n)
		return -ESTALE;
	if (q->valid & FUSE_SET_SIZE) {
		if (S_ISDIR(n->mode))
			return -EISDIR;
		if (!S_ISREG(n->mode))
			return -EINVAL;
		int r = resize(n, q->size);
		if (r < 0)
			return r;
		now(&n->mtime);
	}
	if (q->valid & FUSE_SET_MODE)
		n->mode = (n->mode & S_IFMT) | (q->mode & 07777);
	if (q->valid & FUSE_SET_UID)
		n->uid = q->uid;
	if (q->valid & FUSE_SET_GID)
		n->gid = q->gid;
	if (q->valid & FUSE_SET_ATIME_NOW)
		now(&n->atime);
	else if (q->valid & FUSE_SET_ATIME)
		n->atime = q->atime;
	if (q->valid & FUSE_SET_MTIME_NOW)
		now(&n->mtime);
	else if (q->valid & FUSE_SET_MTIME)
		n->mtime = q->mtime;
	now(&n->ctime);
	stat_of(n, st);
	return 0;
}

static int mfs_readlink(struct fuse_backend *be, uint64_t nodeid, char *buf, size_t size)
{
	struct mnode *n = get(M(be), nodeid);
	if (!n)
		return -ESTALE;
	if (!S_ISLNK(n->mode))
		return -EINVAL;
	size_t l = strlen(n->target);
	if (l > size)
		l = size;
	memcpy(buf, n->target, l);
	return (int)l;
}

/* Create a node of MODE named NAME in PARENT. */
static int make(struct memfs *m, uint64_t parent, const char *name, mode_t mode,
		const struct fuse_ctx *c, struct mnode **out)
{
	struct mnode *d;
	int r = dir_of(m, parent, &d);
	if (r < 0)
		return r;
	if (find_ent(d, name) >= 0)
		return -EEXIST;
	struct mnode *n = new_node(m, mode, c);
	if (!n)
		return -ENOSPC;
	n->parent = d->ino;
	n->nlink = S_ISDIR(mode) ? 2 : 1;
	r = add_ent(d, name, n->ino);
	if (r < 0) {
		m->nodes[n->ino] = NULL;
		node_free(n);
		return r;
	}
	if (S_ISDIR(mode))
		d->nlink++;
	*out = n;
	return 0;
}

static int mfs_mknod(struct fuse_backend *be, uint64_t parent, const char *name, uint32_t mode,
		     dev_t rdev, const struct fuse_ctx *c, struct fuse_entry_param *e)
{
	mode_t t = mode & S_IFMT;
	if (t != S_IFREG && t != S_IFIFO && t != S_IFSOCK && t != S_IFCHR && t != S_IFBLK)
		return -EINVAL;
	struct mnode *n;
	int r = make(M(be), parent, name, t | (mode & 07777 & ~c->umask), c, &n);
	if (r < 0)
		return r;
	n->rdev = rdev;
	return entry_of(n, e);
}

static int mfs_mkdir(struct fuse_backend *be, uint64_t parent, const char *name, uint32_t mode,
		     const struct fuse_ctx *c, struct fuse_entry_param *e)
{
	struct mnode *n;
	int r = make(M(be), parent, name, S_IFDIR | (mode & 07777 & ~c->umask), c, &n);
	return r < 0 ? r : entry_of(n, e);
}

static int mfs_symlink(struct fuse_backend *be, uint64_t parent, const char *name,
		       const char *target, const struct fuse_ctx *c, struct fuse_entry_param *e)
{
	char *t = strdup(target);
	if (!t)
		return -ENOMEM;
	struct mnode *n;
	int r = make(M(be), parent, name, S_IFLNK | 0777, c, &n);
	if (r < 0) {
		free(t);
		return r;
	}
	n->target = t;
	return entry_of(n, e);
}

static int mfs_remove(struct fuse_backend *be, uint64_t parent, const char *name, int dir)
{
	struct memfs *m = M(be);
	struct mnode *d;
	int r = dir_of(m, parent, &d);
	if (r < 0)
		return r;
	ssize_t i = find_ent(d, name);
	if (i < 0)
		return -ENOENT;
	struct mnode *n = get(m, d->ents[i].ino);
	if (dir && !S_ISDIR(n->mode))
		return -ENOTDIR;
	if (!dir && S_ISDIR(n->mode))
		return -EISDIR;
	if (dir && n->nents)
		return -ENOTEMPTY;
	del_ent(d, (size_t)i);
	if (dir) {
		n->nlink = 0;
		d->nlink--;
	} else {
		n->nlink--;
	}
	now(&n->ctime);
	maybe_free(m, n);
	return 0;
}

static int mfs_unlink(struct fuse_backend *be, uint64_t parent, const char *name)
{
	return mfs_remove(be, parent, name, 0);
}

static int mfs_rmdir(struct fuse_backend *be, uint64_t parent, const char *name)
{
	return mfs_remove(be, parent, name, 1);
}

/* Is A an ancestor of (or equal to) directory B? */
static int is_ancestor(struct memfs *m, uint64_t a, uint64_t b)
{
	for (int depth = 0; depth < 4096; depth++) {
		if (a == b)
			return 1;
		struct mnode *n = get(m, b);
		if (!n || b == FUSE_ROOT_ID)
			return 0;
		b = n->parent;
	}
	return 1;
}

static int mfs_rename(struct fuse_backend *be, uint64_t olddir, const char *oldname,
		      uint64_t newdir, const char *newname, uint32_t flags)
{
	struct memfs *m = M(be);
	struct mnode *od, *nd;
	int r = dir_of(m, olddir, &od);
	if (r == 0)
		r = dir_of(m, newdir, &nd);
	if (r < 0)
		return r;
	if (flags & RENAME_WHITEOUT)
		return -EINVAL;
	ssize_t oi = find_ent(od, oldname);
	if (oi < 0)
		return -ENOENT;
	struct mnode *src = get(m, od->ents[oi].ino);
	ssize_t ni = find_ent(nd, newname);
	struct mnode *dst = ni >= 0 ? get(m, nd->ents[ni].ino) : NULL;
	if ((flags & RENAME_NOREPLACE) && dst)
		return -EEXIST;
	if (S_ISDIR(src->mode) && is_ancestor(m, src->ino, nd->ino))
		return -EINVAL;
	if (flags & RENAME_EXCHANGE) {
		if (!dst)
			return -ENOENT;
		if (S_ISDIR(dst->mode) && is_ancestor(m, dst->ino, od->ino))
			return -EINVAL;
		od->ents[oi].ino = dst->ino;
		nd->ents[ni].ino = src->ino;
		uint64_t sp = src->parent;
		src->parent = dst->parent;
		dst->parent = sp;
		if (S_ISDIR(src->mode) != S_ISDIR(dst->mode)) {
			struct mnode *gain = S_ISDIR(src->mode) ? nd : od;
			struct mnode *lose = S_ISDIR(src->mode) ? od : nd;
			gain->nlink++;
			lose->nlink--;
		}
		return 0;
	}
	if (dst == src)
		return 0;
	if (dst) {
		if (S_ISDIR(src->mode) && !S_ISDIR(dst->mode))
			return -ENOTDIR;
		if (!S_ISDIR(src->mode) && S_ISDIR(dst->mode))
			return -EISDIR;
		if (S_ISDIR(dst->mode) && dst->nents)
			return -ENOTEMPTY;
	}
	char *nm = strdup(newname);
	if (!nm)
		return -ENOMEM;
	if (dst) {
		free(nd->ents[ni].name);
		nd->ents[ni].name = nm;
		nd->ents[ni].ino = src->ino;
		if (S_ISDIR(dst->mode)) {
			dst->nlink = 0;
			nd->nlink--;
		} else {
			dst->nlink--;
		}
		maybe_free(m, dst);
		oi = find_ent(od, oldname);
		del_ent(od, (size_t)oi);
	} else {
		r = add_ent(nd, newname, src->ino);
		free(nm);
		if (r < 0)
			return r;
		oi = find_ent(od, oldname);
		del_ent(od, (size_t)oi);
	}
	if (S_ISDIR(src->mode) && od != nd) {
		od->nlink--;
		nd->nlink++;
	}
	src->parent = nd->ino;
	now(&src->ctime);
	return 0;
}

static int mfs_link(struct fuse_backend *be, uint64_t nodeid, uint64_t newparent,
		    const char *newname, struct fuse_entry_param *e)
{
	struct memfs *m = M(be);
	struct mnode *n = get(m, nodeid), *d;
	if (!n)
		return -ESTALE;
	if (S_ISDIR(n->mode))
		return -EPERM;
	int r = dir_of(m, newparent, &d);
	if (r < 0)
		return r;
	if (n->nlink == 0)
		return -ENOENT;
	if (find_ent(d, newname) >= 0)
		return -EEXIST;
	r = add_ent(d, newname, n->ino);
	if (r < 0)
		return r;
	n->nlink++;
	now(&n->ctime);
	return entry_of(n, e);
}

static int new_handle(struct memfs *m, struct mnode *n, uint32_t flags, int dir, uint64_t *fh)
{
	size_t i;
	for (i = 0; i < m->nfh; i++)
		if (!m->fh[i].used)
			break;
	if (i == m->nfh) {
		if (m->nfh >= 65536)
			return -EMFILE;
		struct mhandle *nh = realloc(m->fh, (m->nfh + 1) * sizeof(*nh));
		if (!nh)
			return -ENOMEM;
		m->fh = nh;
		m->nfh++;
	}
	m->fh[i] = (struct mhandle){.ino = n->ino, .flags = flags, .used = 1, .dir = dir};
	n->opens++;
	*fh = i;
	return 0;
}

static struct mhandle *handle(struct memfs *m, uint64_t nodeid, uint64_t fh, int dir)
{
	if (fh >= m->nfh || !m->fh[fh].used || m->fh[fh].dir != dir || m->fh[fh].ino != nodeid)
		return NULL;
	return &m->fh[fh];
}

static int mfs_open(struct fuse_backend *be, uint64_t nodeid, uint32_t flags, uint64_t *fh)
{
	struct memfs *m = M(be);
	struct mnode *n = get(m, nodeid);
	if (!n)
		return -ESTALE;
	if (S_ISDIR(n->mode))
		return -EISDIR;
	if (!S_ISREG(n->mode))
		return -ENXIO;
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
		resize(n, 0);
	return new_handle(m, n, flags, 0, fh);
}

static int mfs_create(struct fuse_backend *be, uint64_t parent, const char *name, uint32_t mode,
		      uint32_t flags, const struct fuse_ctx *c, struct fuse_entry_param *e,
		      uint64_t *fh)
{
	struct memfs *m = M(be);
	struct mnode *d, *n;
	int r = dir_of(m, parent, &d);
	if (r < 0)
		return r;
	ssize_t i = find_ent(d, name);
	if (i >= 0) {
		if (flags & O_EXCL)
			return -EEXIST;
		n = get(m, d->ents[i].ino);
		r = mfs_open(be, n->ino, flags, fh);
		return r < 0 ? r : entry_of(n, e);
	}
	r = make(m, parent, name, S_IFREG | (mode & 07777 & ~c->umask), c, &n);
	if (r < 0)
		return r;
	r = new_handle(m, n, flags, 0, fh);
	if (r < 0) {
		mfs_remove(be, parent, name, 0);
		return r;
	}
	return entry_of(n, e);
}

static ssize_t mfs_read(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint64_t off,
			const struct iovec *iov, int iovcnt)
{
	struct memfs *m = M(be);
	struct mhandle *h = handle(m, nodeid, fh, 0);
	if (!h || (h->flags & O_ACCMODE) == O_WRONLY)
		return -EBADF;
	struct mnode *n = get(m, nodeid);
	int ok;
	size_t want = fuse_iov_total(iov, iovcnt, &ok);
	if (off >= n->size)
		return 0;
	size_t avail = n->size - off;
	if (want > avail)
		want = avail;
	return (ssize_t)fuse_iov_scatter(iov, iovcnt, 0, n->data + off, want);
}

static ssize_t mfs_write(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint64_t off,
			 const struct iovec *iov, int iovcnt)
{
	struct memfs *m = M(be);
	struct mhandle *h = handle(m, nodeid, fh, 0);
	if (!h || (h->flags & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	struct mnode *n = get(m, nodeid);
	int ok;
	size_t len = fuse_iov_total(iov, iovcnt, &ok);
	if (h->flags & O_APPEND)
		off = n->size;
	uint64_t end;
	if (sm_add_overflow(off, (uint64_t)len, &end) || end > MEMFS_MAX_FILE)
		return -EFBIG;
	if (end > n->size) {
		int r = resize(n, end);
		if (r < 0)
			return r;
	}
	fuse_iov_gather(iov, iovcnt, 0, n->data + off, len);
	now(&n->mtime);
	n->ctime = n->mtime;
	return (ssize_t)len;
}

static int mfs_flush(struct fuse_backend *be, uint64_t nodeid, uint64_t fh)
{
	return handle(M(be), nodeid, fh, 0) ? 0 : -EBADF;
}

static int mfs_fsync(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int datasync)
{
	(void)datasync;
	return handle(M(be), nodeid, fh, 0) ? 0 : -EBADF;
}

static int release_any(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int dir)
{
	struct memfs *m = M(be);
	struct mhandle *h = handle(m, nodeid, fh, dir);
	if (!h)
		return -EBADF;
	h->used = 0;
	struct mnode *n = get(m, nodeid);
	n->opens--;
	maybe_free(m, n);
	return 0;
}

static int mfs_release(struct fuse_backend *be, uint64_t nodeid, uint64_t fh)
{
	return release_any(be, nodeid, fh, 0);
}

static int mfs_statfs(struct fuse_backend *be, uint64_t nodeid, struct statvfs *sv)
{
	struct memfs *m = M(be);
	if (!get(m, nodeid))
		return -ESTALE;
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = 4096;
	sv->f_blocks = MEMFS_MAX_NODES;
	sv->f_bfree = sv->f_bavail = MEMFS_MAX_NODES / 2;
	sv->f_files = MEMFS_MAX_NODES;
	sv->f_ffree = MEMFS_MAX_NODES - m->next_ino;
	sv->f_namemax = 255;
	return 0;
}

static ssize_t find_xa(const struct mnode *n, const char *name)
{
	for (size_t i = 0; i < n->nxa; i++)
		if (strcmp(n->xa[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static int mfs_setxattr(struct fuse_backend *be, uint64_t nodeid, const char *name,
			const void *value, size_t size, uint32_t flags)
{
	struct mnode *n = get(M(be), nodeid);
	if (!n)
		return -ESTALE;
	ssize_t i = find_xa(n, name);
	if (i >= 0 && (flags & XATTR_CREATE))
		return -EEXIST;
	if (i < 0 && (flags & XATTR_REPLACE))
		return -ENODATA;
	if (i < 0 && n->nxa >= 128)
		return -ENOSPC;
	void *v = malloc(size ? size : 1);
	if (!v)
		return -ENOMEM;
	memcpy(v, value, size);
	if (i < 0) {
		struct mxattr *nx = realloc(n->xa, (n->nxa + 1) * sizeof(*nx));
		char *nm = strdup(name);
		if (!nx || !nm) {
			if (nx)
				n->xa = nx;
			free(nm);
			free(v);
			return -ENOMEM;
		}
		n->xa = nx;
		i = (ssize_t)n->nxa++;
		n->xa[i].name = nm;
	} else {
		free(n->xa[i].value);
	}
	n->xa[i].value = v;
	n->xa[i].size = size;
	return 0;
}

static ssize_t mfs_getxattr(struct fuse_backend *be, uint64_t nodeid, const char *name, void *buf,
			    size_t size)
{
	struct mnode *n = get(M(be), nodeid);
	if (!n)
		return -ESTALE;
	ssize_t i = find_xa(n, name);
	if (i < 0)
		return -ENODATA;
	if (size == 0)
		return (ssize_t)n->xa[i].size;
	if (n->xa[i].size > size)
		return -ERANGE;
	memcpy(buf, n->xa[i].value, n->xa[i].size);
	return (ssize_t)n->xa[i].size;
}

static ssize_t mfs_listxattr(struct fuse_backend *be, uint64_t nodeid, char *buf, size_t size)
{
	struct mnode *n = get(M(be), nodeid);
	if (!n)
		return -ESTALE;
	size_t total = 0;
	for (size_t i = 0; i < n->nxa; i++)
		total += strlen(n->xa[i].name) + 1;
	if (size == 0)
		return (ssize_t)total;
	if (total > size)
		return -ERANGE;
	size_t pos = 0;
	for (size_t i = 0; i < n->nxa; i++) {
		size_t l = strlen(n->xa[i].name) + 1;
		memcpy(buf + pos, n->xa[i].name, l);
		pos += l;
	}
	return (ssize_t)total;
}

static int mfs_removexattr(struct fuse_backend *be, uint64_t nodeid, const char *name)
{
	struct mnode *n = get(M(be), nodeid);
	if (!n)
		return -ESTALE;
	ssize_t i = find_xa(n, name);
	if (i < 0)
		return -ENODATA;
	free(n->xa[i].name);
	free(n->xa[i].value);
	memmove(&n->xa[i], &n->xa[i + 1], (n->nxa - (size_t)i - 1) * sizeof(struct mxattr));
	n->nxa--;
	return 0;
}

static int mfs_opendir(struct fuse_backend *be, uint64_t nodeid, uint32_t flags, uint64_t *fh)
{
	struct memfs *m = M(be);
	struct mnode *d;
	int r = dir_of(m, nodeid, &d);
	return r < 0 ? r : new_handle(m, d, flags, 1, fh);
}

static uint32_t dtype_of(mode_t mode)
{
	return (mode & S_IFMT) >> 12;
}

/* Offsets: 0 is ".", 1 is "..", 2+i is the i-th entry. */
static int mfs_readdir(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint64_t off,
		       fuse_fill_dir_fn fill, void *ctx)
{
	struct memfs *m = M(be);
	if (!handle(m, nodeid, fh, 1))
		return -EBADF;
	struct mnode *d = get(m, nodeid);
	for (uint64_t o = off; o < (uint64_t)d->nents + 2; o++) {
		int r;
		if (o == 0)
			r = fill(ctx, ".", d->ino, dtype_of(d->mode), 1);
		else if (o == 1)
			r = fill(ctx, "..", d->parent ? d->parent : d->ino, 4, 2);
		else {
			/* fill may look entries up; re-read d->ents every time. */
			struct ment *e = &d->ents[o - 2];
			struct mnode *n = get(m, e->ino);
			r = fill(ctx, e->name, e->ino, dtype_of(n->mode), o + 1);
		}
		if (r != 0)
			return r < 0 ? r : 0;
	}
	return 0;
}

static int mfs_releasedir(struct fuse_backend *be, uint64_t nodeid, uint64_t fh)
{
	return release_any(be, nodeid, fh, 1);
}

static int mfs_fsyncdir(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int datasync)
{
	(void)datasync;
	return handle(M(be), nodeid, fh, 1) ? 0 : -EBADF;
}

static int mfs_access(struct fuse_backend *be, uint64_t nodeid, uint32_t mask)
{
	(void)mask;
	return get(M(be), nodeid) ? 0 : -ESTALE;
}

static int64_t mfs_lseek(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int64_t off,
			 int whence)
{
	struct memfs *m = M(be);
	if (!handle(m, nodeid, fh, 0))
		return -EBADF;
	struct mnode *n = get(m, nodeid);
	int64_t size = (int64_t)n->size;
	switch (whence) {
	case SEEK_SET:
		return off;
	case SEEK_END:
		return off > INT64_MAX - size ? -EINVAL : size + off;
	case SEEK_DATA:
		return off < size ? off : -ENXIO;
	case SEEK_HOLE:
		return off < size ? size : -ENXIO;
	}
	return -EINVAL;
}

static int mfs_fallocate(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint32_t mode,
			 uint64_t off, uint64_t len)
{
	struct memfs *m = M(be);
	struct mhandle *h = handle(m, nodeid, fh, 0);
	if (!h || (h->flags & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	struct mnode *n = get(m, nodeid);
	uint64_t end = off + len; /* the server checked it does not wrap */
	if (mode == 0)
		return end > n->size ? resize(n, end) : 0;
	if (mode == FALLOC_FL_KEEP_SIZE)
		return end > MEMFS_MAX_FILE ? -EFBIG : 0;
	if (mode == (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) {
		if (off < n->size)
			memset(n->data + off, 0, (end < n->size ? end : n->size) - off);
		return 0;
	}
	return -EOPNOTSUPP;
}

static int mfs_open_fd(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int writable, int *fd)
{
	(void)writable;
	struct memfs *m = M(be);
	struct mnode *n = get(m, nodeid);
	if (!n)
		return -ESTALE;
	if (fh != FUSE_BACKEND_NO_FH && !handle(m, nodeid, fh, 0))
		return -EBADF;
	if (!S_ISREG(n->mode))
		return -EINVAL;
	/* A memfd copy of the contents: enough for mapping tests. */
	int f = memfd_create("sm-memfs", MFD_CLOEXEC);
	if (f < 0)
		return -errno;
	if (n->size && write(f, n->data, n->size) != (ssize_t)n->size) {
		close(f);
		return -EIO;
	}
	*fd = f;
	return 0;
}

static void mfs_destroy(struct fuse_backend *be)
{
	struct memfs *m = M(be);
	for (size_t i = 0; i < m->cap; i++)
		if (m->nodes[i])
			node_free(m->nodes[i]);
	free(m->nodes);
	free(m->fh);
	free(m);
}

static const struct fuse_backend_ops memfs_ops = {
	.name = "memfs",
	.destroy = mfs_destroy,
	.lookup = mfs_lookup,
	.forget = mfs_forget,
	.getattr = mfs_getattr,
	.setattr = mfs_setattr,
	.readlink = mfs_readlink,
	.mknod = mfs_mknod,
	.mkdir = mfs_mkdir,
	.symlink = mfs_symlink,
	.unlink = mfs_unlink,
	.rmdir = mfs_rmdir,
	.rename = mfs_rename,
	.link = mfs_link,
	.open = mfs_open,
	.create = mfs_create,
	.read = mfs_read,
	.write = mfs_write,
	.flush = mfs_flush,
	.fsync = mfs_fsync,
	.release = mfs_release,
	.statfs = mfs_statfs,
	.setxattr = mfs_setxattr,
	.getxattr = mfs_getxattr,
	.listxattr = mfs_listxattr,
	.removexattr = mfs_removexattr,
	.opendir = mfs_opendir,
	.readdir = mfs_readdir,
	.releasedir = mfs_releasedir,
	.fsyncdir = mfs_fsyncdir,
	.access = mfs_access,
	.lseek = mfs_lseek,
	.fallocate = mfs_fallocate,
	.open_fd = mfs_open_fd,
};

int fuse_memfs_new(struct fuse_backend **out, struct sm_error *err)
{
	*out = NULL;
	struct memfs *m = calloc(1, sizeof(*m));
	if (!m)
		return sm_error_errno(err, ENOMEM, "memfs");
	m->be.ops = &memfs_ops;
	m->next_ino = FUSE_ROOT_ID;
	struct mnode *root = new_node(m, S_IFDIR | 0755, NULL);
	if (!root) {
		free(m);
		return sm_error_errno(err, ENOMEM, "memfs root");
	}
	root->nlink = 2;
	root->parent = FUSE_ROOT_ID;
	*out = &m->be;
	return 0;
}
