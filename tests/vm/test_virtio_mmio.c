/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-mmio register handling (version 2 layout) with a dummy device and
 * with virtio-rng, including hostile drivers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/vm/mmio_helper.h"

struct dummy {
	int notified[4];
	int status_calls, last_status;
	struct virtio_mmio *t;
};

static void d_config(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	(void)dev;
	for (uint32_t i = 0; i < len; i++)
		data[i] = (uint8_t)(0xa0 + off + i);
}

static void d_notify(void *dev, uint32_t q)
{
	struct dummy *d = dev;
	d->notified[q]++;
	/* Consume the queue like a device would, so malformed chains surface. */
	struct virtq *vq = virtio_mmio_queue(d->t, q);
	struct virtq_elem e;
	while (vq && virtq_pop(vq, d->t->mem, &e) == 1)
		virtq_push(vq, d->t->mem, e.head, 0);
}

static void d_status(void *dev, int ok)
{
	struct dummy *d = dev;
	d->status_calls++;
	d->last_status = ok;
}

static const struct virtio_dev_ops dummy_ops = {
	.name = "dummy",
	.device_id = 42,
	.features = 1ULL << 3,
	.num_queues = 2,
	.queue_max = 64,
	.config_len = 8,
	.config_read = d_config,
	.queue_notify = d_notify,
	.status_changed = d_status,
};

struct fx {
	struct vm_mem m;
	struct virtio_mmio t;
	struct dummy d;
	int irqs;
};

static void count_irq(void *ctx)
{
	(*(int *)ctx)++;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->m = gmem_new();
	assert_int_equal(virtio_mmio_init(&f->t, &dummy_ops, &f->d, &f->m, NULL), 0);
	f->d.t = &f->t;
	f->t.irq = count_irq;
	f->t.irq_ctx = &f->irqs;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	virtio_mmio_destroy(&f->t);
	free(f->m.host);
	free(f);
	return 0;
}

static void test_identity(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mr(&f->t, 0x000), 0x74726976);
	assert_int_equal(mr(&f->t, 0x004), 2);
	assert_int_equal(mr(&f->t, 0x008), 42);
	mw(&f->t, 0x14, 0);
	assert_int_equal(mr(&f->t, 0x10), 1U << 3);
	mw(&f->t, 0x14, 1);
	assert_int_equal(mr(&f->t, 0x10), 1); /* VERSION_1 */
	mw(&f->t, 0x14, 7);
	assert_int_equal(mr(&f->t, 0x10), 0);
	/* Read-only registers ignore writes. */
	mw(&f->t, 0x000, 0);
	assert_int_equal(mr(&f->t, 0x000), 0x74726976);
}

static void test_shm_absent(void **state)
{
	struct fx *f = *state;
	for (uint32_t sel = 0; sel < 3; sel++) {
		mw(&f->t, 0xac, sel);
		assert_int_equal(mr(&f->t, 0xb0), 0xffffffff);
		assert_int_equal(mr(&f->t, 0xb4), 0xffffffff);
	}
}

static void test_config_space(void **state)
{
	struct fx *f = *state;
	uint8_t b[8];
	virtio_mmio_access(&f->t, 0x100 + 2, b, 2, 0);
	assert_int_equal(b[0], 0xa2);
	assert_int_equal(b[1], 0xa3);
	uint64_t q;
	virtio_mmio_access(&f->t, 0x100, (uint8_t *)&q, 8, 0);
	assert_int_equal(q & 0xff, 0xa0);
	/* Past the end of config space: reads 0, nothing overflows. */
	memset(b, 0x55, sizeof(b));
	virtio_mmio_access(&f->t, 0x100 + 6, b, 4, 0);
	assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);
	virtio_mmio_access(&f->t, 0xffffffffffffff00ULL, b, 8, 0);
	virtio_mmio_access(&f->t, 0x100, b, 0, 0);
	virtio_mmio_access(&f->t, 0x100, b, 9, 1);
}

static void test_feature_negotiation(void **state)
{
	struct fx *f = *state;
	assert_int_equal(drv_negotiate(&f->t) & 8, 8);
	/* Without VERSION_1, FEATURES_OK is refused. */
	mw(&f->t, 0x70, 0);
	mw(&f->t, 0x70, 3);
	mw(&f->t, 0x24, 0);
	mw(&f->t, 0x20, 1U << 3);
	mw(&f->t, 0x70, 3 | 8);
	assert_int_equal(mr(&f->t, 0x70) & 8, 0);
	/* Features the device does not offer: refused too. */
	mw(&f->t, 0x70, 0);
	mw(&f->t, 0x70, 3);
	mw(&f->t, 0x24, 0);
	mw(&f->t, 0x20, 1U << 5);
	mw(&f->t, 0x24, 1);
	mw(&f->t, 0x20, 1);
	mw(&f->t, 0x70, 3 | 8);
	assert_int_equal(mr(&f->t, 0x70) & 8, 0);
	/* DRIVER_OK without FEATURES_OK is refused. */
	mw(&f->t, 0x70, 3 | 4);
	assert_int_equal(mr(&f->t, 0x70) & 4, 0);
	assert_int_equal(f->d.status_calls, 0);
}

static void test_queue_select_out_of_range(void **state)
{
	struct fx *f = *state;
	drv_negotiate(&f->t);
	struct gq g;
	gq_init(&g, 8, 0x1000);
	for (uint32_t sel = 2; sel < 10; sel += 7) {
		assert_int_equal(drv_setup_queue(&f->t, sel, &g), 0);
		assert_int_equal(mr(&f->t, 0x34), 0); /* QueueNumMax */
	}
	mw(&f->t, 0x30, 0xffffffff);
	assert_int_equal(mr(&f->t, 0x34), 0);
	assert_int_equal(mr(&f->t, 0x44), 0);
	drv_ok(&f->t);
	mw(&f->t, 0x50, 2);
	mw(&f->t, 0x50, 0xffffffff);
	assert_int_equal(f->d.notified[0] + f->d.notified[1], 0);
}

static void test_zero_size_queue(void **state)
{
	struct fx *f = *state;
	drv_negotiate(&f->t);
	struct gq g;
	gq_init(&g, 0, 0x1000);
	assert_int_equal(drv_setup_queue(&f->t, 0, &g), 0);
	assert_non_null(strstr(f->t.last_err.msg, "size is 0"));
	gq_init(&g, 128, 0x1000); /* above QueueNumMax 64 */
	assert_int_equal(drv_setup_queue(&f->t, 0, &g), 0);
	mw(&f->t, 0x38, 0x10000); /* does not fit 16 bits */
	mw(&f->t, 0x44, 1);
	assert_int_equal(mr(&f->t, 0x44), 0);
	drv_ok(&f->t);
	mw(&f->t, 0x50, 0);
	assert_int_equal(f->d.notified[0], 0);
}

static void test_queue_outside_memory(void **state)
{
	struct fx *f = *state;
	drv_negotiate(&f->t);
	struct gq g;
	gq_init(&g, 8, GQ_MEM_SIZE - 0x1800);
	assert_int_equal(drv_setup_queue(&f->t, 0, &g), 0);
	gq_init(&g, 8, 0xfffffffffffff000ULL);
	assert_int_equal(drv_setup_queue(&f->t, 0, &g), 0);
}

static void test_notify_and_interrupts(void **state)
{
	struct fx *f = *state;
	drv_negotiate(&f->t);
	struct gq g;
	gq_init(&g, 8, 0x1000);
	assert_int_equal(mr(&f->t, 0x34), 64);
	assert_int_equal(drv_setup_queue(&f->t, 1, &g), 1);
	/* Layout registers are frozen while the queue is live. */
	mw(&f->t, 0x80, 0x5000);
	assert_int_equal(f->t.vq[1].desc_gpa, g.desc);
	mw(&f->t, 0x50, 1); /* before DRIVER_OK: ignored */
	assert_int_equal(f->d.notified[1], 0);
	drv_ok(&f->t);
	assert_int_equal(f->d.status_calls, 1);
	assert_int_equal(f->d.last_status, 1);
	mw(&f->t, 0x50, 1);
	assert_int_equal(f->d.notified[1], 1);
	virtio_mmio_kick(&f->t, 1);
	assert_int_equal(f->d.notified[1], 2);
	/* Interrupt status and acknowledge. */
	pthread_mutex_lock(&f->t.lock);
	virtio_mmio_signal_used(&f->t);
	pthread_mutex_unlock(&f->t.lock);
	assert_int_equal(f->irqs, 1);
	assert_int_equal(mr(&f->t, 0x60), 1);
	mw(&f->t, 0x64, 1);
	assert_int_equal(mr(&f->t, 0x60), 0);
	/* Reset clears everything and tells the device. */
	mw(&f->t, 0x70, 0);
	assert_int_equal(mr(&f->t, 0x70), 0);
	assert_int_equal(f->d.last_status, 0);
	mw(&f->t, 0x30, 1);
	assert_int_equal(mr(&f->t, 0x44), 0);
}

static void test_malformed_chain_needs_reset(void **state)
{
	struct fx *f = *state;
	drv_negotiate(&f->t);
	struct gq g;
	gq_init(&g, 8, 0x1000);
	assert_int_equal(drv_setup_queue(&f->t, 0, &g), 1);
	drv_ok(&f->t);
	gq_desc(&f->m, &g, 0, 0x10000, 8, F_NEXT, 0); /* loops onto itself */
	gq_publish(&f->m, &g, 0);
	mw(&f->t, 0x50, 0);
	assert_int_equal(mr(&f->t, 0x70) & 64, 64); /* DEVICE_NEEDS_RESET */
	assert_int_equal(mr(&f->t, 0x60) & 2, 2);   /* config change interrupt */
	assert_non_null(strstr(f->t.last_err.msg, "malformed"));
	/* Further kicks are ignored; a reset recovers the device. */
	mw(&f->t, 0x50, 0);
	assert_int_equal(f->d.notified[0], 1);
	mw(&f->t, 0x70, 0);
	assert_int_equal(drv_negotiate(&f->t) & 64, 0);
}

static void test_odd_accesses(void **state)
{
	struct fx *f = *state;
	uint8_t b[4] = {1, 1, 1, 1};
	virtio_mmio_access(&f->t, 0x70, b, 1, 1); /* byte write to a register */
	assert_int_equal(mr(&f->t, 0x70), 0);
	virtio_mmio_access(&f->t, 0x71, b, 4, 0); /* misaligned read */
	assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);
	virtio_mmio_access(&f->t, 0x2, b, 2, 0);
	assert_int_equal(b[0] | b[1], 0);
}

/* virtio-rng end to end through the transport. */
static void test_rng(void **state)
{
	(void)state;
	struct vm_mem m = gmem_new();
	struct virtio_mmio t;
	struct virtio_rng rng = {.t = &t};
	int irqs = 0;
	assert_int_equal(virtio_mmio_init(&t, &virtio_rng_ops, &rng, &m, NULL), 0);
	t.irq = count_irq;
	t.irq_ctx = &irqs;
	assert_int_equal(mr(&t, 0x8), 4);
	drv_negotiate(&t);
	struct gq g;
	gq_init(&g, 16, 0x1000);
	assert_int_equal(drv_setup_queue(&t, 0, &g), 1);
	drv_ok(&t);
	gq_desc(&m, &g, 0, 0x10000, 64, F_WRITE | F_NEXT, 1);
	gq_desc(&m, &g, 1, 0x10040, 64, F_WRITE, 0);
	gq_publish(&m, &g, 0);
	mw(&t, 0x50, 0);
	uint32_t id, len;
	assert_int_equal(gq_used(&m, &g, &id, &len), 1);
	assert_int_equal(id, 0);
	assert_int_equal(len, 128);
	int nonzero = 0;
	for (int i = 0; i < 128; i++)
		nonzero += m.host[0x10000 + i] != 0;
	assert_true(nonzero > 64);
	assert_int_equal(irqs, 1);
	/* A hostile chain: rng marks the device broken, nothing crashes. */
	gq_desc(&m, &g, 2, GQ_MEM_SIZE - 8, 64, F_WRITE, 0);
	gq_publish(&m, &g, 2);
	mw(&t, 0x50, 0);
	assert_int_equal(mr(&t, 0x70) & 64, 64);
	virtio_mmio_destroy(&t);
	free(m.host);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_identity),
		T(test_shm_absent),
		T(test_config_space),
		T(test_feature_negotiation),
		T(test_queue_select_out_of_range),
		T(test_zero_size_queue),
		T(test_queue_outside_memory),
		T(test_notify_and_interrupts),
		T(test_malformed_chain_needs_reset),
		T(test_odd_accesses),
		cmocka_unit_test(test_rng),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
