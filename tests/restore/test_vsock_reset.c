/* SPDX-License-Identifier: Apache-2.0 */
/* The vsock side of snapshot/restore: capture drops host connections; on
 * restore the device sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event
 * queue and holds back packets to the guest until the guest re-posts an
 * event buffer (its acknowledgement), so a new host connection is not
 * caught by the reset. The test plays the guest driver on fake memory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/vm/mmio_helper.h"
#include "vm/vm_internal.h"

struct hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

#define RX_BUF	    0x20000
#define RX_STRIDE   0x1100
#define RX_N	    8
#define EV_BUF	    0x60000
#define OP_REQUEST  1
#define OP_RESPONSE 2

struct fx {
	struct vm_mem m;
	struct virtio_mmio t;
	struct virtio_vsock *v;
	struct gq rx, tx, ev;
	char dir[64], uds[128];
};

static void rx_post(struct fx *f, int slot)
{
	gq_desc(&f->m, &f->rx, slot, RX_BUF + (uint64_t)slot * RX_STRIDE, 44 + 4096, F_WRITE, 0);
	gq_publish(&f->m, &f->rx, (uint16_t)slot);
}

static void ev_post(struct fx *f, int slot)
{
	memset(f->m.host + EV_BUF + 16 * slot, 0xee, 16);
	gq_desc(&f->m, &f->ev, slot, EV_BUF + 16 * (uint64_t)slot, 4, F_WRITE, 0);
	gq_publish(&f->m, &f->ev, (uint16_t)slot);
}

static int rx_pkt(struct fx *f, struct hdr *h)
{
	uint32_t id, len;
	if (!gq_used(&f->m, &f->rx, &id, &len))
		return 0;
	assert_true(id < RX_N && len >= sizeof(*h));
	memcpy(h, f->m.host + RX_BUF + (uint64_t)id * RX_STRIDE, sizeof(*h));
	rx_post(f, (int)id);
	return 1;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->m = gmem_new();
	snprintf(f->dir, sizeof(f->dir), "/tmp/sm-vsreset-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->uds, sizeof(f->uds), "%s/v.sock", f->dir);
	struct sm_error err = {0};
	assert_int_equal(virtio_vsock_create(&f->v, f->uds, 3, &err), 0);
	assert_int_equal(virtio_mmio_init(&f->t, &virtio_vsock_ops, f->v, &f->m, &err), 0);
	virtio_vsock_attach(f->v, &f->t);
	assert_int_equal(drv_negotiate(&f->t) & 8, 8);
	gq_init(&f->rx, RX_N, 0x1000);
	gq_init(&f->tx, 16, 0x4000);
	gq_init(&f->ev, 4, 0x7000);
	assert_int_equal(drv_setup_queue(&f->t, 0, &f->rx), 1);
	assert_int_equal(drv_setup_queue(&f->t, 1, &f->tx), 1);
	assert_int_equal(drv_setup_queue(&f->t, 2, &f->ev), 1);
	drv_ok(&f->t);
	for (int i = 0; i < RX_N; i++)
		rx_post(f, i);
	mw(&f->t, 0x50, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	virtio_vsock_destroy(f->v);
	virtio_mmio_destroy(&f->t);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f->m.host);
	free(f);
	return 0;
}

/* Host connects and writes CONNECT; returns the fd. */
static int host_connect(struct fx *f, uint32_t port)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, f->uds);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	assert_int_equal(write(fd, line, (size_t)n), n);
	virtio_vsock_process(f->v);
	return fd;
}

static void test_drop_and_reset(void **state)
{
	struct fx *f = *state;
	struct hdr h;
	int est, total;
	/* A live connection at capture time... */
	int fd = host_connect(f, 1024);
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
	fd = host_connect(f, 1024);
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
