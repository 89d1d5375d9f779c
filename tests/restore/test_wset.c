/* SPDX-License-Identifier: Apache-2.0 */
/* restore/wset.c without KVM: the write set recorded from a MAP_PRIVATE view
 * of an image holds exactly the pages written (not those only read), comes
 * back from its file as the same ranges, is copied ahead by apply (recorded
 * again from a fresh view it is the same), stops at RESTORE_WSET_MAX_PAGES,
 * and every malformed file is refused. The read set, recorded from the same
 * view, holds the pages only read (and never one written). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../restore/wset.h"

#define PAGES 4096u /* 16 MiB: more than RESTORE_WSET_MAX_PAGES */
#define SIZE  ((uint64_t)PAGES * 4096)

static char dir[] = "/tmp/test_wset-XXXXXX";
static char image[64], wset[64];

static uint8_t *map_image(void)
{
	int fd = open(image, O_RDONLY);
	assert_true(fd >= 0);
	void *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	assert_true(p != MAP_FAILED);
	return p;
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(image, sizeof(image), "%s/image", dir);
	snprintf(wset, sizeof(wset), "%s/image.wset", dir);
	int fd = open(image, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	uint8_t page[4096];
	for (uint32_t i = 0; i < PAGES; i++) {
		memset(page, (int)(i % 251) + 1, sizeof(page));
		if (write(fd, page, sizeof(page)) != (ssize_t)sizeof(page))
			return -1;
	}
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(wset);
	unlink(image);
	rmdir(dir);
	return 0;
}

static void test_record_load_apply(void **state)
{
	(void)state;
	uint8_t *m = map_image();
	volatile uint8_t sink = 0;
	for (uint32_t i = 0; i < 64; i++) /* read only: not in the set */
		sink += m[(200 + i) * 4096];
	(void)sink;
	m[3 * 4096] = 1;
	m[4 * 4096 + 7] = 1;
	m[5 * 4096 + 4095] = 1;
	m[100 * 4096] ^= 0xff;
	m[(PAGES - 1) * 4096] = 9;
	uint32_t pages = 0;
	struct sm_error err = {0};
	assert_int_equal(restore_wset_record(m, SIZE, wset, &pages, &err), 0);
	assert_int_equal(pages, 5);
	munmap(m, SIZE);

	struct restore_wset_range *r = NULL;
	uint32_t n = 0;
	assert_int_equal(restore_wset_load(wset, SIZE, &r, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(r[0].offset, 3 * 4096);
	assert_int_equal(r[0].length, 3 * 4096);
	assert_int_equal(r[1].offset, 100 * 4096);
	assert_int_equal(r[1].length, 4096);
	assert_int_equal(r[2].offset, (uint64_t)(PAGES - 1) * 4096);
	assert_int_equal(r[2].length, 4096);
	/* Another size of image: refused. */
	struct restore_wset_range *r2 = NULL;
	uint32_t n2 = 0;
	assert_int_equal(restore_wset_load(wset, SIZE / 2, &r2, &n2, &err), -EINVAL);

	/* Applied to a fresh view: those pages are private copies now (with the
	 * image's bytes), and nothing else is. */
	m = map_image();
	assert_int_equal(restore_wset_apply(m, SIZE, r, n, &err), 0);
	assert_int_equal(m[4 * 4096], 4 % 251 + 1);
	char again[80];
	snprintf(again, sizeof(again), "%s.again", wset);
	assert_int_equal(restore_wset_record(m, SIZE, again, &pages, &err), 0);
	assert_int_equal(pages, 5);
	munmap(m, SIZE);
	unlink(again);
	free(r);
}

static int in_ranges(const struct restore_wset_range *r, uint32_t n, uint64_t off)
{
	for (uint32_t i = 0; i < n; i++)
		if (off >= r[i].offset && off - r[i].offset < r[i].length)
			return 1;
	return 0;
}

static void test_read_set(void **state)
{
	(void)state;
	char rset[80];
	snprintf(rset, sizeof(rset), "%s.rset", wset);
	uint8_t *m = map_image();
	volatile uint8_t sink = 0;
	for (uint32_t i = 0; i < 64; i++)
		sink += m[(200 + i) * 4096];
	sink += m[3000 * 4096 + 5];
	(void)sink;
	m[3 * 4096] = 1;
	m[201 * 4096] = 1; /* read, then written: a private copy now */
	uint32_t pages = 0;
	struct sm_error err = {0};
	assert_int_equal(restore_rset_record(m, SIZE, rset, &pages, &err), 0);
	munmap(m, SIZE);
	struct restore_wset_range *r = NULL;
	uint32_t n = 0;
	assert_int_equal(restore_rset_load(rset, SIZE, &r, &n, &err), 0);
	uint32_t sum = 0;
	for (uint32_t i = 0; i < n; i++)
		sum += (uint32_t)(r[i].length / 4096);
	assert_int_equal(sum, pages);
	/* Every page read is in it (the kernel may have mapped neighbours of
	 * a faulting page in the same go: those are in it too); the written
	 * ones and pages far from any read are not. */
	for (uint32_t i = 0; i < 64; i++)
		if (i != 1)
			assert_true(in_ranges(r, n, (uint64_t)(200 + i) * 4096));
	assert_true(in_ranges(r, n, 3000ULL * 4096));
	assert_false(in_ranges(r, n, 201ULL * 4096));
	assert_false(in_ranges(r, n, 3ULL * 4096));
	assert_false(in_ranges(r, n, 1000ULL * 4096));
	assert_true(pages >= 64 && pages <= 64 + 64);
	free(r);
	unlink(rset);
}

static void test_cap(void **state)
{
	(void)state;
	uint8_t *m = map_image();
	for (uint32_t i = 0; i < PAGES; i += 1)
		m[(uint64_t)i * 4096] = 0;
	uint32_t pages = 0;
	struct sm_error err = {0};
	assert_int_equal(restore_wset_record(m, SIZE, wset, &pages, &err), 0);
	assert_int_equal(pages, RESTORE_WSET_MAX_PAGES);
	munmap(m, SIZE);
	struct restore_wset_range *r = NULL;
	uint32_t n = 0;
	assert_int_equal(restore_wset_load(wset, SIZE, &r, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].length, (uint64_t)RESTORE_WSET_MAX_PAGES * 4096);
	free(r);
}

/* Write a file of HDR and N ranges R; load must refuse it. */
static void refused(const struct restore_wset_hdr *h, const struct restore_wset_range *r,
		    uint32_t n, size_t cut, const char *what)
{
	int fd = open(wset, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	uint8_t buf[32 + 16 * 8];
	memcpy(buf, h, sizeof(*h));
	memcpy(buf + sizeof(*h), r, n * sizeof(*r));
	size_t len = sizeof(*h) + n * sizeof(*r) - cut;
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	struct restore_wset_range *out = NULL;
	uint32_t count = 0;
	struct sm_error err = {0};
	int ret = restore_wset_load(wset, SIZE, &out, &count, &err);
	if (ret != -EINVAL)
		fail_msg("%s: load returned %d", what, ret);
	assert_null(out);
}

static void test_hostile(void **state)
{
	(void)state;
	struct restore_wset_hdr good = {.mem_size = SIZE, .count = 2, .pages = 3};
	memcpy(good.magic, RESTORE_WSET_MAGIC, sizeof(RESTORE_WSET_MAGIC));
	struct restore_wset_range ok[2] = {{0, 4096}, {8192, 8192}};
	struct restore_wset_hdr h;
	struct restore_wset_range r[2];

	/* The good one loads. */
	int fd = open(wset, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, &good, sizeof(good)), 32);
	assert_int_equal(write(fd, ok, sizeof(ok)), 32);
	close(fd);
	struct restore_wset_range *out = NULL;
	uint32_t n = 0;
	struct sm_error err = {0};
	assert_int_equal(restore_wset_load(wset, SIZE, &out, &n, &err), 0);
	assert_int_equal(n, 2);
	free(out);

	refused(&good, ok, 2, 1, "truncated");
	refused(&good, ok, 2, 40, "no ranges");
	h = good, h.magic[0] = 'X', refused(&h, ok, 2, 0, "magic");
	h = good, h.reserved = 1, refused(&h, ok, 2, 0, "reserved");
	h = good, h.mem_size = SIZE * 2, refused(&h, ok, 2, 0, "other size");
	h = good, h.count = 3, refused(&h, ok, 2, 0, "count beyond the file");
	h = good, h.pages = 4, refused(&h, ok, 2, 0, "pages do not add up");
	h = good, h.count = 0xffffffffu, refused(&h, ok, 2, 0, "huge count");
	memcpy(r, ok, sizeof(r)), r[1].offset = 4097, refused(&good, r, 2, 0, "unaligned");
	memcpy(r, ok, sizeof(r)), r[1].length = 0, refused(&good, r, 2, 0, "empty");
	memcpy(r, ok, sizeof(r)), r[1].offset = 0, refused(&good, r, 2, 0, "overlap");
	memcpy(r, ok, sizeof(r)), r[1].offset = SIZE - 4096, refused(&good, r, 2, 0, "beyond");
	memcpy(r, ok, sizeof(r)), r[1].offset = UINT64_MAX & ~4095ULL,
				  refused(&good, r, 2, 0, "wraps");
	memcpy(r, ok, sizeof(r)), r[1].length = UINT64_MAX & ~4095ULL,
				  refused(&good, r, 2, 0, "huge length");
	assert_int_equal(restore_wset_load("/nonexistent/x.wset", SIZE, &out, &n, &err), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_load_apply),
		cmocka_unit_test(test_read_set),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
