/* SPDX-License-Identifier: Apache-2.0 */
/* Split virtqueue: normal chains and hostile ones (loops, out-of-range
 * indexes and addresses, overflowing lengths) must never crash. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/vm/vq_helper.h"

struct fx {
	struct vm_mem m;
	struct gq g;
	struct virtq q;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->m = gmem_new();
	gq_init(&f->g, 8, 0x1000);
	gq_to_virtq(&f->g, &f->q);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	free(f->m.host);
	free(f);
	return 0;
}

static void test_validate(void **state)
{
	struct fx *f = *state;
	struct sm_error err = {0};
	assert_int_equal(virtq_validate(&f->q, &f->m, &err), 0);
	struct virtq q = f->q;
	q.size = 0;
	assert_int_equal(virtq_validate(&q, &f->m, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "size is 0"));
	q = f->q;
	q.size = 6;
	assert_int_equal(virtq_validate(&q, &f->m, &err), -EINVAL);
	q = f->q;
	q.size = 512; /* above max_size 256 */
	assert_int_equal(virtq_validate(&q, &f->m, &err), -EINVAL);
	q = f->q;
	q.desc_gpa = GQ_MEM_SIZE - 16; /* table runs past the end */
	assert_int_equal(virtq_validate(&q, &f->m, &err), -EINVAL);
	q = f->q;
	q.used_gpa = 0xfffffffffffffffcULL; /* wraps */
	assert_int_equal(virtq_validate(&q, &f->m, &err), -EINVAL);
	q = f->q;
	q.avail_gpa = 0x2001; /* misaligned */
	assert_int_equal(virtq_validate(&q, &f->m, &err), -EINVAL);
}

static void test_empty_and_simple_chain(void **state)
{
	struct fx *f = *state;
	struct virtq_elem e;
	assert_int_equal(virtq_pop(&f->q, &f->m, &e), 0);
	assert_false(virtq_has_avail(&f->q, &f->m));
	memcpy(f->m.host + 0x10000, "request!", 8);
	gq_desc(&f->m, &f->g, 3, 0x10000, 8, F_NEXT, 5);
	gq_desc(&f->m, &f->g, 5, 0x20000, 100, F_WRITE | F_NEXT, 6);
	gq_desc(&f->m, &f->g, 6, 0x30000, 50, F_WRITE, 0);
	gq_publish(&f->m, &f->g, 3);
	assert_true(virtq_has_avail(&f->q, &f->m));
	assert_int_equal(virtq_pop(&f->q, &f->m, &e), 1);
	assert_int_equal(e.head, 3);
	assert_int_equal(e.n_out, 1);
	assert_int_equal(e.n_in, 2);
	assert_int_equal(e.out_len, 8);
	assert_int_equal(e.in_len, 150);
	char buf[16] = {0};
	assert_int_equal(virtq_elem_read(&e, 0, buf, sizeof(buf)), 8);
	assert_string_equal(buf, "request!");
	assert_int_equal(virtq_elem_read(&e, 4, buf, 2), 2);
	assert_memory_equal(buf, "es", 2);
	/* A write spanning both writable segments; and one too long. */
	uint8_t data[150];
	for (int i = 0; i < 150; i++)
		data[i] = (uint8_t)i;
	assert_int_equal(virtq_elem_write(&e, 90, data, 20), 20);
	assert_memory_equal(f->m.host + 0x20000 + 90, data, 10);
	assert_memory_equal(f->m.host + 0x30000, data + 10, 10);
	assert_int_equal(virtq_elem_write(&e, 140, data, 100), 10);
	virtq_push(&f->q, &f->m, e.head, 42);
	uint32_t id, len;
	assert_int_equal(gq_used(&f->m, &f->g, &id, &len), 1);
	assert_int_equal(id, 3);
	assert_int_equal(len, 42);
	assert_int_equal(virtq_pop(&f->q, &f->m, &e), 0);
	assert_false(f->q.broken);
}

static void expect_broken(struct fx *f)
{
	struct virtq_elem e;
	assert_int_equal(virtq_pop(&f->q, &f->m, &e), -EINVAL);
	assert_true(f->q.broken);
	/* A broken queue stays quiet and still does not crash. */
	assert_int_equal(virtq_pop(&f->q, &f->m, &e), 0);
}

static void test_loop(void **state)
{
	struct fx *f = *state;
	gq_desc(&f->m, &f->g, 0, 0x10000, 8, F_NEXT, 1);
	gq_desc(&f->m, &f->g, 1, 0x10000, 8, F_NEXT, 0);
	gq_publish(&f->m, &f->g, 0);
	expect_broken(f);
}

static void test_self_loop(void **state)
{
	struct fx *f = *state;
	gq_desc(&f->m, &f->g, 2, 0x10000, 8, F_WRITE | F_NEXT, 2);
	gq_publish(&f->m, &f->g, 2);
	expect_broken(f);
}

static void test_head_out_of_range(void **state)
{
	struct fx *f = *state;
	gq_publish(&f->m, &f->g, 8);
	expect_broken(f);
}

static void test_next_out_of_range(void **state)
{
	struct fx *f = *state;
	gq_desc(&f->m, &f->g, 0, 0x10000, 8, F_NEXT, 0xffff);
	gq_publish(&f->m, &f->g, 0);
	expect_broken(f);
}

static void test_addr_outside_memory(void **state)
{
	struct fx *f = *state;
	gq_desc(&f->m, &f->g, 0, GQ_MEM_SIZE, 1, 0, 0);
	gq_publish(&f->m, &f->g, 0);
	expect_broken(f);
}

static void test_len_past_end(void **state)
{
	struct fx *f = *state;
	gq_desc(&f->m, &f->g, 0, GQ_MEM_SIZE - 4, 8, F_WRITE, 0);
	gq_publish(&f->m, &f->g, 0);
	expect_broken(f);
}

static void test_len_overflow(void **state)
{
	struct fx *f = *state;
	gq_desc(&f->m, &f->g, 0, 0xffffffffffffff00ULL, 0x200, 0, 0);
	gq_publish(&f->m, &f->g, 0);
	expect_broken(f);
}

static void test_writable_then_readable(void **state)
{
	struct fx *f = *state;
	gq_desc(&f->m, &f->g, 0, 0x10000, 8, F_WRITE | F_NEXT, 1);
	gq_desc(&f->m, &f->g, 1, 0x10000, 8, 0, 0);
	gq_publish(&f->m, &f->g, 0);
	expect_broken(f);
}

static void test_indirect_refused(void **state)
{
	struct fx *f = *state;
	gq_desc(&f->m, &f->g, 0, 0x10000, 64, F_INDIRECT, 0);
	gq_publish(&f->m, &f->g, 0);
	expect_broken(f);
}

static void test_avail_idx_jump(void **state)
{
	struct fx *f = *state;
	uint16_t idx = 100; /* more outstanding chains than the queue holds */
	memcpy(f->m.host + f->g.avail + 2, &idx, 2);
	expect_broken(f);
}

static void test_zero_size_queue(void **state)
{
	struct fx *f = *state;
	f->q.size = 0;
	struct virtq_elem e;
	gq_publish(&f->m, &f->g, 0);
	assert_int_equal(virtq_pop(&f->q, &f->m, &e), 0);
	assert_false(virtq_has_avail(&f->q, &f->m));
	virtq_push(&f->q, &f->m, 0, 0); /* must not divide by zero or write */
}

static void test_ring_moved_outside(void **state)
{
	struct fx *f = *state;
	/* Rings validated once, then pointed elsewhere: still checked. */
	f->q.avail_gpa = GQ_MEM_SIZE + 0x1000;
	struct virtq_elem e;
	assert_int_equal(virtq_pop(&f->q, &f->m, &e), -EINVAL);
	f->q.broken = 0;
	f->q.used_gpa = GQ_MEM_SIZE;
	virtq_push(&f->q, &f->m, 0, 0);
	assert_true(f->q.broken);
}

static void test_wraparound(void **state)
{
	struct fx *f = *state;
	/* 70000 chains: the 16-bit indexes wrap and everything still works. */
	gq_desc(&f->m, &f->g, 0, 0x10000, 4, F_WRITE, 0);
	struct virtq_elem e;
	for (int i = 0; i < 70000; i++) {
		gq_publish(&f->m, &f->g, 0);
		assert_int_equal(virtq_pop(&f->q, &f->m, &e), 1);
		virtq_push(&f->q, &f->m, e.head, 4);
		uint32_t id, len;
		assert_int_equal(gq_used(&f->m, &f->g, &id, &len), 1);
	}
	assert_false(f->q.broken);
}

static void test_max_segments(void **state)
{
	struct fx *f = *state;
	/* A long but legal chain within a big queue; then one too long for us. */
	struct gq g;
	gq_init(&g, 128, 0x40000);
	struct virtq q;
	gq_to_virtq(&g, &q);
	for (int i = 0; i < 128; i++)
		gq_desc(&f->m, &g, i, 0x10000, 1, (uint16_t)(i < 127 ? F_NEXT : 0),
			(uint16_t)(i + 1));
	gq_publish(&f->m, &g, 64); /* 64 readable segments: the maximum */
	struct virtq_elem e;
	assert_int_equal(virtq_pop(&q, &f->m, &e), 1);
	assert_int_equal(e.n_out, 64);
	gq_publish(&f->m, &g, 0); /* 128 segments: refused */
	assert_int_equal(virtq_pop(&q, &f->m, &e), -EINVAL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_validate),
		T(test_empty_and_simple_chain),
		T(test_loop),
		T(test_self_loop),
		T(test_head_out_of_range),
		T(test_next_out_of_range),
		T(test_addr_outside_memory),
		T(test_len_past_end),
		T(test_len_overflow),
		T(test_writable_then_readable),
		T(test_indirect_refused),
		T(test_avail_idx_jump),
		T(test_zero_size_queue),
		T(test_ring_moved_outside),
		T(test_wraparound),
		T(test_max_segments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
