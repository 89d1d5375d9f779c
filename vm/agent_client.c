/* SPDX-License-Identifier: Apache-2.0 */
/* Host side of the guest agent protocol: readiness, the vsock CONNECT
 * handshake, and running jobs (exec, stdin forwarding, output, exit). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sm/vm.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t r = deadline - now_ms();
	return r < 0 ? 0 : (int)r;
}

static int unix_addr(struct sockaddr_un *sa, const char *path, struct sm_error *err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return sm_error_set(err, ENAMETOOLONG, "socket path too long: %s", path);
	strcpy(sa->sun_path, path);
	return 0;
}

int vm_agent_ready_listen(const char *uds, struct sm_error *err)
{
	char path[256];
	snprintf(path, sizeof(path), "%s_%d", uds, VM_AGENT_READY_PORT);
	struct sockaddr_un sa;
	int r = unix_addr(&sa, path, err);
	if (r < 0)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return sm_error_errno(err, errno, "socket");
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
		int e = errno;
		close(fd);
		return sm_error_errno(err, e, "cannot listen on %s", path);
	}
	return fd;
}

/* Read exactly LEN bytes before DEADLINE (ms, -1: none). */
static int read_full(int fd, void *buf, size_t len, int64_t deadline, int stop_fd,
		     struct sm_error *err)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
				      {.fd = stop_fd, .events = POLLIN}};
		int r = poll(p, stop_fd >= 0 ? 2 : 1, remaining(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return sm_error_errno(err, errno, "poll");
		if (r == 0)
			return sm_error_set(err, ETIMEDOUT, "timed out waiting for the agent");
		if (stop_fd >= 0 && p[1].revents)
			return sm_error_set(err, ECANCELED, "the VM stopped");
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return sm_error_errno(err, errno, "read from agent");
		if (n == 0)
			return sm_error_set(err, ECONNRESET, "agent closed the connection");
		got += (size_t)n;
	}
	return 0;
}

int vm_agent_wait_ready(int listen_fd, int stop_fd, int timeout_ms, struct sm_error *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	for (;;) {
		struct pollfd p[2] = {{.fd = listen_fd, .events = POLLIN},
				      {.fd = stop_fd, .events = POLLIN}};
		int r = poll(p, stop_fd >= 0 ? 2 : 1, remaining(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return sm_error_errno(err, errno, "poll");
		if (r == 0)
			return sm_error_set(err, ETIMEDOUT,
					    "the guest agent did not report ready within %d ms",
					    timeout_ms);
		if (stop_fd >= 0 && p[1].revents)
			return sm_error_set(err, ECANCELED,
					    "the VM stopped before the agent was ready");
		break;
	}
	sm_autoclose int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return sm_error_errno(err, errno, "accept agent readiness connection");
	uint8_t b[VM_AGENT_HDR_LEN + 4];
	int r = read_full(c, b, sizeof(b), deadline, stop_fd, err);
	if (r < 0)
		return sm_error_wrap(err, "agent readiness");
	struct vm_agent_hdr h;
	if (vm_agent_hdr_decode(b, &h) < 0 || h.type != VM_AGENT_READY || h.len != 4)
		return sm_error_set(err, EPROTO, "agent sent a bad READY frame");
	uint32_t ver = (uint32_t)b[12] | ((uint32_t)b[13] << 8) | ((uint32_t)b[14] << 16) |
		       ((uint32_t)b[15] << 24);
	if (ver != VM_AGENT_PROTO_VERSION)
		return sm_error_set(err, EPROTO, "agent speaks protocol %u, we speak %u", ver,
				    VM_AGENT_PROTO_VERSION);
	return 0;
}

int vm_agent_connect(const char *uds, uint32_t port, int timeout_ms, struct sm_error *err)
{
	uint32_t host_port;
	return vm_agent_connect_port(uds, port, timeout_ms, &host_port, err);
}

int vm_agent_connect_port(const char *uds, uint32_t port, int timeout_ms, uint32_t *host_port,
			  struct sm_error *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	struct sockaddr_un sa;
	int r = unix_addr(&sa, uds, err);
	if (r < 0)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return sm_error_errno(err, errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return sm_error_errno(err, e, "cannot connect to %s", uds);
	}
	char line[64];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (write(fd, line, (size_t)n) != n) {
		int e = errno;
		close(fd);
		return sm_error_errno(err, e, "vsock CONNECT");
	}
	size_t len = 0;
	for (;;) {
		char ch;
		r = read_full(fd, &ch, 1, deadline, -1, err);
		if (r < 0) {
			close(fd);
			return sm_error_wrap(err, "vsock connect to guest port %u", port);
		}
		if (ch == '\n')
			break;
		if (len + 1 >= sizeof(line)) {
			close(fd);
			return sm_error_set(err, EPROTO, "bad vsock handshake reply");
		}
		line[len++] = ch;
	}
	line[len] = 0;
	char *end = NULL;
	unsigned long hp = 0;
	if (strncmp(line, "OK ", 3) == 0 && line[3] >= '0' && line[3] <= '9') {
		errno = 0;
		hp = strtoul(line + 3, &end, 10);
	}
	if (!end || *end || errno || hp > UINT32_MAX) {
		close(fd);
		return sm_error_set(err, EPROTO, "bad vsock handshake reply '%s'", line);
	}
	*host_port = (uint32_t)hp;
	return fd;
}

/* ---- SYNC: wall clock and entropy after a restore ------------------------------ */

static int write_full(int fd, const uint8_t *p, size_t len, struct sm_error *err)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			poll(&pf, 1, 1000);
			continue;
		}
		if (n < 0)
			return sm_error_errno(err, errno, "write to agent");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The SYNC frame (header and payload) into FRAME: the host's clock read
 * last, right before the caller sends it. */
#define SYNC_FRAME_MAX (VM_AGENT_HDR_LEN + VM_AGENT_SYNC_FIXED + VM_AGENT_SYNC_ENTROPY_MAX)
static int sync_frame(uint8_t frame[SYNC_FRAME_MAX], size_t *flen, struct sm_error *err)
{
	uint8_t entropy[VM_AGENT_SYNC_ENTROPY_DEFAULT];
	size_t got = 0;
	while (got < sizeof(entropy)) {
		ssize_t n = getrandom(entropy + got, sizeof(entropy) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return sm_error_errno(err, errno, "getrandom");
		got += (size_t)n;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct vm_agent_sync s = {.sec = ts.tv_sec,
				  .nsec = (uint32_t)ts.tv_nsec,
				  .entropy = entropy,
				  .entropy_len = sizeof(entropy)};
	size_t len;
	int r = vm_agent_sync_encode(&s, frame + VM_AGENT_HDR_LEN,
				     SYNC_FRAME_MAX - VM_AGENT_HDR_LEN, &len);
	explicit_bzero(entropy, sizeof(entropy));
	if (r < 0)
		return sm_error_set(err, -r, "cannot encode SYNC (host clock %lld)",
				    (long long)ts.tv_sec);
	vm_agent_hdr_encode(frame, VM_AGENT_SYNC, 0, (uint32_t)len);
	*flen = VM_AGENT_HDR_LEN + len;
	return 0;
}

/* Check the agent's answer to SYNC: header H, payload P. */
static int sync_ack_check(const struct vm_agent_hdr *h, const uint8_t *p, struct sm_error *err)
{
	if (h->type != VM_AGENT_SYNC_ACK || h->id != 0 || h->len != VM_AGENT_SYNC_ACK_LEN)
		return sm_error_set(err, EPROTO, "agent answered SYNC with a bad frame");
	int ce, ee, re;
	if (vm_agent_sync_ack_decode(p, VM_AGENT_SYNC_ACK_LEN, &ce, &ee, &re) < 0)
		return sm_error_set(err, EPROTO, "agent sent a bad SYNC_ACK");
	if (ce)
		return sm_error_set(err, EIO, "the guest could not set its clock: %s",
				    strerror(ce));
	if (ee)
		return sm_error_set(err, EIO, "the guest could not add entropy: %s", strerror(ee));
	if (re)
		return sm_error_set(err, EIO, "the guest could not reseed its RNG: %s",
				    strerror(re));
	return 0;
}

int vm_agent_sync(int fd, int stop_fd, int timeout_ms, struct sm_error *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	uint8_t frame[SYNC_FRAME_MAX];
	size_t flen;
	int r = sync_frame(frame, &flen, err);
	if (r == 0)
		r = write_full(fd, frame, flen, err);
	explicit_bzero(frame, sizeof(frame));
	if (r < 0)
		return sm_error_wrap(err, "agent SYNC");
	uint8_t ack[VM_AGENT_HDR_LEN + VM_AGENT_SYNC_ACK_LEN];
	r = read_full(fd, ack, VM_AGENT_HDR_LEN, deadline, stop_fd, err);
	if (r == -ECONNRESET)
		return sm_error_wrap(err,
				     "agent SYNC (an agent older than protocol %d closes "
				     "the connection on SYNC)",
				     VM_AGENT_PROTO_VERSION);
	if (r < 0)
		return sm_error_wrap(err, "agent SYNC");
	struct vm_agent_hdr h;
	if (vm_agent_hdr_decode(ack, &h) < 0 || h.type != VM_AGENT_SYNC_ACK || h.id != 0 ||
	    h.len != VM_AGENT_SYNC_ACK_LEN)
		return sm_error_set(err, EPROTO, "agent answered SYNC with a bad frame");
	r = read_full(fd, ack + VM_AGENT_HDR_LEN, VM_AGENT_SYNC_ACK_LEN, deadline, stop_fd, err);
	if (r < 0)
		return sm_error_wrap(err, "agent SYNC");
	return sync_ack_check(&h, ack + VM_AGENT_HDR_LEN, err);
}

/* ---- running jobs ---------------------------------------------------------------- */

struct outbuf {
	uint8_t *p;
	size_t off, len, cap;
};

static int out_append(struct outbuf *o, const void *p, size_t len)
{
	if (o->off && o->off + o->len + len > o->cap) {
		memmove(o->p, o->p + o->off, o->len);
		o->off = 0;
	}
	if (o->off + o->len + len > o->cap) {
		size_t cap = o->cap ? o->cap : 65536;
		while (cap < o->len + len)
			cap *= 2;
		uint8_t *n = realloc(o->p, cap);
		if (!n)
			return -ENOMEM;
		o->p = n;
		o->cap = cap;
	}
	memcpy(o->p + o->off + o->len, p, len);
	o->len += len;
	return 0;
}

static int out_frame(struct outbuf *o, uint16_t type, uint32_t id, const void *p, size_t len)
{
	uint8_t h[VM_AGENT_HDR_LEN];
	vm_agent_hdr_encode(h, type, id, (uint32_t)len);
	int r = out_append(o, h, sizeof(h));
	if (r == 0 && len)
		r = out_append(o, p, len);
	return r;
}

static void write_all(int fd, const uint8_t *p, size_t len)
{
	while (fd >= 0 && len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			poll(&pf, 1, -1);
			continue;
		}
		if (n <= 0)
			return; /* reader gone: drop the output */
		p += n;
		len -= (size_t)n;
	}
}

/* Handle one complete frame from the agent. */
static int on_frame(const struct vm_agent_hdr *h, const uint8_t *p, struct vm_agent_job *jobs,
		    int n, int *left, struct sm_error *err)
{
	if (h->id == 0 || h->id > (uint32_t)n)
		return sm_error_set(err, EPROTO, "agent sent a frame for unknown exec %u", h->id);
	struct vm_agent_job *j = &jobs[h->id - 1];
	if (j->done)
		return sm_error_set(err, EPROTO, "agent sent a frame for finished exec %u", h->id);
	switch (h->type) {
	case VM_AGENT_STDOUT:
		write_all(j->stdout_fd, p, h->len);
		return 0;
	case VM_AGENT_STDERR:
		write_all(j->stderr_fd, p, h->len);
		return 0;
	case VM_AGENT_EXIT:
		if (vm_agent_exit_decode(p, h->len, &j->signaled, &j->code) < 0)
			return sm_error_set(err, EPROTO, "agent sent a bad EXIT frame");
		j->done = 1;
		(*left)--;
		return 0;
	case VM_AGENT_ERROR: {
		if (h->len < 4)
			return sm_error_set(err, EPROTO, "agent sent a bad ERROR frame");
		j->exec_errno = (int)((uint32_t)p[0] | ((uint32_t)p[1] << 8) |
				      ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24));
		size_t ml = h->len - 4;
		if (ml >= sizeof(j->error))
			ml = sizeof(j->error) - 1;
		memcpy(j->error, p + 4, ml);
		j->error[ml] = 0;
		if (j->exec_errno <= 0)
			j->exec_errno = EIO;
		j->done = 1;
		(*left)--;
		return 0;
	}
	}
	return sm_error_set(err, EPROTO, "agent sent unexpected frame type %u", h->type);
}

static int run_jobs(int fd, struct vm_agent_job *jobs, int n, int stop_fd, int sig_fd, int sync,
		    struct sm_error *err)
{
	struct outbuf o = {0};
	uint8_t *in = NULL;
	size_t in_len = 0, in_cap = VM_AGENT_HDR_LEN + VM_AGENT_MAX_PAYLOAD;
	int rc = 0, left = n;
	int stdin_open[64];
	struct pollfd *pf = NULL;
	if (n <= 0 || n > 64)
		return sm_error_set(err, EINVAL, "between 1 and 64 jobs");
	in = malloc(in_cap);
	pf = calloc((size_t)n + 3, sizeof(*pf));
	if (!in || !pf) {
		rc = sm_error_set(err, ENOMEM, "out of memory");
		goto out;
	}
	if (sync) { /* ahead of the EXEC frames: the agent handles it first */
		uint8_t frame[SYNC_FRAME_MAX];
		size_t flen;
		rc = sync_frame(frame, &flen, err);
		if (rc == 0 && out_append(&o, frame, flen) < 0)
			rc = sm_error_set(err, ENOMEM, "out of memory");
		explicit_bzero(frame, sizeof(frame));
		if (rc < 0)
			goto out;
	}
	for (int i = 0; i < n; i++) {
		uint8_t *p;
		size_t len;
		int r = vm_agent_exec_encode(&jobs[i].exec, &p, &len);
		if (r < 0) {
			rc = sm_error_set(err, -r, "cannot encode exec request %d", i + 1);
			goto out;
		}
		r = out_frame(&o, VM_AGENT_EXEC, (uint32_t)i + 1, p, len);
		free(p);
		if (r < 0) {
			rc = sm_error_set(err, ENOMEM, "out of memory");
			goto out;
		}
		jobs[i].done = 0;
		jobs[i].exec_errno = 0;
		stdin_open[i] = (jobs[i].exec.flags & VM_AGENT_EXEC_STDIN) && jobs[i].stdin_fd >= 0;
	}
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);

	while (left > 0) {
		int np = 0;
		pf[np++] = (struct pollfd){.fd = fd, .events = POLLIN | (o.len ? POLLOUT : 0)};
		pf[np++] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
		pf[np++] = (struct pollfd){.fd = sig_fd, .events = POLLIN};
		int stdin_idx[64];
		for (int i = 0; i < n; i++) {
			stdin_idx[i] = -1;
			if (stdin_open[i] && !jobs[i].done && o.len < (4u << 20)) {
				stdin_idx[i] = np;
				pf[np++] =
					(struct pollfd){.fd = jobs[i].stdin_fd, .events = POLLIN};
			}
		}
		int r = poll(pf, (nfds_t)np, -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = sm_error_errno(err, errno, "poll");
			goto out;
		}
		if (stop_fd >= 0 && pf[1].revents) {
			rc = sm_error_set(err, ECANCELED, "the VM stopped while commands ran");
			goto out;
		}
		if (sig_fd >= 0 && (pf[2].revents & POLLIN)) {
			struct signalfd_siginfo si;
			if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
				uint8_t sig[4];
				for (int b = 0; b < 4; b++)
					sig[b] = (uint8_t)(si.ssi_signo >> (8 * b));
				for (int i = 0; i < n; i++)
					if (!jobs[i].done &&
					    out_frame(&o, VM_AGENT_SIGNAL, (uint32_t)i + 1, sig,
						      4) < 0) {
						rc = sm_error_set(err, ENOMEM, "out of memory");
						goto out;
					}
			}
		}
		if (pf[0].revents & POLLOUT) {
			ssize_t w = send(fd, o.p + o.off, o.len, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				rc = sm_error_errno(err, errno, "write to agent");
				goto out;
			}
			if (w > 0) {
				o.off += (size_t)w;
				o.len -= (size_t)w;
				if (o.len == 0)
					o.off = 0;
			}
		}
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t got = read(fd, in + in_len, in_cap - in_len);
			if (got < 0 && errno != EAGAIN && errno != EINTR) {
				rc = sm_error_errno(err, errno, "read from agent");
				goto out;
			}
			if (got == 0) {
				rc = sm_error_set(err, ECONNRESET,
						  "agent closed the connection with %d command(s) "
						  "still running",
						  left);
				goto out;
			}
			if (got > 0)
				in_len += (size_t)got;
			size_t off = 0;
			while (in_len - off >= VM_AGENT_HDR_LEN) {
				struct vm_agent_hdr h;
				if (vm_agent_hdr_decode(in + off, &h) < 0) {
					rc = sm_error_set(err, EPROTO, "agent sent a bad frame");
					goto out;
				}
				if (in_len - off - VM_AGENT_HDR_LEN < h.len)
					break;
				if (sync) { /* SYNC_ACK comes first */
					rc = sync_ack_check(&h, in + off + VM_AGENT_HDR_LEN, err);
					if (rc < 0) {
						sm_error_wrap(err, "agent SYNC");
						goto out;
					}
					sync = 0;
				} else {
					rc = on_frame(&h, in + off + VM_AGENT_HDR_LEN, jobs, n,
						      &left, err);
					if (rc < 0)
						goto out;
				}
				off += VM_AGENT_HDR_LEN + h.len;
			}
			memmove(in, in + off, in_len - off);
			in_len -= off;
		}
		for (int i = 0; i < n; i++) {
			if (stdin_idx[i] < 0 || !(pf[stdin_idx[i]].revents & (POLLIN | POLLHUP)))
				continue;
			uint8_t buf[65536];
			ssize_t got = read(jobs[i].stdin_fd, buf, sizeof(buf));
			if (got < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (got <= 0) {
				stdin_open[i] = 0;
				got = 0; /* EOF (or error): an empty STDIN frame */
			}
			if (out_frame(&o, VM_AGENT_STDIN, (uint32_t)i + 1, buf, (size_t)got) < 0) {
				rc = sm_error_set(err, ENOMEM, "out of memory");
				goto out;
			}
		}
	}
out:
	if (o.p)
		explicit_bzero(o.p, o.cap); /* the SYNC entropy may still be in it */
	free(o.p);
	free(in);
	free(pf);
	return rc;
}

int vm_agent_run(int fd, struct vm_agent_job *jobs, int n, int stop_fd, int sig_fd,
		 struct sm_error *err)
{
	return run_jobs(fd, jobs, n, stop_fd, sig_fd, 0, err);
}

int vm_agent_run_synced(int fd, struct vm_agent_job *jobs, int n, int stop_fd, int sig_fd,
			struct sm_error *err)
{
	return run_jobs(fd, jobs, n, stop_fd, sig_fd, 1, err);
}
