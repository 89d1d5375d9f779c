/* SPDX-License-Identifier: Apache-2.0 */
/* The vsock side of snapshot/restore: capture drops host connections; on
 * restore the device sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event
 * queue and holds back packets to the guest until the guest re-posts an
 * event buffer (its acknowledgement), so a new host connection is not
 * caught by the reset. The test plays the guest driver on fake memory. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "sm/format.h"
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

/* ---- the vsock section (FMT_SEC_VSOCK) a kept connection is saved in ---- */

struct vsck {
	uint32_t magic;
	uint16_t version, reserved0;
	uint32_t size, reserved1;
	uint32_t local_port, peer_port, peer_buf_alloc, peer_fwd_cnt, tx_cnt, fwd_cnt;
	uint32_t n_dropped, reserved;
	uint32_t pairs[2 * 3];
};

static void good_vsck(struct vsck *v)
{
	memset(v, 0, sizeof(*v));
	v->magic = 0x4b435356u; /* "VSCK" */
	v->version = VM_SNAP_VERSION;
	v->size = 48;
	v->local_port = 0x40000000u;
	v->peer_port = 1024;
	v->peer_buf_alloc = 262144;
	v->peer_fwd_cnt = 11;
	v->tx_cnt = 22;
	v->fwd_cnt = 33;
	v->n_dropped = 2;
	v->pairs[0] = 0x40000001u;
	v->pairs[1] = 1234;
	v->pairs[2] = 1025;
	v->pairs[3] = 5;
}

/* Write a snapshot with metadata, LEN bytes of REC as the vsock section of
 * device 1 (REC NULL: none) and 1 MiB of zero memory; read the section back. */
static int read_vsck(const void *rec, size_t len, struct virtio_vsock_saved *s,
		     struct sm_error *err)
{
	char dir[] = "/tmp/sm-vsck-XXXXXX", path[64];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.snap", dir);
	struct sm_error werr = {0};
	struct fmt_writer *w = NULL;
	assert_int_equal(fmt_writer_create(&w, path, NULL, &werr), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{\"kind\":\"test\"}", &werr), 0);
	if (rec)
		assert_int_equal(fmt_writer_add(w, FMT_SEC_VSOCK, FMT_SECF_OPTIONAL, 1, "vsock",
						rec, len, &werr),
				 0);
	assert_int_equal(fmt_writer_mem_begin(w, 1 << 20, &werr), 0);
	assert_int_equal(fmt_writer_mem_skip(w, 1 << 20, &werr), 0);
	assert_int_equal(fmt_writer_mem_end(w, &werr), 0);
	assert_int_equal(fmt_writer_commit(w, &werr), 0);
	fmt_writer_free(w);
	struct fmt_reader *r = NULL;
	assert_int_equal(fmt_reader_open(&r, path, &werr), 0);
	int ret = vm_snapshot_vsock_read(r, 1, s, err);
	fmt_reader_close(r);
	unlink(path);
	rmdir(dir);
	return ret;
}

static void test_vsock_section(void **state)
{
	(void)state;
	struct virtio_vsock_saved s;
	struct sm_error err = {0};
	/* None: the old path (TRANSPORT_RESET). */
	assert_int_equal(read_vsck(NULL, 0, &s, &err), 0);
	assert_int_equal(s.kept, 0);
	struct vsck v;
	good_vsck(&v);
	assert_int_equal(read_vsck(&v, 48 + 16, &s, &err), 1);
	assert_int_equal(s.kept, 1);
	assert_int_equal(s.conn.local_port, 0x40000000u);
	assert_int_equal(s.conn.peer_port, 1024);
	assert_int_equal(s.conn.peer_buf_alloc, 262144);
	assert_int_equal(s.conn.peer_fwd_cnt, 11);
	assert_int_equal(s.conn.tx_cnt, 22);
	assert_int_equal(s.conn.fwd_cnt, 33);
	assert_int_equal(s.n_dropped, 2);
	assert_int_equal(s.dropped[1].local_port, 1025);
	assert_int_equal(s.dropped[1].peer_port, 5);

	/* Damaged records: refused with a message, nothing kept. */
	static const struct {
		const char *what;
		int field, value;
		size_t len;
		int err;
	} bad[] = {
		{"bad magic", 0, 0x11111111, 64, EBADMSG},
		{"record version", 1, 2, 64, ENOTSUP},
		{"size", 2, 44, 64, EBADMSG},
		{"reserved bits", 3, 1, 64, EBADMSG},
		{"dropped connections", 4, 3, 64, EBADMSG},    /* n_dropped 3, two pairs */
		{"dropped connections", 4, 1000, 64, EBADMSG}, /* more than the device holds */
		{"dropped connections", 5, 1, 64, EBADMSG},    /* reserved field */
		{"dropped connections", -1, 0, 60, EBADMSG},   /* truncated pair */
		{"bytes", -1, 0, 40, EBADMSG},		       /* truncated record */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		good_vsck(&v);
		switch (bad[i].field) {
		case 0:
			v.magic = (uint32_t)bad[i].value;
			break;
		case 1:
			v.version = (uint16_t)bad[i].value;
			break;
		case 2:
			v.size = (uint32_t)bad[i].value;
			break;
		case 3:
			v.reserved1 = (uint32_t)bad[i].value;
			break;
		case 4:
			v.n_dropped = (uint32_t)bad[i].value;
			break;
		case 5:
			v.reserved = (uint32_t)bad[i].value;
			break;
		}
		memset(&err, 0, sizeof(err));
		int r = read_vsck(&v, bad[i].len, &s, &err);
		if (r != -bad[i].err || !strstr(err.msg, bad[i].what))
			fail_msg("case %zu: r=%d msg '%s' (want -%d, '%s')", i, r, err.msg,
				 bad[i].err, bad[i].what);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_drop_and_reset, setup, teardown),
		cmocka_unit_test(test_vsock_section),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
