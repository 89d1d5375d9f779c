/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-vsock (device id 19) emulated in user space: stream sockets only.
 *
 * Host side (Firecracker's convention): a Unix socket at uds_path. A host
 * process connects, writes "CONNECT <port>\n"; we send REQUEST to the guest
 * and answer "OK <hostport>\n" on RESPONSE (or close on RST). A guest
 * connection to CID 2 port P is connected to the Unix socket
 * "<uds_path>_<P>". Flow control is credit based (virtio 1.2, 5.10.6.3):
 * we never send more than the guest advertised, and we reset a guest that
 * sends more than we advertised. All state is under the transport lock. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vm_internal.h"

#define VSOCK_HOST_CID	    2
#define VSOCK_TYPE_STREAM   1
#define VSOCK_MAX_PKT	    (64 * 1024)
#define VSOCK_MAX_CONNS	    128
#define VSOCK_MAX_RSTS	    64
#define VSOCK_LOCAL_PORT_LO 0x40000000U

enum {
	OP_REQUEST = 1,
	OP_RESPONSE = 2,
	OP_RST = 3,
	OP_SHUTDOWN = 4,
	OP_RW = 5,
	OP_CREDIT_UPDATE = 6,
	OP_CREDIT_REQUEST = 7,
};
#define SHUT_RCV_FLAG  1
#define SHUT_SEND_FLAG 2

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");

enum conn_state {
	C_HANDSHAKE,   /* host connected, reading "CONNECT <port>\n" */
	C_CONNECTING,  /* REQUEST sent to the guest, waiting for RESPONSE */
	C_ESTABLISHED, /* data flows */
	C_CLOSING,     /* guest is gone: flush what is buffered, then close */
};

/* Control packets a connection still owes the guest. */
#define NEED_REQUEST  1
#define NEED_RESPONSE 2
#define NEED_RST      4
#define NEED_SHUTDOWN 8
#define NEED_CREDIT   16

struct vsock_conn {
	struct vsock_conn *next;
	int fd;
	enum conn_state state;
	uint32_t local_port, peer_port;
	unsigned need;
	int readable; /* hint: the Unix socket may have data */
	int host_eof; /* read 0 from the Unix socket */
	int kept;     /* survives a snapshot (virtio_vsock_keep) */
	int shut_wr;  /* guest will send no more: SHUT_WR once flushed */
	char line[40];
	size_t line_len;
	/* credit */
	uint32_t peer_buf_alloc, peer_fwd_cnt; /* guest's receive side */
	uint32_t tx_cnt;		       /* bytes we sent to the guest */
	uint32_t fwd_cnt;		       /* guest bytes written to the Unix socket */
	uint32_t last_fwd_reported;
	/* guest -> host bytes not yet written to the Unix socket */
	uint8_t *buf;
	size_t buf_off, buf_len, buf_cap;
};

struct virtio_vsock {
	struct virtio_mmio *t;
	uint64_t guest_cid;
	char uds_path[108];
	int listen_fd;
	int wake_fd;
	struct vsock_conn *conns;
	int n_conns;
	uint32_t next_port;
	struct {
		uint32_t src_port, dst_port; /* as sent: host port, guest port */
	} rsts[VSOCK_MAX_RSTS];
	int n_rsts;
	int reset_pending; /* TRANSPORT_RESET sent, the guest has not handled it yet */
	uint8_t scratch[VSOCK_MAX_PKT];
};

/* ---- connections ---------------------------------------------------------- */

static struct vsock_conn *conn_find(struct virtio_vsock *v, uint32_t local, uint32_t peer)
{
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		if (c->state != C_HANDSHAKE && c->local_port == local && c->peer_port == peer)
			return c;
	return NULL;
}

static struct vsock_conn *conn_new(struct virtio_vsock *v, int fd)
{
	if (v->n_conns >= VSOCK_MAX_CONNS)
		return NULL;
	struct vsock_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->next = v->conns;
	v->conns = c;
	v->n_conns++;
	return c;
}

static void conn_free(struct virtio_vsock *v, struct vsock_conn *c)
{
	for (struct vsock_conn **pp = &v->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	v->n_conns--;
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
}

static uint32_t alloc_local_port(struct virtio_vsock *v)
{
	for (;;) {
		uint32_t p = v->next_port++;
		if (v->next_port < VSOCK_LOCAL_PORT_LO)
			v->next_port = VSOCK_LOCAL_PORT_LO;
		int used = 0;
		for (struct vsock_conn *c = v->conns; c; c = c->next)
			used |= c->state != C_HANDSHAKE && c->local_port == p;
		if (!used)
			return p;
	}
}

static void queue_rst(struct virtio_vsock *v, uint32_t src_port, uint32_t dst_port)
{
	if (v->n_rsts < VSOCK_MAX_RSTS) {
		v->rsts[v->n_rsts].src_port = src_port;
		v->rsts[v->n_rsts].dst_port = dst_port;
		v->n_rsts++;
	}
}

/* Guest credit left for our sends. */
static uint32_t peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static void write_all_nb(struct vsock_conn *c)
{
	while (c->buf_len) {
		ssize_t n =
			send(c->fd, c->buf + c->buf_off, c->buf_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN) {
				c->buf_len = 0; /* host reader gone: drop */
				c->host_eof = 1;
			}
			break;
		}
		c->buf_off += (size_t)n;
		c->buf_len -= (size_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	if (c->buf_len == 0)
		c->buf_off = 0;
	if (c->buf_len == 0 && c->shut_wr == 1) {
		shutdown(c->fd, SHUT_WR);
		c->shut_wr = 2;
	}
	if (c->state == C_ESTABLISHED &&
	    c->fwd_cnt - c->last_fwd_reported >= VIRTIO_VSOCK_BUF_ALLOC / 4)
		c->need |= NEED_CREDIT;
}

/* Append guest bytes for the Unix socket (after anything already queued). */
static int conn_queue_out(struct vsock_conn *c, const uint8_t *p, size_t len)
{
	if (c->buf_off && c->buf_len + len > c->buf_cap) {
		memmove(c->buf, c->buf + c->buf_off, c->buf_len);
		c->buf_off = 0;
	}
	if (c->buf_off + c->buf_len + len > c->buf_cap) {
		size_t cap = c->buf_cap ? c->buf_cap : 4096;
		while (cap < c->buf_len + len)
			cap *= 2;
		uint8_t *nb = realloc(c->buf, cap);
		if (!nb)
			return -ENOMEM;
		c->buf = nb;
		c->buf_cap = cap;
	}
	memcpy(c->buf + c->buf_off + c->buf_len, p, len);
	c->buf_len += len;
	return 0;
}

/* ---- guest -> host (tx queue) ----------------------------------------------- */

static void guest_request(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int n = snprintf(path, sizeof(path), "%s_%u", v->uds_path, h->dst_port);
	int fd = -1;
	if (n > 0 && (size_t)n < sizeof(path))
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		memcpy(sa.sun_path, path, (size_t)n + 1);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(fd);
			fd = -1;
		}
	}
	struct vsock_conn *c = fd >= 0 ? conn_new(v, fd) : NULL;
	if (!c) {
		if (fd >= 0)
			close(fd);
		queue_rst(v, h->dst_port, h->src_port);
		return;
	}
	c->state = C_ESTABLISHED;
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->readable = 1;
	c->need |= NEED_RESPONSE;
}

static void guest_rw(struct vsock_conn *c, const struct virtq_elem *e, uint32_t len,
		     struct virtio_vsock *v)
{
	if (c->state != C_ESTABLISHED || c->shut_wr) {
		c->need |= NEED_RST;
		return;
	}
	/* The guest may not have more than buf_alloc bytes in flight. */
	if ((uint64_t)c->buf_len + len > VIRTIO_VSOCK_BUF_ALLOC + 64) { /* 64: our "OK" line */
		c->need |= NEED_RST;
		return;
	}
	size_t got = virtq_elem_read(e, sizeof(struct vsock_hdr), v->scratch, len);
	if (got != len || conn_queue_out(c, v->scratch, len) < 0) {
		c->need |= NEED_RST;
		return;
	}
	write_all_nb(c);
}

static void tx_one(struct virtio_vsock *v, const struct virtq_elem *e)
{
	struct vsock_hdr h;
	if (virtq_elem_read(e, 0, &h, sizeof(h)) != sizeof(h))
		return; /* too short to answer */
	if (h.src_cid != v->guest_cid || h.dst_cid != VSOCK_HOST_CID)
		return; /* not ours: drop */
	if (h.type != VSOCK_TYPE_STREAM || h.len > VSOCK_MAX_PKT ||
	    h.len > e->out_len - sizeof(h)) {
		if (h.op != OP_RST)
			queue_rst(v, h.dst_port, h.src_port);
		return;
	}
	struct vsock_conn *c = conn_find(v, h.dst_port, h.src_port);
	if (h.op == OP_REQUEST) {
		if (c)
			c->need |= NEED_RST;
		else
			guest_request(v, &h);
		return;
	}
	if (!c) {
		if (h.op != OP_RST)
			queue_rst(v, h.dst_port, h.src_port);
		return;
	}
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case OP_RESPONSE:
		if (c->state != C_CONNECTING) {
			c->need |= NEED_RST;
			break;
		}
		c->state = C_ESTABLISHED;
		c->readable = 1;
		char ok[32];
		int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);
		/* Not guest data: does not count towards fwd_cnt. */
		if (conn_queue_out(c, (const uint8_t *)ok, (size_t)n) < 0) {
			c->need |= NEED_RST;
			break;
		}
		c->fwd_cnt -= (uint32_t)n;
		c->last_fwd_reported = c->fwd_cnt + (uint32_t)n;
		write_all_nb(c);
		break;
	case OP_RST:
		conn_free(v, c);
		break;
	case OP_SHUTDOWN:
		if (h.flags & SHUT_SEND_FLAG && !c->shut_wr)
			c->shut_wr = 1;
		if ((h.flags & (SHUT_RCV_FLAG | SHUT_SEND_FLAG)) ==
		    (SHUT_RCV_FLAG | SHUT_SEND_FLAG)) {
			/* Guest closed: answer RST, flush to the host, then close. */
			c->need = NEED_RST;
			c->state = C_CLOSING;
		}
		write_all_nb(c);
		break;
	case OP_RW:
		guest_rw(c, e, h.len, v);
		break;
	case OP_CREDIT_UPDATE:
		break;
	case OP_CREDIT_REQUEST:
		c->need |= NEED_CREDIT;
		break;
	default:
		c->need |= NEED_RST;
		break;
	}
}

/* ---- host -> guest (rx queue) ------------------------------------------------ */

static void fill_hdr(struct virtio_vsock *v, struct vsock_hdr *h, struct vsock_conn *c, uint16_t op)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = VSOCK_HOST_CID;
	h->dst_cid = v->guest_cid;
	h->type = VSOCK_TYPE_STREAM;
	h->op = op;
	h->buf_alloc = VIRTIO_VSOCK_BUF_ALLOC;
	if (c) {
		h->src_port = c->local_port;
		h->dst_port = c->peer_port;
		h->fwd_cnt = c->fwd_cnt;
		c->last_fwd_reported = c->fwd_cnt;
	}
}

/* Build the next packet for E, if any. Returns bytes written, 0 for none
 * (then E is not used), -1 when E was too small. */
static int rx_next(struct virtio_vsock *v, const struct virtq_elem *e)
{
	struct vsock_hdr h;
	if (e->in_len < sizeof(h))
		return -1;
	if (v->n_rsts) {
		v->n_rsts--;
		fill_hdr(v, &h, NULL, OP_RST);
		h.src_port = v->rsts[v->n_rsts].src_port;
		h.dst_port = v->rsts[v->n_rsts].dst_port;
		virtq_elem_write(e, 0, &h, sizeof(h));
		return sizeof(h);
	}
	for (struct vsock_conn *c = v->conns, *next; c; c = next) {
		next = c->next;
		if (c->need) {
			uint16_t op;
			unsigned bit;
			if (c->need & NEED_RST)
				op = OP_RST, bit = NEED_RST;
			else if (c->need & NEED_REQUEST)
				op = OP_REQUEST, bit = NEED_REQUEST;
			else if (c->need & NEED_RESPONSE)
				op = OP_RESPONSE, bit = NEED_RESPONSE;
			else if (c->need & NEED_SHUTDOWN)
				op = OP_SHUTDOWN, bit = NEED_SHUTDOWN;
			else
				op = OP_CREDIT_UPDATE, bit = NEED_CREDIT;
			c->need &= ~bit;
			fill_hdr(v, &h, c, op);
			if (op == OP_SHUTDOWN)
				h.flags = SHUT_RCV_FLAG | SHUT_SEND_FLAG;
			virtq_elem_write(e, 0, &h, sizeof(h));
			if (op == OP_RST) {
				/* After RST the guest side is gone; keep flushing to host. */
				c->state = C_CLOSING;
				c->need = 0;
			}
			return sizeof(h);
		}
		if (c->state != C_ESTABLISHED || !c->readable || c->host_eof)
			continue;
		uint32_t credit = peer_credit(c);
		if (credit == 0)
			continue;
		uint64_t room = e->in_len - sizeof(h);
		if (room == 0)
			return -1;
		size_t want = room < credit ? (size_t)room : credit;
		if (want > sizeof(v->scratch))
			want = sizeof(v->scratch);
		ssize_t n = recv(c->fd, v->scratch, want, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			c->readable = 0;
			continue;
		}
		if (n <= 0) {
			/* Host closed (or failed): tell the guest we are done. */
			c->host_eof = 1;
			c->readable = 0;
			fill_hdr(v, &h, c, OP_SHUTDOWN);
			h.flags = SHUT_RCV_FLAG | SHUT_SEND_FLAG;
			virtq_elem_write(e, 0, &h, sizeof(h));
			return sizeof(h);
		}
		fill_hdr(v, &h, c, OP_RW);
		h.len = (uint32_t)n;
		c->tx_cnt += (uint32_t)n;
		virtq_elem_write(e, 0, &h, sizeof(h));
		virtq_elem_write(e, sizeof(h), v->scratch, (size_t)n);
		return (int)(sizeof(h) + (size_t)n);
	}
	return 0;
}

static void rx_fill(struct virtio_vsock *v)
{
	struct virtq *q = virtio_mmio_queue(v->t, 0);
	int pushed = 0;
	struct virtq_elem e;
	/* After a restore, nothing goes to the guest until it has reset its
	 * sockets: a new connection would be reset along with the old ones. */
	if (v->reset_pending)
		return;
	while (q && virtq_has_avail(q, v->t->mem)) {
		int r = virtq_pop(q, v->t->mem, &e);
		if (r <= 0)
			break;
		int n = rx_next(v, &e);
		if (n == 0) {
			q->last_avail--; /* nothing to send: give the buffer back */
			break;
		}
		virtq_push(q, v->t->mem, e.head, n < 0 ? 0 : (uint32_t)n);
		pushed = 1;
	}
	if (pushed)
		virtio_mmio_signal_used(v->t);
	if (q && q->broken)
		virtio_mmio_set_broken(v->t);
}

static void tx_drain(struct virtio_vsock *v)
{
	struct virtq *q = virtio_mmio_queue(v->t, 1);
	int pushed = 0;
	struct virtq_elem e;
	while (q && virtq_pop(q, v->t->mem, &e) == 1) {
		tx_one(v, &e);
		virtq_push(q, v->t->mem, e.head, 0);
		pushed = 1;
	}
	if (pushed)
		virtio_mmio_signal_used(v->t);
}

/* Closed connections whose buffers are flushed go away. */
static void reap(struct virtio_vsock *v)
{
	for (struct vsock_conn *c = v->conns, *next; c; c = next) {
		next = c->next;
		if (c->state == C_CLOSING && !c->need && (c->buf_len == 0 || c->host_eof))
			conn_free(v, c);
	}
}

static void vsock_notify(void *dev, uint32_t qidx)
{
	struct virtio_vsock *v = dev;
	if (qidx == 1)
		tx_drain(v);
	if (qidx <= 1) {
		rx_fill(v);
		reap(v);
	}
	/* qidx 2 (events): buffers stay with us; the guest re-posts one (and
	 * kicks) once it has handled our TRANSPORT_RESET. */
	if (qidx == 2)
		v->reset_pending = 0;
	uint64_t one = 1;
	if (write(v->wake_fd, &one, sizeof(one)) < 0) {
		/* already pending */
	}
}

static void vsock_status(void *dev, int driver_ok)
{
	struct virtio_vsock *v = dev;
	if (driver_ok)
		return;
	/* Device reset: every connection is gone. */
	while (v->conns)
		conn_free(v, v->conns);
	v->n_rsts = 0;
}

static void vsock_config(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_vsock *v = dev;
	uint8_t cfg[8];
	memcpy(cfg, &v->guest_cid, 8);
	memcpy(data, cfg + off, len);
}

const struct virtio_dev_ops virtio_vsock_ops = {
	.name = "virtio-vsock",
	.device_id = 19,
	.features = 0,
	.num_queues = 3,
	.queue_max = 256,
	.config_len = 8,
	.config_read = vsock_config,
	.queue_notify = vsock_notify,
	.status_changed = vsock_status,
};

/* ---- host side (I/O thread) -------------------------------------------------- */

static void handshake_read(struct virtio_vsock *v, struct vsock_conn *c)
{
	for (;;) {
		char ch;
		ssize_t n = recv(c->fd, &ch, 1, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_free(v, c);
			return;
		}
		if (ch != '\n') {
			if (c->line_len + 1 >= sizeof(c->line)) {
				conn_free(v, c);
				return;
			}
			c->line[c->line_len++] = ch;
			continue;
		}
		c->line[c->line_len] = 0;
		unsigned long port;
		char *end;
		if (strncmp(c->line, "CONNECT ", 8) != 0 || c->line[8] < '0' || c->line[8] > '9') {
			conn_free(v, c);
			return;
		}
		errno = 0;
		port = strtoul(c->line + 8, &end, 10);
		if (errno || (*end && *end != '\r') || port > 0xffffffffUL) {
			conn_free(v, c);
			return;
		}
		c->peer_port = (uint32_t)port;
		c->local_port = alloc_local_port(v);
		c->state = C_CONNECTING;
		c->need |= NEED_REQUEST;
		return;
	}
}

int virtio_vsock_poll_fds(struct virtio_vsock *v, struct pollfd *fds, int maxfds)
{
	pthread_mutex_lock(&v->t->lock);
	int n = 0;
	if (n < maxfds)
		fds[n++] = (struct pollfd){.fd = v->wake_fd, .events = POLLIN};
	if (n < maxfds && v->n_conns < VSOCK_MAX_CONNS)
		fds[n++] = (struct pollfd){.fd = v->listen_fd, .events = POLLIN};
	struct virtq *rxq = virtio_mmio_queue(v->t, 0);
	int rx_room = rxq && virtq_has_avail(rxq, v->t->mem);
	for (struct vsock_conn *c = v->conns; c && n < maxfds; c = c->next) {
		short ev = 0;
		if (c->state == C_HANDSHAKE)
			ev |= POLLIN;
		if (c->state == C_ESTABLISHED && !c->readable && !c->host_eof && rx_room &&
		    peer_credit(c) > 0)
			ev |= POLLIN;
		if (c->buf_len)
			ev |= POLLOUT;
		if (ev)
			fds[n++] = (struct pollfd){.fd = c->fd, .events = ev};
	}
	pthread_mutex_unlock(&v->t->lock);
	return n;
}

void virtio_vsock_process(struct virtio_vsock *v)
{
	pthread_mutex_lock(&v->t->lock);
	uint64_t cnt;
	if (read(v->wake_fd, &cnt, sizeof(cnt)) < 0) {
		/* nothing pending */
	}
	for (;;) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			break;
		struct vsock_conn *c = conn_new(v, fd);
		if (!c) {
			close(fd);
			break;
		}
		c->state = C_HANDSHAKE;
	}
	for (struct vsock_conn *c = v->conns, *next; c; c = next) {
		next = c->next;
		if (c->state == C_HANDSHAKE) {
			handshake_read(v, c);
			continue;
		}
		if (c->buf_len)
			write_all_nb(c);
		if (c->state == C_ESTABLISHED && !c->host_eof)
			c->readable = 1; /* cheap to try: recv says EAGAIN otherwise */
	}
	rx_fill(v);
	reap(v);
	pthread_mutex_unlock(&v->t->lock);
}

/* ---- lifecycle ------------------------------------------------------------------- */

int virtio_vsock_create(struct virtio_vsock **out, const char *uds_path, uint64_t guest_cid,
			struct sm_error *err)
{
	*out = NULL;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	/* Room for "_<port>" suffixes of guest-initiated connections. */
	if (strlen(uds_path) + 12 > sizeof(sa.sun_path))
		return sm_error_set(err, ENAMETOOLONG, "vsock socket path too long: %s", uds_path);
	if (guest_cid <= VSOCK_HOST_CID || guest_cid >= 0xffffffffULL)
		return sm_error_set(err, EINVAL, "bad guest CID %llu",
				    (unsigned long long)guest_cid);
	struct virtio_vsock *v = calloc(1, sizeof(*v));
	if (!v)
		return sm_error_set(err, ENOMEM, "out of memory");
	v->guest_cid = guest_cid;
	v->next_port = VSOCK_LOCAL_PORT_LO;
	snprintf(v->uds_path, sizeof(v->uds_path), "%s", uds_path);
	v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (v->wake_fd < 0 || v->listen_fd < 0) {
		int e = errno;
		virtio_vsock_destroy(v);
		return sm_error_errno(err, e, "vsock: socket");
	}
	strcpy(sa.sun_path, uds_path);
	unlink(uds_path);
	if (bind(v->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(v->listen_fd, 64) < 0) {
		int e = errno;
		virtio_vsock_destroy(v);
		return sm_error_errno(err, e, "vsock: cannot listen on %s", uds_path);
	}
	*out = v;
	return 0;
}

void virtio_vsock_attach(struct virtio_vsock *v, struct virtio_mmio *t)
{
	v->t = t;
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	while (v->conns)
		conn_free(v, v->conns);
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		unlink(v->uds_path);
	}
	if (v->wake_fd >= 0)
		close(v->wake_fd);
	free(v);
}

void virtio_vsock_stats(struct virtio_vsock *v, int *established, int *total)
{
	pthread_mutex_lock(&v->t->lock);
	int e = 0;
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		e += c->state == C_ESTABLISHED;
	*established = e;
	*total = v->n_conns;
	pthread_mutex_unlock(&v->t->lock);
}

int virtio_vsock_conn_credit(struct virtio_vsock *v, uint32_t local_port, uint32_t peer_port,
			     struct virtio_vsock_credit *out)
{
	pthread_mutex_lock(&v->t->lock);
	struct vsock_conn *c = conn_find(v, local_port, peer_port);
	if (c) {
		out->peer_buf_alloc = c->peer_buf_alloc;
		out->peer_fwd_cnt = c->peer_fwd_cnt;
		out->tx_cnt = c->tx_cnt;
		out->fwd_cnt = c->fwd_cnt;
		out->buf_alloc = VIRTIO_VSOCK_BUF_ALLOC;
		out->buffered = (uint32_t)c->buf_len;
	}
	pthread_mutex_unlock(&v->t->lock);
	return c ? 0 : -ENOENT;
}

/* ---- snapshot hooks ------------------------------------------------------------- */

#define VSOCK_EVENT_TRANSPORT_RESET 0

void virtio_vsock_drop_conns(struct virtio_vsock *v)
{
	while (v->conns)
		conn_free(v, v->conns);
	v->n_rsts = 0;
}

int virtio_vsock_keep(struct virtio_vsock *v, uint32_t local_port, uint32_t peer_port)
{
	pthread_mutex_lock(&v->t->lock);
	struct vsock_conn *c = conn_find(v, local_port, peer_port);
	if (c && c->state == C_ESTABLISHED)
		c->kept = 1;
	pthread_mutex_unlock(&v->t->lock);
	return c && c->kept ? 0 : -ENOENT;
}

/* Nothing in flight on C in either direction: no guest bytes waiting for
 * the Unix socket, no host bytes waiting for the guest, no control packet
 * owed (a credit update may be dropped: the guest asks again), both sides
 * open. */
static int conn_idle(const struct vsock_conn *c)
{
	int unread = 0;
	if (c->state != C_ESTABLISHED || c->buf_len || c->host_eof || c->shut_wr ||
	    (c->need & ~(unsigned)NEED_CREDIT))
		return 0;
	return ioctl(c->fd, FIONREAD, &unread) == 0 && unread == 0;
}

/* Append a connection to reset on restore; 0 when S is full. */
static int add_dropped(struct virtio_vsock_saved *s, uint32_t local_port, uint32_t peer_port)
{
	if (s->n_dropped == VIRTIO_VSOCK_MAX_DROPPED)
		return 0;
	s->dropped[s->n_dropped++] = (struct virtio_vsock_ports){local_port, peer_port};
	return 1;
}

int virtio_vsock_save(struct virtio_vsock *v, struct virtio_vsock_saved *s)
{
	memset(s, 0, sizeof(*s));
	const struct vsock_conn *kept = NULL;
	int fits = 1;
	for (const struct vsock_conn *c = v->conns; c && fits; c = c->next) {
		if (c->kept && !kept && conn_idle(c))
			kept = c;
		else if (c->state != C_HANDSHAKE) /* else the guest never heard of it */
			fits = add_dropped(s, c->local_port, c->peer_port);
	}
	for (int i = 0; fits && i < v->n_rsts; i++) /* RSTs not sent yet */
		fits = add_dropped(s, v->rsts[i].src_port, v->rsts[i].dst_port);
	if (kept && fits) {
		s->kept = 1;
		s->conn = (struct virtio_vsock_kept){
			.local_port = kept->local_port,
			.peer_port = kept->peer_port,
			.peer_buf_alloc = kept->peer_buf_alloc,
			.peer_fwd_cnt = kept->peer_fwd_cnt,
			.tx_cnt = kept->tx_cnt,
			.fwd_cnt = kept->fwd_cnt,
		};
	} else {
		s->n_dropped = 0;
	}
	virtio_vsock_drop_conns(v);
	return s->kept;
}

int virtio_vsock_restore(struct virtio_vsock *v, const struct virtio_vsock_saved *s, int *host_fd)
{
	*host_fd = -1;
	if (!s->kept || s->n_dropped > VIRTIO_VSOCK_MAX_DROPPED || s->n_dropped > VSOCK_MAX_RSTS ||
	    v->conns || v->n_rsts)
		return -EINVAL;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	int fl = fcntl(sv[0], F_GETFL);
	if (fl < 0 || fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		return -e;
	}
	struct vsock_conn *c = conn_new(v, sv[0]);
	if (!c) {
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	c->state = C_ESTABLISHED;
	c->kept = 1;
	c->local_port = s->conn.local_port;
	c->peer_port = s->conn.peer_port;
	c->peer_buf_alloc = s->conn.peer_buf_alloc;
	c->peer_fwd_cnt = s->conn.peer_fwd_cnt;
	c->tx_cnt = s->conn.tx_cnt;
	c->fwd_cnt = c->last_fwd_reported = s->conn.fwd_cnt;
	c->readable = 1;
	/* The guest's other connections had host ends that are gone. */
	for (uint32_t i = 0; i < s->n_dropped; i++)
		queue_rst(v, s->dropped[i].local_port, s->dropped[i].peer_port);
	uint64_t one = 1;
	if (write(v->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: the I/O thread runs anyway */
	}
	*host_fd = sv[1];
	return 0;
}

int virtio_vsock_send_reset(struct virtio_vsock *v)
{
	struct virtq *q = virtio_mmio_queue(v->t, 2);
	if (!q)
		return -ENODEV;
	struct virtq_elem e;
	int r = virtq_pop(q, v->t->mem, &e);
	if (r <= 0)
		return r < 0 ? r : -ENOSPC;
	uint32_t id = VSOCK_EVENT_TRANSPORT_RESET; /* le32; x86 is little-endian */
	size_t n = virtq_elem_write(&e, 0, &id, sizeof(id));
	virtq_push(q, v->t->mem, e.head, (uint32_t)n);
	virtio_mmio_signal_used(v->t);
	v->reset_pending = n == sizeof(id);
	return n == sizeof(id) ? 0 : -EINVAL;
}

uint64_t virtio_vsock_guest_cid(const struct virtio_vsock *v)
{
	return v->guest_cid;
}
