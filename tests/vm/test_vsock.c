/* SPDX-License-Identifier: Apache-2.0 */
/* User-space virtio-vsock: the CONNECT handshake, both directions of data,
 * credit accounting, guest-initiated connections, and hostile packets. The
 * test plays the guest driver on fake guest memory. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>

#include "tests/vm/vsock_helper.h"

enum { REQUEST = 1, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST };

#define RX_N	   VSOCK_RX_MAX
#define TX_BUF	   0x50000
#define TX_STRIDE  0x11000
#define GUEST_PORT 1234

static int setup(void **state)
{
	struct vsock_fx *f = vsock_fx_new(RX_N);
	uint64_t cid;
	virtio_mmio_access(&f->t, 0x100, (uint8_t *)&cid, 8, 0);
	assert_int_equal(cid, VSOCK_GUEST_CID);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	vsock_fx_free(*state);
	return 0;
}

/* Guest sends one packet on the tx queue and kicks. */
static void tx_pkt(struct vsock_fx *f, uint32_t src_port, uint32_t dst_port, uint16_t op,
		   uint32_t flags, const void *data, uint32_t len, uint32_t buf_alloc)
{
	struct vsock_hdr h = {.src_cid = 3,
			      .dst_cid = 2,
			      .src_port = src_port,
			      .dst_port = dst_port,
			      .len = len,
			      .type = 1,
			      .op = op,
			      .flags = flags,
			      .buf_alloc = buf_alloc,
			      .fwd_cnt = f->guest_fwd};
	int slot = f->tx_slot++ % 4;
	uint64_t at = TX_BUF + (uint64_t)slot * TX_STRIDE;
	memcpy(f->m.host + at, &h, sizeof(h));
	if (len)
		memcpy(f->m.host + at + sizeof(h), data, len);
	gq_desc(&f->m, &f->tx, slot, at, (uint32_t)sizeof(h) + len, 0, 0);
	gq_publish(&f->m, &f->tx, (uint16_t)slot);
	mw(&f->t, 0x50, 1);
	uint32_t id, l;
	assert_int_equal(gq_used(&f->m, &f->tx, &id, &l), 1);
}

/* Next packet the device put in the rx queue; reposts the buffer. */
static int rx_pkt(struct vsock_fx *f, struct vsock_hdr *h, uint8_t *data)
{
	uint32_t id, len;
	if (!gq_used(&f->m, &f->rx, &id, &len))
		return 0;
	assert_true(id < RX_N);
	assert_true(len >= sizeof(*h));
	uint8_t *p = f->m.host + VSOCK_RX_BUF + (uint64_t)id * VSOCK_RX_STRIDE;
	memcpy(h, p, sizeof(*h));
	assert_int_equal(h->len, len - sizeof(*h));
	if (data)
		memcpy(data, p + sizeof(*h), h->len);
	vsock_fx_rx_post(f, (int)id);
	return 1;
}

static void pump(struct vsock_fx *f)
{
	virtio_vsock_process(f->v);
}

static int host_connect(struct vsock_fx *f, uint32_t port, uint32_t *local, int respond)
{
	int fd = vsock_fx_host_connect(f, port);
	struct vsock_hdr h;
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, REQUEST);
	assert_int_equal(h.src_cid, 2);
	assert_int_equal(h.dst_cid, 3);
	assert_int_equal(h.dst_port, port);
	assert_int_equal(h.type, 1);
	*local = h.src_port;
	if (respond) {
		tx_pkt(f, port, h.src_port, RESPONSE, 0, NULL, 0, 4096);
		pump(f);
		char buf[32] = {0};
		int got = (int)read(fd, buf, sizeof(buf) - 1);
		char want[32];
		snprintf(want, sizeof(want), "OK %u\n", h.src_port);
		assert_int_equal(got, (int)strlen(want));
		assert_string_equal(buf, want);
	}
	return fd;
}

static void test_handshake(void **state)
{
	struct vsock_fx *f = *state;
	uint32_t local;
	int fd = host_connect(f, GUEST_PORT, &local, 1);
	int est, total;
	virtio_vsock_stats(f->v, &est, &total);
	assert_int_equal(est, 1);
	assert_int_equal(total, 1);
	close(fd);
}

static void test_handshake_refused(void **state)
{
	struct vsock_fx *f = *state;
	uint32_t local;
	int fd = host_connect(f, GUEST_PORT, &local, 0);
	tx_pkt(f, GUEST_PORT, local, RST, 0, NULL, 0, 0);
	pump(f);
	char c;
	assert_int_equal(read(fd, &c, 1), 0); /* closed, no OK */
	int est, total;
	virtio_vsock_stats(f->v, &est, &total);
	assert_int_equal(total, 0);
	close(fd);
}

static void test_bad_handshake_line(void **state)
{
	struct vsock_fx *f = *state;
	int fd = vsock_fx_dial(f);
	assert_int_equal(write(fd, "CONNECT x99\n", 12), 12);
	pump(f);
	char c;
	assert_int_equal(read(fd, &c, 1), 0);
	close(fd);
	struct vsock_hdr h;
	assert_int_equal(rx_pkt(f, &h, NULL), 0);
}

static void test_guest_to_host_and_credit(void **state)
{
	struct vsock_fx *f = *state;
	uint32_t local;
	int fd = host_connect(f, GUEST_PORT, &local, 1);
	uint8_t data[3000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	tx_pkt(f, GUEST_PORT, local, RW, 0, data, sizeof(data), 4096);
	uint8_t back[3000];
	size_t got = 0;
	while (got < sizeof(back)) {
		ssize_t n = read(fd, back + got, sizeof(back) - got);
		assert_true(n > 0);
		got += (size_t)n;
	}
	assert_memory_equal(back, data, sizeof(data));
	struct virtio_vsock_credit c;
	assert_int_equal(virtio_vsock_conn_credit(f->v, local, GUEST_PORT, &c), 0);
	assert_int_equal(c.fwd_cnt, 3000);
	assert_int_equal(c.buffered, 0);
	assert_int_equal(c.buf_alloc, VIRTIO_VSOCK_BUF_ALLOC);
	/* A credit request is answered with our counters. */
	tx_pkt(f, GUEST_PORT, local, CREDIT_REQUEST, 0, NULL, 0, 4096);
	struct vsock_hdr h;
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, CREDIT_UPDATE);
	assert_int_equal(h.fwd_cnt, 3000);
	assert_int_equal(h.buf_alloc, VIRTIO_VSOCK_BUF_ALLOC);
	close(fd);
}

static void test_host_to_guest_respects_credit(void **state)
{
	struct vsock_fx *f = *state;
	uint32_t local;
	int fd = host_connect(f, GUEST_PORT, &local, 1); /* guest buf_alloc 4096 */
	static uint8_t data[10000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	static uint8_t got[10000];
	size_t n = 0;
	struct vsock_hdr h;
	pump(f);
	while (rx_pkt(f, &h, got + n)) {
		assert_int_equal(h.op, RW);
		n += h.len;
	}
	assert_int_equal(n, 4096); /* exactly the guest's credit */
	struct virtio_vsock_credit c;
	assert_int_equal(virtio_vsock_conn_credit(f->v, local, GUEST_PORT, &c), 0);
	assert_int_equal(c.tx_cnt, 4096);
	assert_int_equal(c.peer_buf_alloc, 4096);
	pump(f); /* no new credit: nothing more */
	assert_int_equal(rx_pkt(f, &h, NULL), 0);
	/* The guest consumed it all: credit update releases the rest. */
	while (n < sizeof(data)) {
		f->guest_fwd = (uint32_t)n;
		tx_pkt(f, GUEST_PORT, local, CREDIT_UPDATE, 0, NULL, 0, 4096);
		pump(f);
		size_t before = n;
		while (rx_pkt(f, &h, got + n))
			n += h.len;
		assert_true(n > before);
		assert_true(n - f->guest_fwd <= 4096);
	}
	assert_memory_equal(got, data, sizeof(data));
	/* Host closes: the guest is told with a SHUTDOWN, then RSTs. */
	close(fd);
	pump(f);
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, SHUTDOWN);
	assert_int_equal(h.flags, 3);
	tx_pkt(f, GUEST_PORT, local, RST, 0, NULL, 0, 4096);
	int est, total;
	virtio_vsock_stats(f->v, &est, &total);
	assert_int_equal(total, 0);
}

static void test_guest_exceeds_credit(void **state)
{
	struct vsock_fx *f = *state;
	uint32_t local;
	int fd = host_connect(f, GUEST_PORT, &local, 1);
	static uint8_t chunk[65536];
	struct vsock_hdr h;
	int rst = 0;
	/* The host never reads: more than buf_alloc in flight gets a reset. */
	for (int i = 0; i < 32 && !rst; i++) {
		tx_pkt(f, GUEST_PORT, local, RW, 0, chunk, sizeof(chunk), 65536);
		while (rx_pkt(f, &h, NULL))
			rst |= h.op == RST;
	}
	assert_true(rst);
	struct virtio_vsock_credit c;
	if (virtio_vsock_conn_credit(f->v, local, GUEST_PORT, &c) == 0)
		assert_true(c.buffered <= VIRTIO_VSOCK_BUF_ALLOC);
	close(fd);
	pump(f);
}

static void test_guest_shutdown(void **state)
{
	struct vsock_fx *f = *state;
	uint32_t local;
	int fd = host_connect(f, GUEST_PORT, &local, 1);
	tx_pkt(f, GUEST_PORT, local, RW, 0, "bye", 3, 4096);
	tx_pkt(f, GUEST_PORT, local, SHUTDOWN, 3, NULL, 0, 4096);
	struct vsock_hdr h;
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, RST);
	pump(f);
	char buf[8];
	assert_int_equal(read(fd, buf, sizeof(buf)), 3);
	assert_int_equal(read(fd, buf, sizeof(buf)), 0); /* then EOF */
	close(fd);
}

static void test_guest_connect(void **state)
{
	struct vsock_fx *f = *state;
	/* No listener on the host for port 5000: RST. */
	tx_pkt(f, 777, 5000, REQUEST, 0, NULL, 0, 4096);
	struct vsock_hdr h;
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, RST);
	assert_int_equal(h.dst_port, 777);
	assert_int_equal(h.src_port, 5000);
	/* With one: RESPONSE, and data reaches the listener. */
	char path[160];
	snprintf(path, sizeof(path), "%s_5000", f->uds);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	tx_pkt(f, 778, 5000, REQUEST, 0, NULL, 0, 4096);
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, RESPONSE);
	assert_int_equal(h.dst_port, 778);
	int c = accept(l, NULL, NULL);
	assert_true(c >= 0);
	tx_pkt(f, 778, 5000, RW, 0, "ready", 5, 4096);
	char buf[8] = {0};
	assert_int_equal(read(c, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "ready");
	/* Host answers; guest receives it. */
	assert_int_equal(write(c, "ack", 3), 3);
	pump(f);
	uint8_t data[16];
	assert_int_equal(rx_pkt(f, &h, data), 1);
	assert_int_equal(h.op, RW);
	assert_int_equal(h.len, 3);
	assert_memory_equal(data, "ack", 3);
	/* A second REQUEST for a live connection is refused. */
	tx_pkt(f, 778, 5000, REQUEST, 0, NULL, 0, 4096);
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, RST);
	close(c);
	close(l);
}

static void test_hostile_packets(void **state)
{
	struct vsock_fx *f = *state;
	uint32_t local;
	int fd = host_connect(f, GUEST_PORT, &local, 1);
	struct vsock_hdr h;
	/* hdr.len claims more than the buffer holds: RST, nothing read past it. */
	struct vsock_hdr bad = {.src_cid = 3,
				.dst_cid = 2,
				.src_port = GUEST_PORT,
				.dst_port = local,
				.len = 0xffffffff,
				.type = 1,
				.op = RW,
				.buf_alloc = 4096};
	memcpy(f->m.host + TX_BUF, &bad, sizeof(bad));
	gq_desc(&f->m, &f->tx, 0, TX_BUF, sizeof(bad) + 10, 0, 0);
	gq_publish(&f->m, &f->tx, 0);
	mw(&f->t, 0x50, 1);
	uint32_t id, l;
	assert_int_equal(gq_used(&f->m, &f->tx, &id, &l), 1);
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, RST);
	/* A packet shorter than a header is dropped. */
	gq_desc(&f->m, &f->tx, 1, TX_BUF, 10, 0, 0);
	gq_publish(&f->m, &f->tx, 1);
	mw(&f->t, 0x50, 1);
	assert_int_equal(gq_used(&f->m, &f->tx, &id, &l), 1);
	/* Header split over two descriptors still parses. */
	struct vsock_hdr req = {.src_cid = 3,
				.dst_cid = 2,
				.src_port = 9,
				.dst_port = 6000,
				.type = 1,
				.op = REQUEST,
				.buf_alloc = 4096};
	memcpy(f->m.host + TX_BUF, &req, 20);
	memcpy(f->m.host + TX_BUF + 0x1000, (uint8_t *)&req + 20, sizeof(req) - 20);
	gq_desc(&f->m, &f->tx, 2, TX_BUF, 20, F_NEXT, 3);
	gq_desc(&f->m, &f->tx, 3, TX_BUF + 0x1000, sizeof(req) - 20, 0, 0);
	gq_publish(&f->m, &f->tx, 2);
	mw(&f->t, 0x50, 1);
	assert_int_equal(gq_used(&f->m, &f->tx, &id, &l), 1);
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, RST); /* nobody listens on 6000 */
	assert_int_equal(h.dst_port, 9);
	/* Wrong source CID: dropped silently. */
	struct vsock_hdr spoof = req;
	spoof.src_cid = 99;
	memcpy(f->m.host + TX_BUF, &spoof, sizeof(spoof));
	gq_desc(&f->m, &f->tx, 4, TX_BUF, sizeof(spoof), 0, 0);
	gq_publish(&f->m, &f->tx, 4);
	mw(&f->t, 0x50, 1);
	assert_int_equal(rx_pkt(f, &h, NULL), 0);
	/* Unknown op and unknown type. */
	tx_pkt(f, GUEST_PORT, 424242, RW, 0, "x", 1, 4096); /* no such connection */
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, RST);
	tx_pkt(f, GUEST_PORT, local, 99, 0, NULL, 0, 4096);
	assert_int_equal(rx_pkt(f, &h, NULL), 1);
	assert_int_equal(h.op, RST);
	close(fd);
	pump(f);
}

static void test_rx_buffer_too_small(void **state)
{
	struct vsock_fx *f = *state;
	/* Replace all rx buffers by tiny ones: packets cannot be delivered, but
	 * the device neither crashes nor writes past them. */
	struct vsock_hdr h;
	while (rx_pkt(f, &h, NULL))
		;
	uint32_t local;
	int fd = vsock_fx_dial(f);
	assert_int_equal(write(fd, "CONNECT 5\n", 10), 10);
	(void)local;
	/* consume every posted buffer so only the tiny one remains */
	memset(f->m.host + 0x90000, 0xee, 64);
	struct gq small;
	gq_init(&small, 4, 0xa0000);
	mw(&f->t, 0x70, 0); /* reset: connections dropped */
	close(fd);
	assert_int_equal(drv_negotiate(&f->t) & 8, 8);
	f->rx = small;
	gq_init(&f->tx, 16, 0x4000);
	assert_int_equal(drv_setup_queue(&f->t, 0, &f->rx), 1);
	assert_int_equal(drv_setup_queue(&f->t, 1, &f->tx), 1);
	drv_ok(&f->t);
	gq_desc(&f->m, &f->rx, 0, 0x90000, 16, F_WRITE, 0);
	gq_publish(&f->m, &f->rx, 0);
	fd = vsock_fx_dial(f);
	assert_int_equal(write(fd, "CONNECT 5\n", 10), 10);
	pump(f);
	uint32_t id, l;
	assert_int_equal(gq_used(&f->m, &f->rx, &id, &l), 1);
	assert_int_equal(l, 0);				 /* returned unused */
	assert_int_equal(f->m.host[0x90000 + 16], 0xee); /* nothing past it */
	close(fd);
}

/* A hostile driver: random register writes, random descriptor tables and
 * random packets, with kicks and host-side processing in between. Nothing
 * may crash or touch memory outside the guest (run under ASan in CI). */
static void test_random_driver(void **state)
{
	struct vsock_fx *f = *state;
	srand(12345);
	uint32_t local;
	int fd = host_connect(f, GUEST_PORT, &local, 1);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	static const uint32_t regs[] = {0x14, 0x20, 0x24, 0x30, 0x38, 0x44, 0x50, 0x64,
					0x70, 0x80, 0x84, 0x90, 0x94, 0xa0, 0xa4, 0xac};
	for (int round = 0; round < 20000; round++) {
		int what = rand() % 10;
		if (what < 3) {
			/* scribble over descriptor tables, rings and tx buffers */
			uint64_t at = (uint64_t)(rand() % 0x8000);
			f->m.host[at] = (uint8_t)rand();
			uint64_t tx = TX_BUF + (uint64_t)(rand() % 64);
			f->m.host[tx] = (uint8_t)rand();
		} else if (what < 5) {
			uint32_t v = rand() % 4 ? (uint32_t)(rand() % 8) : (uint32_t)rand();
			mw(&f->t, regs[rand() % (int)(sizeof(regs) / sizeof(regs[0]))], v);
		} else if (what < 8) {
			mw(&f->t, 0x50, (uint32_t)(rand() % 4));
		} else if (what < 9) {
			pump(f);
		} else {
			/* occasionally bring the device back to a sane state */
			mw(&f->t, 0x70, 0);
			drv_negotiate(&f->t);
			drv_setup_queue(&f->t, 0, &f->rx);
			drv_setup_queue(&f->t, 1, &f->tx);
			drv_ok(&f->t);
		}
		(void)!send(fd, "x", 1, MSG_NOSIGNAL);
	}
	close(fd);
	pump(f);
}

/* Read exactly N bytes from FD (blocking). */
static void read_exact(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (uint8_t *)buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

/* A connection marked with virtio_vsock_keep() survives capture and
 * restore: a fresh device re-creates it (ports, credit counters) over a new
 * host fd, and the guest's other connections get an RST each. */
static void test_keep_across_snapshot(void **state)
{
	struct vsock_fx *f = *state;
	uint32_t local, other;
	int fd = host_connect(f, 1024, &local, 1);
	int fd2 = host_connect(f, GUEST_PORT, &other, 1);
	uint8_t data[100];
	memset(data, 'g', sizeof(data));
	tx_pkt(f, 1024, local, RW, 0, data, sizeof(data), 4096);
	uint8_t back[100];
	read_exact(fd, back, sizeof(back));
	assert_int_equal(write(fd, "hostdata", 8), 8);
	pump(f);
	struct vsock_hdr h;
	uint8_t payload[64];
	assert_int_equal(rx_pkt(f, &h, payload), 1);
	assert_int_equal(h.op, RW);
	assert_int_equal(h.len, 8);

	assert_int_equal(virtio_vsock_keep(f->v, local, 999), -ENOENT);
	assert_int_equal(virtio_vsock_keep(f->v, local, 1024), 0);
	struct virtio_vsock_saved s;
	pthread_mutex_lock(&f->t.lock);
	assert_int_equal(virtio_vsock_save(f->v, &s), 1);
	pthread_mutex_unlock(&f->t.lock);
	assert_int_equal(s.kept, 1);
	assert_int_equal(s.conn.local_port, local);
	assert_int_equal(s.conn.peer_port, 1024);
	assert_int_equal(s.conn.fwd_cnt, 100);
	assert_int_equal(s.conn.tx_cnt, 8);
	assert_int_equal(s.conn.peer_buf_alloc, 4096);
	assert_int_equal(s.n_dropped, 1);
	assert_int_equal(s.dropped[0].local_port, other);
	assert_int_equal(s.dropped[0].peer_port, GUEST_PORT);
	char c;
	assert_int_equal(read(fd, &c, 1), 0); /* this process's host ends are gone */
	assert_int_equal(read(fd2, &c, 1), 0);
	close(fd);
	close(fd2);

	/* Restore into a fresh device (the restored guest's queues). */
	struct vsock_fx *g = vsock_fx_new(RX_N);
	g->guest_fwd = 8;
	int hfd = -1;
	pthread_mutex_lock(&g->t.lock);
	assert_int_equal(virtio_vsock_restore(g->v, &s, &hfd), 0);
	pthread_mutex_unlock(&g->t.lock);
	assert_true(hfd >= 0);
	assert_int_equal(fcntl(hfd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	pump(g);
	assert_int_equal(rx_pkt(g, &h, NULL), 1);
	assert_int_equal(h.op, RST);
	assert_int_equal(h.src_port, other);
	assert_int_equal(h.dst_port, GUEST_PORT);
	/* Host -> guest on the kept connection, with the saved counters. */
	assert_int_equal(write(hfd, "again", 5), 5);
	pump(g);
	assert_int_equal(rx_pkt(g, &h, payload), 1);
	assert_int_equal(h.op, RW);
	assert_int_equal(h.src_port, local);
	assert_int_equal(h.dst_port, 1024);
	assert_int_equal(h.len, 5);
	assert_int_equal(h.fwd_cnt, 100);
	assert_memory_equal(payload, "again", 5);
	struct virtio_vsock_credit cr;
	assert_int_equal(virtio_vsock_conn_credit(g->v, local, 1024, &cr), 0);
	assert_int_equal(cr.tx_cnt, 13);
	/* Guest -> host. */
	tx_pkt(g, 1024, local, RW, 0, "reply!", 6, 4096);
	char rb[6];
	read_exact(hfd, rb, sizeof(rb));
	assert_memory_equal(rb, "reply!", 6);
	int est, total;
	virtio_vsock_stats(g->v, &est, &total);
	assert_int_equal(est, 1);
	assert_int_equal(total, 1);
	/* A second restore into the same device is refused. */
	int hfd2 = -1;
	pthread_mutex_lock(&g->t.lock);
	assert_int_equal(virtio_vsock_restore(g->v, &s, &hfd2), -EINVAL);
	pthread_mutex_unlock(&g->t.lock);
	assert_int_equal(hfd2, -1);
	close(hfd);
	vsock_fx_free(g);
}

/* A kept connection with bytes in flight is not kept: the capture falls
 * back to dropping everything (restore then resets the guest), and a
 * restore without a kept connection is refused. */
static void test_keep_not_idle(void **state)
{
	struct vsock_fx *f = *state;
	uint32_t local;
	int fd = host_connect(f, 1024, &local, 1);
	assert_int_equal(virtio_vsock_keep(f->v, local, 1024), 0);
	assert_int_equal(write(fd, "unsent", 6), 6); /* not yet forwarded */
	struct virtio_vsock_saved s;
	pthread_mutex_lock(&f->t.lock);
	assert_int_equal(virtio_vsock_save(f->v, &s), 0);
	pthread_mutex_unlock(&f->t.lock);
	assert_int_equal(s.kept, 0);
	assert_int_equal(s.n_dropped, 0);
	int est, total;
	virtio_vsock_stats(f->v, &est, &total);
	assert_int_equal(total, 0);
	close(fd);
	struct vsock_fx *g = vsock_fx_new(RX_N);
	int hfd = -1;
	pthread_mutex_lock(&g->t.lock);
	assert_int_equal(virtio_vsock_restore(g->v, &s, &hfd), -EINVAL);
	s.kept = 1;
	s.n_dropped = VIRTIO_VSOCK_MAX_DROPPED + 1;
	assert_int_equal(virtio_vsock_restore(g->v, &s, &hfd), -EINVAL);
	pthread_mutex_unlock(&g->t.lock);
	assert_int_equal(hfd, -1);
	vsock_fx_free(g);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_handshake),
		T(test_handshake_refused),
		T(test_bad_handshake_line),
		T(test_guest_to_host_and_credit),
		T(test_host_to_guest_respects_credit),
		T(test_guest_exceeds_credit),
		T(test_guest_shutdown),
		T(test_guest_connect),
		T(test_hostile_packets),
		T(test_rx_buffer_too_small),
		T(test_random_driver),
		T(test_keep_across_snapshot),
		T(test_keep_not_idle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
