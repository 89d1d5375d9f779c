/* SPDX-License-Identifier: Apache-2.0 */
/* Memory section reader: validated trailer, bitmap and frame index kept in
 * memory; single pages served by decompressing only their frame; parallel
 * unpack into a sparse file. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "internal.h"

#define RANK_WORDS 8 /* bitmap words per rank block (512 pages) */

struct frame {
	uint64_t off; /* absolute file offset */
	uint32_t len, crc;
};

#define READAHEAD (256u << 10) /* compressed bytes read at once when sequential */

struct decoder {
	struct decoder *next;
	ZSTD_DCtx *dctx;
	unsigned char *cbuf, *ubuf;
	uint64_t cached; /* frame in ubuf, UINT64_MAX when none */
	uint64_t last;	 /* last frame decoded, to detect sequential use */
	unsigned char *rbuf;
	uint64_t rb_start, rb_len; /* file range held in rbuf */
};

struct fmt_mem_reader {
	struct fmt_mem_info info;
	uint64_t pages;
	uint64_t *bitmap; /* host order */
	size_t words;
	uint64_t *rank; /* set bits before each block of RANK_WORDS words */
	struct frame *frames;
	uint64_t data_end; /* file offset just past the last frame */
	size_t cbuf_cap, frame_bytes;
	pthread_mutex_t dlock;
	struct decoder *free_dec;
};

static void decoder_free(struct decoder *d)
{
	if (!d)
		return;
	ZSTD_freeDCtx(d->dctx);
	free(d->rbuf);
	free(d->cbuf);
	free(d->ubuf);
	free(d);
}

void fmt_mem_reader_free(struct fmt_mem_reader *m)
{
	if (!m)
		return;
	while (m->free_dec) {
		struct decoder *d = m->free_dec;
		m->free_dec = d->next;
		decoder_free(d);
	}
	pthread_mutex_destroy(&m->dlock);
	free(m->bitmap);
	free(m->rank);
	free(m->frames);
	free(m);
}

static int all_zero_bytes(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return 0;
	return 1;
}

static int bad(struct sm_error *err, const char *what)
{
	return sm_error_set(err, EBADMSG, "memory section: %s", what);
}

/* Do [a, a+al) and [b, b+bl) overlap? (both already known in range) */
static int overlap(uint64_t a, uint64_t al, uint64_t b, uint64_t bl)
{
	return al && bl && a < b + bl && b < a + al;
}

static int mem_load(struct fmt_reader *r, const struct fmt_section_info *s,
		    struct fmt_mem_reader **out, struct sm_error *err)
{
	struct fmt_disk_mem t;
	if (s->length < sizeof(t))
		return bad(err, "shorter than its trailer");
	uint64_t body = s->length - sizeof(t);
	int ret = fmt_pread_full(r->fd, &t, sizeof(t), s->offset + body, "memory trailer", err);
	if (ret < 0)
		return ret;
	if (memcmp(t.magic, FMT_MEM_MAGIC, 8) != 0)
		return bad(err, "bad trailer magic");
	if (fmt_crc32c(0, &t, offsetof(struct fmt_disk_mem, trailer_crc)) !=
	    fmt_get32(&t.trailer_crc))
		return bad(err, "trailer checksum mismatch");
	if (fmt_get32(&t.version) != FMT_MEM_VERSION)
		return sm_error_set(err, ENOTSUP, "memory section version %u is not supported",
				    fmt_get32(&t.version));
	if (fmt_get32(&t.page_size) != FMT_PAGE_SIZE)
		return sm_error_set(err, ENOTSUP, "memory page size %u is not supported",
				    fmt_get32(&t.page_size));
	if (fmt_get32(&t.flags) != 0 || !all_zero_bytes(t.reserved, sizeof(t.reserved)))
		return bad(err, "unknown flags or non-zero reserved bytes");

	struct fmt_mem_info in = {
		.mem_size = fmt_get64(&t.mem_size),
		.page_size = FMT_PAGE_SIZE,
		.frame_pages = fmt_get32(&t.frame_pages),
		.nonzero_pages = fmt_get64(&t.nonzero_pages),
		.frame_count = fmt_get64(&t.frame_count),
		.data_length = fmt_get64(&t.data_length),
		.section_length = s->length,
		.level = fmt_get32(&t.level),
	};
	uint64_t boff = fmt_get64(&t.bitmap_offset), blen = fmt_get64(&t.bitmap_length);
	uint64_t ioff = fmt_get64(&t.index_offset), ilen = fmt_get64(&t.index_length);
	uint64_t doff = fmt_get64(&t.data_offset);
	if (in.mem_size % FMT_PAGE_SIZE || in.mem_size != s->raw_length)
		return bad(err, "memory size is not page-aligned or disagrees with the table");
	if (in.frame_pages == 0 || in.frame_pages > FMT_MAX_FRAME / FMT_PAGE_SIZE)
		return bad(err, "bad frame size");
	uint64_t pages = in.mem_size / FMT_PAGE_SIZE;
	uint64_t words = (pages + 63) / 64;
	if (blen != words * 8)
		return bad(err, "bitmap length does not match memory size");
	if (in.nonzero_pages > pages)
		return bad(err, "more stored pages than memory pages");
	if (in.frame_count != (in.nonzero_pages + in.frame_pages - 1) / in.frame_pages)
		return bad(err, "frame count does not match stored pages");
	if (in.frame_count > UINT64_MAX / sizeof(struct fmt_disk_frame) ||
	    ilen != in.frame_count * sizeof(struct fmt_disk_frame))
		return bad(err, "index length does not match frame count");
	if (!sm_range_ok(boff, blen, body) || !sm_range_ok(ioff, ilen, body) ||
	    !sm_range_ok(doff, in.data_length, body))
		return bad(err, "bitmap, index or data outside the section");
	if (overlap(boff, blen, ioff, ilen) || overlap(boff, blen, doff, in.data_length) ||
	    overlap(ioff, ilen, doff, in.data_length))
		return bad(err, "bitmap, index and data overlap");

	struct fmt_mem_reader *m = calloc(1, sizeof(*m));
	if (!m)
		return sm_error_errno(err, ENOMEM, "cannot allocate memory reader");
	pthread_mutex_init(&m->dlock, NULL);
	m->info = in;
	m->pages = pages;
	m->words = words;
	m->frame_bytes = (size_t)in.frame_pages * FMT_PAGE_SIZE;
	m->cbuf_cap = ZSTD_compressBound(m->frame_bytes);
	size_t nblocks = words / RANK_WORDS + 1;
	m->bitmap = malloc(words ? words * 8 : 8);
	m->rank = malloc(nblocks * sizeof(uint64_t));
	struct fmt_disk_frame *raw = malloc(ilen ? ilen : 1);
	m->frames = malloc(in.frame_count ? in.frame_count * sizeof(struct frame) : 1);
	if (!m->bitmap || !m->rank || !raw || !m->frames) {
		ret = sm_error_errno(err, ENOMEM, "cannot allocate memory index");
		goto fail;
	}
	if ((ret = fmt_pread_full(r->fd, m->bitmap, blen, s->offset + boff, "memory bitmap", err)) <
		    0 ||
	    (ret = fmt_pread_full(r->fd, raw, ilen, s->offset + ioff, "memory index", err)) < 0)
		goto fail;
	if (fmt_crc32c(0, m->bitmap, blen) != fmt_get32(&t.bitmap_crc)) {
		ret = bad(err, "bitmap checksum mismatch");
		goto fail;
	}
	if (fmt_crc32c(0, raw, ilen) != fmt_get32(&t.index_crc)) {
		ret = bad(err, "index checksum mismatch");
		goto fail;
	}
	uint64_t count = 0;
	for (size_t i = 0; i < words; i++) {
		if (i % RANK_WORDS == 0)
			m->rank[i / RANK_WORDS] = count;
		m->bitmap[i] = fmt_get64(&m->bitmap[i]);
		count += (uint64_t)__builtin_popcountll(m->bitmap[i]);
	}
	m->rank[words / RANK_WORDS] = words % RANK_WORDS ? m->rank[words / RANK_WORDS] : count;
	if (pages % 64 && (m->bitmap[words - 1] >> (pages % 64))) {
		ret = bad(err, "bitmap has bits beyond the end of memory");
		goto fail;
	}
	if (count != in.nonzero_pages) {
		ret = bad(err, "bitmap does not match the stored page count");
		goto fail;
	}
	uint64_t expect = 0;
	for (uint64_t k = 0; k < in.frame_count; k++) {
		uint64_t off = fmt_get64(&raw[k].offset);
		uint32_t len = fmt_get32(&raw[k].length);
		if (off != expect || len == 0 || len > m->cbuf_cap ||
		    !sm_range_ok(off, len, in.data_length)) {
			ret = bad(err, "frame index entries are not contiguous and in range");
			goto fail;
		}
		expect = off + len;
		m->frames[k] = (struct frame){s->offset + doff + off, len, fmt_get32(&raw[k].crc)};
	}
	if (expect != in.data_length) {
		ret = bad(err, "frames do not fill the data area");
		goto fail;
	}
	m->data_end = s->offset + doff + in.data_length;
	free(raw);
	*out = m;
	return 0;
fail:
	free(raw);
	fmt_mem_reader_free(m);
	return ret;
}

static int mem_get(struct fmt_reader *r, struct fmt_mem_reader **out, struct sm_error *err)
{
	if (r->mem_index < 0)
		return sm_error_set(err, ENOENT, "snapshot has no memory section");
	pthread_mutex_lock(&r->mem_lock);
	int ret = 0;
	if (!r->mem)
		ret = mem_load(r, &r->secs[r->mem_index], &r->mem, err);
	*out = r->mem;
	pthread_mutex_unlock(&r->mem_lock);
	return ret;
}

int fmt_reader_mem_info(struct fmt_reader *r, struct fmt_mem_info *info, struct sm_error *err)
{
	struct fmt_mem_reader *m = NULL;
	int ret = mem_get(r, &m, err);
	if (ret < 0)
		return ret;
	*info = m->info;
	return 0;
}

static int page_present(const struct fmt_mem_reader *m, uint64_t page)
{
	return (m->bitmap[page / 64] >> (page % 64)) & 1;
}

int fmt_reader_mem_present(struct fmt_reader *r, uint64_t gpa, struct sm_error *err)
{
	struct fmt_mem_reader *m = NULL;
	int ret = mem_get(r, &m, err);
	if (ret < 0)
		return ret;
	uint64_t page = gpa / FMT_PAGE_SIZE;
	return page < m->pages ? page_present(m, page) : 0;
}

/* Number of stored pages before PAGE. */
static uint64_t page_rank(const struct fmt_mem_reader *m, uint64_t page)
{
	size_t w = page / 64;
	uint64_t n = m->rank[w / RANK_WORDS];
	for (size_t i = w / RANK_WORDS * RANK_WORDS; i < w; i++)
		n += (uint64_t)__builtin_popcountll(m->bitmap[i]);
	uint64_t bit = page % 64;
	if (bit)
		n += (uint64_t)__builtin_popcountll(m->bitmap[w] & ((1ull << bit) - 1));
	return n;
}

static struct decoder *decoder_get(struct fmt_mem_reader *m, struct sm_error *err)
{
	pthread_mutex_lock(&m->dlock);
	struct decoder *d = m->free_dec;
	if (d)
		m->free_dec = d->next;
	pthread_mutex_unlock(&m->dlock);
	if (d)
		return d;
	d = calloc(1, sizeof(*d));
	if (d) {
		d->dctx = ZSTD_createDCtx();
		d->cbuf = malloc(m->cbuf_cap);
		d->ubuf = malloc(m->frame_bytes);
		d->rbuf = malloc(READAHEAD);
		d->cached = UINT64_MAX;
		d->last = UINT64_MAX;
	}
	if (!d || !d->dctx || !d->cbuf || !d->ubuf || !d->rbuf) {
		decoder_free(d);
		sm_error_errno(err, ENOMEM, "cannot allocate a zstd decoder");
		return NULL;
	}
	return d;
}

static void decoder_put(struct fmt_mem_reader *m, struct decoder *d)
{
	pthread_mutex_lock(&m->dlock);
	d->next = m->free_dec;
	m->free_dec = d;
	pthread_mutex_unlock(&m->dlock);
}

/* Pages stored in frame K. */
static size_t frame_npages(const struct fmt_mem_reader *m, uint64_t k)
{
	uint64_t left = m->info.nonzero_pages - k * m->info.frame_pages;
	return left < m->info.frame_pages ? (size_t)left : m->info.frame_pages;
}

/* Decompress frame K into d->ubuf (checked: CRC, one frame, exact size). */
static int decode_frame(struct fmt_reader *r, struct fmt_mem_reader *m, struct decoder *d,
			uint64_t k, struct sm_error *err)
{
	if (d->cached == k)
		return 0;
	const struct frame *f = &m->frames[k];
	d->cached = UINT64_MAX;
	const unsigned char *src;
	int ret = 0;
	if (f->off >= d->rb_start && f->off - d->rb_start <= d->rb_len &&
	    f->len <= d->rb_len - (f->off - d->rb_start)) {
		src = d->rbuf + (f->off - d->rb_start);
	} else if (k == d->last + 1 && f->len <= READAHEAD) {
		/* sequential: read ahead the following frames in one go */
		uint64_t n = m->data_end - f->off < READAHEAD ? m->data_end - f->off : READAHEAD;
		d->rb_len = 0;
		ret = fmt_pread_full(r->fd, d->rbuf, n, f->off, "memory frame", err);
		if (ret < 0)
			return ret;
		d->rb_start = f->off;
		d->rb_len = n;
		src = d->rbuf;
	} else {
		ret = fmt_pread_full(r->fd, d->cbuf, f->len, f->off, "memory frame", err);
		if (ret < 0)
			return ret;
		src = d->cbuf;
	}
	d->last = k;
	if (fmt_crc32c(0, src, f->len) != f->crc)
		return sm_error_set(err, EBADMSG, "memory frame %llu: checksum mismatch",
				    (unsigned long long)k);
	size_t want = frame_npages(m, k) * FMT_PAGE_SIZE;
	if (ZSTD_getFrameContentSize(src, f->len) != want ||
	    ZSTD_findFrameCompressedSize(src, f->len) != f->len)
		return sm_error_set(err, EBADMSG, "memory frame %llu: bad zstd frame header",
				    (unsigned long long)k);
	size_t got = ZSTD_decompressDCtx(d->dctx, d->ubuf, want, src, f->len);
	if (ZSTD_isError(got) || got != want)
		return sm_error_set(err, EBADMSG, "memory frame %llu: cannot decompress: %s",
				    (unsigned long long)k,
				    ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short output");
	d->cached = k;
	return 0;
}

int fmt_reader_mem_page(struct fmt_reader *r, uint64_t gpa, void *page, struct sm_error *err)
{
	struct fmt_mem_reader *m = NULL;
	int ret = mem_get(r, &m, err);
	if (ret < 0)
		return ret;
	uint64_t p = gpa / FMT_PAGE_SIZE;
	if (p >= m->pages)
		return sm_error_set(err, ERANGE, "address 0x%llx beyond guest memory (%llu bytes)",
				    (unsigned long long)gpa, (unsigned long long)m->info.mem_size);
	if (!page_present(m, p)) {
		memset(page, 0, FMT_PAGE_SIZE);
		return 0;
	}
	uint64_t ord = page_rank(m, p);
	uint64_t k = ord / m->info.frame_pages;
	struct decoder *d = decoder_get(m, err);
	if (!d)
		return -ENOMEM;
	ret = decode_frame(r, m, d, k, err);
	if (ret == 0)
		memcpy(page, d->ubuf + (ord % m->info.frame_pages) * FMT_PAGE_SIZE, FMT_PAGE_SIZE);
	decoder_put(m, d);
	return ret;
}

/* ---- unpack and verify -------------------------------------------------- */

struct unpack_job {
	struct fmt_reader *r;
	struct fmt_mem_reader *m;
	int fd;		      /* -1: verify only */
	uint64_t *first_page; /* first page of each frame */
	pthread_mutex_t lock;
	int ret;
	struct sm_error err;
};

#define UNPACK_GROUP 32 /* consecutive frames per work item (read-ahead friendly) */

static int unpack_frame(struct unpack_job *j, struct decoder *d, uint64_t k, struct sm_error *e)
{
	int ret = decode_frame(j->r, j->m, d, k, e);
	size_t n = frame_npages(j->m, k);
	uint64_t p = j->first_page[k];
	for (size_t i = 0; ret == 0 && j->fd >= 0 && i < n;) {
		while (!page_present(j->m, p))
			p++;
		size_t run = 1; /* coalesce consecutive stored pages */
		while (i + run < n && page_present(j->m, p + run))
			run++;
		ret = fmt_pwrite_full(j->fd, d->ubuf + i * FMT_PAGE_SIZE, run * FMT_PAGE_SIZE,
				      p * FMT_PAGE_SIZE, e);
		i += run;
		p += run;
	}
	return ret;
}

static void unpack_one(void *ctx, uint64_t item, unsigned worker)
{
	(void)worker;
	struct unpack_job *j = ctx;
	struct sm_error e = {0};
	int ret;
	pthread_mutex_lock(&j->lock);
	ret = j->ret;
	pthread_mutex_unlock(&j->lock);
	if (ret < 0)
		return;
	struct decoder *d = decoder_get(j->m, &e);
	if (!d) {
		ret = -ENOMEM;
		goto out;
	}
	uint64_t end = (item + 1) * UNPACK_GROUP;
	if (end > j->m->info.frame_count)
		end = j->m->info.frame_count;
	for (uint64_t k = item * UNPACK_GROUP; ret == 0 && k < end; k++)
		ret = unpack_frame(j, d, k, &e);
	decoder_put(j->m, d);
out:
	if (ret < 0) {
		pthread_mutex_lock(&j->lock);
		if (j->ret == 0) {
			j->ret = ret;
			j->err = e;
		}
		pthread_mutex_unlock(&j->lock);
	}
}

static int run_frames(struct fmt_reader *r, struct fmt_mem_reader *m, int fd, unsigned threads,
		      struct sm_error *err)
{
	struct unpack_job j = {.r = r, .m = m, .fd = fd};
	pthread_mutex_init(&j.lock, NULL);
	uint64_t fc = m->info.frame_count;
	int ret = 0;
	j.first_page = malloc(fc ? fc * sizeof(uint64_t) : 1);
	if (!j.first_page) {
		ret = sm_error_errno(err, ENOMEM, "cannot allocate");
		goto out;
	}
	uint64_t ord = 0;
	for (size_t w = 0; w < m->words; w++) {
		uint64_t bits = m->bitmap[w];
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			if (ord % m->info.frame_pages == 0)
				j.first_page[ord / m->info.frame_pages] = w * 64 + b;
			ord++;
		}
	}
	struct fmt_pool *pool;
	if ((ret = fmt_pool_create(&pool, threads ? threads : 1, err)) < 0)
		goto out;
	fmt_pool_run(pool, (fc + UNPACK_GROUP - 1) / UNPACK_GROUP, unpack_one, &j);
	fmt_pool_free(pool);
	if (ret == 0 && j.ret < 0) {
		ret = j.ret;
		if (err)
			*err = j.err;
	}
out:
	free(j.first_page);
	pthread_mutex_destroy(&j.lock);
	return ret;
}

int fmt_reader_mem_unpack(struct fmt_reader *r, int fd, unsigned threads, struct sm_error *err)
{
	struct fmt_mem_reader *m = NULL;
	int ret = mem_get(r, &m, err);
	if (ret < 0)
		return ret;
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)m->info.mem_size) < 0)
		return sm_error_errno(err, errno, "cannot size the output to %llu bytes",
				      (unsigned long long)m->info.mem_size);
	return run_frames(r, m, fd, threads, err);
}

int fmt_mem_verify(struct fmt_reader *r, const struct fmt_section_info *s, struct sm_error *err)
{
	(void)s;
	struct fmt_mem_reader *m = NULL;
	int ret = mem_get(r, &m, err);
	if (ret < 0)
		return ret;
	return run_frames(r, m, -1, 1, err);
}
