/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshot writer: sections appended at 4 KiB-aligned offsets of a temporary
 * file, memory streamed through parallel zstd, then table + header, fsync,
 * rename, fsync of the directory. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "internal.h"

struct mem_writer {
	uint64_t mem_size, pages, next_page;
	uint64_t *bitmap;
	size_t bitmap_words;
	uint64_t nonzero;
	uint32_t frame_pages;
	size_t frame_bytes;
	/* the batch being filled: batch_frames frames of frame_pages pages */
	unsigned batch_frames;
	unsigned char *ubuf;
	size_t fill_pages;
	unsigned char **cbuf;
	size_t cbuf_cap;
	size_t *clen;
	ZSTD_CCtx **cctx;
	unsigned nctx;
	struct fmt_pool *pool;
	int level;
	/* output */
	struct fmt_disk_frame *index;
	uint64_t frames, index_cap;
	uint64_t sec_start, data_len;
	uint32_t crc;
};

struct fmt_writer {
	int fd;
	char *path, *tmp, *dir;
	int committed, failed;
	uint64_t pos; /* end of what has been written */
	struct fmt_disk_section *table;
	unsigned count, cap;
	int have_meta, have_mem;
	struct fmt_writer_opts opts;
	ZSTD_CCtx *cctx;
	struct mem_writer *mem;
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static int writer_usable(struct fmt_writer *w, struct sm_error *err)
{
	if (w->committed)
		return sm_error_set(err, EINVAL, "snapshot writer already committed");
	if (w->failed)
		return sm_error_set(err, EIO, "snapshot writer failed earlier; start again");
	return 0;
}

/* Any error after this point leaves the writer unusable. */
static int fail(struct fmt_writer *w, int r)
{
	w->failed = 1;
	return r;
}

int fmt_writer_create(struct fmt_writer **out, const char *path, const struct fmt_writer_opts *opts,
		      struct sm_error *err)
{
	struct fmt_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return sm_error_errno(err, ENOMEM, "cannot allocate snapshot writer");
	w->fd = -1;
	if (opts)
		w->opts = *opts;
	if (!w->opts.threads)
		w->opts.threads = 1;
	if (w->opts.threads > 64)
		w->opts.threads = 64;
	if (!w->opts.level)
		w->opts.level = 3;
	if (!w->opts.frame_size)
		w->opts.frame_size = FMT_DEFAULT_FRAME;
	if (w->opts.frame_size % FMT_PAGE_SIZE || w->opts.frame_size > FMT_MAX_FRAME) {
		uint32_t fs = w->opts.frame_size;
		fmt_writer_free(w);
		return sm_error_set(err, EINVAL,
				    "frame size %u is not a multiple of 4096 up to 64 MiB", fs);
	}
	if (w->opts.level < ZSTD_minCLevel() || w->opts.level > ZSTD_maxCLevel()) {
		int lvl = w->opts.level;
		fmt_writer_free(w);
		return sm_error_set(err, EINVAL, "zstd level %d out of range", lvl);
	}
	w->path = strdup(path);
	char *pcopy = strdup(path), *bcopy = strdup(path);
	if (!w->path || !pcopy || !bcopy) {
		free(pcopy);
		free(bcopy);
		fmt_writer_free(w);
		return sm_error_errno(err, ENOMEM, "cannot allocate snapshot writer");
	}
	w->dir = strdup(dirname(pcopy));
	const char *base = basename(bcopy);
	int n = w->dir ? asprintf(&w->tmp, "%s/.%s.tmp-XXXXXX", w->dir, base) : -1;
	free(pcopy);
	free(bcopy);
	if (n < 0) {
		w->tmp = NULL;
		fmt_writer_free(w);
		return sm_error_errno(err, ENOMEM, "cannot allocate snapshot writer");
	}
	w->fd = mkostemp(w->tmp, O_CLOEXEC);
	if (w->fd < 0) {
		int e = errno;
		free(w->tmp);
		w->tmp = NULL;
		int r = sm_error_errno(err, e, "cannot create a temporary file in %s", w->dir);
		fmt_writer_free(w);
		return r;
	}
	w->pos = sizeof(struct fmt_disk_header);
	*out = w;
	return 0;
}

static int table_append(struct fmt_writer *w, uint32_t type, uint32_t flags, uint32_t instance,
			const char *name, uint64_t off, uint64_t len, uint64_t raw_len,
			uint32_t crc, struct sm_error *err)
{
	if (w->count >= FMT_MAX_SECTIONS)
		return sm_error_set(err, E2BIG, "too many sections (at most %u)", FMT_MAX_SECTIONS);
	if (w->count == w->cap) {
		unsigned ncap = w->cap ? w->cap * 2 : 16;
		void *t = realloc(w->table, ncap * sizeof(*w->table));
		if (!t)
			return sm_error_errno(err, ENOMEM, "cannot grow section table");
		w->table = t;
		w->cap = ncap;
	}
	struct fmt_disk_section *e = &w->table[w->count++];
	memset(e, 0, sizeof(*e));
	fmt_put32(&e->type, type);
	fmt_put32(&e->flags, flags);
	fmt_put64(&e->offset, off);
	fmt_put64(&e->length, len);
	fmt_put64(&e->raw_length, raw_len);
	fmt_put32(&e->crc, crc);
	fmt_put32(&e->instance, instance);
	if (name)
		memcpy(e->name, name, strnlen(name, sizeof(e->name)));
	return 0;
}

static int add_raw(struct fmt_writer *w, uint32_t type, uint32_t flags, uint32_t instance,
		   const char *name, const void *data, size_t len, struct sm_error *err)
{
	void *cbuf = NULL;
	const void *store = data;
	size_t slen = len;
	if (flags & FMT_SECF_ZSTD) {
		if (len > FMT_MAX_RAW)
			return sm_error_set(err, E2BIG, "section larger than %llu bytes",
					    (unsigned long long)FMT_MAX_RAW);
		if (!w->cctx && !(w->cctx = ZSTD_createCCtx()))
			return sm_error_errno(err, ENOMEM, "cannot create zstd context");
		size_t cap = ZSTD_compressBound(len);
		cbuf = malloc(cap ? cap : 1);
		if (!cbuf)
			return sm_error_errno(err, ENOMEM, "cannot allocate %zu bytes", cap);
		size_t c = ZSTD_compressCCtx(w->cctx, cbuf, cap, data, len, w->opts.level);
		if (ZSTD_isError(c)) {
			free(cbuf);
			return sm_error_set(err, EIO, "zstd: %s", ZSTD_getErrorName(c));
		}
		store = cbuf;
		slen = c;
	}
	uint64_t off = align_up(w->pos, FMT_ALIGN);
	int r = fmt_pwrite_full(w->fd, store, slen, off, err);
	uint32_t crc = fmt_crc32c(0, store, slen);
	free(cbuf);
	if (r < 0)
		return fail(w, r);
	r = table_append(w, type, flags, instance, name, off, slen, len, crc, err);
	if (r < 0)
		return fail(w, r);
	w->pos = off + slen;
	return 0;
}

int fmt_writer_add(struct fmt_writer *w, uint32_t type, uint32_t flags, uint32_t instance,
		   const char *name, const void *data, size_t len, struct sm_error *err)
{
	int r = writer_usable(w, err);
	if (r < 0)
		return r;
	if (w->mem)
		return sm_error_set(err, EINVAL, "a memory section is being written");
	if (type == FMT_SEC_META || type == FMT_SEC_MEMORY || type == 0)
		return sm_error_set(err, EINVAL, "section type %u cannot be added as opaque bytes",
				    type);
	if (flags & ~(uint32_t)FMT_KNOWN_SECFLAGS)
		return sm_error_set(err, EINVAL, "unknown section flags 0x%x", flags);
	if (name && strlen(name) > 16)
		return sm_error_set(err, EINVAL, "section name '%s' longer than 16 bytes", name);
	if (!data && len)
		return sm_error_set(err, EINVAL, "section data missing");
	return add_raw(w, type, flags, instance, name, data ? data : "", len, err);
}

int fmt_writer_add_meta(struct fmt_writer *w, const char *json, struct sm_error *err)
{
	int r = writer_usable(w, err);
	if (r < 0)
		return r;
	if (w->mem)
		return sm_error_set(err, EINVAL, "a memory section is being written");
	if (w->have_meta)
		return sm_error_set(err, EEXIST, "metadata already written");
	size_t len = strlen(json);
	if (len > FMT_MAX_META)
		return sm_error_set(err, E2BIG, "metadata larger than %u bytes", FMT_MAX_META);
	json_error_t jerr;
	json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return sm_error_set(err, EINVAL, "metadata is not valid JSON: line %d: %s",
				    jerr.line, jerr.text);
	int is_obj = json_is_object(j);
	json_decref(j);
	if (!is_obj)
		return sm_error_set(err, EINVAL, "metadata must be a JSON object");
	r = add_raw(w, FMT_SEC_META, 0, 0, NULL, json, len, err);
	if (r == 0)
		w->have_meta = 1;
	return r;
}

/* ---- memory ------------------------------------------------------------- */

static void mem_writer_free(struct mem_writer *m)
{
	if (!m)
		return;
	fmt_pool_free(m->pool);
	if (m->cctx)
		for (unsigned i = 0; i < m->nctx; i++)
			ZSTD_freeCCtx(m->cctx[i]);
	free(m->cctx);
	if (m->cbuf)
		for (unsigned i = 0; i < m->batch_frames; i++)
			free(m->cbuf[i]);
	free(m->cbuf);
	free(m->clen);
	free(m->ubuf);
	free(m->bitmap);
	free(m->index);
	free(m);
}

int fmt_writer_mem_begin(struct fmt_writer *w, uint64_t mem_size, struct sm_error *err)
{
	int r = writer_usable(w, err);
	if (r < 0)
		return r;
	if (w->mem || w->have_mem)
		return sm_error_set(err, EEXIST, "memory section already written");
	if (mem_size % FMT_PAGE_SIZE)
		return sm_error_set(err, EINVAL, "memory size %llu is not a multiple of 4096",
				    (unsigned long long)mem_size);
	if (mem_size > (1ull << 52))
		return sm_error_set(err, EINVAL, "memory size %llu too large",
				    (unsigned long long)mem_size);
	struct mem_writer *m = calloc(1, sizeof(*m));
	if (!m)
		return sm_error_errno(err, ENOMEM, "cannot allocate memory writer");
	m->mem_size = mem_size;
	m->pages = mem_size / FMT_PAGE_SIZE;
	m->bitmap_words = (m->pages + 63) / 64;
	m->frame_pages = w->opts.frame_size / FMT_PAGE_SIZE;
	m->frame_bytes = w->opts.frame_size;
	m->level = w->opts.level;
	m->nctx = w->opts.threads;
	/* Enough frames per batch to keep every thread busy, and about 4 MiB
	 * of input so that small frames are not flushed one by one. */
	unsigned bf = w->opts.threads * 2;
	while ((size_t)bf * m->frame_bytes < (4u << 20) && bf < 256)
		bf *= 2;
	m->batch_frames = bf;
	m->cbuf_cap = ZSTD_compressBound(m->frame_bytes);
	m->bitmap = calloc(m->bitmap_words ? m->bitmap_words : 1, sizeof(uint64_t));
	m->ubuf = malloc((size_t)m->batch_frames * m->frame_bytes);
	m->cbuf = calloc(m->batch_frames, sizeof(*m->cbuf));
	m->clen = calloc(m->batch_frames, sizeof(*m->clen));
	m->cctx = calloc(m->nctx, sizeof(*m->cctx));
	if (!m->bitmap || !m->ubuf || !m->cbuf || !m->clen || !m->cctx) {
		mem_writer_free(m);
		return sm_error_errno(err, ENOMEM, "cannot allocate memory writer");
	}
	for (unsigned i = 0; i < m->batch_frames; i++)
		if (!(m->cbuf[i] = malloc(m->cbuf_cap))) {
			mem_writer_free(m);
			return sm_error_errno(err, ENOMEM, "cannot allocate memory writer");
		}
	for (unsigned i = 0; i < m->nctx; i++) {
		if (!(m->cctx[i] = ZSTD_createCCtx())) {
			mem_writer_free(m);
			return sm_error_errno(err, ENOMEM, "cannot create zstd context");
		}
		ZSTD_CCtx_setParameter(m->cctx[i], ZSTD_c_compressionLevel, m->level);
		ZSTD_CCtx_setParameter(m->cctx[i], ZSTD_c_contentSizeFlag, 1);
		ZSTD_CCtx_setParameter(m->cctx[i], ZSTD_c_checksumFlag, 0);
	}
	r = fmt_pool_create(&m->pool, w->opts.threads, err);
	if (r < 0) {
		mem_writer_free(m);
		return r;
	}
	m->sec_start = align_up(w->pos, FMT_ALIGN);
	w->mem = m;
	return 0;
}

static void compress_one(void *ctx, uint64_t i, unsigned worker)
{
	struct mem_writer *m = ctx;
	size_t first = (size_t)i * m->frame_pages;
	size_t n = m->fill_pages - first;
	if (n > m->frame_pages)
		n = m->frame_pages;
	size_t c = ZSTD_compress2(m->cctx[worker], m->cbuf[i], m->cbuf_cap,
				  m->ubuf + first * FMT_PAGE_SIZE, n * FMT_PAGE_SIZE);
	m->clen[i] = c; /* errors are checked by the caller */
}

static int flush_batch(struct fmt_writer *w, struct sm_error *err)
{
	struct mem_writer *m = w->mem;
	if (!m->fill_pages)
		return 0;
	unsigned nframes = (unsigned)((m->fill_pages + m->frame_pages - 1) / m->frame_pages);
	fmt_pool_run(m->pool, nframes, compress_one, m);
	if (m->frames + nframes > m->index_cap) {
		uint64_t ncap = m->index_cap ? m->index_cap * 2 : 256;
		while (ncap < m->frames + nframes)
			ncap *= 2;
		void *t = realloc(m->index, ncap * sizeof(*m->index));
		if (!t)
			return sm_error_errno(err, ENOMEM, "cannot grow frame index");
		m->index = t;
		m->index_cap = ncap;
	}
	for (unsigned i = 0; i < nframes; i++) {
		if (ZSTD_isError(m->clen[i]))
			return sm_error_set(err, EIO, "zstd: %s", ZSTD_getErrorName(m->clen[i]));
		if (m->clen[i] > UINT32_MAX)
			return sm_error_set(err, EIO, "compressed frame too large");
		int r = fmt_pwrite_full(w->fd, m->cbuf[i], m->clen[i], m->sec_start + m->data_len,
					err);
		if (r < 0)
			return r;
		uint32_t fcrc = fmt_crc32c(0, m->cbuf[i], m->clen[i]);
		m->crc = fmt_crc32c(m->crc, m->cbuf[i], m->clen[i]);
		struct fmt_disk_frame *e = &m->index[m->frames++];
		fmt_put64(&e->offset, m->data_len);
		fmt_put32(&e->length, (uint32_t)m->clen[i]);
		fmt_put32(&e->crc, fcrc);
		m->data_len += m->clen[i];
	}
	m->fill_pages = 0;
	return 0;
}

static int page_is_zero(const unsigned char *p)
{
	for (unsigned i = 0; i < FMT_PAGE_SIZE; i += 64) {
		uint64_t q[8];
		memcpy(q, p + i, sizeof(q));
		if (q[0] | q[1] | q[2] | q[3] | q[4] | q[5] | q[6] | q[7])
			return 0;
	}
	return 1;
}

static int mem_usable(struct fmt_writer *w, uint64_t len, struct sm_error *err)
{
	int r = writer_usable(w, err);
	if (r < 0)
		return r;
	if (!w->mem)
		return sm_error_set(err, EINVAL, "no memory section is being written");
	if (len % FMT_PAGE_SIZE)
		return sm_error_set(err, EINVAL, "memory length %llu is not a multiple of 4096",
				    (unsigned long long)len);
	if (len / FMT_PAGE_SIZE > w->mem->pages - w->mem->next_page)
		return sm_error_set(err, EINVAL, "memory written beyond the declared size %llu",
				    (unsigned long long)w->mem->mem_size);
	return 0;
}

int fmt_writer_mem_write(struct fmt_writer *w, const void *data, size_t len, struct sm_error *err)
{
	int r = mem_usable(w, len, err);
	if (r < 0)
		return r;
	struct mem_writer *m = w->mem;
	const unsigned char *p = data;
	size_t batch_pages = (size_t)m->batch_frames * m->frame_pages;
	for (size_t i = 0; i < len / FMT_PAGE_SIZE; i++, p += FMT_PAGE_SIZE, m->next_page++) {
		if (page_is_zero(p))
			continue;
		m->bitmap[m->next_page / 64] |= 1ull << (m->next_page % 64);
		m->nonzero++;
		memcpy(m->ubuf + m->fill_pages * FMT_PAGE_SIZE, p, FMT_PAGE_SIZE);
		if (++m->fill_pages == batch_pages && (r = flush_batch(w, err)) < 0)
			return fail(w, r);
	}
	return 0;
}

int fmt_writer_mem_skip(struct fmt_writer *w, uint64_t len, struct sm_error *err)
{
	int r = mem_usable(w, len, err);
	if (r < 0)
		return r;
	w->mem->next_page += len / FMT_PAGE_SIZE;
	return 0;
}

int fmt_writer_mem_end(struct fmt_writer *w, struct sm_error *err)
{
	int r = writer_usable(w, err);
	if (r < 0)
		return r;
	struct mem_writer *m = w->mem;
	if (!m)
		return sm_error_set(err, EINVAL, "no memory section is being written");
	if (m->next_page != m->pages)
		return sm_error_set(err, EINVAL, "memory section ended after %llu of %llu bytes",
				    (unsigned long long)(m->next_page * FMT_PAGE_SIZE),
				    (unsigned long long)m->mem_size);
	if ((r = flush_batch(w, err)) < 0)
		return fail(w, r);

	uint64_t bitmap_off = m->data_len;
	uint64_t bitmap_len = (uint64_t)m->bitmap_words * 8;
	for (size_t i = 0; i < m->bitmap_words; i++)
		fmt_put64(&m->bitmap[i], m->bitmap[i]);
	uint64_t index_off = bitmap_off + bitmap_len;
	uint64_t index_len = m->frames * sizeof(struct fmt_disk_frame);
	uint32_t bitmap_crc = fmt_crc32c(0, m->bitmap, bitmap_len);
	uint32_t index_crc = fmt_crc32c(0, m->index, index_len);
	if ((r = fmt_pwrite_full(w->fd, m->bitmap, bitmap_len, m->sec_start + bitmap_off, err)) <
		    0 ||
	    (r = fmt_pwrite_full(w->fd, m->index, index_len, m->sec_start + index_off, err)) < 0)
		return fail(w, r);
	m->crc = fmt_crc32c(m->crc, m->bitmap, bitmap_len);
	m->crc = fmt_crc32c(m->crc, m->index, index_len);

	struct fmt_disk_mem t;
	memset(&t, 0, sizeof(t));
	memcpy(t.magic, FMT_MEM_MAGIC, 8);
	fmt_put32(&t.version, FMT_MEM_VERSION);
	fmt_put32(&t.page_size, FMT_PAGE_SIZE);
	fmt_put64(&t.mem_size, m->mem_size);
	fmt_put32(&t.frame_pages, m->frame_pages);
	fmt_put32(&t.level, (uint32_t)m->level);
	fmt_put64(&t.nonzero_pages, m->nonzero);
	fmt_put64(&t.frame_count, m->frames);
	fmt_put64(&t.bitmap_offset, bitmap_off);
	fmt_put64(&t.bitmap_length, bitmap_len);
	fmt_put64(&t.index_offset, index_off);
	fmt_put64(&t.index_length, index_len);
	fmt_put64(&t.data_offset, 0);
	fmt_put64(&t.data_length, m->data_len);
	fmt_put32(&t.bitmap_crc, bitmap_crc);
	fmt_put32(&t.index_crc, index_crc);
	fmt_put32(&t.trailer_crc, fmt_crc32c(0, &t, offsetof(struct fmt_disk_mem, trailer_crc)));
	uint64_t trailer_off = index_off + index_len;
	if ((r = fmt_pwrite_full(w->fd, &t, sizeof(t), m->sec_start + trailer_off, err)) < 0)
		return fail(w, r);
	m->crc = fmt_crc32c(m->crc, &t, sizeof(t));
	uint64_t sec_len = trailer_off + sizeof(t);
	if ((r = table_append(w, FMT_SEC_MEMORY, 0, 0, NULL, m->sec_start, sec_len, m->mem_size,
			      m->crc, err)) < 0)
		return fail(w, r);
	w->pos = m->sec_start + sec_len;
	w->have_mem = 1;
	w->mem = NULL;
	mem_writer_free(m);
	return 0;
}

/* ---- commit ------------------------------------------------------------- */

int fmt_writer_commit(struct fmt_writer *w, struct sm_error *err)
{
	int r = writer_usable(w, err);
	if (r < 0)
		return r;
	if (w->mem)
		return sm_error_set(err, EINVAL, "the memory section was not ended");
	if (!w->have_meta)
		return sm_error_set(err, EINVAL, "a snapshot needs a metadata section");
	uint64_t table_off = align_up(w->pos, 64);
	uint64_t table_len = (uint64_t)w->count * sizeof(struct fmt_disk_section);
	uint32_t table_crc = fmt_crc32c(0, w->table, table_len);
	struct fmt_disk_header h;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, FMT_MAGIC, FMT_MAGIC_LEN);
	fmt_put16(&h.major, FMT_VERSION_MAJOR);
	fmt_put16(&h.minor, FMT_VERSION_MINOR);
	fmt_put32(&h.header_size, sizeof(h));
	fmt_put32(&h.entry_size, sizeof(struct fmt_disk_section));
	fmt_put64(&h.file_size, table_off + table_len);
	fmt_put64(&h.table_offset, table_off);
	fmt_put32(&h.section_count, w->count);
	fmt_put32(&h.table_crc, table_crc);
	fmt_put32(&h.header_crc, fmt_crc32c(0, &h, offsetof(struct fmt_disk_header, header_crc)));
	if ((r = fmt_pwrite_full(w->fd, w->table, table_len, table_off, err)) < 0 ||
	    (r = fmt_pwrite_full(w->fd, &h, sizeof(h), 0, err)) < 0)
		return fail(w, r);
	if (ftruncate(w->fd, (off_t)(table_off + table_len)) < 0)
		return fail(w, sm_error_errno(err, errno, "cannot size %s", w->tmp));
	if (fchmod(w->fd, 0644) < 0)
		return fail(w, sm_error_errno(err, errno, "cannot chmod %s", w->tmp));
	if (fsync(w->fd) < 0)
		return fail(w, sm_error_errno(err, errno, "cannot fsync %s", w->tmp));
	if (rename(w->tmp, w->path) < 0)
		return fail(w,
			    sm_error_errno(err, errno, "cannot rename %s to %s", w->tmp, w->path));
	w->committed = 1;
	int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return sm_error_errno(err, errno, "cannot open %s to fsync it", w->dir);
	r = fsync(dfd) < 0 ? sm_error_errno(err, errno, "cannot fsync %s", w->dir) : 0;
	close(dfd);
	return r;
}

void fmt_writer_free(struct fmt_writer *w)
{
	if (!w)
		return;
	mem_writer_free(w->mem);
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp && !w->committed)
		unlink(w->tmp);
	ZSTD_freeCCtx(w->cctx);
	free(w->table);
	free(w->tmp);
	free(w->dir);
	free(w->path);
	free(w);
}

const char *fmt_section_type_name(uint32_t type)
{
	switch (type) {
	case FMT_SEC_META:
		return "metadata";
	case FMT_SEC_VCPU:
		return "vcpu";
	case FMT_SEC_VMSTATE:
		return "vmstate";
	case FMT_SEC_MMIO:
		return "mmio";
	case FMT_SEC_DEVICE:
		return "device";
	case FMT_SEC_DAX:
		return "dax";
	case FMT_SEC_FUSE_NODES:
		return "fuse-nodes";
	case FMT_SEC_MEMORY:
		return "memory";
	case FMT_SEC_VSOCK:
		return "vsock";
	}
	return "unknown";
}
