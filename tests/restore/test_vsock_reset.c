/* SPDX-License-Identifier: Apache-2.0 */
/* The vsock side of snapshot/restore: capture drops host connections; on
 * restore the device sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event
 * queue and holds back packets to the guest until the guest re-posts an
 * event buffer (its acknowledgement), so a new host connection is not
 * caught by the reset. The test plays the guest driver on fake memory. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "tests/vm/vsock_helper.h"

#define RX_N	   8
#define EV_BUF	   0x60000
#define OP_REQUEST 1

static void ev_post(struct vsock_fx *f, int slot)
{
	memset(f->m.host + EV_BUF + 16 * slot, 0xee, 16);
	gq_desc(&f->m, &f->ev, slot, EV_BUF + 16 * (uint64_t)slot, 4, F_WRITE, 0);
	gq_publish(&f->m, &f->ev, (uint16_t)slot);
}

static int rx_pkt(struct vsock_fx *f, struct vsock_hdr *h)
{
	uint32_t id, len;
	if (!gq_used(&f->m, &f->rx, &id, &len))
		return 0;
	assert_true(id < RX_N && len >= sizeof(*h));
	memcpy(h, f->m.host + VSOCK_RX_BUF + (uint64_t)id * VSOCK_RX_STRIDE, sizeof(*h));
	vsock_fx_rx_post(f, (int)id);
	return 1;
}

static int setup(void **state)
{
	*state = vsock_fx_new(RX_N);
	return 0;
}

static int teardown(void **state)
{
	vsock_fx_free(*state);
	return 0;
}

static void test_drop_and_reset(void **state)
{
	struct vsock_fx *f = *state;
	struct vsock_hdr h;
	int est, total;
	/* A live connection at capture time... */
	int fd = vsock_fx_host_connect(f, 1024);
	assert_int_equal(rx_pkt(f, &h), 1);
	assert_int_equal(h.op, OP_REQUEST);
	virtio_vsock_stats(f->v, &est, &total);
	assert_int_equal(total, 1);
	/* ...is dropped: the host side sees EOF, the device forgets it. */
	pthread_mutex_lock(&f->t.lock);
	virtio_vsock_drop_conns(f->v);
	pthread_mutex_unlock(&f->t.lock);
	virtio_vsock_stats(f->v, &est, &total);
	assert_int_equal(total, 0);
	char c;
	assert_int_equal(read(fd, &c, 1), 0);
	close(fd);

	/* Without event buffers there is nothing to send the reset in. */
	pthread_mutex_lock(&f->t.lock);
	assert_int_equal(virtio_vsock_send_reset(f->v), -ENOSPC);
	pthread_mutex_unlock(&f->t.lock);

	/* Restore: the guest had posted event buffers; we use one. */
	ev_post(f, 0);
	ev_post(f, 1);
	mw(&f->t, 0x64, mr(&f->t, 0x60)); /* acknowledge what is pending */
	assert_int_equal(mr(&f->t, 0x60), 0);
	pthread_mutex_lock(&f->t.lock);
	assert_int_equal(virtio_vsock_send_reset(f->v), 0);
	pthread_mutex_unlock(&f->t.lock);
	uint32_t id, len;
	assert_int_equal(gq_used(&f->m, &f->ev, &id, &len), 1);
	assert_int_equal(id, 0);
	assert_int_equal(len, 4);
	uint32_t ev;
	memcpy(&ev, f->m.host + EV_BUF, 4);
	assert_int_equal(ev, 0); /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
	assert_int_equal(gq_used(&f->m, &f->ev, &id, &len), 0);
	assert_int_equal(mr(&f->t, 0x60) & 1, 1); /* used-buffer interrupt raised */

	/* A host connection now is held back: no REQUEST reaches the guest
	 * before it acknowledged the reset. */
	fd = vsock_fx_host_connect(f, 1024);
	assert_int_equal(rx_pkt(f, &h), 0);
	/* The guest handled the event: it re-posts the buffer and kicks. */
	ev_post(f, 0);
	mw(&f->t, 0x50, 2);
	virtio_vsock_process(f->v);
	assert_int_equal(rx_pkt(f, &h), 1);
	assert_int_equal(h.op, OP_REQUEST);
	assert_int_equal(h.dst_port, 1024);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_drop_and_reset, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
