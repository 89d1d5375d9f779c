/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DAX window: slots mapping file ranges into the guest's shared memory
 * region, an aggregate cap reserved under the session lock before the
 * (slow, unlocked) mapper call, metadata-only snapshots and lazy
 * re-mapping on the guest's first access after a restore.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "sm/fuse.h"

#define DAX_MAX_SLOTS 65536u

enum slot_state {
	SLOT_UNMAPPED = 0, /* restored from a snapshot: metadata only */
	SLOT_BUSY = 1,	   /* a mapper call is in flight */
	SLOT_MAPPED = 2,
};

struct slot {
	uint64_t moffset, len, nodeid, foffset;
	int prot;
	enum slot_state state;
};

struct fuse_dax {
	pthread_mutex_t lock;
	pthread_cond_t idle; /* signalled when a slot leaves SLOT_BUSY */
	uint64_t base, wlen, cap;
	uint64_t bytes;	    /* reserved or mapped */
	struct slot *slots; /* sorted by moffset, never overlapping */
	size_t n, alloc;
	struct fuse_dax_mapper mapper;
	int (*open_node)(void *, uint64_t, int, int *);
	void *open_ctx;
};

/* On-disk layout of the "DAXS" v1 blob (little-endian, no padding). */
struct daxs_header {
	uint8_t magic[4];
	uint32_t version;
	uint64_t base_gpa;
	uint64_t window_len;
	uint64_t cap;
	uint64_t bytes;
	uint32_t count;
	uint32_t reserved;
};
_Static_assert(sizeof(struct daxs_header) == 48, "daxs_header");
struct daxs_entry {
	uint64_t moffset;
	uint64_t len;
	uint64_t nodeid;
	uint64_t foffset;
	uint32_t prot;
	uint32_t reserved;
};
_Static_assert(sizeof(struct daxs_entry) == 40, "daxs_entry");
#define DAXS_VERSION 1

static int aligned(uint64_t v)
{
	return (v & (FUSE_DAX_GRANULE - 1)) == 0;
}

int fuse_dax_new(uint64_t base_gpa, uint64_t window_len, uint64_t cap,
		 const struct fuse_dax_mapper *mapper, struct fuse_dax **out, struct sm_error *err)
{
	*out = NULL;
	uint64_t end;
	if (!mapper || !mapper->map || !mapper->unmap)
		return sm_error_set(err, EINVAL, "dax: mapper needs map and unmap");
	if (!aligned(base_gpa) || !aligned(window_len) || window_len == 0 ||
	    sm_add_overflow(base_gpa, window_len, &end))
		return sm_error_set(err, EINVAL,
				    "dax: window 0x%" PRIx64 "+0x%" PRIx64
				    " is not 4 KiB aligned or wraps",
				    base_gpa, window_len);
	if (cap == 0)
		cap = window_len;
	if (cap > window_len || !aligned(cap))
		return sm_error_set(err, EINVAL,
				    "dax: cap 0x%" PRIx64 " not aligned or over the window", cap);
	struct fuse_dax *d = calloc(1, sizeof(*d));
	if (!d)
		return sm_error_errno(err, ENOMEM, "dax session");
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->idle, NULL);
	d->base = base_gpa;
	d->wlen = window_len;
	d->cap = cap;
	d->mapper = *mapper;
	*out = d;
	return 0;
}

void fuse_dax_free(struct fuse_dax *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		if (d->slots[i].state == SLOT_MAPPED)
			d->mapper.unmap(d->mapper.ctx, d->slots[i].moffset, d->slots[i].len);
	free(d->slots);
	pthread_cond_destroy(&d->idle);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

void fuse_dax_set_opener(struct fuse_dax *d, int (*fn)(void *, uint64_t, int, int *), void *ctx)
{
	pthread_mutex_lock(&d->lock);
	d->open_node = fn;
	d->open_ctx = ctx;
	pthread_mutex_unlock(&d->lock);
}

/* Index of the first slot whose moffset is >= off. */
static size_t lower_bound(const struct fuse_dax *d, uint64_t off)
{
	size_t lo = 0, hi = d->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (d->slots[mid].moffset < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Index of the slot containing window offset off, or d->n. */
static size_t find_containing(const struct fuse_dax *d, uint64_t off)
{
	size_t i = lower_bound(d, off);
	if (i < d->n && d->slots[i].moffset == off)
		return i;
	if (i > 0 && off - d->slots[i - 1].moffset < d->slots[i - 1].len)
		return i - 1;
	return d->n;
}

static int insert_slot(struct fuse_dax *d, size_t at, const struct slot *s)
{
	if (d->n == d->alloc) {
		size_t na = d->alloc ? d->alloc * 2 : 16;
		struct slot *ns = realloc(d->slots, na * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		d->slots = ns;
		d->alloc = na;
	}
	memmove(&d->slots[at + 1], &d->slots[at], (d->n - at) * sizeof(*s));
	d->slots[at] = *s;
	d->n++;
	return 0;
}

static void remove_slot(struct fuse_dax *d, size_t at)
{
	memmove(&d->slots[at], &d->slots[at + 1], (d->n - at - 1) * sizeof(struct slot));
	d->n--;
}

/* Wait until no slot covering [off, off+len) is busy; lock held. */
static void wait_idle(struct fuse_dax *d, uint64_t off, uint64_t len)
{
	for (;;) {
		int busy = 0;
		size_t i = lower_bound(d, off);
		if (i > 0)
			i--;
		for (; i < d->n && d->slots[i].moffset < off + len; i++)
			if (d->slots[i].state == SLOT_BUSY &&
			    d->slots[i].moffset + d->slots[i].len > off)
				busy = 1;
		if (!busy)
			return;
		pthread_cond_wait(&d->idle, &d->lock);
	}
}

int fuse_dax_setup(struct fuse_dax *d, uint64_t moffset, uint64_t len, uint64_t nodeid, int fd,
		   uint64_t foffset, int prot)
{
	uint64_t fend;
	if (len == 0 || !aligned(moffset) || !aligned(len) || !aligned(foffset))
		return -EINVAL;
	if (!sm_range_ok(moffset, len, d->wlen))
		return -EINVAL;
	if (sm_add_overflow(foffset, len, &fend) || fend > INT64_MAX)
		return -EINVAL;
	if (!(prot & PROT_READ) || (prot & ~(PROT_READ | PROT_WRITE)) || fd < 0 || nodeid == 0)
		return -EINVAL;

	pthread_mutex_lock(&d->lock);
	wait_idle(d, moffset, len);
	size_t i = lower_bound(d, moffset);
	int upgrade = 0;
	if (i < d->n && d->slots[i].moffset == moffset && d->slots[i].len == len &&
	    d->slots[i].nodeid == nodeid) {
		upgrade = 1; /* the guest re-maps its own slot (e.g. read → write) */
	} else if ((i < d->n && d->slots[i].moffset < moffset + len) ||
		   (i > 0 && d->slots[i - 1].moffset + d->slots[i - 1].len > moffset)) {
		pthread_mutex_unlock(&d->lock);
		return -EEXIST;
	}
	struct slot old = {0};
	if (upgrade) {
		old = d->slots[i];
		d->slots[i].state = SLOT_BUSY;
	} else {
		/* Reserve the bytes before mapping: concurrent requests see them. */
		if (d->cap - d->bytes < len || d->n >= DAX_MAX_SLOTS) {
			pthread_mutex_unlock(&d->lock);
			return -ENOSPC;
		}
		struct slot s = {.moffset = moffset,
				 .len = len,
				 .nodeid = nodeid,
				 .foffset = foffset,
				 .prot = prot,
				 .state = SLOT_BUSY};
		if (insert_slot(d, i, &s) < 0) {
			pthread_mutex_unlock(&d->lock);
			return -ENOMEM;
		}
		d->bytes += len;
	}
	pthread_mutex_unlock(&d->lock);

	int r = d->mapper.map(d->mapper.ctx, moffset, fd, foffset, len, prot);

	pthread_mutex_lock(&d->lock);
	i = lower_bound(d, moffset); /* the array may have moved */
	if (r == 0) {
		d->slots[i].state = SLOT_MAPPED;
		d->slots[i].foffset = foffset;
		d->slots[i].prot = prot;
	} else if (upgrade) {
		d->slots[i] = old; /* the old mapping, if any, is still there */
	} else {
		remove_slot(d, i);
		d->bytes -= len;
	}
	pthread_cond_broadcast(&d->idle);
	pthread_mutex_unlock(&d->lock);
	return r > 0 ? -EIO : r;
}

int fuse_dax_remove(struct fuse_dax *d, uint64_t moffset, uint64_t len)
{
	if (len == 0 || !aligned(moffset) || !aligned(len) || !sm_range_ok(moffset, len, d->wlen))
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	wait_idle(d, moffset, len);
	size_t i = lower_bound(d, moffset);
	if (i == d->n || d->slots[i].moffset != moffset || d->slots[i].len != len) {
		pthread_mutex_unlock(&d->lock);
		return -EINVAL;
	}
	int r = 0;
	if (d->slots[i].state == SLOT_MAPPED)
		r = d->mapper.unmap(d->mapper.ctx, moffset, len);
	if (r == 0) {
		remove_slot(d, i);
		d->bytes -= len;
	}
	pthread_mutex_unlock(&d->lock);
	return r > 0 ? -EIO : r;
}

int fuse_dax_fault(struct fuse_dax *d, uint64_t gpa)
{
	if (gpa < d->base || gpa - d->base >= d->wlen)
		return 0;
	uint64_t off = gpa - d->base;
	pthread_mutex_lock(&d->lock);
	size_t i;
	for (;;) {
		i = find_containing(d, off);
		if (i == d->n) {
			pthread_mutex_unlock(&d->lock);
			return 0;
		}
		if (d->slots[i].state != SLOT_BUSY)
			break;
		pthread_cond_wait(&d->idle, &d->lock);
	}
	if (d->slots[i].state == SLOT_MAPPED) {
		pthread_mutex_unlock(&d->lock);
		return 1;
	}
	struct slot s = d->slots[i];
	if (!d->open_node) {
		pthread_mutex_unlock(&d->lock);
		return -ENODEV;
	}
	d->slots[i].state = SLOT_BUSY;
	int (*open_node)(void *, uint64_t, int, int *) = d->open_node;
	void *octx = d->open_ctx;
	pthread_mutex_unlock(&d->lock);

	int fd = -1;
	int r = open_node(octx, s.nodeid, (s.prot & PROT_WRITE) != 0, &fd);
	if (r == 0) {
		r = d->mapper.map(d->mapper.ctx, s.moffset, fd, s.foffset, s.len, s.prot);
		close(fd);
	}

	pthread_mutex_lock(&d->lock);
	i = lower_bound(d, s.moffset);
	d->slots[i].state = r == 0 ? SLOT_MAPPED : SLOT_UNMAPPED;
	pthread_cond_broadcast(&d->idle);
	pthread_mutex_unlock(&d->lock);
	if (r > 0)
		r = -EIO;
	return r < 0 ? r : 1;
}

uint64_t fuse_dax_mapped_bytes(struct fuse_dax *d)
{
	pthread_mutex_lock(&d->lock);
	uint64_t b = d->bytes;
	pthread_mutex_unlock(&d->lock);
	return b;
}

size_t fuse_dax_slot_count(struct fuse_dax *d)
{
	pthread_mutex_lock(&d->lock);
	size_t n = d->n;
	pthread_mutex_unlock(&d->lock);
	return n;
}

int fuse_dax_snapshot(struct fuse_dax *d, void **blob, size_t *len, struct sm_error *err)
{
	*blob = NULL;
	*len = 0;
	pthread_mutex_lock(&d->lock);
	wait_idle(d, 0, d->wlen);
	size_t sz = sizeof(struct daxs_header) + d->n * sizeof(struct daxs_entry);
	uint8_t *p = malloc(sz);
	if (!p) {
		pthread_mutex_unlock(&d->lock);
		return sm_error_errno(err, ENOMEM, "dax snapshot");
	}
	memcpy(p, "DAXS", 4);
	fuse_put_le32(p + offsetof(struct daxs_header, version), DAXS_VERSION);
	fuse_put_le64(p + offsetof(struct daxs_header, base_gpa), d->base);
	fuse_put_le64(p + offsetof(struct daxs_header, window_len), d->wlen);
	fuse_put_le64(p + offsetof(struct daxs_header, cap), d->cap);
	fuse_put_le64(p + offsetof(struct daxs_header, bytes), d->bytes);
	fuse_put_le32(p + offsetof(struct daxs_header, count), (uint32_t)d->n);
	fuse_put_le32(p + offsetof(struct daxs_header, reserved), 0);
	uint8_t *e = p + sizeof(struct daxs_header);
	for (size_t i = 0; i < d->n; i++, e += sizeof(struct daxs_entry)) {
		const struct slot *s = &d->slots[i];
		fuse_put_le64(e + offsetof(struct daxs_entry, moffset), s->moffset);
		fuse_put_le64(e + offsetof(struct daxs_entry, len), s->len);
		fuse_put_le64(e + offsetof(struct daxs_entry, nodeid), s->nodeid);
		fuse_put_le64(e + offsetof(struct daxs_entry, foffset), s->foffset);
		fuse_put_le32(e + offsetof(struct daxs_entry, prot), (uint32_t)s->prot);
		fuse_put_le32(e + offsetof(struct daxs_entry, reserved), 0);
	}
	pthread_mutex_unlock(&d->lock);
	*blob = p;
	*len = sz;
	return 0;
}

int fuse_dax_restore(struct fuse_dax *d, const void *blob, size_t len, struct sm_error *err)
{
	const uint8_t *p = blob;
	if (!p || len < sizeof(struct daxs_header))
		return sm_error_set(err, EINVAL, "dax restore: blob truncated (%zu bytes)", len);
	if (memcmp(p, "DAXS", 4) != 0)
		return sm_error_set(err, EINVAL, "dax restore: bad magic");
	uint32_t ver = fuse_get_le32(p + offsetof(struct daxs_header, version));
	if (ver != DAXS_VERSION)
		return sm_error_set(err, EINVAL, "dax restore: unsupported version %u", ver);
	uint64_t base = fuse_get_le64(p + offsetof(struct daxs_header, base_gpa));
	uint64_t wlen = fuse_get_le64(p + offsetof(struct daxs_header, window_len));
	uint64_t bytes = fuse_get_le64(p + offsetof(struct daxs_header, bytes));
	uint32_t count = fuse_get_le32(p + offsetof(struct daxs_header, count));
	if (fuse_get_le32(p + offsetof(struct daxs_header, reserved)) != 0)
		return sm_error_set(err, EINVAL, "dax restore: reserved header field not zero");
	if (base != d->base || wlen != d->wlen)
		return sm_error_set(err, EINVAL,
				    "dax restore: window 0x%" PRIx64 "+0x%" PRIx64
				    " differs from this VM's 0x%" PRIx64 "+0x%" PRIx64,
				    base, wlen, d->base, d->wlen);
	uint64_t need;
	if (count > DAX_MAX_SLOTS ||
	    sm_mul_overflow((uint64_t)count, sizeof(struct daxs_entry), &need) ||
	    sm_add_overflow(need, sizeof(struct daxs_header), &need) || need != len)
		return sm_error_set(err, EINVAL,
				    "dax restore: %u entries do not match a blob of %zu bytes",
				    count, len);
	struct slot *slots = calloc(count ? count : 1, sizeof(*slots));
	if (!slots)
		return sm_error_errno(err, ENOMEM, "dax restore");
	uint64_t sum = 0;
	const uint8_t *e = p + sizeof(struct daxs_header);
	for (uint32_t i = 0; i < count; i++, e += sizeof(struct daxs_entry)) {
		struct slot *s = &slots[i];
		s->moffset = fuse_get_le64(e + offsetof(struct daxs_entry, moffset));
		s->len = fuse_get_le64(e + offsetof(struct daxs_entry, len));
		s->nodeid = fuse_get_le64(e + offsetof(struct daxs_entry, nodeid));
		s->foffset = fuse_get_le64(e + offsetof(struct daxs_entry, foffset));
		uint32_t prot = fuse_get_le32(e + offsetof(struct daxs_entry, prot));
		uint32_t rsv = fuse_get_le32(e + offsetof(struct daxs_entry, reserved));
		uint64_t fend;
		const char *why = NULL;
		if (s->len == 0 || !aligned(s->moffset) || !aligned(s->len) || !aligned(s->foffset))
			why = "misaligned or empty";
		else if (!sm_range_ok(s->moffset, s->len, d->wlen))
			why = "outside the window";
		else if (sm_add_overflow(s->foffset, s->len, &fend) || fend > INT64_MAX)
			why = "file range wraps";
		else if (prot != PROT_READ && prot != (PROT_READ | PROT_WRITE))
			why = "bad protection";
		else if (rsv != 0 || s->nodeid == 0)
			why = "bad node or reserved field";
		else if (i > 0 && slots[i - 1].moffset + slots[i - 1].len > s->moffset)
			why = "overlapping or out of order";
		if (why) {
			free(slots);
			return sm_error_set(err, EINVAL, "dax restore: entry %u: %s", i, why);
		}
		s->prot = (int)prot;
		s->state = SLOT_UNMAPPED;
		sum += s->len; /* cannot wrap: entries are disjoint inside the window */
	}
	if (sum != bytes || sum > d->cap) {
		free(slots);
		return sm_error_set(err, EINVAL,
				    "dax restore: %" PRIu64 " mapped bytes (header says %" PRIu64
				    ") do not fit the cap %" PRIu64,
				    sum, bytes, d->cap);
	}
	pthread_mutex_lock(&d->lock);
	if (d->n != 0) {
		pthread_mutex_unlock(&d->lock);
		free(slots);
		return sm_error_set(err, EBUSY, "dax restore: session already has slots");
	}
	free(d->slots);
	d->slots = slots;
	d->n = count;
	d->alloc = count ? count : 1;
	d->bytes = sum;
	pthread_mutex_unlock(&d->lock);
	return 0;
}
