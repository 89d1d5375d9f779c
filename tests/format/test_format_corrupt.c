/* SPDX-License-Identifier: Apache-2.0 */
/* Damaged and hostile snapshot files: every bit flip and truncation is
 * detected, hostile tables and memory indexes are refused without crashing. */
#include "helpers.h"

struct env {
	char dir[64];
	char path[128];
	unsigned char *file; /* pristine copy */
	size_t len;
	int mem_idx;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	make_tmpdir(e->dir, sizeof(e->dir));
	snprintf(e->path, sizeof(e->path), "%s/snap", e->dir);
	struct sm_error err = {0};
	struct fmt_writer *w;
	struct fmt_writer_opts o = {.frame_size = 8192};
	assert_int_equal(fmt_writer_create(&w, e->path, &o, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{\"image\":\"x\",\"vcpus\":1}", &err), 0);
	unsigned char blob[3000];
	text_fill(blob, sizeof(blob), 1);
	assert_int_equal(fmt_writer_add(w, FMT_SEC_VCPU, 0, 0, "cpu0", blob, 300, &err), 0);
	assert_int_equal(
		fmt_writer_add(w, FMT_SEC_DEVICE, FMT_SECF_ZSTD, 2, "fs", blob, 3000, &err), 0);
	assert_int_equal(fmt_writer_add(w, 99, FMT_SECF_OPTIONAL, 0, NULL, blob, 10, &err), 0);
	unsigned char mem[12 * 4096];
	memset(mem, 0, sizeof(mem));
	text_fill(mem, 4096, 2);
	rnd_fill(mem + 3 * 4096, 4096, 3);
	text_fill(mem + 4 * 4096, 4096, 4);
	mem[11 * 4096 + 5] = 9;
	assert_int_equal(fmt_writer_mem_begin(w, sizeof(mem), &err), 0);
	assert_int_equal(fmt_writer_mem_write(w, mem, sizeof(mem), &err), 0);
	assert_int_equal(fmt_writer_mem_end(w, &err), 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
	e->file = slurp(e->path, &e->len);
	e->mem_idx = 4;
	assert_int_equal(fmt_get32(entry(e->file, 4)), FMT_SEC_MEMORY);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	rm_rf(e->dir);
	free(e->file);
	free(e);
	return 0;
}

/* Open then verify; returns the first failure (0 when the file passes). */
static int open_verify(const char *path, int *bad, struct sm_error *err)
{
	struct fmt_reader *r;
	*bad = -2;
	int ret = fmt_reader_open(&r, path, err);
	if (ret < 0)
		return ret;
	ret = fmt_reader_verify(r, bad, err);
	fmt_reader_close(r);
	return ret;
}

static int section_at(const unsigned char *f, uint64_t off)
{
	uint32_t n = fmt_get32(f + 40);
	const unsigned char *t = f + fmt_get64(f + 32);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t o = fmt_get64(t + i * 64 + 8), l = fmt_get64(t + i * 64 + 16);
		if (off >= o && off < o + l)
			return (int)i;
	}
	return -1;
}

static void test_pristine_passes(void **state)
{
	struct env *e = *state;
	struct sm_error err = {0};
	int bad;
	assert_int_equal(open_verify(e->path, &bad, &err), 0);
	assert_int_equal(bad, -1);
}

/* Flip one bit in every single byte of the file: always detected, and when
 * the byte is inside a section, verify names that section. */
static void test_every_bit_flip_detected(void **state)
{
	struct env *e = *state;
	int fd = open(e->path, O_RDWR);
	assert_true(fd >= 0);
	uint64_t toff = fmt_get64(e->file + 32);
	size_t in_section = 0;
	for (size_t i = 0; i < e->len; i++) {
		unsigned char b = e->file[i] ^ (unsigned char)(1u << (i % 8));
		assert_int_equal(pwrite(fd, &b, 1, (off_t)i), 1);
		struct sm_error err = {0};
		int bad;
		int ret = open_verify(e->path, &bad, &err);
		if (ret == 0)
			fail_msg("flip at byte %zu (bit %zu) not detected", i, i % 8);
		assert_true(err.errnum == EBADMSG || err.errnum == ENOTSUP);
		int sec = section_at(e->file, i);
		if (i >= 64 && i < toff && sec >= 0) {
			assert_int_equal(bad, sec);
			in_section++;
		} else if (i >= 64 && i < toff) {
			assert_int_equal(bad, -1); /* padding */
		} else {
			assert_int_equal(bad, -2); /* refused by open */
		}
		assert_int_equal(pwrite(fd, &e->file[i], 1, (off_t)i), 1);
	}
	close(fd);
	assert_true(in_section > 0);
}

static void test_truncation_detected(void **state)
{
	struct env *e = *state;
	for (size_t n = 0; n < e->len; n += (n < 128 || n > e->len - 256) ? 1 : 61) {
		spit(e->path, e->file, n);
		struct sm_error err = {0};
		int bad;
		assert_true(open_verify(e->path, &bad, &err) < 0);
		assert_int_equal(err.errnum, EBADMSG);
		if (!strstr(err.msg, "truncated"))
			fail_msg("truncated to %zu: %s", n, err.msg);
	}
	/* one byte too many */
	unsigned char *more = malloc(e->len + 1);
	memcpy(more, e->file, e->len);
	more[e->len] = 0;
	spit(e->path, more, e->len + 1);
	free(more);
	struct sm_error err = {0};
	int bad;
	assert_true(open_verify(e->path, &bad, &err) < 0);
	assert_non_null(strstr(err.msg, "longer"));
}

/* Apply EDIT to a copy of the file, fix the CRCs, and open it. */
static int open_edited(struct env *e, void (*edit)(unsigned char *, size_t, int), int arg,
		       struct sm_error *err)
{
	unsigned char *f = malloc(e->len);
	memcpy(f, e->file, e->len);
	edit(f, e->len, arg);
	refix_crcs(f, e->len);
	spit(e->path, f, e->len);
	free(f);
	struct fmt_reader *r;
	int ret = fmt_reader_open(&r, e->path, err);
	if (ret == 0) {
		int bad;
		ret = fmt_reader_verify(r, &bad, err);
		fmt_reader_close(r);
	}
	return ret;
}

enum hostile {
	H_OFF_BEYOND,
	H_OFF_OVERFLOW,
	H_LEN_HUGE,
	H_OVERLAP,
	H_OVER_HEADER,
	H_OVER_TABLE,
	H_COUNT_HUGE,
	H_TABLE_OVERFLOW,
	H_TABLE_INSIDE_HEADER,
	H_MAJOR,
	H_HDR_FLAGS,
	H_HDR_RESERVED,
	H_SIZE_FIELDS,
	H_TYPE_UNKNOWN_REQ,
	H_TYPE_ZERO,
	H_SEC_FLAGS,
	H_NO_META,
	H_TWO_META,
	H_TWO_MEM,
	H_DUP_INSTANCE,
	H_RAWLEN,
	H_NAME_PAD,
	H_SEC_RESERVED,
	H_MEM_ZSTD,
	H_COUNT
};

static void edit_hostile(unsigned char *f, size_t len, int h)
{
	unsigned char *e0 = entry(f, 0), *e1 = entry(f, 1), *em = entry(f, 4);
	switch (h) {
	case H_OFF_BEYOND:
		fmt_put64(e1 + 8, len + 4096);
		break;
	case H_OFF_OVERFLOW:
		fmt_put64(e1 + 8, UINT64_MAX - 10);
		fmt_put64(e1 + 16, 100);
		break;
	case H_LEN_HUGE:
		fmt_put64(e1 + 16, UINT64_MAX);
		fmt_put64(e1 + 24, UINT64_MAX);
		break;
	case H_OVERLAP:
		fmt_put64(e1 + 8, fmt_get64(e0 + 8) + 1);
		break;
	case H_OVER_HEADER:
		fmt_put64(e1 + 8, 0);
		break;
	case H_OVER_TABLE:
		fmt_put64(e1 + 8, fmt_get64(f + 32) + 8);
		fmt_put64(e1 + 16, 8);
		fmt_put64(e1 + 24, 8);
		break;
	case H_COUNT_HUGE:
		fmt_put32(f + 40, UINT32_MAX);
		break;
	case H_TABLE_OVERFLOW:
		fmt_put64(f + 32, UINT64_MAX - 63);
		break;
	case H_TABLE_INSIDE_HEADER:
		fmt_put64(f + 32, 8);
		break;
	case H_MAJOR:
		fmt_put16(f + 8, 2);
		break;
	case H_HDR_FLAGS:
		fmt_put32(f + 12, 1);
		break;
	case H_HDR_RESERVED:
		f[50] = 1;
		break;
	case H_SIZE_FIELDS:
		fmt_put32(f + 20, 65);
		break;
	case H_TYPE_UNKNOWN_REQ:
		fmt_put32(entry(f, 3) + 4, 0); /* section 3 (type 99) loses OPTIONAL */
		break;
	case H_TYPE_ZERO:
		fmt_put32(e1, 0);
		break;
	case H_SEC_FLAGS:
		fmt_put32(e1 + 4, 0x10);
		break;
	case H_NO_META:
		fmt_put32(e0, 77);
		fmt_put32(e0 + 4, FMT_SECF_OPTIONAL);
		break;
	case H_TWO_META:
		fmt_put32(e1, FMT_SEC_META);
		break;
	case H_TWO_MEM:
		fmt_put32(e1, FMT_SEC_MEMORY);
		break;
	case H_DUP_INSTANCE:
		fmt_put32(entry(f, 2), FMT_SEC_VCPU); /* device 2 -> vcpu 2 is fine ... */
		fmt_put32(entry(f, 2) + 36, 0);	      /* ... vcpu 0 twice is not */
		break;
	case H_RAWLEN:
		fmt_put64(e1 + 24, 5);
		break;
	case H_NAME_PAD:
		e1[40 + 10] = 'x'; /* after the NUL of "cpu0" */
		break;
	case H_SEC_RESERVED:
		e1[60] = 1;
		break;
	case H_MEM_ZSTD:
		fmt_put32(em + 4, FMT_SECF_ZSTD);
		break;
	}
}

static void test_hostile_tables(void **state)
{
	struct env *e = *state;
	static const int expect[H_COUNT] = {[H_MAJOR] = ENOTSUP,
					    [H_HDR_FLAGS] = ENOTSUP,
					    [H_TYPE_UNKNOWN_REQ] = ENOTSUP,
					    [H_SEC_FLAGS] = ENOTSUP};
	for (int h = 0; h < H_COUNT; h++) {
		struct sm_error err = {0};
		int ret = open_edited(e, edit_hostile, h, &err);
		if (ret == 0)
			fail_msg("hostile table %d accepted", h);
		int want = expect[h] ? expect[h] : EBADMSG;
		if (err.errnum != want)
			fail_msg("hostile table %d: errno %d, message: %s", h, err.errnum, err.msg);
	}
}

static void edit_meta(unsigned char *f, size_t len, int h)
{
	(void)len;
	switch (h) {
	case 0:
		fmt_put32(entry(f, 0), 77);
		fmt_put32(entry(f, 0) + 4, FMT_SECF_OPTIONAL);
		break;
	}
}

static void test_messages_name_the_problem(void **state)
{
	struct env *e = *state;
	struct sm_error err = {0};
	assert_true(open_edited(e, edit_hostile, H_MAJOR, &err) < 0);
	char want[64]; /* the major edited, the writer's minor */
	snprintf(want, sizeof(want), "version %d.%d is not supported", FMT_VERSION_MAJOR + 1,
		 FMT_VERSION_MINOR);
	assert_non_null(strstr(err.msg, want));
	assert_true(open_edited(e, edit_meta, 0, &err) < 0);
	assert_non_null(strstr(err.msg, "missing required section: metadata"));
	assert_true(open_edited(e, edit_hostile, H_TYPE_UNKNOWN_REQ, &err) < 0);
	assert_non_null(strstr(err.msg, "unknown type 99 and is not optional"));
	assert_true(open_edited(e, edit_hostile, H_OVERLAP, &err) < 0);
	assert_non_null(strstr(err.msg, "overlaps"));
	memcpy(e->file, "NOTASNAP", 8);
	spit(e->path, e->file, e->len);
	struct fmt_reader *r;
	assert_true(fmt_reader_open(&r, e->path, &err) < 0);
	assert_non_null(strstr(err.msg, "not a supermachine snapshot"));
}

static void edit_minor(unsigned char *f, size_t len, int h)
{
	(void)len;
	(void)h;
	fmt_put16(f + 10, 9);
	f[50] = 1; /* a newer minor may use reserved bytes */
}

static void test_newer_minor_accepted(void **state)
{
	struct env *e = *state;
	struct sm_error err = {0};
	assert_int_equal(open_edited(e, edit_minor, 0, &err), 0);
	struct fmt_reader *r;
	assert_int_equal(fmt_reader_open(&r, e->path, &err), 0);
	assert_int_equal(fmt_reader_file(r)->minor, 9);
	/* the unknown optional section is listed but never found as a known type */
	assert_int_equal(fmt_reader_section(r, 3)->type, 99);
	assert_string_equal(fmt_section_type_name(fmt_reader_section(r, 3)->type), "unknown");
	fmt_reader_close(r);
}

/* ---- hostile memory sections (trailer/index CRCs fixed up) -------------- */

static unsigned char *mem_trailer(unsigned char *f, size_t len)
{
	unsigned char *em = entry(f, 4);
	uint64_t off = fmt_get64(em + 8), l = fmt_get64(em + 16);
	assert_true(off + l <= len);
	return f + off + l - 128;
}

static void fix_trailer(unsigned char *t)
{
	fmt_put32(t + 124, fmt_crc32c(0, t, 124));
}

static unsigned char *mem_base(unsigned char *f)
{
	return f + fmt_get64(entry(f, 4) + 8);
}

static void fix_index(unsigned char *f, unsigned char *t)
{
	unsigned char *ix = mem_base(f) + fmt_get64(t + 64);
	fmt_put32(t + 100, fmt_crc32c(0, ix, fmt_get64(t + 72)));
}

enum mhostile {
	M_FRAME_PAGES_0,
	M_FRAME_PAGES_HUGE,
	M_MEM_SIZE,
	M_MEM_UNALIGNED,
	M_BITMAP_OFF_OVERFLOW,
	M_BITMAP_LEN,
	M_INDEX_LEN,
	M_NONZERO_TOO_MANY,
	M_FRAME_COUNT,
	M_REGIONS_OVERLAP,
	M_DATA_LEN,
	M_VERSION,
	M_PAGE_SIZE,
	M_FLAGS,
	M_INDEX_GAP,
	M_INDEX_LEN_ZERO,
	M_INDEX_OFF_HUGE,
	M_FRAME_GARBAGE,
	M_FRAME_BAD_SIZE,
	M_BITMAP_POPCOUNT,
	M_BITMAP_BEYOND,
	M_COUNT
};

static void edit_mem(unsigned char *f, size_t len, int h)
{
	unsigned char *t = mem_trailer(f, len);
	unsigned char *base = mem_base(f);
	unsigned char *ix = base + fmt_get64(t + 64);
	unsigned char *bm = base + fmt_get64(t + 48);
	switch (h) {
	case M_FRAME_PAGES_0:
		fmt_put32(t + 24, 0);
		break;
	case M_FRAME_PAGES_HUGE:
		fmt_put32(t + 24, UINT32_MAX);
		break;
	case M_MEM_SIZE:
		fmt_put64(t + 16, fmt_get64(t + 16) + 4096);
		break;
	case M_MEM_UNALIGNED:
		fmt_put64(t + 16, 5);
		break;
	case M_BITMAP_OFF_OVERFLOW:
		fmt_put64(t + 48, UINT64_MAX - 3);
		break;
	case M_BITMAP_LEN:
		fmt_put64(t + 56, 16);
		break;
	case M_INDEX_LEN:
		fmt_put64(t + 72, fmt_get64(t + 72) + 16);
		break;
	case M_NONZERO_TOO_MANY:
		fmt_put64(t + 32, 1000);
		fmt_put64(t + 40, 500);
		break;
	case M_FRAME_COUNT:
		fmt_put64(t + 40, fmt_get64(t + 40) + 1);
		fmt_put64(t + 72, fmt_get64(t + 72) + 16);
		break;
	case M_REGIONS_OVERLAP:
		fmt_put64(t + 64, fmt_get64(t + 48)); /* index on top of the bitmap */
		break;
	case M_DATA_LEN:
		fmt_put64(t + 88, fmt_get64(t + 88) - 1);
		break;
	case M_VERSION:
		fmt_put32(t + 8, 2);
		break;
	case M_PAGE_SIZE:
		fmt_put32(t + 12, 65536);
		break;
	case M_FLAGS:
		fmt_put32(t + 104, 1);
		break;
	case M_INDEX_GAP:
		fmt_put64(ix + 16, fmt_get64(ix + 16) + 1);
		fix_index(f, t);
		break;
	case M_INDEX_LEN_ZERO:
		fmt_put32(ix + 8, 0);
		fix_index(f, t);
		break;
	case M_INDEX_OFF_HUGE:
		fmt_put64(ix, UINT64_MAX - 2);
		fix_index(f, t);
		break;
	case M_FRAME_GARBAGE: {
		/* valid CRCs everywhere, but the frame is not zstd */
		unsigned char *fr = base + fmt_get64(t + 80) + fmt_get64(ix);
		uint32_t fl = fmt_get32(ix + 8);
		memset(fr, 0x5a, fl);
		fmt_put32(ix + 12, fmt_crc32c(0, fr, fl));
		fix_index(f, t);
		break;
	}
	case M_FRAME_BAD_SIZE: {
		/* a real zstd frame of the wrong decompressed size */
		unsigned char *fr = base + fmt_get64(t + 80) + fmt_get64(ix);
		uint32_t fl = fmt_get32(ix + 8);
		unsigned char small[16] = {0};
		size_t n = ZSTD_compress(fr, fl, small, sizeof(small), 1);
		assert_false(ZSTD_isError(n));
		memset(fr + n, 0, fl - n);
		fmt_put32(ix + 12, fmt_crc32c(0, fr, fl));
		fix_index(f, t);
		break;
	}
	case M_BITMAP_POPCOUNT:
		bm[0] ^= 0x04; /* page 2 (zero) claimed stored */
		fmt_put32(t + 96, fmt_crc32c(0, bm, fmt_get64(t + 56)));
		break;
	case M_BITMAP_BEYOND:
		bm[1] |= 0x80;		       /* page 15: beyond 12 pages of memory */
		bm[1] &= (unsigned char)~0x08; /* and page 11 gone: same popcount */
		fmt_put32(t + 96, fmt_crc32c(0, bm, fmt_get64(t + 56)));
		break;
	}
	fix_trailer(t);
}

static void test_hostile_memory(void **state)
{
	struct env *e = *state;
	for (int h = 0; h < M_COUNT; h++) {
		unsigned char *f = malloc(e->len);
		memcpy(f, e->file, e->len);
		edit_mem(f, e->len, h);
		spit(e->path, f, e->len);
		free(f);
		struct sm_error err = {0};
		struct fmt_reader *r;
		/* the table is untouched: open succeeds, memory use fails */
		assert_int_equal(fmt_reader_open(&r, e->path, &err), 0);
		struct fmt_mem_info mi;
		unsigned char page[4096];
		int ret = fmt_reader_mem_info(r, &mi, &err);
		for (uint64_t gpa = 0; ret == 0 && gpa < 12 * 4096; gpa += 4096)
			ret = fmt_reader_mem_page(r, gpa, page, &err);
		if (ret == 0) {
			int fd = open("/dev/null", O_WRONLY);
			ret = fmt_reader_mem_unpack(r, fd, 1, &err);
			close(fd);
		}
		if (ret == 0)
			fail_msg("hostile memory section %d accepted", h);
		if (err.errnum != EBADMSG && err.errnum != ENOTSUP)
			fail_msg("hostile memory %d: errno %d: %s", h, err.errnum, err.msg);
		int bad = -5;
		assert_true(fmt_reader_verify(r, &bad, &err) < 0);
		assert_int_equal(bad, 4);
		fmt_reader_close(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pristine_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_bit_flip_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncation_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_tables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_messages_name_the_problem, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_minor_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_memory, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
