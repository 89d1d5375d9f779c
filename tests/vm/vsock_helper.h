/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: a virtio-vsock device over a virtio-mmio transport on fake
 * guest memory, its rx/tx/event queues set up and rx buffers posted, with a
 * host Unix socket in a temporary directory. The test plays the guest
 * driver (tests/vm/test_vsock.c, tests/restore/test_vsock_reset.c). */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/vm/mmio_helper.h"
#include "vm/vm_internal.h"

/* struct virtio_vsock_hdr, as the guest sees it. */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

#define VSOCK_GUEST_CID 3
#define VSOCK_RX_BUF	0x20000 /* rx buffer i at VSOCK_RX_BUF + i * VSOCK_RX_STRIDE */
#define VSOCK_RX_STRIDE 0x1100
#define VSOCK_RX_MAX	16

struct vsock_fx {
	struct vm_mem m;
	struct virtio_mmio t;
	struct virtio_vsock *v;
	struct gq rx, tx, ev;
	int rx_n;	    /* rx buffers posted */
	int tx_slot;	    /* next tx buffer (test_vsock) */
	uint32_t guest_fwd; /* guest's fwd_cnt (test_vsock) */
	char dir[64], uds[128];
};

/* Guest (re)posts rx buffer SLOT. */
static inline void vsock_fx_rx_post(struct vsock_fx *f, int slot)
{
	gq_desc(&f->m, &f->rx, slot, VSOCK_RX_BUF + (uint64_t)slot * VSOCK_RX_STRIDE, 44 + 4096,
		F_WRITE, 0);
	gq_publish(&f->m, &f->rx, (uint16_t)slot);
}

/* Device with guest CID 3 and its host socket, driver features negotiated,
 * the three queues ready (rx: RX_N entries at 0x1000, tx: 16 at 0x4000,
 * event: 4 at 0x7000), RX_N rx buffers posted and kicked. */
static inline struct vsock_fx *vsock_fx_new(int rx_n)
{
	assert_true(rx_n > 0 && rx_n <= VSOCK_RX_MAX);
	struct vsock_fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->rx_n = rx_n;
	f->m = gmem_new();
	snprintf(f->dir, sizeof(f->dir), "/tmp/sm-vsock-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->uds, sizeof(f->uds), "%s/v.sock", f->dir);
	struct sm_error err = {0};
	assert_int_equal(virtio_vsock_create(&f->v, f->uds, VSOCK_GUEST_CID, &err), 0);
	assert_int_equal(virtio_mmio_init(&f->t, &virtio_vsock_ops, f->v, &f->m, &err), 0);
	virtio_vsock_attach(f->v, &f->t);
	assert_int_equal(drv_negotiate(&f->t) & 8, 8);
	gq_init(&f->rx, (uint16_t)rx_n, 0x1000);
	gq_init(&f->tx, 16, 0x4000);
	gq_init(&f->ev, 4, 0x7000);
	assert_int_equal(drv_setup_queue(&f->t, 0, &f->rx), 1);
	assert_int_equal(drv_setup_queue(&f->t, 1, &f->tx), 1);
	assert_int_equal(drv_setup_queue(&f->t, 2, &f->ev), 1);
	drv_ok(&f->t);
	for (int i = 0; i < rx_n; i++)
		vsock_fx_rx_post(f, i);
	mw(&f->t, 0x50, 0);
	return f;
}

static inline void vsock_fx_free(struct vsock_fx *f)
{
	virtio_vsock_destroy(f->v);
	virtio_mmio_destroy(&f->t);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f->m.host);
	free(f);
}

/* Host side: a connection to the device's socket (nothing sent yet). */
static inline int vsock_fx_dial(const struct vsock_fx *f)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(f->uds) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, f->uds, strlen(f->uds) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Host side: dial and ask for guest PORT ("CONNECT port\n"), then let the
 * device process it; returns the fd. */
static inline int vsock_fx_host_connect(struct vsock_fx *f, uint32_t port)
{
	int fd = vsock_fx_dial(f);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	assert_int_equal(write(fd, line, (size_t)n), n);
	virtio_vsock_process(f->v);
	return fd;
}
