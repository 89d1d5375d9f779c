/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshot reader: validates header and section table on open (trusting
 * nothing), reads and checks sections, and verifies whole files. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "internal.h"

static int all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return 0;
	return 1;
}

struct span {
	uint64_t off, len;
	int sec; /* section index, -1 header, -2 table */
};

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return 0;
}

static const char *span_name(int sec, char *buf, size_t n)
{
	if (sec == -1)
		return "the header";
	if (sec == -2)
		return "the section table";
	snprintf(buf, n, "section %d", sec);
	return buf;
}

/* Spans of header, table and sections, sorted by offset (caller frees). */
static struct span *sorted_spans(const struct fmt_reader *r, size_t *n)
{
	size_t cnt = r->file.section_count + 2;
	struct span *s = calloc(cnt, sizeof(*s));
	if (!s)
		return NULL;
	s[0] = (struct span){0, sizeof(struct fmt_disk_header), -1};
	s[1] = (struct span){r->file.table_offset,
			     (uint64_t)r->file.section_count * sizeof(struct fmt_disk_section), -2};
	for (unsigned i = 0; i < r->file.section_count; i++)
		s[i + 2] = (struct span){r->secs[i].offset, r->secs[i].length, (int)i};
	qsort(s, cnt, sizeof(*s), span_cmp);
	*n = cnt;
	return s;
}

static int known_type(uint32_t t)
{
	return t >= FMT_SEC_META && t <= FMT_SEC_VSOCK;
}

static int check_header(struct fmt_reader *r, const struct fmt_disk_header *h, uint64_t st_size,
			struct sm_error *err)
{
	if (memcmp(h->magic, FMT_MAGIC, FMT_MAGIC_LEN) != 0)
		return sm_error_set(err, EBADMSG, "not a supermachine snapshot (bad magic)");
	uint16_t major = fmt_get16(&h->major), minor = fmt_get16(&h->minor);
	if (major != FMT_VERSION_MAJOR)
		return sm_error_set(
			err, ENOTSUP,
			"snapshot format version %u.%u is not supported (this "
			"supermachine reads %u.x); rebake the snapshot with this version",
			major, minor, FMT_VERSION_MAJOR);
	uint32_t hcrc = fmt_crc32c(0, h, offsetof(struct fmt_disk_header, header_crc));
	if (hcrc != fmt_get32(&h->header_crc))
		return sm_error_set(err, EBADMSG, "header checksum mismatch (file is damaged)");
	if (fmt_get32(&h->header_size) != sizeof(*h) ||
	    fmt_get32(&h->entry_size) != sizeof(struct fmt_disk_section))
		return sm_error_set(err, EBADMSG, "bad header or table entry size");
	if (fmt_get32(&h->flags) != 0)
		return sm_error_set(err, ENOTSUP, "snapshot uses unknown header flags 0x%x",
				    fmt_get32(&h->flags));
	if (minor <= FMT_VERSION_MINOR && !all_zero(h->reserved, sizeof(h->reserved)))
		return sm_error_set(err, EBADMSG, "reserved header bytes are not zero");
	uint64_t fsize = fmt_get64(&h->file_size);
	if (fsize != st_size)
		return sm_error_set(err, EBADMSG, "file is %s: %llu bytes, header says %llu",
				    st_size < fsize ? "truncated" : "longer than recorded",
				    (unsigned long long)st_size, (unsigned long long)fsize);
	uint32_t count = fmt_get32(&h->section_count);
	if (count > FMT_MAX_SECTIONS)
		return sm_error_set(err, EBADMSG, "too many sections: %u", count);
	uint64_t toff = fmt_get64(&h->table_offset);
	if (toff < sizeof(*h) ||
	    !sm_range_ok(toff, (uint64_t)count * sizeof(struct fmt_disk_section), fsize))
		return sm_error_set(err, EBADMSG, "section table outside the file");
	r->file = (struct fmt_file_info){major, minor, 0, fsize, toff, count};
	return 0;
}

static int check_entry(struct fmt_reader *r, unsigned i, const struct fmt_disk_section *e,
		       struct sm_error *err)
{
	struct fmt_section_info *s = &r->secs[i];
	s->index = i;
	s->type = fmt_get32(&e->type);
	s->flags = fmt_get32(&e->flags);
	s->instance = fmt_get32(&e->instance);
	s->offset = fmt_get64(&e->offset);
	s->length = fmt_get64(&e->length);
	s->raw_length = fmt_get64(&e->raw_length);
	s->crc = fmt_get32(&e->crc);
	memcpy(s->name, e->name, sizeof(e->name));
	s->name[16] = '\0';
	size_t nl = strlen(s->name);
	if (!all_zero(e->name + nl, sizeof(e->name) - nl))
		return sm_error_set(err, EBADMSG, "section %u: name is not NUL-padded", i);
	if (r->file.minor <= FMT_VERSION_MINOR && !all_zero(e->reserved, sizeof(e->reserved)))
		return sm_error_set(err, EBADMSG, "section %u: reserved bytes are not zero", i);
	if (s->type == 0)
		return sm_error_set(err, EBADMSG, "section %u: type 0 is invalid", i);
	if (!known_type(s->type) && !(s->flags & FMT_SECF_OPTIONAL))
		return sm_error_set(err, ENOTSUP,
				    "section %u has unknown type %u and is not optional (written "
				    "by a newer supermachine?)",
				    i, s->type);
	if (s->flags & ~(uint32_t)FMT_KNOWN_SECFLAGS)
		return sm_error_set(err, ENOTSUP, "section %u (%s) uses unknown flags 0x%x", i,
				    fmt_section_type_name(s->type), s->flags);
	if (s->offset < sizeof(struct fmt_disk_header) ||
	    !sm_range_ok(s->offset, s->length, r->file.file_size))
		return sm_error_set(err, EBADMSG,
				    "section %u (%s): offset %llu length %llu outside the file", i,
				    fmt_section_type_name(s->type), (unsigned long long)s->offset,
				    (unsigned long long)s->length);
	if (!(s->flags & FMT_SECF_ZSTD) && s->type != FMT_SEC_MEMORY && s->raw_length != s->length)
		return sm_error_set(err, EBADMSG, "section %u: raw length differs from length", i);
	if (s->type == FMT_SEC_MEMORY && (s->flags & FMT_SECF_ZSTD))
		return sm_error_set(err, EBADMSG, "section %u: memory cannot be zstd-wrapped", i);
	return 0;
}

static int check_table(struct fmt_reader *r, const struct fmt_disk_section *t, struct sm_error *err)
{
	int r_ = 0, meta = -1;
	r->mem_index = -1;
	for (unsigned i = 0; i < r->file.section_count; i++) {
		if ((r_ = check_entry(r, i, &t[i], err)) < 0)
			return r_;
		const struct fmt_section_info *s = &r->secs[i];
		if (s->type == FMT_SEC_META) {
			if (meta >= 0)
				return sm_error_set(err, EBADMSG, "two metadata sections");
			meta = (int)i;
		} else if (s->type == FMT_SEC_MEMORY) {
			if (r->mem_index >= 0)
				return sm_error_set(err, EBADMSG, "two memory sections");
			r->mem_index = (int)i;
		}
		for (unsigned j = 0; known_type(s->type) && j < i; j++)
			if (r->secs[j].type == s->type && r->secs[j].instance == s->instance)
				return sm_error_set(err, EBADMSG,
						    "sections %u and %u are both %s instance %u", j,
						    i, fmt_section_type_name(s->type), s->instance);
	}
	if (meta < 0)
		return sm_error_set(err, EBADMSG, "missing required section: metadata");
	size_t n;
	struct span *sp = sorted_spans(r, &n);
	if (!sp)
		return sm_error_errno(err, ENOMEM, "cannot allocate");
	/* Non-empty spans must not overlap (ends cannot overflow: every span
	 * was checked to lie inside the file). */
	uint64_t end = 0;
	int last = -1;
	for (size_t i = 0; i < n; i++) {
		if (!sp[i].len)
			continue;
		if (sp[i].off < end) {
			char a[32], b[32];
			r_ = sm_error_set(err, EBADMSG, "%s overlaps %s",
					  span_name(last, a, sizeof(a)),
					  span_name(sp[i].sec, b, sizeof(b)));
			break;
		}
		end = sp[i].off + sp[i].len;
		last = sp[i].sec;
	}
	free(sp);
	return r_;
}

int fmt_reader_open_fd(struct fmt_reader **out, int fd, struct sm_error *err)
{
	struct fmt_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return sm_error_errno(err, ENOMEM, "cannot allocate reader");
	pthread_mutex_init(&r->mem_lock, NULL);
	pthread_mutex_init(&r->dctx_lock, NULL);
	r->mem_index = -1;
	r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (r->fd < 0) {
		int e = errno;
		fmt_reader_close(r);
		return sm_error_errno(err, e, "cannot duplicate file descriptor");
	}
	struct stat st;
	int ret;
	if (fstat(r->fd, &st) < 0) {
		ret = sm_error_errno(err, errno, "cannot stat snapshot");
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = sm_error_set(err, EINVAL, "snapshot is not a regular file");
		goto fail;
	}
	if ((uint64_t)st.st_size < sizeof(struct fmt_disk_header)) {
		ret = sm_error_set(err, EBADMSG,
				   "file is truncated or not a snapshot: %lld bytes, header needs "
				   "64",
				   (long long)st.st_size);
		goto fail;
	}
	struct fmt_disk_header h;
	if ((ret = fmt_pread_full(r->fd, &h, sizeof(h), 0, "header", err)) < 0 ||
	    (ret = check_header(r, &h, (uint64_t)st.st_size, err)) < 0)
		goto fail;
	size_t tlen = (size_t)r->file.section_count * sizeof(struct fmt_disk_section);
	struct fmt_disk_section *t = malloc(tlen ? tlen : 1);
	r->secs = calloc(r->file.section_count ? r->file.section_count : 1, sizeof(*r->secs));
	if (!t || !r->secs) {
		free(t);
		ret = sm_error_errno(err, ENOMEM, "cannot allocate section table");
		goto fail;
	}
	ret = fmt_pread_full(r->fd, t, tlen, r->file.table_offset, "section table", err);
	if (ret == 0 && fmt_crc32c(0, t, tlen) != fmt_get32(&h.table_crc))
		ret = sm_error_set(err, EBADMSG,
				   "section table checksum mismatch (file is damaged)");
	if (ret == 0)
		ret = check_table(r, t, err);
	free(t);
	if (ret < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	fmt_reader_close(r);
	return ret;
}

int fmt_reader_open(struct fmt_reader **out, const char *path, struct sm_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot open %s", path);
	int r = fmt_reader_open_fd(out, fd, err);
	close(fd);
	if (r < 0)
		sm_error_wrap(err, "%s", path);
	return r;
}

void fmt_reader_close(struct fmt_reader *r)
{
	if (!r)
		return;
	fmt_mem_reader_free(r->mem);
	pthread_mutex_destroy(&r->mem_lock);
	ZSTD_freeDCtx(r->dctx);
	pthread_mutex_destroy(&r->dctx_lock);
	if (r->fd >= 0)
		close(r->fd);
	free(r->secs);
	free(r);
}

const struct fmt_file_info *fmt_reader_file(const struct fmt_reader *r)
{
	return &r->file;
}

unsigned fmt_reader_section_count(const struct fmt_reader *r)
{
	return r->file.section_count;
}

const struct fmt_section_info *fmt_reader_section(const struct fmt_reader *r, unsigned idx)
{
	return idx < r->file.section_count ? &r->secs[idx] : NULL;
}

int fmt_reader_find(const struct fmt_reader *r, uint32_t type, uint32_t instance,
		    struct sm_error *err)
{
	for (unsigned i = 0; i < r->file.section_count; i++)
		if (r->secs[i].type == type && r->secs[i].instance == instance)
			return (int)i;
	return sm_error_set(err, ENOENT, "snapshot has no %s section (instance %u)",
			    fmt_section_type_name(type), instance);
}

int fmt_reader_read(struct fmt_reader *r, unsigned idx, void **data, size_t *len,
		    struct sm_error *err)
{
	if (idx >= r->file.section_count)
		return sm_error_set(err, EINVAL, "no section %u", idx);
	const struct fmt_section_info *s = &r->secs[idx];
	const char *tn = fmt_section_type_name(s->type);
	if (s->type == FMT_SEC_MEMORY)
		return sm_error_set(err, EINVAL, "the memory section is read page by page");
	if (s->length > FMT_MAX_RAW || s->raw_length > FMT_MAX_RAW)
		return sm_error_set(err, E2BIG, "section %u (%s) is too large: %llu bytes", idx, tn,
				    (unsigned long long)s->raw_length);
	unsigned char *stored = malloc(s->length + 1);
	if (!stored)
		return sm_error_errno(err, ENOMEM, "cannot allocate %llu bytes",
				      (unsigned long long)s->length);
	int ret = fmt_pread_full(r->fd, stored, s->length, s->offset, tn, err);
	if (ret < 0) {
		free(stored);
		return ret;
	}
	if (fmt_crc32c(0, stored, s->length) != s->crc) {
		free(stored);
		return sm_error_set(err, EBADMSG, "section %u (%s): checksum mismatch", idx, tn);
	}
	if (!(s->flags & FMT_SECF_ZSTD)) {
		stored[s->length] = '\0';
		*data = stored;
		*len = s->length;
		return 0;
	}
	unsigned long long csize = ZSTD_getFrameContentSize(stored, s->length);
	size_t fsize = ZSTD_findFrameCompressedSize(stored, s->length);
	if (csize != s->raw_length || ZSTD_isError(fsize) || fsize != s->length) {
		free(stored);
		return sm_error_set(err, EBADMSG, "section %u (%s): bad zstd frame", idx, tn);
	}
	unsigned char *raw = malloc(s->raw_length + 1);
	if (!raw) {
		free(stored);
		return sm_error_errno(err, ENOMEM, "cannot allocate %llu bytes",
				      (unsigned long long)s->raw_length);
	}
	/* One context per reader: a fresh one per call (ZSTD_decompress)
	 * costs an allocation and its page faults every time. */
	pthread_mutex_lock(&r->dctx_lock);
	if (!r->dctx)
		r->dctx = ZSTD_createDCtx();
	size_t d = r->dctx ? ZSTD_decompressDCtx(r->dctx, raw, s->raw_length, stored, s->length)
			   : ZSTD_decompress(raw, s->raw_length, stored, s->length);
	pthread_mutex_unlock(&r->dctx_lock);
	free(stored);
	if (ZSTD_isError(d) || d != s->raw_length) {
		free(raw);
		return sm_error_set(err, EBADMSG, "section %u (%s): cannot decompress: %s", idx, tn,
				    ZSTD_isError(d) ? ZSTD_getErrorName(d) : "short output");
	}
	raw[d] = '\0';
	*data = raw;
	*len = d;
	return 0;
}

int fmt_reader_meta(struct fmt_reader *r, char **json, struct sm_error *err)
{
	int idx = fmt_reader_find(r, FMT_SEC_META, 0, err);
	if (idx < 0)
		return idx;
	void *data;
	size_t len;
	int ret = fmt_reader_read(r, (unsigned)idx, &data, &len, err);
	if (ret < 0)
		return ret;
	if (len > FMT_MAX_META || memchr(data, '\0', len)) {
		free(data);
		return sm_error_set(err, EBADMSG, "metadata is not JSON text");
	}
	*json = data;
	return 0;
}

/* Stream a section through CRC32C without holding it in memory. */
static int crc_section(struct fmt_reader *r, const struct fmt_section_info *s, uint32_t *crc,
		       struct sm_error *err)
{
	size_t bufsz = s->length < (1u << 20) ? (size_t)s->length + 1 : 1u << 20;
	unsigned char *buf = malloc(bufsz);
	if (!buf)
		return sm_error_errno(err, ENOMEM, "cannot allocate");
	uint32_t c = 0;
	for (uint64_t done = 0; done < s->length;) {
		size_t n = s->length - done < bufsz ? (size_t)(s->length - done) : bufsz;
		int ret = fmt_pread_full(r->fd, buf, n, s->offset + done,
					 fmt_section_type_name(s->type), err);
		if (ret < 0) {
			free(buf);
			return ret;
		}
		c = fmt_crc32c(c, buf, n);
		done += n;
	}
	free(buf);
	*crc = c;
	return 0;
}

static int verify_gaps(struct fmt_reader *r, struct sm_error *err)
{
	size_t n;
	struct span *sp = sorted_spans(r, &n);
	if (!sp)
		return sm_error_errno(err, ENOMEM, "cannot allocate");
	unsigned char buf[4096];
	int ret = 0;
	uint64_t pos = 0;
	for (size_t i = 0; i <= n && ret == 0; i++) {
		uint64_t next = i < n ? sp[i].off : r->file.file_size;
		while (pos < next && ret == 0) {
			size_t k = next - pos < sizeof(buf) ? (size_t)(next - pos) : sizeof(buf);
			ret = fmt_pread_full(r->fd, buf, k, pos, "padding", err);
			if (ret == 0 && !all_zero(buf, k))
				ret = sm_error_set(
					err, EBADMSG,
					"non-zero bytes between sections near offset %llu "
					"(file is damaged)",
					(unsigned long long)pos);
			pos += k;
		}
		if (i < n && sp[i].off + sp[i].len > pos)
			pos = sp[i].off + sp[i].len;
	}
	free(sp);
	return ret;
}

int fmt_reader_verify(struct fmt_reader *r, int *bad_section, struct sm_error *err)
{
	if (bad_section)
		*bad_section = -1;
	for (unsigned i = 0; i < r->file.section_count; i++) {
		const struct fmt_section_info *s = &r->secs[i];
		uint32_t crc = 0;
		int ret = crc_section(r, s, &crc, err);
		if (ret == 0 && crc != s->crc)
			ret = sm_error_set(err, EBADMSG, "checksum mismatch");
		if (ret == 0 && s->type == FMT_SEC_MEMORY)
			ret = fmt_mem_verify(r, s, err);
		else if (ret == 0 && s->type == FMT_SEC_META) {
			char *json;
			ret = fmt_reader_meta(r, &json, err);
			if (ret == 0) {
				json_error_t jerr;
				json_t *j = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
				if (!j || !json_is_object(j))
					ret = sm_error_set(err, EBADMSG,
							   "metadata is not a JSON object");
				json_decref(j);
				free(json);
			}
		} else if (ret == 0 && (s->flags & FMT_SECF_ZSTD)) {
			void *data;
			size_t len;
			ret = fmt_reader_read(r, i, &data, &len, err);
			if (ret == 0)
				free(data);
		}
		if (ret < 0) {
			if (bad_section)
				*bad_section = (int)i;
			sm_error_wrap(err, "section %u (%s)", i, fmt_section_type_name(s->type));
			return ret;
		}
	}
	return verify_gaps(r, err);
}
