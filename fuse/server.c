/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE request dispatcher. The guest is hostile: every length, count
 * and string in a request is checked against the bytes actually present
 * before use; a malformed request gets -EINVAL back, never a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fuse_abi.h"
#include "internal.h"
#include "sm/fuse.h"

#define REQ_MAX	     (sizeof(struct fuse_in_header) + 16 + FUSE_XATTR_SIZE_MAX + 512)
#define IOV_MAX_FUSE 1024
#define DIR_BUF_MAX  (1u << 20)

struct fuse_server {
	pthread_mutex_t lock;
	struct fuse_server_config cfg;
	struct fuse_backend *be;
	struct fuse_dax *dax;
	FILE *trace;
	int initialized;
	uint32_t minor;
	uint64_t flags; /* negotiated INIT flags */
};

/* A request's argument bytes, consumed front to back. */
struct body {
	const uint8_t *p;
	size_t len, pos;
};

/* Where the reply goes. */
struct reply {
	const struct iovec *out;
	int cnt;
	size_t cap;
	size_t len; /* bytes written */
	uint64_t unique;
	int error; /* for traces */
};

static int take(struct body *b, void *dst, size_t n)
{
	if (n > b->len - b->pos)
		return -EINVAL;
	if (n == 0)
		return 0;
	memcpy(dst, b->p + b->pos, n);
	b->pos += n;
	return 0;
}

/* A NUL-terminated string within the body; NULL when unterminated. */
static const char *take_str(struct body *b)
{
	if (b->pos >= b->len)
		return NULL;
	const char *s = (const char *)b->p + b->pos;
	const void *nul = memchr(s, '\0', b->len - b->pos);
	if (!nul)
		return NULL;
	b->pos += (size_t)((const char *)nul - s) + 1;
	return s;
}

static int at_end(const struct body *b)
{
	return b->pos == b->len;
}

/* One path component; -errno when it is not acceptable. */
static int take_name(struct body *b, const char **name)
{
	*name = take_str(b);
	if (!*name)
		return -EINVAL;
	return fuse_check_name(*name);
}

static size_t reply_err(struct reply *r, int err)
{
	struct fuse_out_header oh = {.len = sizeof(oh), .error = -err, .unique = r->unique};
	r->error = err;
	if (r->cap < sizeof(oh))
		return r->len = 0;
	fuse_iov_scatter(r->out, r->cnt, 0, &oh, sizeof(oh));
	return r->len = sizeof(oh);
}

/* Header plus payload; payload must fit (callers check with fits()). */
static size_t reply_ok(struct reply *r, const void *payload, size_t n)
{
	if (n > r->cap || r->cap - n < sizeof(struct fuse_out_header))
		return reply_err(r, EINVAL);
	struct fuse_out_header oh = {.len = (uint32_t)(sizeof(oh) + n), .unique = r->unique};
	fuse_iov_scatter(r->out, r->cnt, 0, &oh, sizeof(oh));
	if (n)
		fuse_iov_scatter(r->out, r->cnt, sizeof(oh), payload, n);
	r->error = 0;
	return r->len = sizeof(oh) + n;
}

static int fits(const struct reply *r, size_t n)
{
	return r->cap >= sizeof(struct fuse_out_header) &&
	       r->cap - sizeof(struct fuse_out_header) >= n;
}

static uint32_t encode_dev(dev_t d)
{
	uint32_t ma = major(d), mi = minor(d);
	return (mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & ~0xffu) << 12);
}

static dev_t decode_dev(uint32_t v)
{
	return makedev((v & 0xfff00) >> 8, (v & 0xff) | ((v >> 12) & 0xfff00));
}

static void fill_attr(struct fuse_attr *a, const struct stat *st)
{
	memset(a, 0, sizeof(*a));
	a->ino = st->st_ino;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->atime = (uint64_t)st->st_atim.tv_sec;
	a->mtime = (uint64_t)st->st_mtim.tv_sec;
	a->ctime = (uint64_t)st->st_ctim.tv_sec;
	a->atimensec = (uint32_t)st->st_atim.tv_nsec;
	a->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
	a->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->rdev = encode_dev(st->st_rdev);
	a->blksize = (uint32_t)st->st_blksize;
}

static void fill_entry(const struct fuse_server *s, struct fuse_entry_out *eo,
		       const struct fuse_entry_param *e)
{
	memset(eo, 0, sizeof(*eo));
	eo->nodeid = e->nodeid;
	eo->generation = e->generation;
	eo->entry_valid = s->cfg.entry_valid_ms / 1000;
	eo->entry_valid_nsec = (s->cfg.entry_valid_ms % 1000) * 1000000u;
	eo->attr_valid = s->cfg.attr_valid_ms / 1000;
	eo->attr_valid_nsec = (s->cfg.attr_valid_ms % 1000) * 1000000u;
	fill_attr(&eo->attr, &e->st);
}

static size_t reply_entry(struct fuse_server *s, struct reply *r, const struct fuse_entry_param *e)
{
	struct fuse_entry_out eo;
	fill_entry(s, &eo, e);
	return reply_ok(r, &eo, sizeof(eo));
}

static size_t reply_attr(struct fuse_server *s, struct reply *r, const struct stat *st)
{
	struct fuse_attr_out ao = {0};
	ao.attr_valid = s->cfg.attr_valid_ms / 1000;
	ao.attr_valid_nsec = (s->cfg.attr_valid_ms % 1000) * 1000000u;
	fill_attr(&ao.attr, st);
	return reply_ok(r, &ao, sizeof(ao));
}

static size_t reply_open(struct reply *r, uint64_t fh, uint32_t open_flags)
{
	struct fuse_open_out oo = {.fh = fh, .open_flags = open_flags};
	return reply_ok(r, &oo, sizeof(oo));
}

static const uint8_t mutating[FUSE_OPCODE_MAX] = {
	[FUSE_SETATTR] = 1, [FUSE_SYMLINK] = 1,	  [FUSE_MKNOD] = 1,    [FUSE_MKDIR] = 1,
	[FUSE_UNLINK] = 1,  [FUSE_RMDIR] = 1,	  [FUSE_RENAME] = 1,   [FUSE_RENAME2] = 1,
	[FUSE_LINK] = 1,    [FUSE_WRITE] = 1,	  [FUSE_SETXATTR] = 1, [FUSE_REMOVEXATTR] = 1,
	[FUSE_CREATE] = 1,  [FUSE_FALLOCATE] = 1,
};

/* ---- INIT / DESTROY ---------------------------------------------------- */

static size_t do_init(struct fuse_server *s, struct reply *r, struct body *b)
{
	struct fuse_init_in in = {0};
	size_t n = b->len - b->pos;
	if (n < FUSE_COMPAT_INIT_IN_SZ || n > sizeof(in))
		return reply_err(r, EINVAL);
	take(b, &in, n);
	if (s->initialized)
		return reply_err(r, EINVAL);
	if (!fits(r, sizeof(struct fuse_init_out)))
		return reply_err(r, EINVAL);
	struct fuse_init_out out = {.major = FUSE_KERNEL_VERSION, .minor = FUSE_OUR_MINOR};
	if (in.major > FUSE_KERNEL_VERSION) /* the kernel retries with ours */
		return reply_ok(r, &out, sizeof(out));
	if (in.major < FUSE_KERNEL_VERSION || in.minor < FUSE_MIN_MINOR)
		return reply_err(r, EPROTO);
	uint32_t want = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES |
			FUSE_AUTO_INVAL_DATA | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
			FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES |
			FUSE_CACHE_SYMLINKS;
	if (s->dax)
		want |= FUSE_MAP_ALIGNMENT;
	if (in.minor >= 36)
		want |= FUSE_INIT_EXT;
	out.minor = in.minor < FUSE_OUR_MINOR ? in.minor : FUSE_OUR_MINOR;
	out.flags = in.flags & want;
	out.max_readahead =
		in.max_readahead < s->cfg.max_readahead ? in.max_readahead : s->cfg.max_readahead;
	out.max_write = s->cfg.max_write;
	out.max_pages = (uint16_t)(s->cfg.max_write / 4096);
	out.time_gran = 1;
	if (out.flags & FUSE_MAP_ALIGNMENT)
		out.map_alignment = 12; /* log2(FUSE_DAX_GRANULE) */
	s->initialized = 1;
	s->minor = out.minor;
	s->flags = out.flags;
	return reply_ok(r, &out, sizeof(out));
}

/* ---- node ops ---------------------------------------------------------- */

static size_t do_lookup(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	const char *name;
	int e = take_name(b, &name);
	if (e < 0 || !at_end(b))
		return reply_err(r, e < 0 ? -e : EINVAL);
	if (!fits(r, sizeof(struct fuse_entry_out)))
		return reply_err(r, EINVAL);
	struct fuse_entry_param ep;
	e = s->be->ops->lookup(s->be, nodeid, name, &ep);
	return e < 0 ? reply_err(r, -e) : reply_entry(s, r, &ep);
}

static size_t do_forget(struct fuse_server *s, uint64_t nodeid, struct body *b)
{
	struct fuse_forget_in in;
	if (take(b, &in, sizeof(in)) == 0 && at_end(b))
		s->be->ops->forget(s->be, nodeid, in.nlookup);
	return 0;
}

static size_t do_batch_forget(struct fuse_server *s, struct body *b)
{
	struct fuse_batch_forget_in in;
	if (take(b, &in, sizeof(in)) < 0)
		return 0;
	uint64_t need;
	if (sm_mul_overflow((uint64_t)in.count, sizeof(struct fuse_forget_one), &need) ||
	    need != b->len - b->pos)
		return 0;
	for (uint32_t i = 0; i < in.count; i++) {
		struct fuse_forget_one one;
		take(b, &one, sizeof(one));
		s->be->ops->forget(s->be, one.nodeid, one.nlookup);
	}
	return 0;
}

static size_t do_getattr(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	struct fuse_getattr_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b) || !fits(r, sizeof(struct fuse_attr_out)))
		return reply_err(r, EINVAL);
	struct stat st;
	int e = s->be->ops->getattr(s->be, nodeid, &st);
	return e < 0 ? reply_err(r, -e) : reply_attr(s, r, &st);
}

static size_t do_setattr(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	struct fuse_setattr_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b) || !fits(r, sizeof(struct fuse_attr_out)))
		return reply_err(r, EINVAL);
	if (in.atimensec >= 1000000000u || in.mtimensec >= 1000000000u)
		return reply_err(r, EINVAL);
	if ((in.valid & FATTR_SIZE) && in.size > INT64_MAX)
		return reply_err(r, EINVAL);
	struct fuse_setattr_req req = {0};
	req.valid = in.valid &
		    (FUSE_SET_MODE | FUSE_SET_UID | FUSE_SET_GID | FUSE_SET_SIZE | FUSE_SET_ATIME |
		     FUSE_SET_MTIME | FUSE_SET_ATIME_NOW | FUSE_SET_MTIME_NOW);
	req.mode = in.mode;
	req.uid = in.uid;
	req.gid = in.gid;
	req.size = in.size;
	req.atime.tv_sec = (time_t)in.atime;
	req.atime.tv_nsec = in.atimensec;
	req.mtime.tv_sec = (time_t)in.mtime;
	req.mtime.tv_nsec = in.mtimensec;
	req.fh = (in.valid & FATTR_FH) ? in.fh : FUSE_BACKEND_NO_FH;
	struct stat st;
	int e = s->be->ops->setattr(s->be, nodeid, &req, &st);
	return e < 0 ? reply_err(r, -e) : reply_attr(s, r, &st);
}

static size_t do_readlink(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	if (!at_end(b))
		return reply_err(r, EINVAL);
	char buf[FUSE_SYMLINK_MAX + 1];
	int n = s->be->ops->readlink(s->be, nodeid, buf, sizeof(buf));
	if (n < 0)
		return reply_err(r, -n);
	if ((size_t)n > sizeof(buf))
		return reply_err(r, EIO);
	if (!fits(r, (size_t)n))
		return reply_err(r, ERANGE);
	return reply_ok(r, buf, (size_t)n);
}

static void make_ctx(const struct fuse_in_header *h, uint32_t umask, struct fuse_ctx *c)
{
	c->uid = h->uid;
	c->gid = h->gid;
	c->pid = h->pid;
	c->umask = umask;
}

static size_t do_mknod(struct fuse_server *s, struct reply *r, const struct fuse_in_header *h,
		       struct body *b)
{
	struct fuse_mknod_in in;
	const char *name;
	int e = take(b, &in, sizeof(in));
	if (e == 0)
		e = take_name(b, &name);
	if (e < 0 || !at_end(b) || !fits(r, sizeof(struct fuse_entry_out)))
		return reply_err(r, e < 0 ? -e : EINVAL);
	struct fuse_ctx c;
	make_ctx(h, in.umask, &c);
	struct fuse_entry_param ep;
	e = s->be->ops->mknod(s->be, h->nodeid, name, in.mode, decode_dev(in.rdev), &c, &ep);
	return e < 0 ? reply_err(r, -e) : reply_entry(s, r, &ep);
}

static size_t do_mkdir(struct fuse_server *s, struct reply *r, const struct fuse_in_header *h,
		       struct body *b)
{
	struct fuse_mkdir_in in;
	const char *name;
	int e = take(b, &in, sizeof(in));
	if (e == 0)
		e = take_name(b, &name);
	if (e < 0 || !at_end(b) || !fits(r, sizeof(struct fuse_entry_out)))
		return reply_err(r, e < 0 ? -e : EINVAL);
	struct fuse_ctx c;
	make_ctx(h, in.umask, &c);
	struct fuse_entry_param ep;
	e = s->be->ops->mkdir(s->be, h->nodeid, name, in.mode & 07777, &c, &ep);
	return e < 0 ? reply_err(r, -e) : reply_entry(s, r, &ep);
}

static size_t do_symlink(struct fuse_server *s, struct reply *r, const struct fuse_in_header *h,
			 struct body *b)
{
	const char *name, *target;
	int e = take_name(b, &name);
	if (e < 0)
		return reply_err(r, -e);
	target = take_str(b);
	if (!target || !at_end(b) || !fits(r, sizeof(struct fuse_entry_out)))
		return reply_err(r, EINVAL);
	size_t tl = strlen(target);
	if (tl == 0)
		return reply_err(r, ENOENT);
	if (tl > FUSE_SYMLINK_MAX)
		return reply_err(r, ENAMETOOLONG);
	struct fuse_ctx c;
	make_ctx(h, 0, &c);
	struct fuse_entry_param ep;
	e = s->be->ops->symlink(s->be, h->nodeid, name, target, &c, &ep);
	return e < 0 ? reply_err(r, -e) : reply_entry(s, r, &ep);
}

static size_t do_unlink(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b,
			int dir)
{
	const char *name;
	int e = take_name(b, &name);
	if (e < 0 || !at_end(b))
		return reply_err(r, e < 0 ? -e : EINVAL);
	e = dir ? s->be->ops->rmdir(s->be, nodeid, name) : s->be->ops->unlink(s->be, nodeid, name);
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

static size_t do_rename(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b,
			int v2)
{
	uint64_t newdir;
	uint32_t flags = 0;
	int e;
	if (v2) {
		struct fuse_rename2_in in;
		e = take(b, &in, sizeof(in));
		newdir = in.newdir;
		flags = in.flags;
	} else {
		struct fuse_rename_in in;
		e = take(b, &in, sizeof(in));
		newdir = in.newdir;
	}
	if (e < 0)
		return reply_err(r, EINVAL);
	if (flags & ~(uint32_t)(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT))
		return reply_err(r, EINVAL);
	const char *oldname, *newname;
	e = take_name(b, &oldname);
	if (e == 0)
		e = take_name(b, &newname);
	if (e < 0 || !at_end(b))
		return reply_err(r, e < 0 ? -e : EINVAL);
	e = s->be->ops->rename(s->be, nodeid, oldname, newdir, newname, flags);
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

static size_t do_link(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	struct fuse_link_in in;
	const char *name;
	int e = take(b, &in, sizeof(in));
	if (e == 0)
		e = take_name(b, &name);
	if (e < 0 || !at_end(b) || !fits(r, sizeof(struct fuse_entry_out)))
		return reply_err(r, e < 0 ? -e : EINVAL);
	struct fuse_entry_param ep;
	e = s->be->ops->link(s->be, in.oldnodeid, nodeid, name, &ep);
	return e < 0 ? reply_err(r, -e) : reply_entry(s, r, &ep);
}

/* ---- files ------------------------------------------------------------- */

static int open_flags_ok(const struct fuse_server *s, uint32_t flags)
{
	if (!s->cfg.read_only)
		return 0;
	if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_CREAT)))
		return -EROFS;
	return 0;
}

static size_t do_open(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b,
		      int dir)
{
	struct fuse_open_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b) || !fits(r, sizeof(struct fuse_open_out)))
		return reply_err(r, EINVAL);
	int e = dir ? 0 : open_flags_ok(s, in.flags);
	if (e < 0)
		return reply_err(r, -e);
	uint64_t fh = 0;
	e = dir ? s->be->ops->opendir(s->be, nodeid, in.flags, &fh)
		: s->be->ops->open(s->be, nodeid, in.flags, &fh);
	/* A read-only image never changes under the guest: keep its cache. */
	return e < 0 ? reply_err(r, -e)
		     : reply_open(r, fh, s->cfg.read_only ? FOPEN_KEEP_CACHE : 0);
}

static size_t do_create(struct fuse_server *s, struct reply *r, const struct fuse_in_header *h,
			struct body *b)
{
	struct fuse_create_in in;
	const char *name;
	int e = take(b, &in, sizeof(in));
	if (e == 0)
		e = take_name(b, &name);
	if (e < 0 || !at_end(b) ||
	    !fits(r, sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out)))
		return reply_err(r, e < 0 ? -e : EINVAL);
	struct fuse_ctx c;
	make_ctx(h, in.umask, &c);
	struct fuse_entry_param ep;
	uint64_t fh = 0;
	e = s->be->ops->create(s->be, h->nodeid, name, in.mode, in.flags, &c, &ep, &fh);
	if (e < 0)
		return reply_err(r, -e);
	struct {
		struct fuse_entry_out e;
		struct fuse_open_out o;
	} out;
	fill_entry(s, &out.e, &ep);
	memset(&out.o, 0, sizeof(out.o));
	out.o.fh = fh;
	return reply_ok(r, &out, sizeof(out));
}

static size_t do_read(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	struct fuse_read_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b) || !fits(r, 0))
		return reply_err(r, EINVAL);
	if (in.offset > INT64_MAX)
		return reply_err(r, EINVAL);
	size_t size = in.size;
	if (size > r->cap - sizeof(struct fuse_out_header))
		size = r->cap - sizeof(struct fuse_out_header);
	if (size > s->cfg.max_write)
		size = s->cfg.max_write;
	struct iovec small[32], *iov = small;
	int max = r->cnt < IOV_MAX_FUSE ? r->cnt : IOV_MAX_FUSE;
	if (max > 32 && !(iov = calloc((size_t)max, sizeof(*iov))))
		return reply_err(r, ENOMEM);
	int n = fuse_iov_slice(r->out, r->cnt, sizeof(struct fuse_out_header), size, iov, max);
	ssize_t got;
	if (n < 0)
		got = -EINVAL;
	else
		got = s->be->ops->read(s->be, nodeid, in.fh, in.offset, iov, n);
	if (iov != small)
		free(iov);
	if (got < 0)
		return reply_err(r, (int)-got);
	if ((size_t)got > size)
		return reply_err(r, EIO);
	struct fuse_out_header oh = {.len = (uint32_t)(sizeof(oh) + (size_t)got),
				     .unique = r->unique};
	fuse_iov_scatter(r->out, r->cnt, 0, &oh, sizeof(oh));
	r->error = 0;
	return r->len = oh.len;
}

static size_t do_write(struct fuse_server *s, struct reply *r, uint64_t nodeid,
		       const struct iovec *in_iov, int in_cnt, const struct fuse_write_in *in,
		       size_t data_len)
{
	if (in->size != data_len || in->size > s->cfg.max_write || in->offset > INT64_MAX ||
	    !fits(r, sizeof(struct fuse_write_out)))
		return reply_err(r, EINVAL);
	uint64_t end;
	if (sm_add_overflow(in->offset, (uint64_t)in->size, &end) || end > INT64_MAX)
		return reply_err(r, EFBIG);
	struct iovec small[32], *iov = small;
	int max = in_cnt < IOV_MAX_FUSE ? in_cnt : IOV_MAX_FUSE;
	if (max > 32 && !(iov = calloc((size_t)max, sizeof(*iov))))
		return reply_err(r, ENOMEM);
	int n = fuse_iov_slice(in_iov, in_cnt,
			       sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in),
			       data_len, iov, max);
	ssize_t put;
	if (n < 0)
		put = -EINVAL;
	else
		put = s->be->ops->write(s->be, nodeid, in->fh, in->offset, iov, n);
	if (iov != small)
		free(iov);
	if (put < 0)
		return reply_err(r, (int)-put);
	if ((size_t)put > data_len)
		return reply_err(r, EIO);
	struct fuse_write_out wo = {.size = (uint32_t)put};
	return reply_ok(r, &wo, sizeof(wo));
}

static size_t do_statfs(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	if (!at_end(b) || !fits(r, sizeof(struct fuse_statfs_out)))
		return reply_err(r, EINVAL);
	struct statvfs sv;
	int e = s->be->ops->statfs(s->be, nodeid, &sv);
	if (e < 0)
		return reply_err(r, -e);
	struct fuse_statfs_out o = {0};
	o.st.blocks = sv.f_blocks;
	o.st.bfree = sv.f_bfree;
	o.st.bavail = sv.f_bavail;
	o.st.files = sv.f_files;
	o.st.ffree = sv.f_ffree;
	o.st.bsize = (uint32_t)sv.f_bsize;
	o.st.namelen = (uint32_t)sv.f_namemax;
	o.st.frsize = (uint32_t)sv.f_frsize;
	return reply_ok(r, &o, sizeof(o));
}

static size_t do_release(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b,
			 int dir)
{
	struct fuse_release_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b))
		return reply_err(r, EINVAL);
	int e = dir ? s->be->ops->releasedir(s->be, nodeid, in.fh)
		    : s->be->ops->release(s->be, nodeid, in.fh);
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

static size_t do_fsync(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b,
		       int dir)
{
	struct fuse_fsync_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b))
		return reply_err(r, EINVAL);
	int ds = (in.fsync_flags & FUSE_FSYNC_FDATASYNC) != 0;
	int e = dir ? s->be->ops->fsyncdir(s->be, nodeid, in.fh, ds)
		    : s->be->ops->fsync(s->be, nodeid, in.fh, ds);
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

static size_t do_flush(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	struct fuse_flush_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b))
		return reply_err(r, EINVAL);
	int e = s->be->ops->flush(s->be, nodeid, in.fh);
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

/* ---- xattrs ------------------------------------------------------------ */

static int take_xattr_name(struct body *b, const char **name)
{
	*name = take_str(b);
	if (!*name)
		return -EINVAL;
	size_t l = strlen(*name);
	if (l == 0)
		return -EINVAL;
	if (l > FUSE_XATTR_NAME_MAX)
		return -ERANGE;
	return 0;
}

static size_t do_setxattr(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	struct fuse_setxattr_in in = {0};
	const char *name;
	int e = take(b, &in, FUSE_COMPAT_SETXATTR_IN_SIZE);
	if (e == 0)
		e = take_xattr_name(b, &name);
	if (e < 0)
		return reply_err(r, -e);
	if (in.size > FUSE_XATTR_SIZE_MAX)
		return reply_err(r, E2BIG);
	if (in.size != b->len - b->pos)
		return reply_err(r, EINVAL);
	if (in.flags & ~(uint32_t)(XATTR_CREATE | XATTR_REPLACE))
		return reply_err(r, EINVAL);
	e = s->be->ops->setxattr(s->be, nodeid, name, b->p + b->pos, in.size, in.flags);
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

static size_t do_getxattr(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b,
			  int list)
{
	struct fuse_getxattr_in in;
	const char *name = NULL;
	int e = take(b, &in, sizeof(in));
	if (e == 0 && !list)
		e = take_xattr_name(b, &name);
	if (e < 0 || !at_end(b))
		return reply_err(r, e < 0 ? -e : EINVAL);
	size_t size = in.size > FUSE_XATTR_SIZE_MAX ? FUSE_XATTR_SIZE_MAX : in.size;
	if (!fits(r, size ? size : sizeof(struct fuse_getxattr_out)))
		return reply_err(r, EINVAL);
	void *buf = NULL;
	if (size && !(buf = malloc(size)))
		return reply_err(r, ENOMEM);
	ssize_t n = list ? s->be->ops->listxattr(s->be, nodeid, buf, size)
			 : s->be->ops->getxattr(s->be, nodeid, name, buf, size);
	size_t ret;
	if (n < 0)
		ret = reply_err(r, (int)-n);
	else if (size == 0) {
		struct fuse_getxattr_out o = {.size = (uint32_t)n};
		ret = reply_ok(r, &o, sizeof(o));
	} else if ((size_t)n > size)
		ret = reply_err(r, ERANGE);
	else
		ret = reply_ok(r, buf, (size_t)n);
	free(buf);
	return ret;
}

static size_t do_removexattr(struct fuse_server *s, struct reply *r, uint64_t nodeid,
			     struct body *b)
{
	const char *name;
	int e = take_xattr_name(b, &name);
	if (e < 0 || !at_end(b))
		return reply_err(r, e < 0 ? -e : EINVAL);
	e = s->be->ops->removexattr(s->be, nodeid, name);
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

/* ---- directories ------------------------------------------------------- */

struct dirbuf {
	struct fuse_server *s;
	uint64_t dir;
	int plus;
	uint8_t *buf;
	size_t size, len;
};

static int fill_dir(void *ctx, const char *name, uint64_t ino, uint32_t dtype, uint64_t next_off)
{
	struct dirbuf *d = ctx;
	size_t nl = strlen(name);
	if (nl == 0 || nl > FUSE_NAME_MAX)
		return 0; /* skip what the guest could not represent */
	size_t hdr = d->plus ? sizeof(struct fuse_direntplus) : sizeof(struct fuse_dirent);
	size_t ent = FUSE_DIRENT_ALIGN(hdr + nl);
	if (ent > d->size - d->len)
		return 1;
	uint8_t *p = d->buf + d->len;
	memset(p, 0, ent);
	struct fuse_dirent de = {
		.ino = ino, .off = next_off, .namelen = (uint32_t)nl, .type = dtype};
	if (d->plus) {
		struct fuse_entry_out eo = {0};
		if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0) {
			struct fuse_entry_param ep;
			int e = d->s->be->ops->lookup(d->s->be, d->dir, name, &ep);
			if (e == 0) {
				fill_entry(d->s, &eo, &ep);
				de.ino = ep.st.st_ino;
			}
			/* A vanished entry is sent with nodeid 0 (no lookup). */
		}
		memcpy(p, &eo, sizeof(eo));
		p += sizeof(eo);
	}
	memcpy(p, &de, sizeof(de));
	memcpy(p + sizeof(de), name, nl);
	d->len += ent;
	return 0;
}

static size_t do_readdir(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b,
			 int plus)
{
	struct fuse_read_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b) || !fits(r, 0))
		return reply_err(r, EINVAL);
	size_t size = in.size;
	if (size > r->cap - sizeof(struct fuse_out_header))
		size = r->cap - sizeof(struct fuse_out_header);
	if (size > DIR_BUF_MAX)
		size = DIR_BUF_MAX;
	struct dirbuf d = {.s = s, .dir = nodeid, .plus = plus, .size = size};
	if (size && !(d.buf = malloc(size)))
		return reply_err(r, ENOMEM);
	int e = s->be->ops->readdir(s->be, nodeid, in.fh, in.offset, fill_dir, &d);
	size_t ret;
	if (e < 0 && d.len == 0)
		ret = reply_err(r, -e);
	else
		ret = reply_ok(r, d.buf, d.len);
	free(d.buf);
	return ret;
}

static size_t do_access(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	struct fuse_access_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b))
		return reply_err(r, EINVAL);
	if (in.mask & ~(uint32_t)(R_OK | W_OK | X_OK))
		return reply_err(r, EINVAL);
	int e = s->be->ops->access(s->be, nodeid, in.mask);
	if (e == 0 && (in.mask & W_OK) && s->cfg.read_only)
		e = -EROFS;
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

static size_t do_lseek(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	struct fuse_lseek_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b) || !fits(r, sizeof(struct fuse_lseek_out)))
		return reply_err(r, EINVAL);
	if (in.whence > SEEK_HOLE || in.offset > INT64_MAX)
		return reply_err(r, EINVAL);
	int64_t off = s->be->ops->lseek(s->be, nodeid, in.fh, (int64_t)in.offset, (int)in.whence);
	if (off < 0)
		return reply_err(r, (int)-off);
	struct fuse_lseek_out o = {.offset = (uint64_t)off};
	return reply_ok(r, &o, sizeof(o));
}

static size_t do_fallocate(struct fuse_server *s, struct reply *r, uint64_t nodeid, struct body *b)
{
	struct fuse_fallocate_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b))
		return reply_err(r, EINVAL);
	uint64_t end;
	if (in.length == 0 || sm_add_overflow(in.offset, in.length, &end) || end > INT64_MAX)
		return reply_err(r, EINVAL);
	int e = s->be->ops->fallocate(s->be, nodeid, in.fh, in.mode, in.offset, in.length);
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

/* ---- DAX (outside the server lock: the session has its own) ------------ */

static size_t do_setupmapping(struct fuse_server *s, struct reply *r, uint64_t nodeid,
			      struct body *b)
{
	struct fuse_setupmapping_in in;
	if (take(b, &in, sizeof(in)) < 0 || !at_end(b))
		return reply_err(r, EINVAL);
	if (!s->dax)
		return reply_err(r, ENOSYS);
	if (in.flags & ~(FUSE_SETUPMAPPING_FLAG_READ | FUSE_SETUPMAPPING_FLAG_WRITE))
		return reply_err(r, EINVAL);
	int writable = (in.flags & FUSE_SETUPMAPPING_FLAG_WRITE) != 0;
	if (writable && s->cfg.read_only)
		return reply_err(r, EROFS);
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	int fd = -1;
	pthread_mutex_lock(&s->lock);
	int e = s->initialized ? s->be->ops->open_fd(s->be, nodeid, in.fh, writable, &fd) : -EIO;
	pthread_mutex_unlock(&s->lock);
	if (e == 0) {
		e = fuse_dax_setup(s->dax, in.moffset, in.len, nodeid, fd, in.foffset, prot);
		close(fd);
	}
	return e < 0 ? reply_err(r, -e) : reply_ok(r, NULL, 0);
}

static size_t do_removemapping(struct fuse_server *s, struct reply *r, struct body *b)
{
	struct fuse_removemapping_in in;
	if (take(b, &in, sizeof(in)) < 0)
		return reply_err(r, EINVAL);
	uint64_t need;
	if (in.count == 0 ||
	    sm_mul_overflow((uint64_t)in.count, sizeof(struct fuse_removemapping_one), &need) ||
	    need != b->len - b->pos)
		return reply_err(r, EINVAL);
	if (!s->dax)
		return reply_err(r, ENOSYS);
	if (!s->initialized)
		return reply_err(r, EIO);
	for (uint32_t i = 0; i < in.count; i++) {
		struct fuse_removemapping_one one;
		take(b, &one, sizeof(one));
		int e = fuse_dax_remove(s->dax, one.moffset, one.len);
		if (e < 0)
			return reply_err(r, -e);
	}
	return reply_ok(r, NULL, 0);
}

/* ---- the switch -------------------------------------------------------- */

static size_t dispatch(struct fuse_server *s, struct reply *r, const struct fuse_in_header *h,
		       struct body *b)
{
	uint64_t n = h->nodeid;
	if (h->opcode == FUSE_INIT)
		return do_init(s, r, b);
	if (!s->initialized)
		return reply_err(r, EIO);
	if (h->opcode < FUSE_OPCODE_MAX && mutating[h->opcode] && s->cfg.read_only)
		return reply_err(r, EROFS);
	switch (h->opcode) {
	case FUSE_DESTROY:
		s->initialized = 0;
		return reply_ok(r, NULL, 0);
	case FUSE_LOOKUP:
		return do_lookup(s, r, n, b);
	case FUSE_FORGET:
		return do_forget(s, n, b);
	case FUSE_BATCH_FORGET:
		return do_batch_forget(s, b);
	case FUSE_GETATTR:
		return do_getattr(s, r, n, b);
	case FUSE_SETATTR:
		return do_setattr(s, r, n, b);
	case FUSE_READLINK:
		return do_readlink(s, r, n, b);
	case FUSE_SYMLINK:
		return do_symlink(s, r, h, b);
	case FUSE_MKNOD:
		return do_mknod(s, r, h, b);
	case FUSE_MKDIR:
		return do_mkdir(s, r, h, b);
	case FUSE_UNLINK:
		return do_unlink(s, r, n, b, 0);
	case FUSE_RMDIR:
		return do_unlink(s, r, n, b, 1);
	case FUSE_RENAME:
		return do_rename(s, r, n, b, 0);
	case FUSE_RENAME2:
		return do_rename(s, r, n, b, 1);
	case FUSE_LINK:
		return do_link(s, r, n, b);
	case FUSE_OPEN:
		return do_open(s, r, n, b, 0);
	case FUSE_OPENDIR:
		return do_open(s, r, n, b, 1);
	case FUSE_CREATE:
		return do_create(s, r, h, b);
	case FUSE_READ:
		return do_read(s, r, n, b);
	case FUSE_STATFS:
		return do_statfs(s, r, n, b);
	case FUSE_RELEASE:
		return do_release(s, r, n, b, 0);
	case FUSE_RELEASEDIR:
		return do_release(s, r, n, b, 1);
	case FUSE_FSYNC:
		return do_fsync(s, r, n, b, 0);
	case FUSE_FSYNCDIR:
		return do_fsync(s, r, n, b, 1);
	case FUSE_FLUSH:
		return do_flush(s, r, n, b);
	case FUSE_SETXATTR:
		return do_setxattr(s, r, n, b);
	case FUSE_GETXATTR:
		return do_getxattr(s, r, n, b, 0);
	case FUSE_LISTXATTR:
		return do_getxattr(s, r, n, b, 1);
	case FUSE_REMOVEXATTR:
		return do_removexattr(s, r, n, b);
	case FUSE_READDIR:
		return do_readdir(s, r, n, b, 0);
	case FUSE_READDIRPLUS:
		return do_readdir(s, r, n, b, 1);
	case FUSE_ACCESS:
		return do_access(s, r, n, b);
	case FUSE_LSEEK:
		return do_lseek(s, r, n, b);
	case FUSE_FALLOCATE:
		return do_fallocate(s, r, n, b);
	default:
		return reply_err(r, ENOSYS);
	}
}

static void trace(struct fuse_server *s, const struct fuse_in_header *h, const struct reply *r)
{
	if (!s->trace)
		return;
	fprintf(s->trace,
		"unique=%" PRIu64 " op=%s(%u) nodeid=%" PRIu64 " len=%u -> error=%d out=%zu\n",
		h ? h->unique : 0, h ? fuse_opcode_name(h->opcode) : "SHORT", h ? h->opcode : 0,
		h ? h->nodeid : 0, h ? h->len : 0, r->error ? -r->error : 0, r->len);
	fflush(s->trace);
}

size_t fuse_server_handle(struct fuse_server *s, const struct iovec *in, int in_cnt,
			  const struct iovec *out, int out_cnt)
{
	int ok_in, ok_out;
	size_t in_total = fuse_iov_total(in, in_cnt, &ok_in);
	size_t cap = fuse_iov_total(out, out_cnt, &ok_out);
	struct reply r = {.out = out, .cnt = ok_out ? out_cnt : 0, .cap = ok_out ? cap : 0};
	struct fuse_in_header h;
	if (!ok_in || in_total < sizeof(h)) {
		reply_err(&r, EINVAL);
		pthread_mutex_lock(&s->lock);
		trace(s, NULL, &r);
		pthread_mutex_unlock(&s->lock);
		return r.len;
	}
	fuse_iov_gather(in, in_cnt, 0, &h, sizeof(h));
	r.unique = h.unique;
	int no_reply = h.opcode == FUSE_FORGET || h.opcode == FUSE_BATCH_FORGET;

	uint8_t *buf = NULL;
	size_t body_len = in_total - sizeof(h);
	size_t data_len = 0;
	struct fuse_write_in win;
	if (h.len != in_total) {
		reply_err(&r, EINVAL);
		goto out;
	}
	if (h.opcode == FUSE_WRITE) {
		/* Only the header is copied; the data stays in the guest's buffers. */
		if (body_len < sizeof(win)) {
			reply_err(&r, EINVAL);
			goto out;
		}
		fuse_iov_gather(in, in_cnt, sizeof(h), &win, sizeof(win));
		data_len = body_len - sizeof(win);
		body_len = 0;
	} else if (in_total > REQ_MAX) {
		reply_err(&r, EINVAL);
		goto out;
	} else if (body_len) {
		buf = malloc(body_len);
		if (!buf) {
			reply_err(&r, ENOMEM);
			goto out;
		}
		fuse_iov_gather(in, in_cnt, sizeof(h), buf, body_len);
	}
	struct body b = {.p = buf, .len = body_len};

	if (h.opcode == FUSE_SETUPMAPPING || h.opcode == FUSE_REMOVEMAPPING) {
		if (!s->initialized)
			reply_err(&r, EIO);
		else if (h.opcode == FUSE_SETUPMAPPING)
			do_setupmapping(s, &r, h.nodeid, &b);
		else
			do_removemapping(s, &r, &b);
		pthread_mutex_lock(&s->lock);
	} else {
		pthread_mutex_lock(&s->lock);
		if (h.opcode == FUSE_WRITE) {
			if (!s->initialized)
				reply_err(&r, EIO);
			else if (s->cfg.read_only)
				reply_err(&r, EROFS);
			else
				do_write(s, &r, h.nodeid, in, in_cnt, &win, data_len);
		} else {
			dispatch(s, &r, &h, &b);
		}
	}
	trace(s, &h, &r);
	pthread_mutex_unlock(&s->lock);
	free(buf);
	return no_reply ? 0 : r.len;
out:
	pthread_mutex_lock(&s->lock);
	trace(s, &h, &r);
	pthread_mutex_unlock(&s->lock);
	return no_reply ? 0 : r.len;
}

/* ---- lifecycle --------------------------------------------------------- */

void fuse_server_config_init(struct fuse_server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_write = 1u << 20;
	cfg->max_readahead = 1u << 20;
	cfg->entry_valid_ms = 1000;
	cfg->attr_valid_ms = 1000;
}

int fuse_server_new(const struct fuse_server_config *cfg, struct fuse_backend *be,
		    struct fuse_server **out, struct sm_error *err)
{
	*out = NULL;
	if (!be)
		return sm_error_set(err, EINVAL, "fuse server: no backend");
	struct fuse_server_config defaults;
	if (!cfg) {
		fuse_server_config_init(&defaults);
		cfg = &defaults;
	}
	if (cfg->max_write < 4096 || cfg->max_write > FUSE_MAX_MAX_PAGES * 4096u ||
	    cfg->max_write % 4096) {
		fuse_backend_free(be);
		return sm_error_set(err, EINVAL,
				    "fuse server: max_write %u is not a multiple of 4 KiB "
				    "between 4 KiB and 1 MiB",
				    cfg->max_write);
	}
	struct fuse_server *s = calloc(1, sizeof(*s));
	if (!s) {
		fuse_backend_free(be);
		return sm_error_errno(err, ENOMEM, "fuse server");
	}
	pthread_mutex_init(&s->lock, NULL);
	s->cfg = *cfg;
	s->be = be;
	const char *tp = cfg->trace_path ? cfg->trace_path : getenv("SM_FUSE_TRACE");
	s->cfg.trace_path = NULL;
	if (tp && *tp) {
		s->trace = fopen(tp, "ae");
		if (!s->trace) {
			int e = errno;
			fuse_server_free(s);
			return sm_error_errno(err, e, "fuse server: cannot open trace file %s", tp);
		}
	}
	*out = s;
	return 0;
}

void fuse_server_free(struct fuse_server *s)
{
	if (!s)
		return;
	if (s->dax)
		fuse_dax_set_opener(s->dax, NULL, NULL);
	fuse_backend_free(s->be);
	if (s->trace)
		fclose(s->trace);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void fuse_backend_free(struct fuse_backend *be)
{
	if (be && be->ops->destroy)
		be->ops->destroy(be);
}

int fuse_server_open_node_fd(struct fuse_server *s, uint64_t nodeid, int writable, int *fd)
{
	if (writable && s->cfg.read_only)
		return -EROFS;
	pthread_mutex_lock(&s->lock);
	int e = s->be->ops->open_fd(s->be, nodeid, FUSE_BACKEND_NO_FH, writable, fd);
	pthread_mutex_unlock(&s->lock);
	return e;
}

static int open_node_cb(void *ctx, uint64_t nodeid, int writable, int *fd)
{
	return fuse_server_open_node_fd(ctx, nodeid, writable, fd);
}

void fuse_server_attach_dax(struct fuse_server *s, struct fuse_dax *dax)
{
	if (s->dax)
		fuse_dax_set_opener(s->dax, NULL, NULL);
	s->dax = dax;
	if (dax)
		fuse_dax_set_opener(dax, open_node_cb, s);
}

/* ---- snapshot: "FUSN" v1 ----------------------------------------------- *
 * 0  magic "FUSN"     4  version (1)      8  initialized   12 minor
 * 16 flags (u64)      24 backend blob length (u64)         32 backend blob */
#define FUSN_VERSION 1
#define FUSN_HDR     32

int fuse_server_snapshot(struct fuse_server *s, void **blob, size_t *len, struct sm_error *err)
{
	*blob = NULL;
	*len = 0;
	if (!s->be->ops->snapshot)
		return sm_error_set(err, ENOTSUP, "fuse snapshot: backend %s cannot snapshot",
				    s->be->ops->name);
	pthread_mutex_lock(&s->lock);
	void *bb = NULL;
	size_t bl = 0;
	int r = s->be->ops->snapshot(s->be, &bb, &bl, err);
	if (r < 0) {
		pthread_mutex_unlock(&s->lock);
		return sm_error_wrap(err, "fuse snapshot");
	}
	uint8_t *p = malloc(FUSN_HDR + bl);
	if (!p) {
		pthread_mutex_unlock(&s->lock);
		free(bb);
		return sm_error_errno(err, ENOMEM, "fuse snapshot");
	}
	memcpy(p, "FUSN", 4);
	fuse_put_le32(p + 4, FUSN_VERSION);
	fuse_put_le32(p + 8, (uint32_t)s->initialized);
	fuse_put_le32(p + 12, s->minor);
	fuse_put_le64(p + 16, s->flags);
	fuse_put_le64(p + 24, bl);
	memcpy(p + FUSN_HDR, bb, bl);
	pthread_mutex_unlock(&s->lock);
	free(bb);
	*blob = p;
	*len = FUSN_HDR + bl;
	return 0;
}

int fuse_server_restore(struct fuse_server *s, const void *blob, size_t len, struct sm_error *err)
{
	const uint8_t *p = blob;
	if (!s->be->ops->restore)
		return sm_error_set(err, ENOTSUP, "fuse restore: backend %s cannot restore",
				    s->be->ops->name);
	if (len < FUSN_HDR || memcmp(p, "FUSN", 4) != 0)
		return sm_error_set(err, EINVAL, "fuse restore: not a FUSN blob");
	if (fuse_get_le32(p + 4) != FUSN_VERSION)
		return sm_error_set(err, EINVAL, "fuse restore: unsupported version %u",
				    fuse_get_le32(p + 4));
	uint32_t init = fuse_get_le32(p + 8), minor = fuse_get_le32(p + 12);
	uint64_t bl = fuse_get_le64(p + 24);
	if (bl != len - FUSN_HDR)
		return sm_error_set(err, EINVAL,
				    "fuse restore: backend blob length %" PRIu64
				    " does not match %zu bytes",
				    bl, len - FUSN_HDR);
	if (init > 1 || (init && (minor < FUSE_MIN_MINOR || minor > FUSE_OUR_MINOR)))
		return sm_error_set(err, EINVAL, "fuse restore: bad protocol state");
	pthread_mutex_lock(&s->lock);
	int r = s->be->ops->restore(s->be, p + FUSN_HDR, (size_t)bl, err);
	if (r == 0) {
		s->initialized = (int)init;
		s->minor = minor;
		s->flags = fuse_get_le64(p + 16);
	}
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? sm_error_wrap(err, "fuse restore") : 0;
}

const char *fuse_opcode_name(uint32_t op)
{
	static const char *const names[FUSE_OPCODE_MAX] = {
		[FUSE_LOOKUP] = "LOOKUP",
		[FUSE_FORGET] = "FORGET",
		[FUSE_GETATTR] = "GETATTR",
		[FUSE_SETATTR] = "SETATTR",
		[FUSE_READLINK] = "READLINK",
		[FUSE_SYMLINK] = "SYMLINK",
		[FUSE_MKNOD] = "MKNOD",
		[FUSE_MKDIR] = "MKDIR",
		[FUSE_UNLINK] = "UNLINK",
		[FUSE_RMDIR] = "RMDIR",
		[FUSE_RENAME] = "RENAME",
		[FUSE_LINK] = "LINK",
		[FUSE_OPEN] = "OPEN",
		[FUSE_READ] = "READ",
		[FUSE_WRITE] = "WRITE",
		[FUSE_STATFS] = "STATFS",
		[FUSE_RELEASE] = "RELEASE",
		[FUSE_FSYNC] = "FSYNC",
		[FUSE_SETXATTR] = "SETXATTR",
		[FUSE_GETXATTR] = "GETXATTR",
		[FUSE_LISTXATTR] = "LISTXATTR",
		[FUSE_REMOVEXATTR] = "REMOVEXATTR",
		[FUSE_FLUSH] = "FLUSH",
		[FUSE_INIT] = "INIT",
		[FUSE_OPENDIR] = "OPENDIR",
		[FUSE_READDIR] = "READDIR",
		[FUSE_RELEASEDIR] = "RELEASEDIR",
		[FUSE_FSYNCDIR] = "FSYNCDIR",
		[FUSE_GETLK] = "GETLK",
		[FUSE_SETLK] = "SETLK",
		[FUSE_SETLKW] = "SETLKW",
		[FUSE_ACCESS] = "ACCESS",
		[FUSE_CREATE] = "CREATE",
		[FUSE_INTERRUPT] = "INTERRUPT",
		[FUSE_BMAP] = "BMAP",
		[FUSE_DESTROY] = "DESTROY",
		[FUSE_IOCTL] = "IOCTL",
		[FUSE_POLL] = "POLL",
		[FUSE_NOTIFY_REPLY] = "NOTIFY_REPLY",
		[FUSE_BATCH_FORGET] = "BATCH_FORGET",
		[FUSE_FALLOCATE] = "FALLOCATE",
		[FUSE_READDIRPLUS] = "READDIRPLUS",
		[FUSE_RENAME2] = "RENAME2",
		[FUSE_LSEEK] = "LSEEK",
		[FUSE_COPY_FILE_RANGE] = "COPY_FILE_RANGE",
		[FUSE_SETUPMAPPING] = "SETUPMAPPING",
		[FUSE_REMOVEMAPPING] = "REMOVEMAPPING",
		[FUSE_SYNCFS] = "SYNCFS",
		[FUSE_TMPFILE] = "TMPFILE",
	};
	if (op < FUSE_OPCODE_MAX && names[op])
		return names[op];
	return "UNKNOWN";
}
