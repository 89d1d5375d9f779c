/* SPDX-License-Identifier: Apache-2.0 */
/* smrun: boot the guest kernel in our own KVM monitor with an initramfs
 * holding the agent, run one command through the agent, print its output
 * and exit with its status. A developer tool and the cold-boot baseline. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sm/bake.h"
#include "sm/version.h"
#include "run_opts.h"
#include "sm/vm.h"

static const char usage[] =
	"Usage: smrun --kernel VMLINUX [options] -- CMD [ARGS...]\n\n"
	"Boot VMLINUX in a microVM, run CMD through the guest agent (stdin is\n"
	"forwarded), print its output and exit with its status.\n\n"
	"  --kernel FILE     uncompressed vmlinux (default: $SM_KERNEL)\n"
	"  --initrd FILE     initramfs to boot as is (default: built on the fly with\n"
	"                    the agent and busybox)\n"
	"  --agent FILE      static agent for the built initramfs (default: $SM_AGENT,\n"
	"                    else ../agent/sminit next to this program)\n"
	"  --busybox FILE    busybox to include (default /bin/busybox if present)\n"
	"  --no-busybox      initramfs with the agent only\n"
	"  --rootfs DIR      share DIR read-only over virtio-fs as the guest's root\n"
	"                    (an overlay with a private tmpfs upper layer: DIR is\n"
	"                    never modified)\n"
	"  --dax             with --rootfs: map files through a 1 GiB DAX window\n"
	"  --dax-mib N       DAX window size in MiB (implies --dax)\n"
	"  --write-initrd F  write the built initramfs to F and exit\n"
	"  --mem MIB         guest memory in MiB (default 256)\n"
	"  --cpus N          vCPUs (default 1)\n"
	"  --append ARGS     extra kernel command line\n"
	"  --console DEST    kernel console: '-' stderr (default), 'none', or a file\n"
	"  --env K=V         environment for CMD (repeatable; default PATH and HOME)\n"
	"  --workdir DIR     working directory for CMD (default /)\n"
	"  --user UID[:GID]  run CMD as this user (default 0:0)\n"
	"  --no-stdin        do not forward stdin (CMD reads /dev/null)\n"
	"  --parallel N      run N copies of CMD at once (testing), exit with the\n"
	"                    first non-zero status\n"
	"  --timeout SECS    how long to wait for the agent (default 120)\n"
	"  --timing          print a JSON line with boot timings to stderr\n"
	"  --snapshot-out F  bake: boot, wait for the agent, run the --warmup\n"
	"                    command if any, capture the VM into snapshot F (no CMD)\n"
	"  --warmup CMD      with --snapshot-out: run /bin/sh -c CMD before capture\n"
	"  --version, -h, --help\n\n"
	"SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to CMD while it runs.\n\n"
	"Exit status: CMD's status (128+N when killed by signal N; 127 when CMD\n"
	"is not found, 126 when it cannot be run), 125 on a supermachine error.\n";

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(const char *what, const struct sm_error *err)
{
	fprintf(stderr, "smrun: %s%s%s\n", what, err && err->msg[0] ? ": " : "",
		err ? err->msg : "");
	return 125;
}

static int read_whole(const char *path, void **out, size_t *len, struct sm_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return sm_error_errno(err, errno, "cannot open %s", path);
	size_t cap = 1 << 20, n = 0;
	char *p = malloc(cap);
	size_t got;
	while (p && (got = fread(p + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			char *np = realloc(p, cap *= 2);
			if (!np) {
				free(p);
				p = NULL;
			}
			p = np;
		}
	}
	int bad = ferror(f) || !p;
	fclose(f);
	if (bad) {
		free(p);
		return sm_error_set(err, EIO, "cannot read %s", path);
	}
	*out = p;
	*len = n;
	return 0;
}

int main(int argc, char **argv)
{
	double t_start = now_ms();
	const char *kernel = getenv("SM_KERNEL"), *initrd_path = NULL, *agent = NULL;
	const char *busybox = "/bin/busybox", *append = NULL, *console = "-";
	const char *workdir = "/", *write_initrd = NULL;
	unsigned long mem = 256, cpus = 1, parallel = 1, timeout = 120;
	unsigned long uid = 0, gid = 0;
	int timing = 0, no_stdin = 0, busybox_set = 0;
	const char *rootfs = NULL;
	unsigned long dax_mib = 0;
	const char **env = calloc((size_t)argc + 2, sizeof(char *));
	uint32_t envc = 0;
	int i;
	if (!env)
		return 125;
	const char *snapshot_out = NULL, *warmup = NULL;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;
#define NEED_ARG                                                                                   \
	do {                                                                                       \
		if (!v) {                                                                          \
			fprintf(stderr, "smrun: %s needs an argument (see smrun --help)\n", a);    \
			return 125;                                                                \
		}                                                                                  \
		i++;                                                                               \
	} while (0)
#define NUM_ARG(var, lo, hi)                                                                       \
	do {                                                                                       \
		NEED_ARG;                                                                          \
		errno = 0;                                                                         \
		var = strtoul(v, &end, 10);                                                        \
		if (errno || *end || !*v || var < (lo) || var > (hi)) {                            \
			fprintf(stderr, "smrun: bad value '%s' for %s\n", v, a);                   \
			return 125;                                                                \
		}                                                                                  \
	} while (0)
		if (!strcmp(a, "--")) {
			i++;
			break;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage, stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("smrun %s\n", SM_VERSION);
			return 0;
		} else if (!strcmp(a, "--kernel")) {
			NEED_ARG;
			kernel = v;
		} else if (!strcmp(a, "--initrd")) {
			NEED_ARG;
			initrd_path = v;
		} else if (!strcmp(a, "--agent")) {
			NEED_ARG;
			agent = v;
		} else if (!strcmp(a, "--busybox")) {
			NEED_ARG;
			busybox = v;
			busybox_set = 1;
		} else if (!strcmp(a, "--no-busybox")) {
			busybox = NULL;
		} else if (!strcmp(a, "--write-initrd")) {
			NEED_ARG;
			write_initrd = v;
		} else if (!strcmp(a, "--mem")) {
			NUM_ARG(mem, 16, 3072);
		} else if (!strcmp(a, "--cpus")) {
			NUM_ARG(cpus, 1, 64);
		} else if (!strcmp(a, "--append")) {
			NEED_ARG;
			append = v;
		} else if (!strcmp(a, "--console")) {
			NEED_ARG;
			console = v;
		} else if (!strcmp(a, "--env")) {
			NEED_ARG;
			if (sm_opt_env("smrun", v, env, &envc) < 0)
				return 125;
		} else if (!strcmp(a, "--workdir")) {
			NEED_ARG;
			workdir = v;
		} else if (!strcmp(a, "--user")) {
			NEED_ARG;
			if (sm_opt_user("smrun", v, &uid, &gid) < 0)
				return 125;
		} else if (!strcmp(a, "--rootfs")) {
			NEED_ARG;
			rootfs = v;
		} else if (!strcmp(a, "--dax")) {
			dax_mib = 1024;
		} else if (!strcmp(a, "--dax-mib")) {
			NUM_ARG(dax_mib, 2, VM_DAX_WINDOW_MAX_MIB);
		} else if (!strcmp(a, "--no-stdin")) {
			no_stdin = 1;
		} else if (!strcmp(a, "--parallel")) {
			NUM_ARG(parallel, 1, 64);
		} else if (!strcmp(a, "--timeout")) {
			NUM_ARG(timeout, 1, 86400);
		} else if (!strcmp(a, "--timing")) {
			timing = 1;
		} else if (!strcmp(a, "--snapshot-out")) {
			NEED_ARG;
			snapshot_out = v;
		} else if (!strcmp(a, "--warmup")) {
			NEED_ARG;
			warmup = v;
		} else {
			fprintf(stderr, "smrun: unknown argument '%s' (see smrun --help)\n", a);
			return 125;
		}
	}
	if (i >= argc && !write_initrd && !snapshot_out) {
		fprintf(stderr, "smrun: no command given (smrun [options] -- CMD [ARGS...])\n");
		return 125;
	}
	sm_opt_default_env(env, &envc);
	if (busybox && !busybox_set && access(busybox, X_OK) != 0)
		busybox = NULL;
	if (dax_mib && !rootfs) {
		fprintf(stderr, "smrun: --dax needs --rootfs\n");
		return 125;
	}
	if (rootfs) {
		/* The passthrough backend holds one fd per node the guest looks up. */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	signal(SIGPIPE, SIG_IGN);

	struct sm_error err = {0};
	void *initrd = NULL;
	size_t initrd_len = 0;
	if (initrd_path) {
		if (read_whole(initrd_path, &initrd, &initrd_len, &err) < 0)
			return fail("initrd", &err);
	} else {
		char *ap = agent ? strdup(agent) : sm_opt_default_agent();
		if (!ap)
			return fail("cannot locate the agent; pass --agent", NULL);
		int r = vm_initramfs_build(ap, busybox, &initrd, &initrd_len, &err);
		free(ap);
		if (r < 0)
			return fail("cannot build the initramfs", &err);
	}
	if (write_initrd) {
		FILE *f = fopen(write_initrd, "wb");
		if (!f || fwrite(initrd, 1, initrd_len, f) != initrd_len || fclose(f) != 0) {
			fprintf(stderr, "smrun: cannot write %s: %s\n", write_initrd,
				strerror(errno));
			return 125;
		}
		free(initrd);
		return 0;
	}
	if (!kernel)
		return fail("no kernel: pass --kernel or set SM_KERNEL", NULL);
	if (vm_kvm_require_usable(&err) < 0)
		return fail("KVM", &err);
	double t_initrd = now_ms();

	int console_fd = 2;
	if (!strcmp(console, "none")) {
		console_fd = -1;
	} else if (strcmp(console, "-") != 0) {
		console_fd = open(console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (console_fd < 0) {
			fprintf(stderr, "smrun: cannot open %s: %s\n", console, strerror(errno));
			return 125;
		}
	}
	if (snapshot_out) {
		char *ap = agent ? strdup(agent) : sm_opt_default_agent();
		const char *wargv[] = {"/bin/sh", "-c", warmup, NULL};
		struct bake_opts bo = {
			.kernel_path = kernel,
			.agent_path = initrd_path ? NULL : ap,
			.initrd = initrd,
			.initrd_len = initrd_len,
			.mem_mib = mem,
			.ncpus = (int)cpus,
			.cmdline_extra = append,
			.console_fd = console_fd,
			.warmup_argv = warmup ? wargv : NULL,
			.warmup_argc = warmup ? 3 : 0,
			.env = env,
			.envc = envc,
			.out_fd = 1,
			.err_fd = 2,
			.out_path = snapshot_out,
			.timeout_ms = (int)timeout * 1000,
			.fs_root = rootfs,
			.fs_dax_mib = dax_mib,
		};
		struct bake_timings bt;
		int r = bake_run(&bo, &bt, &err);
		free(ap);
		free(initrd);
		free(env);
		if (r < 0)
			return fail("bake", &err);
		if (timing)
			fprintf(stderr,
				"{\"smrun_bake_timing\":1,\"boot_ms\":%.1f,\"ready_ms\":%.1f,"
				"\"warmup_ms\":%.1f,\"pause_ms\":%.1f,\"capture_ms\":%.1f}\n",
				bt.boot_ms, bt.ready_ms, bt.warmup_ms, bt.pause_ms, bt.capture_ms);
		return 0;
	}

	char dir[] = "/tmp/smrun-XXXXXX";
	if (!mkdtemp(dir)) {
		fprintf(stderr, "smrun: mkdtemp: %s\n", strerror(errno));
		return 125;
	}
	char uds[128], ready_path[160];
	snprintf(uds, sizeof(uds), "%s/vsock", dir);
	snprintf(ready_path, sizeof(ready_path), "%s_%d", uds, VM_AGENT_READY_PORT);
	int rc = 125, ready_fd = -1, conn = -1, sig_fd = -1, boot_stop = -1;
	struct vm *vm = NULL;
	struct vm_agent_job *jobs = NULL;
	double t_created = 0, t_ready = 0, t_done = 0;

	/* Ctrl-C and friends go to the command, which decides how to exit.
	 * Blocked here, before the VM's threads exist, so that every thread
	 * inherits the mask and the signals only ever reach sig_fd. Signals
	 * ignored at startup (nohup, background jobs) stay ignored. */
	sigset_t fwd;
	sigemptyset(&fwd);
	sigaddset(&fwd, SIGINT);
	sigaddset(&fwd, SIGTERM);
	sigaddset(&fwd, SIGHUP);
	sigaddset(&fwd, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &fwd, NULL);
	sig_fd = signalfd(-1, &fwd, SFD_CLOEXEC | SFD_NONBLOCK);
	boot_stop = epoll_create1(EPOLL_CLOEXEC);
	if (sig_fd < 0 || boot_stop < 0) {
		fprintf(stderr, "smrun: signalfd/epoll: %s\n", strerror(errno));
		goto out;
	}
	ready_fd = vm_agent_ready_listen(uds, &err);
	if (ready_fd < 0) {
		rc = fail("vsock", &err);
		goto out;
	}
	struct vm_config cfg = {
		.kernel_path = kernel,
		.initrd = initrd,
		.initrd_len = initrd_len,
		.mem_mib = mem,
		.ncpus = (int)cpus,
		.cmdline_extra = append,
		.console_fd = console_fd,
		.vsock_uds = uds,
		.fs_root = rootfs,
		.fs_dax_mib = dax_mib,
	};
	if (vm_create(&vm, &cfg, &err) < 0) {
		rc = fail("cannot create the VM", &err);
		goto out;
	}
	free(initrd); /* copied into guest memory */
	initrd = NULL;
	if (vm_start(vm, &err) < 0) {
		rc = fail("cannot start the VM", &err);
		goto out;
	}
	t_created = now_ms();
	/* Before the command runs, a signal stops everything: wait on the VM's
	 * stop fd and the signal fd at once through an epoll fd. */
	struct epoll_event ev = {.events = EPOLLIN};
	ev.data.fd = vm_stopped_fd(vm);
	epoll_ctl(boot_stop, EPOLL_CTL_ADD, vm_stopped_fd(vm), &ev);
	ev.data.fd = sig_fd;
	epoll_ctl(boot_stop, EPOLL_CTL_ADD, sig_fd, &ev);
	if (vm_agent_wait_ready(ready_fd, boot_stop, (int)timeout * 1000, &err) < 0) {
		struct signalfd_siginfo si;
		if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
			fprintf(stderr, "smrun: interrupted by signal %u while booting\n",
				si.ssi_signo);
			rc = 128 + (int)si.ssi_signo;
			goto out;
		}
		goto vm_failed;
	}
	t_ready = now_ms();
	conn = vm_agent_connect(uds, VM_AGENT_PORT, (int)timeout * 1000, &err);
	if (conn < 0)
		goto vm_failed;

	jobs = calloc(parallel, sizeof(*jobs));
	if (!jobs)
		goto out;
	for (unsigned long j = 0; j < parallel; j++) {
		jobs[j].exec = (struct vm_agent_exec){
			.uid = (uint32_t)uid,
			.gid = (uint32_t)gid,
			.flags = (!no_stdin && j == 0 && parallel == 1) ? VM_AGENT_EXEC_STDIN : 0,
			.cwd = workdir,
			.argv = (const char *const *)&argv[i],
			.argc = (uint32_t)(argc - i),
			.env = env,
			.envc = envc,
		};
		jobs[j].stdin_fd = 0;
		jobs[j].stdout_fd = 1;
		jobs[j].stderr_fd = 2;
	}
	int run_rc = vm_agent_run(conn, jobs, (int)parallel, vm_stopped_fd(vm), sig_fd, &err);
	if (run_rc < 0)
		goto vm_failed;
	t_done = now_ms();
	rc = 0;
	for (unsigned long j = 0; j < parallel && rc == 0; j++) {
		if (jobs[j].exec_errno) {
			fprintf(stderr, "smrun: %s\n", jobs[j].error);
			rc = jobs[j].exec_errno == ENOENT   ? 127
			     : jobs[j].exec_errno == EACCES ? 126
							    : 125;
		} else {
			rc = jobs[j].signaled ? 128 + jobs[j].code : jobs[j].code;
		}
	}
	if (timing) {
		struct vm_timings vt;
		vm_get_timings(vm, &vt);
		fprintf(stderr,
			"{\"smrun_timing\":1,\"initrd_ms\":%.1f,\"vm_create_ms\":%.1f,"
			"\"kvm_ms\":%.1f,\"memory_ms\":%.1f,\"load_ms\":%.1f,\"devices_ms\":%.1f,"
			"\"vcpus_ms\":%.1f,\"start_to_ready_ms\":%.1f,\"exec_ms\":%.1f,"
			"\"total_ms\":%.1f}\n",
			t_initrd - t_start, t_created - t_initrd, vt.kvm_ms, vt.memory_ms,
			vt.load_ms, vt.devices_ms, vt.vcpus_ms, t_ready - t_start, t_done - t_ready,
			t_done - t_start);
	}
	goto out;

vm_failed : {
	struct sm_error verr = {0};
	int stopped = 0;
	struct pollfd p = {.fd = vm_stopped_fd(vm), .events = POLLIN};
	stopped = poll(&p, 1, 0) > 0;
	fprintf(stderr, "smrun: %s\n", err.msg);
	if (stopped) {
		enum vm_stop_reason why = vm_wait(vm, &verr);
		const char *names[] = {"running", "stop requested", "guest reset (reboot or panic)",
				       "guest shutdown", "monitor error"};
		fprintf(stderr, "smrun: the VM stopped: %s%s%s\n",
			names[why <= VM_STOP_ERROR ? why : 0], verr.msg[0] ? ": " : "", verr.msg);
	}
	rc = 125;
}
out:
	if (conn >= 0)
		close(conn);
	if (sig_fd >= 0)
		close(sig_fd);
	if (boot_stop >= 0)
		close(boot_stop);
	vm_destroy(vm);
	if (ready_fd >= 0)
		close(ready_fd);
	unlink(ready_path);
	unlink(uds);
	rmdir(dir);
	free(initrd);
	free(jobs);
	free(env);
	return rc;
}
