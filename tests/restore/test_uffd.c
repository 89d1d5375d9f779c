/* SPDX-License-Identifier: Apache-2.0 */
/* restore/uffd.c without KVM: guest RAM registered with userfaultfd is
 * filled on first touch from a real snapshot file's compressed memory;
 * concurrent readers see exactly the baked bytes (stored pages, zero pages,
 * pages written before being read), nothing is filled before it is touched,
 * and a corrupt frame is reported instead of hanging the toucher. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../restore/uffd.h"
#include "sm/format.h"

#define MEM   (8u << 20)
#define PAGES (MEM / 4096u)

/* Page I of the baked memory: zero for every third page and for a 1 MiB
 * hole, else bytes derived from I (never all zero). */
static int page_zero(uint32_t i)
{
	return i % 3 == 0 || (i >= 512 && i < 768);
}

static void page_fill(uint32_t i, uint8_t *p)
{
	if (page_zero(i)) {
		memset(p, 0, 4096);
		return;
	}
	for (uint32_t k = 0; k < 4096; k++)
		p[k] = (uint8_t)(i * 31 + k * 7 + (k >> 8) + 1);
	p[0] = 0xAA; /* never all zero */
}

struct env {
	char dir[64];
	char path[96];
	uint64_t data_off, data_len; /* the memory section in the file */
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/sm-test-uffd-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->path, sizeof(e->path), "%s/snap", e->dir);
	struct sm_error err = {0};
	struct fmt_writer *w;
	assert_int_equal(fmt_writer_create(&w, e->path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{\"kind\":\"test\"}", &err), 0);
	assert_int_equal(fmt_writer_mem_begin(w, MEM, &err), 0);
	uint8_t *page = malloc(4096);
	for (uint32_t i = 0; i < PAGES; i++) {
		page_fill(i, page);
		assert_int_equal(fmt_writer_mem_write(w, page, 4096, &err), 0);
	}
	free(page);
	assert_int_equal(fmt_writer_mem_end(w, &err), 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	unlink(e->path);
	rmdir(e->dir);
	free(e);
	return 0;
}

/* Start the handler over E's snapshot, or skip when this kernel or
 * sandbox has no userfaultfd for us. */
static struct restore_uffd *start(const char *path, struct fmt_reader **rd, uint8_t **ram)
{
	struct sm_error err = {0};
	assert_int_equal(fmt_reader_open(rd, path, &err), 0);
	struct restore_uffd *u = NULL;
	void *m = NULL;
	int r = restore_uffd_start(*rd, MEM, &u, &m, &err);
	if (r == -ENOSYS || r == -EPERM) {
		fmt_reader_close(*rd);
		print_message("no userfaultfd here: %s\n", err.msg);
		skip();
	}
	if (r != 0)
		fail_msg("restore_uffd_start: %s", err.msg);
	*ram = m;
	return u;
}

struct reader {
	uint8_t *ram;
	uint32_t first, step;
	int bad;
};

static void *read_pages(void *arg)
{
	struct reader *t = arg;
	uint8_t want[4096];
	for (uint32_t n = 0, i = t->first; n < PAGES; n++, i = (i + t->step) % PAGES) {
		page_fill(i, want);
		if (memcmp(t->ram + (size_t)i * 4096, want, 4096) != 0)
			t->bad++;
	}
	return NULL;
}

static void test_fill_on_touch(void **state)
{
	struct env *e = *state;
	struct fmt_reader *rd;
	uint8_t *ram;
	struct restore_uffd *u = start(e->path, &rd, &ram);
	struct sm_error err = {0};

	/* Nothing is resident before the first touch. */
	unsigned char vec[PAGES];
	assert_int_equal(mincore(ram, MEM, vec), 0);
	for (uint32_t i = 0; i < PAGES; i++)
		assert_int_equal(vec[i] & 1, 0);

	/* One read fills exactly its block. */
	uint8_t want[4096];
	page_fill(100, want);
	assert_memory_equal(ram + 100 * 4096, want, 4096);
	assert_int_equal(mincore(ram, MEM, vec), 0);
	uint32_t bp = RESTORE_UFFD_BLOCK_PAGES, first = 100 / bp * bp, resident = 0;
	for (uint32_t i = 0; i < PAGES; i++) {
		int in_block = i >= first && i < first + bp;
		if (!in_block)
			assert_int_equal(vec[i] & 1, 0);
		resident += vec[i] & 1;
	}
	assert_true(resident >= 1 && resident <= bp);

	/* A write to an untouched page lands on the baked content. */
	ram[1500 * 4096 + 5] = 0x55;
	page_fill(1500, want);
	want[5] = 0x55;
	assert_memory_equal(ram + 1500 * 4096, want, 4096);
	/* ... and a write into the zero hole too. */
	ram[600 * 4096] = 1;
	assert_int_equal(ram[600 * 4096 + 1], 0);
	ram[600 * 4096] = 0;

	/* Four threads read everything in different orders at once. */
	ram[1500 * 4096 + 5] = want[5] = 0;
	page_fill(1500, want);
	memcpy(ram + 1500 * 4096, want, 4096);
	struct reader th[4] = {{ram, 0, 1, 0},
			       {ram, PAGES - 1, PAGES - 1, 0},
			       {ram, 7, 97, 0},
			       {ram, 1000, 389, 0}};
	pthread_t tid[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&tid[i], NULL, read_pages, &th[i]);
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(th[i].bad, 0);
	}

	munmap(ram, MEM); /* no VM took it over */
	struct restore_uffd_stats st;
	assert_int_equal(restore_uffd_stop(u, &st, &err), 0);
	uint32_t stored = 0;
	for (uint32_t i = 0; i < PAGES; i++)
		stored += !page_zero(i);
	/* Every page filled exactly once: stored pages copied, the rest zero. */
	assert_int_equal(st.copied_pages, stored);
	assert_int_equal(st.zero_pages, PAGES - stored);
	assert_true(st.faults >= PAGES / RESTORE_UFFD_BLOCK_PAGES);
	fmt_reader_close(rd);
}

static void test_size_mismatch(void **state)
{
	struct env *e = *state;
	struct sm_error err = {0};
	struct fmt_reader *rd;
	assert_int_equal(fmt_reader_open(&rd, e->path, &err), 0);
	struct restore_uffd *u = (void *)1;
	void *m = (void *)1;
	assert_int_equal(restore_uffd_start(rd, MEM * 2, &u, &m, &err), -EINVAL);
	assert_null(u);
	assert_null(m);
	assert_non_null(strstr(err.msg, "memory section"));
	fmt_reader_close(rd);
	assert_int_equal(restore_uffd_stop(NULL, NULL, &err), 0);
}

static void test_corrupt_frame(void **state)
{
	struct env *e = *state;
	struct sm_error err = {0};
	/* Damage a byte in the middle of the compressed frames. */
	struct fmt_reader *rd;
	assert_int_equal(fmt_reader_open(&rd, e->path, &err), 0);
	int mi = fmt_reader_find(rd, FMT_SEC_MEMORY, 0, &err);
	assert_true(mi >= 0);
	const struct fmt_section_info *s = fmt_reader_section(rd, (unsigned)mi);
	uint64_t off = s->offset + s->length / 3;
	fmt_reader_close(rd);
	char bad[128];
	snprintf(bad, sizeof(bad), "%s/bad", e->dir);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "cp %s %s", e->path, bad);
	assert_int_equal(system(cmd), 0);
	int fd = open(bad, O_RDWR);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0xff;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);

	uint8_t *ram;
	struct restore_uffd *u = start(bad, &rd, &ram);
	/* Touch everything: the damaged block reads as zeroes, nothing hangs. */
	uint8_t want[4096];
	uint32_t wrong = 0;
	for (uint32_t i = 0; i < PAGES; i++) {
		page_fill(i, want);
		wrong += memcmp(ram + (size_t)i * 4096, want, 4096) != 0;
	}
	assert_true(wrong > 0);
	assert_true(wrong <= 2 * RESTORE_UFFD_BLOCK_PAGES); /* a frame may straddle two blocks */
	munmap(ram, MEM);
	struct restore_uffd_stats st;
	int r = restore_uffd_stop(u, &st, &err);
	assert_int_equal(r, -EBADMSG);
	assert_non_null(strstr(err.msg, "lazy guest memory"));
	fmt_reader_close(rd);
	unlink(bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fill_on_touch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_frame, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
