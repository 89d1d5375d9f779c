/* SPDX-License-Identifier: Apache-2.0 */
/* smrestore: restore a snapshot into a fresh microVM and run one command in
 * it through the guest agent; exit with the command's status. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sm/format.h"
#include "sm/restore.h"
#include "sm/version.h"
#include "run_opts.h"
#include "sm/vm.h"

static const char usage[] =
	"Usage: smrestore SNAP [options] [-- CMD [ARGS...]]\n\n"
	"Restore SNAP into a fresh microVM, run CMD in it, print its output and exit\n"
	"with its status. Without CMD, the image's Entrypoint + Cmd run; a CMD given\n"
	"replaces the image's Cmd and follows its Entrypoint (as docker run).\n\n"
	"  -e, --env K=V        set K for CMD over the image's Env (repeatable; PATH\n"
	"                       and HOME are added when unset)\n"
	"  -w, --workdir DIR    working directory (absolute; default: the image's, else /)\n"
	"  -u, --user U[:G]     user NAME or UID, group NAME or GID (default: the\n"
	"                       image's User, else root); names are looked up in the\n"
	"                       image's /etc/passwd and /etc/group; a user without a\n"
	"                       group gets its passwd group, else 0\n"
	"      --entrypoint P   run P instead of the image's Entrypoint (the image's\n"
	"                       Cmd is then dropped); \"\" clears the Entrypoint\n"
	"  -i, --interactive    forward stdin to CMD (the default)\n"
	"      --no-stdin       do not forward stdin (CMD reads /dev/null)\n"
	"      --rootfs DIR     share DIR as the image root instead of the one recorded\n"
	"                       at bake time (it must hold the same files)\n"
	"      --lazy=MODE      guest memory: 'cow' (default) maps a decompressed image\n"
	"                       kept in the cache copy-on-write; 'uffd' fills pages from\n"
	"                       the snapshot's compressed chunks on first touch\n"
	"                       (EXPERIMENTAL: known to hang on some restores; needs\n"
	"                       SM_EXPERIMENTAL_UFFD=1, see docs/snapshot.md)\n"
	"      --console DEST   guest console: 'none' (default), '-' stderr, or a file\n"
	"      --cache DIR      cache root (default $SM_CACHE, else ~/.cache/supermachine)\n"
	"      --timeout SECS   how long to wait for the agent (default 30)\n"
	"      --timing         print a JSON line with restore phase timings to stderr\n"
	"      --dry-run        restore up to the guest's first instruction, then stop:\n"
	"                       checks that this host's KVM takes the snapshot (memory,\n"
	"                       vCPU, VM and device state) and, with --timing, measures\n"
	"                       the host-side restore work (first_run_ms); CMD is\n"
	"                       resolved but not run; exit 0 when it would restore.\n"
	"                       (works on kvm-pvm too, which cannot run a Linux guest)\n"
	"      --version, -h, --help\n\n"
	"Unlike docker run, stdin is forwarded by default (`-i` is accepted and is\n"
	"the default), so `cmd | smrestore SNAP -- wc -c` works as a pipe; use\n"
	"--no-stdin for a command that must not consume the caller's stdin.\n\n"
	"SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to CMD while it runs.\n\n"
	"Exit status: CMD's status (128+N when killed by signal N; 127 when CMD is\n"
	"not found, 126 when it cannot be run), 125 on a supermachine error (bad\n"
	"arguments, bad snapshot, no KVM, unknown user).\n";

/* One "key":value pair of the --timing line into P (room checked by the
 * caller: the line has a fixed set of keys). Milliseconds go out with two
 * decimals through integer arithmetic: printf's %f costs more than the
 * restore phases it reports in the emulated host (multi-precision digits). */
static char *put_key(char *p, const char *key)
{
	size_t n = strlen(key);
	*p++ = ',';
	*p++ = '"';
	memcpy(p, key, n);
	p += n;
	*p++ = '"';
	*p++ = ':';
	return p;
}

static char *put_u64(char *p, unsigned long long v)
{
	char d[24];
	int n = 0;
	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = d[--n];
	return p;
}

static char *put_ms(char *p, const char *key, double ms)
{
	p = put_key(p, key);
	if (!(ms >= 0) || ms > 1e12) /* negative, NaN or absurd: 0 */
		ms = 0;
	unsigned long long c = (unsigned long long)(ms * 100 + 0.5);
	p = put_u64(p, c / 100);
	*p++ = '.';
	*p++ = (char)('0' + c / 10 % 10);
	*p++ = (char)('0' + c % 10);
	return p;
}

static char *put_int(char *p, const char *key, unsigned long long v)
{
	return put_u64(put_key(p, key), v);
}

static double main_start_ms; /* CLOCK_MONOTONIC at main()'s entry */

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void print_timing(const struct restore_timings *t)
{
	double main_ms = mono_ms() - main_start_ms;
	char line[1024];
	static const char head[] = "{\"smrestore_timing\":1";
	char *p = line;
	memcpy(p, head, sizeof(head) - 1);
	p += sizeof(head) - 1;
	p = put_int(p, "cache_hit", (unsigned)t->cache_hit);
	p = put_ms(p, "validate_ms", t->validate_ms);
	p = put_ms(p, "memory_ms", t->memory_ms);
	p = put_ms(p, "create_ms", t->create_ms);
	p = put_ms(p, "state_ms", t->state_ms);
	p = put_ms(p, "resume_ms", t->resume_ms);
	p = put_ms(p, "first_run_ms", t->first_run_ms);
	p = put_ms(p, "agent_ms", t->agent_ms);
	p = put_ms(p, "done_ms", t->done_ms);
	/* main() to this report: done_ms plus what came before restore_run()
	 * (arguments, run config, fork), in this process and its parent. */
	p = put_ms(p, "main_ms", main_ms);
	p = put_ms(p, "vm_kvm_ms", t->vm.kvm_ms);
	p = put_ms(p, "vm_create_vm_ms", t->vm.create_vm_ms);
	p = put_ms(p, "vm_memory_ms", t->vm.memory_ms);
	p = put_ms(p, "vm_devices_ms", t->vm.devices_ms);
	p = put_ms(p, "vm_vcpus_ms", t->vm.vcpus_ms);
	p = put_int(p, "wset_pages", t->wset_pages);
	p = put_int(p, "prefault_pages", t->prefault_pages);
	p = put_ms(p, "prefault_ms", t->prefault_ms);
	p = put_int(p, "conn_kept", (unsigned)t->conn_kept);
	p = put_int(p, "dry_run", (unsigned)t->dry_run);
	p = put_int(p, "exits_io", t->exits.io);
	p = put_int(p, "exits_uart", t->exits.uart);
	p = put_int(p, "exits_mmio", t->exits.mmio);
	p = put_int(p, "exits_virtio_mmio", t->exits.virtio_mmio);
	p = put_int(p, "exits_other", t->exits.other);
	*p++ = '}';
	*p++ = '\n';
	fwrite(line, 1, (size_t)(p - line), stderr);
}

/*
 * Exit early, tear down late. The process the caller waits for (this one)
 * does not hold the VM: a child restores and runs CMD, reports CMD's status
 * through a pipe as soon as it is known, lets go of stdin/stdout/stderr, and
 * only then tears the VM down (vCPU and device threads, guest RAM, the
 * kernel's release of the VM: 15-20 ms of smrestore's wall time in the
 * emulated host, and the keeper fork that used to move only the last part
 * aside). This process exits with the status meanwhile. QEMU's `-run-with
 * async-teardown=on` does the same for the same reason.
 *
 * The child dies with this process (PR_SET_PDEATHSIG) until it has reported.
 * Signals sent to this process are forwarded to the child, which forwards
 * them to CMD; a terminal's signals (SI_KERNEL) reach the child directly, as
 * both are in the terminal's foreground process group, and are not sent twice.
 */
struct done_report {
	int fd;
	int timing;
	const char *dry_run; /* the snapshot, in a dry run */
};

static void report_done(int status, const struct restore_timings *t, void *arg)
{
	struct done_report *d = arg;
	if (d->timing)
		print_timing(t);
	if (d->dry_run) {
		enum vm_kvm_kind kind = VM_KVM_NONE;
		struct sm_error kerr = {0};
		vm_kvm_probe(NULL, &kind, &kerr);
		fprintf(stderr,
			"smrestore: dry run: %s restores on this host (KVM: %s); host-side work up "
			"to the first KVM_RUN %.1f ms; the guest was not run\n",
			d->dry_run, vm_kvm_kind_name(kind), t->first_run_ms);
	}
	fflush(stdout);
	fflush(stderr);
	/* The caller's pipes see EOF when the waiter exits: drop our copies. */
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul >= 0) {
		for (int fd = 0; fd < 3; fd++)
			dup2(nul, fd);
		close(nul);
	}
	prctl(PR_SET_PDEATHSIG, 0);
	while (write(d->fd, &status, sizeof(status)) < 0 && errno == EINTR)
		;
	close(d->fd);
}

/* The waiter: forward signals to CHILD until it reports a status on
 * STATUS_FD; that status, or the child's own exit status when it ended
 * without one. */
static int wait_for_child(pid_t child, int status_fd, const sigset_t *fwd)
{
	int sig_fd = signalfd(-1, fwd, SFD_CLOEXEC | SFD_NONBLOCK);
	struct pollfd pf[2] = {{.fd = status_fd, .events = POLLIN},
			       {.fd = sig_fd, .events = POLLIN}};
	int status = -1;
	for (;;) {
		if (poll(pf, sig_fd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		struct signalfd_siginfo si;
		if (sig_fd >= 0 && (pf[1].revents & POLLIN))
			while (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				if (si.ssi_code != SI_KERNEL)
					kill(child, (int)si.ssi_signo);
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(status_fd, &status, sizeof(status));
			if (n < 0 && errno == EINTR)
				continue;
			if (n != (ssize_t)sizeof(status))
				status = -1;
			break;
		}
	}
	if (status >= 0)
		return status; /* the child tears the VM down on its own */
	int ws;
	while (waitpid(child, &ws, 0) < 0)
		if (errno != EINTR)
			return 125;
	if (WIFEXITED(ws))
		return WEXITSTATUS(ws);
	fprintf(stderr, "smrestore: the restore process was killed by signal %d\n",
		WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
	return 125;
}

int main(int argc, char **argv)
{
	const char *snap = NULL, *console = "none", *cache = NULL;
	unsigned long timeout = 30;
	int timing = 0, no_stdin = 0, interactive = 0, lazy_uffd = 0, dry_run = 0, i;
	struct restore_cmd_opts c = {0};
	sm_autofree const char **env = calloc((size_t)argc + 2, sizeof(char *));
	uint32_t envc = 0;
	if (!env)
		return 125;
	/* One malloc arena for all threads: the VM's threads allocate little,
	 * and a new arena per thread costs a 64 MiB reservation and its trim. */
	main_start_ms = mono_ms();
	mallopt(M_ARENA_MAX, 1);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;
#define NEED_ARG                                                                                   \
	do {                                                                                       \
		if (!v) {                                                                          \
			fprintf(stderr, "smrestore: %s needs an argument (see --help)\n", a);      \
			return 125;                                                                \
		}                                                                                  \
		i++;                                                                               \
	} while (0)
		if (!strcmp(a, "--")) {
			i++;
			break;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage, stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("smrestore %s\n", SM_VERSION);
			return 0;
		} else if (!strcmp(a, "--env") || !strcmp(a, "-e")) {
			NEED_ARG;
			if (sm_opt_env("smrestore", v, env, &envc) < 0)
				return 125;
		} else if (!strcmp(a, "--workdir") || !strcmp(a, "-w")) {
			NEED_ARG;
			if (v[0] != '/') {
				fprintf(stderr,
					"smrestore: --workdir must be an absolute path, got '%s'\n",
					v);
				return 125;
			}
			c.workdir = v;
		} else if (!strcmp(a, "--user") || !strcmp(a, "-u")) {
			NEED_ARG;
			c.user = v;
		} else if (!strcmp(a, "--entrypoint")) {
			NEED_ARG;
			c.entrypoint = v;
		} else if (!strcmp(a, "--rootfs")) {
			NEED_ARG;
			c.rootfs = v;
		} else if (!strncmp(a, "--lazy", 6) && (a[6] == '=' || !a[6])) {
			const char *m = a[6] == '=' ? a + 7 : v;
			if (!a[6])
				NEED_ARG;
			if (!strcmp(m, "uffd")) {
				const char *x = getenv("SM_EXPERIMENTAL_UFFD");
				if (!x || strcmp(x, "1") != 0) {
					fprintf(stderr,
						"smrestore: --lazy=uffd is experimental and known "
						"to "
						"hang on some restores (docs/snapshot.md); use the "
						"default --lazy=cow, or set SM_EXPERIMENTAL_UFFD=1 "
						"to "
						"try it\n");
					return 125;
				}
				lazy_uffd = 1;
			} else if (!strcmp(m, "cow")) {
				lazy_uffd = 0;
			} else {
				fprintf(stderr,
					"smrestore: bad --lazy mode '%s' (want cow or uffd)\n", m);
				return 125;
			}
		} else if (!strcmp(a, "-i") || !strcmp(a, "--interactive")) {
			interactive = 1;
		} else if (!strcmp(a, "--no-stdin")) {
			no_stdin = 1;
		} else if (!strcmp(a, "--console")) {
			NEED_ARG;
			console = v;
		} else if (!strcmp(a, "--cache")) {
			NEED_ARG;
			cache = v;
		} else if (!strcmp(a, "--timeout")) {
			NEED_ARG;
			errno = 0;
			timeout = strtoul(v, &end, 10);
			if (errno || *end || !*v || timeout < 1 || timeout > 86400) {
				fprintf(stderr, "smrestore: bad value '%s' for --timeout\n", v);
				return 125;
			}
		} else if (!strcmp(a, "--timing")) {
			timing = 1;
		} else if (!strcmp(a, "--dry-run")) {
			dry_run = 1;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "smrestore: unknown argument '%s' (see smrestore --help)\n",
				a);
			return 125;
		} else if (!snap) {
			snap = a;
		} else {
			fprintf(stderr, "smrestore: unexpected argument '%s' (put CMD after --)\n",
				a);
			return 125;
		}
	}
	if (!snap) {
		fprintf(stderr, "smrestore: no snapshot given (smrestore SNAP -- CMD [ARGS...])\n");
		return 125;
	}
	if (interactive && no_stdin) {
		fprintf(stderr,
			"smrestore: -i/--interactive and --no-stdin contradict each other\n");
		return 125;
	}
	c.argv = (const char *const *)&argv[i];
	c.argc = i < argc ? (uint32_t)(argc - i) : 0;
	c.env = env;
	c.envc = envc;
	struct sm_error err = {0};
	struct restore_runcfg rc;
	/* The snapshot's metadata first: a bad snapshot, an unknown user or no
	 * command at all is refused before any VM work. */
	struct fmt_reader *rd = NULL;
	if (restore_runcfg_load(snap, &c, &rc, &rd, &err) < 0) {
		fprintf(stderr, "smrestore: %s\n", err.msg);
		return 125;
	}
	signal(SIGPIPE, SIG_IGN);
	/* A dry run never enters the guest: kvm-pvm takes every ioctl it
	 * makes (a missing /dev/kvm fails when the VM is made). */
	if (!dry_run && vm_kvm_require_usable(&err) < 0) {
		fprintf(stderr, "smrestore: KVM: %s\n", err.msg);
		restore_runcfg_free(&rc);
		fmt_reader_close(rd);
		return 125;
	}
	int console_fd = -1;
	if (!strcmp(console, "-")) {
		console_fd = 2;
	} else if (strcmp(console, "none") != 0) {
		console_fd = open(console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (console_fd < 0) {
			fprintf(stderr, "smrestore: cannot open %s: %s\n", console,
				strerror(errno));
			restore_runcfg_free(&rc);
			fmt_reader_close(rd);
			return 125;
		}
	}
	sigset_t fwd, old_mask;
	sigemptyset(&fwd);
	sigaddset(&fwd, SIGINT);
	sigaddset(&fwd, SIGTERM);
	sigaddset(&fwd, SIGHUP);
	sigaddset(&fwd, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &fwd, &old_mask);
	int report[2];
	if (pipe2(report, O_CLOEXEC) < 0) {
		fprintf(stderr, "smrestore: pipe: %s\n", strerror(errno));
		return 125;
	}
	pid_t waiter = getpid();
	fflush(NULL);
	pid_t child = fork();
	if (child < 0) {
		fprintf(stderr, "smrestore: fork: %s\n", strerror(errno));
		return 125;
	}
	if (child > 0) {
		close(report[1]);
		return wait_for_child(child, report[0], &fwd);
	}
	close(report[0]);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != waiter) /* the waiter is already gone */
		_exit(125);
	struct done_report done = {
		.fd = report[1], .timing = timing, .dry_run = dry_run ? snap : NULL};
	int sig_fd = signalfd(-1, &fwd, SFD_CLOEXEC | SFD_NONBLOCK);

	struct restore_opts o = {
		.snapshot = snap,
		.cache_root = cache,
		.argv = (const char *const *)rc.argv,
		.argc = rc.argc,
		.env = (const char *const *)rc.env,
		.envc = rc.envc,
		.workdir = rc.workdir,
		.uid = rc.uid,
		.gid = rc.gid,
		.forward_stdin = !no_stdin,
		.stdin_fd = 0,
		.stdout_fd = 1,
		.stderr_fd = 2,
		.console_fd = console_fd,
		.sig_fd = sig_fd,
		.timeout_ms = (int)timeout * 1000,
		.rootfs = c.rootfs ? c.rootfs : rc.rootfs,
		.lazy_uffd = lazy_uffd,
		.on_done = report_done,
		.on_done_arg = &done,
		.reader = rd,
		.dry_run = dry_run,
	};
	struct restore_timings t;
	int status = 125;
	int r = restore_run(&o, &status, &t, &err);
	if (sig_fd >= 0)
		close(sig_fd);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (console_fd > 2)
		close(console_fd);
	restore_runcfg_free(&rc);
	fmt_reader_close(rd);
	if (r < 0) {
		fprintf(stderr, "smrestore: %s\n", err.msg);
		return 125;
	}
	return status;
}
