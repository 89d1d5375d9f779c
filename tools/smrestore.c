/* SPDX-License-Identifier: Apache-2.0 */
/* smrestore: restore a snapshot into a fresh microVM and run one command in
 * it through the guest agent; exit with the command's status. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "sm/restore.h"
#include "sm/version.h"
#include "run_opts.h"
#include "sm/vm.h"

static const char usage[] =
	"Usage: smrestore SNAP [options] -- CMD [ARGS...]\n\n"
	"Restore SNAP into a fresh microVM, run CMD in it (stdin forwarded), print\n"
	"its output and exit with its status.\n\n"
	"  --env K=V         environment for CMD (repeatable; default PATH and HOME)\n"
	"  --workdir DIR     working directory for CMD (default /)\n"
	"  --user UID[:GID]  run CMD as this user (default 0:0)\n"
	"  --no-stdin        do not forward stdin (CMD reads /dev/null)\n"
	"  --console DEST    guest console: 'none' (default), '-' stderr, or a file\n"
	"  --cache DIR       cache root (default $SM_CACHE, else ~/.cache/supermachine)\n"
	"  --timeout SECS    how long to wait for the agent (default 30)\n"
	"  --timing          print a JSON line with restore phase timings to stderr\n"
	"  --version, -h, --help\n\n"
	"SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to CMD while it runs.\n\n"
	"Exit status: CMD's status (128+N when killed by signal N; 127 when CMD is\n"
	"not found, 126 when it cannot be run), 125 on a supermachine error (bad\n"
	"arguments, bad snapshot, no KVM).\n";

int main(int argc, char **argv)
{
	const char *snap = NULL, *workdir = "/", *console = "none", *cache = NULL;
	unsigned long timeout = 30, uid = 0, gid = 0;
	int timing = 0, no_stdin = 0, i;
	const char **env = calloc((size_t)argc + 2, sizeof(char *));
	uint32_t envc = 0;
	if (!env)
		return 125;
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
		} else if (!strcmp(a, "--env")) {
			NEED_ARG;
			if (sm_opt_env("smrestore", v, env, &envc) < 0)
				return 125;
		} else if (!strcmp(a, "--workdir")) {
			NEED_ARG;
			workdir = v;
		} else if (!strcmp(a, "--user")) {
			NEED_ARG;
			if (sm_opt_user("smrestore", v, &uid, &gid) < 0)
				return 125;
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
	if (i >= argc) {
		/* No image config yet (initramfs-only snapshots): CMD is required. */
		fprintf(stderr, "smrestore: no command given (smrestore SNAP -- CMD [ARGS...])\n");
		return 125;
	}
	sm_opt_default_env(env, &envc);
	signal(SIGPIPE, SIG_IGN);
	struct sm_error err = {0};
	if (vm_kvm_require_usable(&err) < 0) {
		fprintf(stderr, "smrestore: KVM: %s\n", err.msg);
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
	int sig_fd = signalfd(-1, &fwd, SFD_CLOEXEC | SFD_NONBLOCK);

	struct restore_opts o = {
		.snapshot = snap,
		.cache_root = cache,
		.argv = (const char *const *)&argv[i],
		.argc = (uint32_t)(argc - i),
		.env = env,
		.envc = envc,
		.workdir = workdir,
		.uid = (uint32_t)uid,
		.gid = (uint32_t)gid,
		.forward_stdin = !no_stdin,
		.stdin_fd = 0,
		.stdout_fd = 1,
		.stderr_fd = 2,
		.console_fd = console_fd,
		.sig_fd = sig_fd,
		.timeout_ms = (int)timeout * 1000,
	};
	struct restore_timings t;
	int status = 125;
	int r = restore_run(&o, &status, &t, &err);
	if (sig_fd >= 0)
		close(sig_fd);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	free(env);
	if (r < 0) {
		fprintf(stderr, "smrestore: %s\n", err.msg);
		return 125;
	}
	if (timing)
		fprintf(stderr,
			"{\"smrestore_timing\":1,\"cache_hit\":%d,\"validate_ms\":%.2f,"
			"\"memory_ms\":%.2f,\"create_ms\":%.2f,\"state_ms\":%.2f,\"resume_ms\":%."
			"2f,"
			"\"agent_ms\":%.2f,\"done_ms\":%.2f}\n",
			t.cache_hit, t.validate_ms, t.memory_ms, t.create_ms, t.state_ms,
			t.resume_ms, t.agent_ms, t.done_ms);
	return status;
}
