/* SPDX-License-Identifier: Apache-2.0 */
/* The host-side agent client against a fake agent on a socketpair: exec
 * requests, stdin forwarding with end of input, output routing, exit and
 * error reports, concurrent jobs, protocol violations; plus readiness and
 * the vsock CONNECT handshake against fake Unix sockets. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sm/vm.h"

static int read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static void send_frame(int fd, uint16_t type, uint32_t id, const void *p, size_t len)
{
	uint8_t h[VM_AGENT_HDR_LEN];
	vm_agent_hdr_encode(h, type, id, (uint32_t)len);
	assert_int_equal(write(fd, h, sizeof(h)), sizeof(h));
	if (len)
		assert_int_equal(write(fd, p, len), (ssize_t)len);
}

/* Fake agent: behaviour picked by the test. */
struct fake {
	int fd;
	int mode;
	size_t stdin_bytes; /* what it received for exec 1 */
	int saw_eof;
	char argv0[64];
};

enum { ECHO_STDIN, TWO_JOBS, EXEC_ERROR, FORWARD_SIGNAL, BAD_FRAME, HANG_UP };

static void *fake_agent(void *arg)
{
	struct fake *f = arg;
	uint8_t h[VM_AGENT_HDR_LEN];
	static uint8_t payload[VM_AGENT_MAX_PAYLOAD];
	int execs = 0;
	for (;;) {
		if (read_full(f->fd, h, sizeof(h)) < 0)
			break;
		struct vm_agent_hdr hd;
		assert_int_equal(vm_agent_hdr_decode(h, &hd), 0);
		if (hd.len && read_full(f->fd, payload, hd.len) < 0)
			break;
		if (hd.type == VM_AGENT_EXEC) {
			struct vm_agent_exec x;
			assert_int_equal(vm_agent_exec_decode(payload, hd.len, &x), 0);
			snprintf(f->argv0, sizeof(f->argv0), "%s", x.argv[0]);
			vm_agent_exec_free(&x);
			execs++;
			if (f->mode == EXEC_ERROR) {
				uint8_t e[4 + 9];
				uint32_t en = ENOENT;
				memcpy(e, &en, 4);
				memcpy(e + 4, "not found", 9);
				send_frame(f->fd, VM_AGENT_ERROR, hd.id, e, sizeof(e));
			} else if (f->mode == BAD_FRAME) {
				uint8_t junk[VM_AGENT_HDR_LEN];
				memset(junk, 0xff, sizeof(junk));
				assert_int_equal(write(f->fd, junk, sizeof(junk)), sizeof(junk));
			} else if (f->mode == HANG_UP) {
				break;
			} else if (f->mode == TWO_JOBS && execs == 2) {
				/* Answer in reverse order, interleaved. */
				send_frame(f->fd, VM_AGENT_STDOUT, 2, "two\n", 4);
				send_frame(f->fd, VM_AGENT_STDERR, 1, "one-err\n", 8);
				uint8_t ex[8];
				vm_agent_exit_encode(ex, 0, 2);
				send_frame(f->fd, VM_AGENT_EXIT, 2, ex, 8);
				send_frame(f->fd, VM_AGENT_STDOUT, 1, "one\n", 4);
				vm_agent_exit_encode(ex, 1, 9);
				send_frame(f->fd, VM_AGENT_EXIT, 1, ex, 8);
			}
		} else if (hd.type == VM_AGENT_SIGNAL && f->mode == FORWARD_SIGNAL) {
			uint32_t sig;
			assert_int_equal(hd.len, 4);
			memcpy(&sig, payload, 4);
			uint8_t ex[8];
			vm_agent_exit_encode(ex, 1, (int)sig);
			send_frame(f->fd, VM_AGENT_EXIT, hd.id, ex, 8);
		} else if (hd.type == VM_AGENT_STDIN && f->mode == ECHO_STDIN) {
			if (hd.len == 0) {
				f->saw_eof = 1;
				uint8_t ex[8];
				vm_agent_exit_encode(ex, 0, 7);
				send_frame(f->fd, VM_AGENT_EXIT, hd.id, ex, 8);
			} else {
				f->stdin_bytes += hd.len;
				send_frame(f->fd, VM_AGENT_STDOUT, hd.id, payload, hd.len);
			}
		}
	}
	close(f->fd);
	return NULL;
}

static const char *argv_cat[] = {"cat"};

static void job_init(struct vm_agent_job *j, int in, int out, int err, uint32_t flags)
{
	memset(j, 0, sizeof(*j));
	j->exec = (struct vm_agent_exec){.flags = flags, .cwd = "/", .argv = argv_cat, .argc = 1};
	j->stdin_fd = in;
	j->stdout_fd = out;
	j->stderr_fd = err;
}

static void test_stdin_roundtrip(void **state)
{
	(void)state;
	int sp[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	struct fake f = {.fd = sp[1], .mode = ECHO_STDIN};
	pthread_t th;
	pthread_create(&th, NULL, fake_agent, &f);
	/* 1 MiB of input from a file, output to another file. */
	FILE *in = tmpfile(), *out = tmpfile();
	static uint8_t data[1 << 20];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 31 + (i >> 11));
	assert_int_equal(fwrite(data, 1, sizeof(data), in), sizeof(data));
	fflush(in);
	rewind(in);
	struct vm_agent_job j;
	job_init(&j, fileno(in), fileno(out), -1, VM_AGENT_EXEC_STDIN);
	struct sm_error err = {0};
	assert_int_equal(vm_agent_run(sp[0], &j, 1, -1, -1, &err), 0);
	close(sp[0]);
	pthread_join(th, NULL);
	assert_true(j.done);
	assert_int_equal(j.code, 7);
	assert_int_equal(j.signaled, 0);
	assert_true(f.saw_eof);
	assert_int_equal(f.stdin_bytes, sizeof(data));
	assert_string_equal(f.argv0, "cat");
	static uint8_t back[1 << 20];
	rewind(out);
	assert_int_equal(fread(back, 1, sizeof(back), out), sizeof(back));
	assert_memory_equal(back, data, sizeof(data));
	fclose(in);
	fclose(out);
}

static void test_two_jobs(void **state)
{
	(void)state;
	int sp[2], o[2], e[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	assert_int_equal(pipe(o), 0);
	assert_int_equal(pipe(e), 0);
	struct fake f = {.fd = sp[1], .mode = TWO_JOBS};
	pthread_t th;
	pthread_create(&th, NULL, fake_agent, &f);
	struct vm_agent_job j[2];
	job_init(&j[0], -1, o[1], e[1], 0);
	job_init(&j[1], -1, o[1], e[1], 0);
	struct sm_error err = {0};
	assert_int_equal(vm_agent_run(sp[0], j, 2, -1, -1, &err), 0);
	close(sp[0]);
	pthread_join(th, NULL);
	assert_int_equal(j[0].signaled, 1);
	assert_int_equal(j[0].code, 9);
	assert_int_equal(j[1].signaled, 0);
	assert_int_equal(j[1].code, 2);
	char buf[32] = {0};
	close(o[1]);
	close(e[1]);
	assert_int_equal(read_full(o[0], buf, 8), 0);
	assert_memory_equal(buf, "two\none\n", 8);
	assert_int_equal(read_full(e[0], buf, 8), 0);
	assert_memory_equal(buf, "one-err\n", 8);
	close(o[0]);
	close(e[0]);
}

static void test_exec_error(void **state)
{
	(void)state;
	int sp[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	struct fake f = {.fd = sp[1], .mode = EXEC_ERROR};
	pthread_t th;
	pthread_create(&th, NULL, fake_agent, &f);
	struct vm_agent_job j;
	job_init(&j, -1, -1, -1, 0);
	struct sm_error err = {0};
	assert_int_equal(vm_agent_run(sp[0], &j, 1, -1, -1, &err), 0);
	close(sp[0]);
	pthread_join(th, NULL);
	assert_int_equal(j.exec_errno, ENOENT);
	assert_string_equal(j.error, "not found");
}

static void test_protocol_violations(void **state)
{
	(void)state;
	for (int mode = BAD_FRAME; mode <= HANG_UP; mode++) {
		int sp[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
		struct fake f = {.fd = sp[1], .mode = mode};
		pthread_t th;
		pthread_create(&th, NULL, fake_agent, &f);
		struct vm_agent_job j;
		job_init(&j, -1, -1, -1, 0);
		struct sm_error err = {0};
		int r = vm_agent_run(sp[0], &j, 1, -1, -1, &err);
		assert_int_equal(r, mode == BAD_FRAME ? -EPROTO : -ECONNRESET);
		assert_true(err.msg[0] != 0);
		close(sp[0]);
		pthread_join(th, NULL);
	}
}

static void test_signal_forwarding(void **state)
{
	(void)state;
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK);
	assert_true(sfd >= 0);
	int sp[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	struct fake f = {.fd = sp[1], .mode = FORWARD_SIGNAL};
	pthread_t th;
	pthread_create(&th, NULL, fake_agent, &f);
	assert_int_equal(kill(getpid(), SIGUSR1), 0);
	struct vm_agent_job j;
	job_init(&j, -1, -1, -1, 0);
	struct sm_error err = {0};
	assert_int_equal(vm_agent_run(sp[0], &j, 1, -1, sfd, &err), 0);
	assert_int_equal(j.signaled, 1);
	assert_int_equal(j.code, SIGUSR1);
	close(sp[0]);
	pthread_join(th, NULL);
	close(sfd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void test_stop_fd_cancels(void **state)
{
	(void)state;
	int sp[2], stop[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	assert_int_equal(pipe(stop), 0);
	assert_int_equal(write(stop[1], "x", 1), 1);
	struct vm_agent_job j;
	job_init(&j, -1, -1, -1, 0);
	struct sm_error err = {0};
	assert_int_equal(vm_agent_run(sp[0], &j, 1, stop[0], -1, &err), -ECANCELED);
	close(sp[0]);
	close(sp[1]);
	close(stop[0]);
	close(stop[1]);
}

static void *fake_ready(void *arg)
{
	const char *path = arg;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	uint8_t b[VM_AGENT_HDR_LEN + 4];
	vm_agent_hdr_encode(b, VM_AGENT_READY, 0, 4);
	uint32_t v = VM_AGENT_PROTO_VERSION;
	memcpy(b + VM_AGENT_HDR_LEN, &v, 4);
	assert_int_equal(write(fd, b, sizeof(b)), sizeof(b));
	close(fd);
	return NULL;
}

static void *fake_vsock(void *arg)
{
	int l = *(int *)arg;
	int c = accept(l, NULL, NULL);
	char line[32] = {0};
	size_t n = 0;
	while (n < sizeof(line) - 1 && read(c, line + n, 1) == 1 && line[n] != '\n')
		n++;
	assert_string_equal(line, "CONNECT 1024\n");
	assert_int_equal(write(c, "OK 1073741824\nhello", 19), 19);
	close(c);
	return NULL;
}

static void test_ready_and_connect(void **state)
{
	(void)state;
	char dir[] = "/tmp/sm-agentc-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char uds[128], ready[160];
	snprintf(uds, sizeof(uds), "%s/v", dir);
	snprintf(ready, sizeof(ready), "%s_%d", uds, VM_AGENT_READY_PORT);
	struct sm_error err = {0};
	int lfd = vm_agent_ready_listen(uds, &err);
	assert_true(lfd >= 0);
	/* Nobody reports: times out. */
	assert_int_equal(vm_agent_wait_ready(lfd, -1, 50, &err), -ETIMEDOUT);
	pthread_t th;
	pthread_create(&th, NULL, fake_ready, ready);
	assert_int_equal(vm_agent_wait_ready(lfd, -1, 5000, &err), 0);
	pthread_join(th, NULL);
	close(lfd);

	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, uds);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	pthread_create(&th, NULL, fake_vsock, &l);
	int c = vm_agent_connect(uds, 1024, 5000, &err);
	assert_true(c >= 0);
	char buf[8] = {0};
	assert_int_equal(read_full(c, buf, 5), 0); /* bytes after OK stay in the stream */
	assert_string_equal(buf, "hello");
	close(c);
	pthread_join(th, NULL);
	close(l);
	unlink(uds);
	unlink(ready);
	assert_int_equal(rmdir(dir), 0);
	/* No vsock socket at all: a clear error. */
	assert_true(vm_agent_connect(uds, 1024, 100, &err) < 0);
	assert_non_null(strstr(err.msg, uds));
}

/* Fake agent for SYNC: reads one frame, records it, answers per mode. */
enum {
	SYNC_OK,
	SYNC_CLOCK_FAILS,
	SYNC_RESEED_FAILS,
	SYNC_BAD_ACK,
	SYNC_WRONG_TYPE,
	SYNC_HANG_UP,
	SYNC_SILENT,
	SYNC_THEN_EXEC
};

struct fake_sync {
	int fd, mode;
	struct vm_agent_hdr hdr;
	int decode_rc;
	int64_t sec;
	uint32_t nsec;
	uint8_t entropy[VM_AGENT_SYNC_ENTROPY_MAX];
	uint32_t entropy_len;
	int synced;	     /* the host calls vm_agent_run_synced() */
	int exec_before_ack; /* the EXEC frame came before the agent's answer */
};

/* One send per frame, no SIGPIPE: the host may hang up after a bad header. */
static void sync_reply(int fd, uint16_t type, uint32_t id, const void *p, size_t len)
{
	uint8_t b[VM_AGENT_HDR_LEN + 64];
	assert_true(len <= 64);
	vm_agent_hdr_encode(b, type, id, (uint32_t)len);
	memcpy(b + VM_AGENT_HDR_LEN, p, len);
	if (send(fd, b, VM_AGENT_HDR_LEN + len, MSG_NOSIGNAL) < 0) {
		/* the host already gave up: fine */
	}
}

static void *fake_sync_agent(void *arg)
{
	struct fake_sync *f = arg;
	uint8_t h[VM_AGENT_HDR_LEN];
	static uint8_t payload[VM_AGENT_SYNC_FIXED + VM_AGENT_SYNC_ENTROPY_MAX];
	if (read_full(f->fd, h, sizeof(h)) < 0 || vm_agent_hdr_decode(h, &f->hdr) < 0 ||
	    f->hdr.len > sizeof(payload) || read_full(f->fd, payload, f->hdr.len) < 0) {
		f->decode_rc = -EIO;
		close(f->fd);
		return NULL;
	}
	struct vm_agent_sync s;
	f->decode_rc = vm_agent_sync_decode(payload, f->hdr.len, &s);
	if (f->decode_rc == 0) {
		f->sec = s.sec;
		f->nsec = s.nsec;
		f->entropy_len = s.entropy_len;
		memcpy(f->entropy, s.entropy, s.entropy_len);
	}
	uint32_t exec_id = 0;
	if (f->synced) {
		/* Pipelined: the EXEC frame must arrive without the agent answering
		 * SYNC first (a host that waits for the ack would stall here). */
		struct pollfd pf = {.fd = f->fd, .events = POLLIN};
		struct vm_agent_hdr hd;
		if (poll(&pf, 1, 2000) == 1 && read_full(f->fd, h, sizeof(h)) == 0 &&
		    vm_agent_hdr_decode(h, &hd) == 0 && hd.type == VM_AGENT_EXEC &&
		    hd.len <= sizeof(payload) && read_full(f->fd, payload, hd.len) == 0) {
			f->exec_before_ack = 1;
			exec_id = hd.id;
		}
	}
	uint8_t ack[VM_AGENT_SYNC_ACK_LEN];
	switch (f->mode) {
	case SYNC_OK:
	case SYNC_THEN_EXEC:
		vm_agent_sync_ack_encode(ack, 0, 0, 0);
		sync_reply(f->fd, VM_AGENT_SYNC_ACK, 0, ack, sizeof(ack));
		break;
	case SYNC_CLOCK_FAILS:
		vm_agent_sync_ack_encode(ack, EPERM, 0, 0);
		sync_reply(f->fd, VM_AGENT_SYNC_ACK, 0, ack, sizeof(ack));
		break;
	case SYNC_RESEED_FAILS:
		vm_agent_sync_ack_encode(ack, 0, 0, EINVAL);
		sync_reply(f->fd, VM_AGENT_SYNC_ACK, 0, ack, sizeof(ack));
		break;
	case SYNC_BAD_ACK:
		memset(ack, 0xff, sizeof(ack));
		sync_reply(f->fd, VM_AGENT_SYNC_ACK, 0, ack, sizeof(ack));
		break;
	case SYNC_WRONG_TYPE:
		sync_reply(f->fd, VM_AGENT_STDOUT, 1, "hi", 2);
		break;
	case SYNC_HANG_UP:
		break;
	case SYNC_SILENT: /* never answers; the host times out */
		if (read_full(f->fd, h, 1) < 0)
			break;
		break;
	}
	if (f->synced && f->mode == SYNC_OK && exec_id) {
		uint8_t ex[8];
		vm_agent_exit_encode(ex, 0, 5);
		sync_reply(f->fd, VM_AGENT_EXIT, exec_id, ex, 8);
	} else if (f->synced && f->mode == SYNC_SILENT) {
		/* answers nothing; the host ends it with the connection */
	} else if (f->mode == SYNC_THEN_EXEC) {
		/* The ack was consumed exactly: an exec on the same connection works. */
		assert_int_equal(read_full(f->fd, h, sizeof(h)), 0);
		struct vm_agent_hdr hd;
		assert_int_equal(vm_agent_hdr_decode(h, &hd), 0);
		assert_int_equal(hd.type, VM_AGENT_EXEC);
		assert_int_equal(read_full(f->fd, payload, hd.len > sizeof(payload) ? 0 : hd.len),
				 0);
		uint8_t ex[8];
		vm_agent_exit_encode(ex, 0, 5);
		sync_reply(f->fd, VM_AGENT_EXIT, hd.id, ex, 8);
	}
	close(f->fd);
	return NULL;
}

static int run_sync(struct fake_sync *f, int timeout_ms, struct sm_error *err)
{
	int sp[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	f->fd = sp[1];
	pthread_t th;
	pthread_create(&th, NULL, fake_sync_agent, f);
	int r;
	if (f->synced) {
		struct vm_agent_job j;
		job_init(&j, -1, -1, -1, 0);
		r = vm_agent_run_synced(sp[0], &j, 1, -1, -1, err);
		if (r == 0)
			assert_int_equal(j.code, 5);
		close(sp[0]);
		pthread_join(th, NULL);
		return r;
	}
	r = vm_agent_sync(sp[0], -1, timeout_ms, err);
	if (f->mode == SYNC_THEN_EXEC) {
		assert_int_equal(r, 0);
		struct vm_agent_job j;
		job_init(&j, -1, -1, -1, 0);
		assert_int_equal(vm_agent_run(sp[0], &j, 1, -1, -1, err), 0);
		assert_int_equal(j.code, 5);
	}
	close(sp[0]); /* also ends SYNC_SILENT's wait */
	pthread_join(th, NULL);
	return r;
}

static void test_sync(void **state)
{
	(void)state;
	struct sm_error err = {0};
	struct fake_sync a = {.mode = SYNC_OK}, b = {.mode = SYNC_OK};
	struct timespec t0, t1;
	clock_gettime(CLOCK_REALTIME, &t0);
	assert_int_equal(run_sync(&a, 5000, &err), 0);
	clock_gettime(CLOCK_REALTIME, &t1);
	assert_int_equal(a.decode_rc, 0);
	assert_int_equal(a.hdr.type, VM_AGENT_SYNC);
	assert_int_equal(a.hdr.id, 0);
	/* The host's wall clock, read during the call. */
	int64_t ns = a.sec * 1000000000LL + a.nsec;
	assert_true(ns >= t0.tv_sec * 1000000000LL + t0.tv_nsec);
	assert_true(ns <= t1.tv_sec * 1000000000LL + t1.tv_nsec);
	assert_int_equal(a.entropy_len, VM_AGENT_SYNC_ENTROPY_DEFAULT);
	/* Fresh entropy each time (64 random bytes equal by chance: 2^-512). */
	assert_int_equal(run_sync(&b, 5000, &err), 0);
	assert_int_equal(b.entropy_len, VM_AGENT_SYNC_ENTROPY_DEFAULT);
	assert_memory_not_equal(a.entropy, b.entropy, a.entropy_len);
	uint8_t zero[VM_AGENT_SYNC_ENTROPY_DEFAULT] = {0};
	assert_memory_not_equal(a.entropy, zero, sizeof(zero));
	/* SYNC then EXEC on one connection. */
	struct fake_sync c = {.mode = SYNC_THEN_EXEC};
	assert_int_equal(run_sync(&c, 5000, &err), 0);
}

/* Each way a SYNC can fail, for the plain SYNC (its own round trip) and the
 * pipelined one (SYNC and EXEC in one write). A hang-up reads differently:
 * before EXEC went out it means an agent older than the protocol. A silent
 * agent only times out where there is a timeout (the plain SYNC). */
static const struct {
	int mode, rc;
	const char *msg, *msg_synced;
} sync_failures[] = {
	{SYNC_CLOCK_FAILS, -EIO, "clock", "clock"},
	{SYNC_RESEED_FAILS, -EIO, "reseed", "reseed"},
	{SYNC_BAD_ACK, -EPROTO, "SYNC_ACK", "SYNC_ACK"},
	{SYNC_WRONG_TYPE, -EPROTO, "bad frame", "bad frame"},
	{SYNC_HANG_UP, -ECONNRESET, "older than protocol", "closed the connection"},
	{SYNC_SILENT, -ETIMEDOUT, "timed out", NULL},
};

static void check_sync_failures(int synced)
{
	for (size_t i = 0; i < sizeof(sync_failures) / sizeof(sync_failures[0]); i++) {
		const char *msg = synced ? sync_failures[i].msg_synced : sync_failures[i].msg;
		if (!msg)
			continue;
		struct sm_error err = {0};
		struct fake_sync f = {.mode = sync_failures[i].mode, .synced = synced};
		int r = run_sync(&f, synced ? 0 : 200, &err);
		assert_int_equal(f.decode_rc, 0);
		if (synced)
			assert_true(f.exec_before_ack);
		if (r != sync_failures[i].rc || !strstr(err.msg, msg))
			fail_msg("%s case %zu: rc %d msg '%s'", synced ? "pipelined" : "plain", i,
				 r, err.msg);
	}
}

static void test_sync_failures(void **state)
{
	(void)state;
	check_sync_failures(0);
	/* The stop fd ends the wait. */
	int sp[2], stop[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	assert_int_equal(pipe(stop), 0);
	assert_int_equal(write(stop[1], "x", 1), 1);
	struct sm_error err = {0};
	assert_int_equal(vm_agent_sync(sp[0], stop[0], 5000, &err), -ECANCELED);
	close(sp[0]);
	close(sp[1]);
	close(stop[0]);
	close(stop[1]);
}

/* SYNC and EXEC in one round trip: the EXEC frame goes out before the ack,
 * the ack is checked first, and a failed step fails the run. */
static void test_sync_pipelined(void **state)
{
	(void)state;
	struct sm_error err = {0};
	struct fake_sync a = {.mode = SYNC_OK, .synced = 1};
	assert_int_equal(run_sync(&a, 0, &err), 0);
	assert_int_equal(a.decode_rc, 0);
	assert_int_equal(a.hdr.type, VM_AGENT_SYNC);
	assert_int_equal(a.entropy_len, VM_AGENT_SYNC_ENTROPY_DEFAULT);
	assert_true(a.exec_before_ack);
	check_sync_failures(1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stdin_roundtrip),
		cmocka_unit_test(test_two_jobs),
		cmocka_unit_test(test_exec_error),
		cmocka_unit_test(test_protocol_violations),
		cmocka_unit_test(test_signal_forwarding),
		cmocka_unit_test(test_stop_fd_cancels),
		cmocka_unit_test(test_ready_and_connect),
		cmocka_unit_test(test_sync),
		cmocka_unit_test(test_sync_failures),
		cmocka_unit_test(test_sync_pipelined),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
