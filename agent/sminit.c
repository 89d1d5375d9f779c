/* SPDX-License-Identifier: Apache-2.0 */
/* sminit: the guest agent, a static PID 1.
 *
 * Mounts /proc /sys /dev /tmp /run, listens on vsock port VM_AGENT_PORT,
 * reports readiness by connecting to the host (CID 2) port
 * VM_AGENT_READY_PORT, and serves the framed protocol of
 * docs/agent-protocol.md: several connections, several execs each, all
 * driven by one poll loop. As PID 1 it also reaps every orphan. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/random.h>
#include <linux/vm_sockets.h>

#include "sm/vm.h"

#define MAX_CONNS    16
#define MAX_EXECS    64
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

extern char **environ;

struct conn {
	int fd;
	uint8_t *in;
	size_t in_len;
	int sync_errno; /* a SYNC on it failed: EXEC is refused (the host may send
			 * EXEC right behind SYNC, before it has seen the ack) */
};

struct exec {
	int used;
	struct conn *conn;
	uint32_t id;
	pid_t pid;
	int out_fd, err_fd, in_fd; /* parent ends, -1 when closed */
	uint8_t *in_buf;	   /* stdin bytes not yet written */
	size_t in_off, in_len, in_cap;
	int in_eof; /* close in_fd once in_buf drains */
	int exited, status;
};

static struct conn conns[MAX_CONNS];
static struct exec execs[MAX_EXECS];
static int urandom_fd = -1; /* opened before the switch to the image root */

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(2, "sminit: ", 8) < 0 || write(2, buf, (size_t)n) < 0) {
		/* no console: nothing to do */
	}
}

static int write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;
	while (len) {
		ssize_t n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			poll(&pf, 1, -1);
			continue;
		}
		if (n <= 0)
			return -1;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_frame(struct conn *c, uint16_t type, uint32_t id, const void *p, size_t len)
{
	uint8_t h[VM_AGENT_HDR_LEN];
	vm_agent_hdr_encode(h, type, id, (uint32_t)len);
	if (c->fd < 0)
		return -1;
	if (write_all(c->fd, h, sizeof(h)) < 0 || (len && write_all(c->fd, p, len) < 0))
		return -1;
	return 0;
}

static void setup_system(void)
{
	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mkdir("/dev", 0755);
	mkdir("/tmp", 01777);
	mkdir("/run", 0755);
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		logmsg("mount /proc: %s", strerror(errno));
	if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		logmsg("mount /sys: %s", strerror(errno));
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0)
		logmsg("mount /dev: %s", strerror(errno));
	mkdir("/dev/pts", 0755);
	mkdir("/dev/shm", 01777);
	mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		logmsg("mount /tmp: %s", strerror(errno));
	mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	int fd = open("/dev/console", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
	if (!getenv("PATH"))
		setenv("PATH", DEFAULT_PATH, 1);
}

/* The value of KEY=VALUE on the kernel command line, or -1. */
static int cmdline_get(const char *key, char *val, size_t size)
{
	char buf[4096];
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	size_t kl = strlen(key);
	for (char *p = buf; *p;) {
		p += strspn(p, " \n");
		char *end = p + strcspn(p, " \n");
		if ((size_t)(end - p) > kl && !strncmp(p, key, kl) && p[kl] == '=') {
			size_t vl = (size_t)(end - p) - kl - 1;
			if (vl >= size)
				return -1;
			memcpy(val, p + kl + 1, vl);
			val[vl] = 0;
			return 0;
		}
		p = end;
	}
	return -1;
}

/* sm.rootfs=TAG (set by the VMM with virtio-fs): mount TAG read-only (with
 * sm.dax=MODE: -o dax=MODE) as the lower layer of an overlay whose upper
 * layer is a tmpfs, move /proc /sys /dev /tmp /run into it and make it the
 * root as switch_root does (MS_MOVE onto /, chroot). Every command then
 * runs in the image and writes privately. Without it: stay on the initramfs. */
static void setup_rootfs(void)
{
	char tag[64], dax[32], opts[64] = "";
	if (cmdline_get("sm.rootfs", tag, sizeof(tag)) < 0)
		return;
	if (cmdline_get("sm.dax", dax, sizeof(dax)) == 0)
		snprintf(opts, sizeof(opts), "dax=%s", dax);
	static const char *const dirs[] = {"/mnt", "/mnt/lower", "/mnt/rw", "/mnt/root"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		mkdir(dirs[i], 0755);
	if (mount(tag, "/mnt/lower", "virtiofs", MS_RDONLY, opts[0] ? opts : NULL) < 0) {
		logmsg("rootfs: mount virtiofs %s %s: %s", tag, opts, strerror(errno));
		return;
	}
	if (mount("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=0755") < 0) {
		logmsg("rootfs: mount tmpfs: %s", strerror(errno));
		return;
	}
	mkdir("/mnt/rw/upper", 0755);
	mkdir("/mnt/rw/work", 0755);
	if (mount("overlay", "/mnt/root", "overlay", 0,
		  "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work") < 0) {
		logmsg("rootfs: mount overlay: %s", strerror(errno));
		return;
	}
	static const char *const moved[] = {"/proc", "/sys", "/dev", "/tmp", "/run"};
	for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
		char to[64];
		snprintf(to, sizeof(to), "/mnt/root%s", moved[i]);
		mkdir(to, 0755);
		if (mount(moved[i], to, NULL, MS_MOVE, NULL) < 0)
			logmsg("rootfs: move %s: %s", moved[i], strerror(errno));
	}
	if (chdir("/mnt/root") < 0 || mount("/mnt/root", "/", NULL, MS_MOVE, NULL) < 0 ||
	    chroot(".") < 0 || chdir("/") < 0)
		logmsg("rootfs: switch root: %s", strerror(errno));
}

static int report_ready(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_vm sa = {.svm_family = AF_VSOCK,
				 .svm_cid = VMADDR_CID_HOST,
				 .svm_port = VM_AGENT_READY_PORT};
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	uint8_t b[VM_AGENT_HDR_LEN + 4];
	vm_agent_hdr_encode(b, VM_AGENT_READY, 0, 4);
	uint32_t v = VM_AGENT_PROTO_VERSION;
	memcpy(b + VM_AGENT_HDR_LEN, &v, 4); /* x86: little-endian */
	int r = write_all(fd, b, sizeof(b));
	close(fd);
	return r;
}

/* ---- execs ------------------------------------------------------------------- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void exec_free(struct exec *x)
{
	close_fd(&x->out_fd);
	close_fd(&x->err_fd);
	close_fd(&x->in_fd);
	free(x->in_buf);
	memset(x, 0, sizeof(*x));
	x->out_fd = x->err_fd = x->in_fd = -1;
}

/* Send EXIT once the process is gone and its output drained. */
static void exec_maybe_done(struct exec *x)
{
	if (!x->used || !x->exited || x->out_fd >= 0 || x->err_fd >= 0)
		return;
	uint8_t p[8];
	if (WIFSIGNALED(x->status))
		vm_agent_exit_encode(p, 1, WTERMSIG(x->status));
	else
		vm_agent_exit_encode(p, 0, WEXITSTATUS(x->status));
	if (x->conn)
		send_frame(x->conn, VM_AGENT_EXIT, x->id, p, sizeof(p));
	exec_free(x);
}

static void send_error(struct conn *c, uint32_t id, int e, const char *msg)
{
	uint8_t buf[300];
	uint32_t ue = (uint32_t)e;
	memcpy(buf, &ue, 4);
	size_t ml = strlen(msg);
	if (ml > sizeof(buf) - 4)
		ml = sizeof(buf) - 4;
	memcpy(buf + 4, msg, ml);
	send_frame(c, VM_AGENT_ERROR, id, buf, 4 + ml);
}

static struct exec *exec_find(struct conn *c, uint32_t id)
{
	for (int i = 0; i < MAX_EXECS; i++)
		if (execs[i].used && execs[i].conn == c && execs[i].id == id)
			return &execs[i];
	return NULL;
}

static void exec_start(struct conn *c, uint32_t id, const uint8_t *p, size_t len)
{
	struct vm_agent_exec req;
	if (id == 0 || exec_find(c, id)) {
		send_error(c, id, EINVAL, "exec id 0 or already in use");
		return;
	}
	if (c->sync_errno) {
		send_error(c, id, c->sync_errno,
			   "not run: the guest's clock or RNG could not be synced (SYNC failed)");
		return;
	}
	if (vm_agent_exec_decode(p, len, &req) < 0) {
		send_error(c, id, EPROTO, "malformed exec request");
		return;
	}
	struct exec *x = NULL;
	for (int i = 0; i < MAX_EXECS && !x; i++)
		if (!execs[i].used)
			x = &execs[i];
	if (!x) {
		vm_agent_exec_free(&req);
		send_error(c, id, EAGAIN, "too many commands running");
		return;
	}
	int out[2] = {-1, -1}, errp[2] = {-1, -1}, in[2] = {-1, -1}, status[2] = {-1, -1};
	int want_stdin = req.flags & VM_AGENT_EXEC_STDIN;
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
	    (want_stdin && pipe2(in, O_CLOEXEC) < 0) || pipe2(status, O_CLOEXEC) < 0) {
		int e = errno;
		for (int i = 0; i < 2; i++) {
			close_fd(&out[i]);
			close_fd(&errp[i]);
			close_fd(&in[i]);
			close_fd(&status[i]);
		}
		vm_agent_exec_free(&req);
		send_error(c, id, e, "pipe failed");
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		/* The command starts with default signal handling: the agent
		 * ignores SIGPIPE, which exec would pass on (`yes | head` and
		 * every shell pipeline rely on SIGPIPE killing the writer). */
		signal(SIGPIPE, SIG_DFL);
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		setsid();
		int nul = open("/dev/null", O_RDWR);
		dup2(want_stdin ? in[0] : nul, 0);
		dup2(out[1], 1);
		dup2(errp[1], 2);
		if (nul > 2)
			close(nul);
		const char *cwd = req.cwd && *req.cwd ? req.cwd : "/";
		int e = 0;
		if (chdir(cwd) < 0)
			e = errno;
		if (!e && setgroups(0, NULL) < 0 && errno != EPERM)
			e = errno;
		if (!e && setgid(req.gid) < 0)
			e = errno;
		if (!e && setuid(req.uid) < 0)
			e = errno;
		if (!e) {
			environ = (char **)req.env;
			if (!getenv("PATH"))
				setenv("PATH", DEFAULT_PATH, 1);
			execvp(req.argv[0], (char *const *)req.argv);
			e = errno;
		}
		if (write(status[1], &e, sizeof(e)) < 0)
			_exit(127);
		_exit(127);
	}
	int fork_errno = errno;
	close_fd(&out[1]);
	close_fd(&errp[1]);
	close_fd(&in[0]);
	close_fd(&status[1]);
	if (pid < 0) {
		close_fd(&out[0]);
		close_fd(&errp[0]);
		close_fd(&in[1]);
		close_fd(&status[0]);
		vm_agent_exec_free(&req);
		send_error(c, id, fork_errno, "fork failed");
		return;
	}
	/* Did exec succeed? The status pipe closes on exec, or carries errno. */
	int child_errno = 0;
	ssize_t n;
	while ((n = read(status[0], &child_errno, sizeof(child_errno))) < 0 && errno == EINTR)
		;
	close_fd(&status[0]);
	memset(x, 0, sizeof(*x));
	x->used = 1;
	x->conn = c;
	x->id = id;
	x->pid = pid;
	x->out_fd = out[0];
	x->err_fd = errp[0];
	x->in_fd = in[1];
	if (x->in_fd >= 0)
		fcntl(x->in_fd, F_SETFL, O_NONBLOCK);
	if (n == sizeof(child_errno) && child_errno) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot run %s: %s", req.argv[0], strerror(child_errno));
		send_error(c, id, child_errno, msg);
		x->conn = NULL; /* reaped silently */
		close_fd(&x->out_fd);
		close_fd(&x->err_fd);
		close_fd(&x->in_fd);
	}
	vm_agent_exec_free(&req);
}

static void exec_stdin(struct conn *c, uint32_t id, const uint8_t *p, size_t len)
{
	struct exec *x = exec_find(c, id);
	if (!x || x->in_fd < 0 || x->in_eof)
		return; /* finished or no stdin: drop */
	if (len == 0) {
		x->in_eof = 1;
	} else {
		if (x->in_off && x->in_off + x->in_len + len > x->in_cap) {
			memmove(x->in_buf, x->in_buf + x->in_off, x->in_len);
			x->in_off = 0;
		}
		if (x->in_len + len > x->in_cap) {
			size_t cap = x->in_cap ? x->in_cap : 65536;
			while (cap < x->in_len + len)
				cap *= 2;
			uint8_t *nb = realloc(x->in_buf, cap);
			if (!nb) {
				close_fd(&x->in_fd);
				return;
			}
			x->in_buf = nb;
			x->in_cap = cap;
		}
		memcpy(x->in_buf + x->in_off + x->in_len, p, len);
		x->in_len += len;
	}
}

static void exec_flush_stdin(struct exec *x)
{
	while (x->in_fd >= 0 && x->in_len) {
		ssize_t n = write(x->in_fd, x->in_buf + x->in_off, x->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close_fd(&x->in_fd); /* reader gone */
			x->in_len = 0;
			return;
		}
		x->in_off += (size_t)n;
		x->in_len -= (size_t)n;
	}
	x->in_off = 0;
	if (x->in_eof && x->in_len == 0)
		close_fd(&x->in_fd);
}

/* ---- SYNC: wall clock and entropy after a restore ------------------------------ */

/* Set CLOCK_REALTIME to the host's time, mix the host's entropy into the
 * kernel's input pool crediting every bit (RNDADDENTROPY), then re-key the
 * CRNG at once (RNDRESEEDCRNG): the per-CPU generators follow the base
 * generation on their next use, so no output after this point derives from
 * the random state the snapshot captured. Each step's errno goes back in
 * SYNC_ACK; a failure never stops the agent. */
static void conn_close(struct conn *c);

static void sync_guest(struct conn *c, uint32_t id, uint8_t *p, size_t len)
{
	struct vm_agent_sync s;
	int ce = 0, ee = 0, re = 0;
	if (vm_agent_sync_decode(p, len, &s) < 0) {
		logmsg("malformed SYNC from host");
		ce = ee = re = EPROTO;
	} else {
		struct timespec ts = {.tv_sec = (time_t)s.sec, .tv_nsec = (long)s.nsec};
		if (clock_settime(CLOCK_REALTIME, &ts) < 0)
			ce = errno;
		/* struct rand_pool_info ends in a flexible array: room for it. */
		uint32_t raw[2 + VM_AGENT_SYNC_ENTROPY_MAX / 4];
		struct rand_pool_info *rp = (struct rand_pool_info *)raw;
		rp->entropy_count = (int)s.entropy_len * 8;
		rp->buf_size = (int)s.entropy_len;
		memcpy(rp->buf, s.entropy, s.entropy_len);
		if (urandom_fd < 0)
			ee = re = ENOENT;
		else if (ioctl(urandom_fd, RNDADDENTROPY, rp) < 0)
			ee = errno;
		else if (ioctl(urandom_fd, RNDRESEEDCRNG) < 0)
			re = errno;
		explicit_bzero(raw, sizeof(raw));
		explicit_bzero(p, len);
		if (ce || ee || re)
			logmsg("SYNC: clock %s, entropy %s, reseed %s", strerror(ce), strerror(ee),
			       strerror(re));
	}
	c->sync_errno = ce ? ce : ee ? ee : re;
	uint8_t ack[VM_AGENT_SYNC_ACK_LEN];
	vm_agent_sync_ack_encode(ack, ce, ee, re);
	if (send_frame(c, VM_AGENT_SYNC_ACK, id, ack, sizeof(ack)) < 0)
		conn_close(c);
}

/* ---- connections ------------------------------------------------------------- */

static void conn_close(struct conn *c)
{
	for (int i = 0; i < MAX_EXECS; i++) {
		struct exec *x = &execs[i];
		if (x->used && x->conn == c) {
			kill(-x->pid, SIGKILL);
			kill(x->pid, SIGKILL);
			x->conn = NULL; /* reaped without a report */
			close_fd(&x->in_fd);
		}
	}
	close_fd(&c->fd);
	free(c->in);
	c->in = NULL;
	c->in_len = 0;
}

static void conn_read(struct conn *c)
{
	size_t cap = VM_AGENT_HDR_LEN + VM_AGENT_MAX_PAYLOAD;
	ssize_t n = read(c->fd, c->in + c->in_len, cap - c->in_len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->in_len += (size_t)n;
	size_t off = 0;
	while (c->in_len - off >= VM_AGENT_HDR_LEN) {
		struct vm_agent_hdr h;
		if (vm_agent_hdr_decode(c->in + off, &h) < 0) {
			logmsg("bad frame from host: closing connection");
			conn_close(c);
			return;
		}
		if (c->in_len - off - VM_AGENT_HDR_LEN < h.len)
			break;
		const uint8_t *p = c->in + off + VM_AGENT_HDR_LEN;
		switch (h.type) {
		case VM_AGENT_EXEC:
			exec_start(c, h.id, p, h.len);
			break;
		case VM_AGENT_STDIN:
			exec_stdin(c, h.id, p, h.len);
			break;
		case VM_AGENT_SYNC:
			sync_guest(c, h.id, c->in + off + VM_AGENT_HDR_LEN, h.len);
			break;
		case VM_AGENT_SIGNAL: {
			struct exec *x = exec_find(c, h.id);
			int sig;
			if (x && h.len == 4) {
				memcpy(&sig, p, 4);
				/* To its process group, as a terminal would. */
				if (sig > 0 && sig < 65 && kill(-x->pid, sig) < 0)
					kill(x->pid, sig);
			}
			break;
		}
		default:
			break; /* frames for the host only: ignore */
		}
		if (c->fd < 0)
			return;
		off += VM_AGENT_HDR_LEN + h.len;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
}

static void reap(void)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			return;
		for (int i = 0; i < MAX_EXECS; i++) {
			struct exec *x = &execs[i];
			if (x->used && x->pid == pid) {
				x->exited = 1;
				x->status = status;
				if (!x->conn) {
					exec_free(x);
				} else {
					close_fd(&x->in_fd);
					exec_maybe_done(x);
				}
			}
		}
	}
}

static void pump_output(struct exec *x, int *fd, uint16_t type)
{
	static uint8_t buf[65536];
	ssize_t n = read(*fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close_fd(fd);
		exec_maybe_done(x);
		return;
	}
	if (x->conn && send_frame(x->conn, type, x->id, buf, (size_t)n) < 0)
		conn_close(x->conn);
}

int main(void)
{
	if (getpid() == 1)
		setup_system();
	urandom_fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
	if (getpid() == 1)
		setup_rootfs();
	for (int i = 0; i < MAX_EXECS; i++)
		execs[i].out_fd = execs[i].err_fd = execs[i].in_fd = -1;
	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	signal(SIGPIPE, SIG_IGN);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);

	int lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_vm sa = {
		.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = VM_AGENT_PORT};
	int listen_errno = 0;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0)
		listen_errno = errno;
	if (getenv("SMINIT_MARK")) {
		/* Benchmarks (bench/boot.sh) time the boot up to this line on
		 * the serial console, the same way for every VMM. */
		static const char mark[] = "sminit: ready\n";
		if (write(2, mark, sizeof(mark) - 1) < 0) {
			/* no console */
		}
	}
	if (listen_errno) {
		logmsg("cannot listen on vsock port %d: %s", VM_AGENT_PORT, strerror(listen_errno));
		for (;;)
			pause(); /* PID 1 must not exit */
	}
	if (report_ready() < 0)
		logmsg("cannot report readiness to the host: %s", strerror(errno));

	struct pollfd pf[2 + MAX_CONNS + 3 * MAX_EXECS];
	struct {
		int kind; /* 0 conn, 1 stdout, 2 stderr, 3 stdin */
		int idx;
	} what[2 + MAX_CONNS + 3 * MAX_EXECS];
	for (;;) {
		int n = 0;
		pf[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pf[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
		for (int i = 0; i < MAX_CONNS; i++) {
			if (conns[i].fd < 0)
				continue;
			what[n].kind = 0, what[n].idx = i;
			pf[n++] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
		}
		for (int i = 0; i < MAX_EXECS; i++) {
			struct exec *x = &execs[i];
			if (!x->used)
				continue;
			if (x->out_fd >= 0) {
				what[n].kind = 1, what[n].idx = i;
				pf[n++] = (struct pollfd){.fd = x->out_fd, .events = POLLIN};
			}
			if (x->err_fd >= 0) {
				what[n].kind = 2, what[n].idx = i;
				pf[n++] = (struct pollfd){.fd = x->err_fd, .events = POLLIN};
			}
			if (x->in_fd >= 0 && x->in_len) {
				what[n].kind = 3, what[n].idx = i;
				pf[n++] = (struct pollfd){.fd = x->in_fd, .events = POLLOUT};
			}
		}
		if (poll(pf, (nfds_t)n, -1) < 0) {
			if (errno != EINTR)
				logmsg("poll: %s", strerror(errno));
			continue;
		}
		if (pf[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				;
			reap();
		}
		if (pf[1].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			int slot = -1;
			for (int i = 0; fd >= 0 && i < MAX_CONNS && slot < 0; i++)
				if (conns[i].fd < 0)
					slot = i;
			uint8_t *in =
				slot >= 0 ? malloc(VM_AGENT_HDR_LEN + VM_AGENT_MAX_PAYLOAD) : NULL;
			if (in) {
				conns[slot].fd = fd;
				conns[slot].in = in;
				conns[slot].in_len = 0;
				conns[slot].sync_errno = 0;
			} else if (fd >= 0) {
				close(fd);
			}
		}
		for (int i = 2; i < n; i++) {
			if (!pf[i].revents)
				continue;
			struct exec *x = &execs[what[i].idx];
			switch (what[i].kind) {
			case 0:
				if (conns[what[i].idx].fd == pf[i].fd)
					conn_read(&conns[what[i].idx]);
				break;
			case 1:
				if (x->used && x->out_fd == pf[i].fd)
					pump_output(x, &x->out_fd, VM_AGENT_STDOUT);
				break;
			case 2:
				if (x->used && x->err_fd == pf[i].fd)
					pump_output(x, &x->err_fd, VM_AGENT_STDERR);
				break;
			case 3:
				if (x->used && x->in_fd == pf[i].fd)
					exec_flush_stdin(x);
				break;
			}
		}
		/* New stdin data may be writable right away. */
		for (int i = 0; i < MAX_EXECS; i++)
			if (execs[i].used && execs[i].in_fd >= 0)
				exec_flush_stdin(&execs[i]);
	}
}
