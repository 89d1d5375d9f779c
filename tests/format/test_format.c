/* SPDX-License-Identifier: Apache-2.0 */
/* Round trips through the snapshot writer and reader: every section kind,
 * memory of every shape, page reads, sparse unpack. */
#include "helpers.h"

#include <jansson.h>
#include <pthread.h>

struct env {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	make_tmpdir(e->dir, sizeof(e->dir));
	snprintf(e->path, sizeof(e->path), "%s/snap", e->dir);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	rm_rf(e->dir);
	free(e);
	return 0;
}

static const char meta_json[] =
	"{\"format_version\":\"1.0\",\"image\":\"busybox:latest\",\"memory_size\":0,"
	"\"vcpus\":1,\"bake_key\":\"abc\"}";

/* Write SIZE bytes of MEM (NULL: all zero) through the streaming writer in
 * pieces of STEP bytes. */
static void write_mem(struct fmt_writer *w, const unsigned char *mem, uint64_t size, size_t step)
{
	struct sm_error err = {0};
	assert_int_equal(fmt_writer_mem_begin(w, size, &err), 0);
	for (uint64_t off = 0; off < size; off += step) {
		size_t n = size - off < step ? (size_t)(size - off) : step;
		if (mem)
			assert_int_equal(fmt_writer_mem_write(w, mem + off, n, &err), 0);
		else
			assert_int_equal(fmt_writer_mem_skip(w, n, &err), 0);
	}
	assert_int_equal(fmt_writer_mem_end(w, &err), 0);
}

/* Every page read back equals MEM, unpack equals MEM, verify passes. */
static void check_mem(const char *path, const unsigned char *mem, uint64_t size,
		      uint64_t expect_nonzero)
{
	struct sm_error err = {0};
	struct fmt_reader *r;
	assert_int_equal(fmt_reader_open(&r, path, &err), 0);
	struct fmt_mem_info mi;
	assert_int_equal(fmt_reader_mem_info(r, &mi, &err), 0);
	assert_int_equal(mi.mem_size, size);
	assert_int_equal(mi.nonzero_pages, expect_nonzero);
	unsigned char page[4096];
	/* pages in a scrambled order, so that frame caching is exercised both ways */
	uint64_t pages = size / 4096;
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t p = (i * 7919) % pages;
		assert_int_equal(fmt_reader_mem_page(r, p * 4096 + (i % 4096), page, &err), 0);
		assert_memory_equal(page, mem + p * 4096, 4096);
		int present = fmt_reader_mem_present(r, p * 4096, &err);
		int nonzero = 0;
		for (size_t k = 0; k < 4096 && !nonzero; k++)
			nonzero = mem[p * 4096 + k] != 0;
		assert_int_equal(present, nonzero);
	}
	assert_true(fmt_reader_mem_page(r, size, page, &err) < 0);
	assert_int_equal(err.errnum, ERANGE);
	int bad = 7;
	assert_int_equal(fmt_reader_verify(r, &bad, &err), 0);
	assert_int_equal(bad, -1);

	char out[160];
	snprintf(out, sizeof(out), "%s.raw", path);
	int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fmt_reader_mem_unpack(r, fd, 2, &err), 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, size);
	unsigned char *back = malloc(size ? size : 1);
	assert_non_null(back);
	assert_int_equal(pread(fd, back, size, 0), (ssize_t)size);
	assert_memory_equal(back, mem, size);
	free(back);
	close(fd);
	unlink(out);
	fmt_reader_close(r);
}

static void test_all_sections(void **state)
{
	struct env *e = *state;
	struct sm_error err = {0};
	struct fmt_writer *w;
	assert_int_equal(fmt_writer_create(&w, e->path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, meta_json, &err), 0);
	/* payloads of every opaque kind, raw and zstd, plus an empty one */
	unsigned char blob[3][10000];
	for (int i = 0; i < 3; i++)
		text_fill(blob[i], sizeof(blob[i]), (uint64_t)i + 1);
	struct {
		uint32_t type, flags, instance;
		const char *name;
		const void *data;
		size_t len;
	} secs[] = {
		{FMT_SEC_VCPU, 0, 0, "cpu0", blob[0], 4096},
		{FMT_SEC_VCPU, FMT_SECF_ZSTD, 1, "cpu1", blob[1], 10000},
		{FMT_SEC_VMSTATE, 0, 0, NULL, blob[2], 123},
		{FMT_SEC_MMIO, FMT_SECF_ZSTD, 0, "transports", blob[0], 777},
		{FMT_SEC_DEVICE, FMT_SECF_ZSTD, 0, "virtio-fs", blob[1], 5000},
		{FMT_SEC_DEVICE, 0, 1, "virtio-vsock", "", 0},
		{FMT_SEC_DAX, 0, 0, NULL, blob[2], 64},
		{FMT_SEC_FUSE_NODES, FMT_SECF_ZSTD, 0, "nodes", blob[0], 10000},
		{200, FMT_SECF_OPTIONAL, 0, "future", blob[1], 100},
	};
	size_t n = sizeof(secs) / sizeof(secs[0]);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(fmt_writer_add(w, secs[i].type, secs[i].flags, secs[i].instance,
						secs[i].name, secs[i].data, secs[i].len, &err),
				 0);
	unsigned char mem[16 * 4096];
	memset(mem, 0, sizeof(mem));
	text_fill(mem + 4096, 4096, 3);
	rnd_fill(mem + 9 * 4096, 2 * 4096, 4);
	write_mem(w, mem, sizeof(mem), 4096);
	/* the file is not there before commit */
	assert_int_equal(access(e->path, F_OK), -1);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);

	struct fmt_reader *r;
	assert_int_equal(fmt_reader_open(&r, e->path, &err), 0);
	assert_int_equal(fmt_reader_file(r)->major, FMT_VERSION_MAJOR);
	assert_int_equal(fmt_reader_section_count(r), n + 2);
	for (size_t i = 0; i < n; i++) {
		int idx = fmt_reader_find(r, secs[i].type, secs[i].instance, &err);
		assert_true(idx >= 0);
		const struct fmt_section_info *s = fmt_reader_section(r, (unsigned)idx);
		assert_int_equal(s->offset % 4096, 0);
		assert_string_equal(s->name, secs[i].name ? secs[i].name : "");
		assert_int_equal(s->flags, secs[i].flags);
		assert_int_equal(s->raw_length, secs[i].len);
		void *data;
		size_t len;
		assert_int_equal(fmt_reader_read(r, (unsigned)idx, &data, &len, &err), 0);
		assert_int_equal(len, secs[i].len);
		assert_memory_equal(data, secs[i].data, len);
		assert_int_equal(((char *)data)[len], '\0');
		free(data);
	}
	assert_string_equal(fmt_section_type_name(200), "unknown");
	assert_int_equal(fmt_reader_find(r, FMT_SEC_VCPU, 5, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no vcpu section"));
	char *json;
	assert_int_equal(fmt_reader_meta(r, &json, &err), 0);
	assert_string_equal(json, meta_json);
	free(json);
	fmt_reader_close(r);
	check_mem(e->path, mem, sizeof(mem), 3);
}

static void write_simple(const char *path, const unsigned char *mem, uint64_t size, size_t step,
			 const struct fmt_writer_opts *o)
{
	struct sm_error err = {0};
	struct fmt_writer *w;
	assert_int_equal(fmt_writer_create(&w, path, o, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{}", &err), 0);
	write_mem(w, mem, size, step);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
}

static void test_empty_memory(void **state)
{
	struct env *e = *state;
	write_simple(e->path, NULL, 0, 4096, NULL);
	check_mem(e->path, (const unsigned char *)"", 0, 0);
}

static void test_no_memory_section(void **state)
{
	struct env *e = *state;
	struct sm_error err = {0};
	struct fmt_writer *w;
	assert_int_equal(fmt_writer_create(&w, e->path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{\"a\":1}", &err), 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
	struct fmt_reader *r;
	assert_int_equal(fmt_reader_open(&r, e->path, &err), 0);
	struct fmt_mem_info mi;
	assert_int_equal(fmt_reader_mem_info(r, &mi, &err), -ENOENT);
	assert_int_equal(fmt_reader_verify(r, NULL, &err), 0);
	fmt_reader_close(r);
}

static void test_all_zero_memory(void **state)
{
	struct env *e = *state;
	size_t size = 8u << 20;
	unsigned char *mem = calloc(1, size);
	/* zero pages given as data (not skipped) must still not be stored */
	write_simple(e->path, mem, size, 1u << 20, NULL);
	check_mem(e->path, mem, size, 0);
	struct stat st;
	assert_int_equal(stat(e->path, &st), 0);
	assert_true(st.st_size < 16384);
	free(mem);
}

static void test_random_memory(void **state)
{
	struct env *e = *state;
	size_t size = 6u << 20;
	unsigned char *mem = malloc(size);
	rnd_fill(mem, size, 42);
	/* several frame sizes and thread counts; odd write steps */
	uint32_t frames[] = {4096, 65536, 2u << 20};
	unsigned threads[] = {1, 3, 2};
	for (int i = 0; i < 3; i++) {
		struct fmt_writer_opts o = {.threads = threads[i], .frame_size = frames[i]};
		write_simple(e->path, mem, size, 12288, &o);
		check_mem(e->path, mem, size, size / 4096);
		struct fmt_reader *r;
		struct sm_error err = {0};
		struct fmt_mem_info mi;
		assert_int_equal(fmt_reader_open(&r, e->path, &err), 0);
		assert_int_equal(fmt_reader_mem_info(r, &mi, &err), 0);
		assert_int_equal(mi.frame_pages, frames[i] / 4096);
		assert_int_equal(mi.frame_count,
				 (size / 4096 + mi.frame_pages - 1) / mi.frame_pages);
		fmt_reader_close(r);
	}
	free(mem);
}

static void test_mixed_memory(void **state)
{
	struct env *e = *state;
	size_t size = 4u << 20;
	unsigned char *mem = calloc(1, size);
	uint64_t s = 99;
	for (size_t p = 0; p < size / 4096; p++) {
		switch (rnd_next(&s) % 4) {
		case 0:
			text_fill(mem + p * 4096, 4096, p + 1);
			break;
		case 1:
			rnd_fill(mem + p * 4096, 4096, p + 1);
			break;
		case 2: /* one non-zero byte at the very end */
			mem[p * 4096 + 4095] = 1;
			break;
		}
	}
	uint64_t nonzero = 0;
	for (size_t p = 0; p < size / 4096; p++) {
		int nz = 0;
		for (size_t k = 0; k < 4096 && !nz; k++)
			nz = mem[p * 4096 + k] != 0;
		nonzero += (uint64_t)nz;
	}
	struct fmt_writer_opts o = {.threads = 2, .frame_size = 8192, .level = 1};
	write_simple(e->path, mem, size, 4096 * 5, &o);
	check_mem(e->path, mem, size, nonzero);
	free(mem);
}

/* 1 GiB of guest memory with a few MiB touched, fed through the writer as
 * data (zero detection) in 4 MiB pieces. */
static void test_sparse_1g(void **state)
{
	struct env *e = *state;
	const uint64_t size = 1ull << 30;
	const size_t step = 4u << 20;
	unsigned char *buf = malloc(step);
	struct sm_error err = {0};
	struct fmt_writer *w;
	struct fmt_writer_opts o = {.threads = 2};
	assert_int_equal(fmt_writer_create(&w, e->path, &o, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{\"memory_size\":1073741824}", &err), 0);
	assert_int_equal(fmt_writer_mem_begin(w, size, &err), 0);
	/* touched: 1 MiB of text at 16 MiB, 2 MiB random at 512 MiB + 4 KiB, and
	 * the last page of every 8 MiB (seeded by its address) */
	for (uint64_t off = 0; off < size; off += step) {
		memset(buf, 0, step);
		if (off == 16ull << 20)
			text_fill(buf, 1u << 20, 5);
		if (off == 512ull << 20)
			rnd_fill(buf + 4096, 2u << 20, 6);
		if (off % (8u << 20) == step) /* last page of every 8 MiB */
			rnd_fill(buf + step - 4096, 4096, off + step - 4096);
		assert_int_equal(fmt_writer_mem_write(w, buf, step, &err), 0);
	}
	assert_int_equal(fmt_writer_mem_end(w, &err), 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);

	struct stat st;
	assert_int_equal(stat(e->path, &st), 0);
	assert_true(st.st_size < (6 << 20)); /* ~3 MiB random data + text + bitmap */

	struct fmt_reader *r;
	assert_int_equal(fmt_reader_open(&r, e->path, &err), 0);
	struct fmt_mem_info mi;
	assert_int_equal(fmt_reader_mem_info(r, &mi, &err), 0);
	assert_int_equal(mi.nonzero_pages, 256 + 512 + 128);
	unsigned char page[4096], want[4096];
	for (uint64_t q = (8u << 20) - 4096; q < size; q += 8u << 20) {
		rnd_fill(want, 4096, q);
		assert_int_equal(fmt_reader_mem_page(r, q + 17, page, &err), 0);
		assert_memory_equal(page, want, 4096);
		assert_int_equal(fmt_reader_mem_page(r, q - 4096, page, &err), 0);
		memset(want, 0, 4096);
		assert_memory_equal(page, want, 4096);
	}
	unsigned char *text = malloc(1u << 20);
	text_fill(text, 1u << 20, 5);
	assert_int_equal(fmt_reader_mem_page(r, (16ull << 20) + 65536, page, &err), 0);
	assert_memory_equal(page, text + 65536, 4096);
	assert_int_equal(fmt_reader_verify(r, NULL, &err), 0);

	char out[160];
	snprintf(out, sizeof(out), "%s.raw", e->path);
	int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fmt_reader_mem_unpack(r, fd, 2, &err), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, size);
	assert_true((uint64_t)st.st_blocks * 512 < (16u << 20)); /* sparse */
	assert_int_equal(pread(fd, buf, 1u << 20, 16u << 20), 1 << 20);
	assert_memory_equal(buf, text, 1u << 20);
	unsigned char *rnd = malloc(2u << 20);
	rnd_fill(rnd, 2u << 20, 6);
	assert_int_equal(pread(fd, buf, 2u << 20, (512u << 20) + 4096), 2 << 20);
	assert_memory_equal(buf, rnd, 2u << 20);
	close(fd);
	unlink(out);
	free(rnd);
	free(text);
	free(buf);
	fmt_reader_close(r);
}

struct reader_thread {
	struct fmt_reader *r;
	const unsigned char *mem;
	uint64_t pages, seed;
	int bad;
};

static void *reader_main(void *arg)
{
	struct reader_thread *t = arg;
	unsigned char page[4096];
	uint64_t s = t->seed;
	for (int i = 0; i < 3000; i++) {
		uint64_t p = rnd_next(&s) % t->pages;
		struct sm_error err = {0};
		if (fmt_reader_mem_page(t->r, p * 4096, page, &err) < 0 ||
		    memcmp(page, t->mem + p * 4096, 4096) != 0)
			t->bad++;
	}
	return NULL;
}

/* fmt_reader_mem_page is thread-safe: four threads, random pages, one reader
 * whose memory section is loaded lazily by whichever thread comes first. */
static void test_concurrent_page_reads(void **state)
{
	struct env *e = *state;
	size_t size = 4u << 20;
	unsigned char *mem = calloc(1, size);
	for (size_t p = 0; p < size / 4096; p += 3)
		text_fill(mem + p * 4096, 4096, p + 11);
	struct fmt_writer_opts o = {.frame_size = 16384};
	write_simple(e->path, mem, size, 1u << 20, &o);
	struct sm_error err = {0};
	struct fmt_reader *r;
	assert_int_equal(fmt_reader_open(&r, e->path, &err), 0);
	pthread_t th[4];
	struct reader_thread t[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (struct reader_thread){r, mem, size / 4096, (uint64_t)i + 1, 0};
		assert_int_equal(pthread_create(&th[i], NULL, reader_main, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(t[i].bad, 0);
	}
	fmt_reader_close(r);
	free(mem);
}

static void test_writer_misuse(void **state)
{
	struct env *e = *state;
	struct sm_error err = {0};
	struct fmt_writer *w;
	struct fmt_writer_opts bad = {.frame_size = 5000};
	assert_true(fmt_writer_create(&w, e->path, &bad, &err) < 0);
	assert_int_equal(fmt_writer_create(&w, e->path, NULL, &err), 0);
	assert_true(fmt_writer_add_meta(w, "[1,2]", &err) < 0);
	assert_non_null(strstr(err.msg, "object"));
	assert_true(fmt_writer_add_meta(w, "{bad", &err) < 0);
	assert_true(fmt_writer_commit(w, &err) < 0); /* no metadata */
	assert_non_null(strstr(err.msg, "metadata"));
	assert_int_equal(fmt_writer_add_meta(w, "{}", &err), 0);
	assert_true(fmt_writer_add_meta(w, "{}", &err) < 0);
	assert_true(fmt_writer_add(w, FMT_SEC_META, 0, 0, NULL, "x", 1, &err) < 0);
	assert_true(fmt_writer_add(w, FMT_SEC_VCPU, 0x80, 0, NULL, "x", 1, &err) < 0);
	assert_true(fmt_writer_add(w, FMT_SEC_VCPU, 0, 0, "a-name-longer-than-16", "x", 1, &err) <
		    0);
	assert_true(fmt_writer_mem_begin(w, 4095, &err) < 0);
	assert_int_equal(fmt_writer_mem_begin(w, 8192, &err), 0);
	assert_true(fmt_writer_add(w, FMT_SEC_VCPU, 0, 0, NULL, "x", 1, &err) < 0);
	assert_true(fmt_writer_mem_skip(w, 100, &err) < 0);
	assert_true(fmt_writer_mem_skip(w, 12288, &err) < 0); /* beyond the end */
	assert_true(fmt_writer_mem_end(w, &err) < 0);	      /* short */
	assert_true(fmt_writer_commit(w, &err) < 0);	      /* memory still open */
	assert_int_equal(fmt_writer_mem_skip(w, 8192, &err), 0);
	assert_int_equal(fmt_writer_mem_end(w, &err), 0);
	assert_true(fmt_writer_mem_begin(w, 8192, &err) < 0); /* only one */
	/* free without commit: nothing left, not even the temporary file */
	fmt_writer_free(w);
	assert_int_equal(access(e->path, F_OK), -1);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", e->dir);
	assert_int_equal(system(cmd), 0);
}

static void test_replace_is_atomic(void **state)
{
	struct env *e = *state;
	unsigned char mem[4096];
	memset(mem, 0xab, sizeof(mem));
	write_simple(e->path, mem, sizeof(mem), 4096, NULL);
	/* a second writer that gives up leaves the first file intact */
	struct sm_error err = {0};
	struct fmt_writer *w;
	assert_int_equal(fmt_writer_create(&w, e->path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{}", &err), 0);
	fmt_writer_free(w);
	check_mem(e->path, mem, sizeof(mem), 1);
	assert_true(fmt_writer_create(&w, "/nonexistent-dir/x/snap", NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "/nonexistent-dir/x"));
}

static void test_crc32c(void **state)
{
	(void)state;
	assert_int_equal(fmt_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(fmt_crc32c_sw(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(fmt_crc32c(0, "", 0), 0);
	unsigned char buf[10007];
	rnd_fill(buf, sizeof(buf), 3);
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len < 40; len++)
			assert_int_equal(fmt_crc32c(0, buf + off, len),
					 fmt_crc32c_sw(0, buf + off, len));
	uint32_t whole = fmt_crc32c(0, buf, sizeof(buf));
	assert_int_equal(whole, fmt_crc32c_sw(0, buf, sizeof(buf)));
	assert_int_equal(fmt_crc32c(fmt_crc32c(0, buf, 1234), buf + 1234, sizeof(buf) - 1234),
			 whole);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test_setup_teardown(test_all_sections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_memory_section, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_zero_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mixed_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sparse_1g, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_page_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_misuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replace_is_atomic, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
