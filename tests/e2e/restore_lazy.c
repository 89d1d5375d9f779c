/* SPDX-License-Identifier: Apache-2.0 */
/*
 * e2e driver for restore_run() with a choice of memory mode, until smrestore
 * has --lazy: restore SNAP, run CMD, exit with its status, and print one
 * JSON line of timings (and the userfaultfd handler's counters) to stderr.
 *
 *   restore_lazy SNAP uffd|cache -- CMD [ARGS...]
 *
 * Stdin is forwarded; the guest console goes to the file named by
 * $RESTORE_LAZY_CONSOLE (appended), else nowhere. SM_CACHE picks the cache
 * root as for smrestore. Exit 125 on a restore error.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm/restore.h"

int main(int argc, char **argv)
{
	if (argc < 5 || strcmp(argv[3], "--") != 0 ||
	    (strcmp(argv[2], "uffd") != 0 && strcmp(argv[2], "cache") != 0)) {
		fprintf(stderr, "usage: restore_lazy SNAP uffd|cache -- CMD [ARGS...]\n");
		return 125;
	}
	const char *console = getenv("RESTORE_LAZY_CONSOLE");
	int console_fd =
		console ? open(console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
	struct restore_opts o = {
		.snapshot = argv[1],
		.argv = (const char *const *)argv + 4,
		.argc = (uint32_t)(argc - 4),
		.forward_stdin = 1,
		.stdin_fd = 0,
		.stdout_fd = 1,
		.stderr_fd = 2,
		.console_fd = console_fd,
		.sig_fd = -1,
		.lazy_uffd = strcmp(argv[2], "uffd") == 0,
	};
	struct restore_timings t;
	struct sm_error err = {0};
	int status = 0;
	int r = restore_run(&o, &status, &t, &err);
	fprintf(stderr,
		"{\"restore_lazy\":\"%s\",\"rc\":%d,\"cache_hit\":%d,\"validate_ms\":%.2f,"
		"\"memory_ms\":%.2f,\"create_ms\":%.2f,\"state_ms\":%.2f,\"resume_ms\":%.2f,"
		"\"agent_ms\":%.2f,\"done_ms\":%.2f,\"uffd_faults\":%llu,"
		"\"uffd_copied_pages\":%llu,\"uffd_zero_pages\":%llu,\"uffd_fill_ms\":%.2f}\n",
		argv[2], r, t.cache_hit, t.validate_ms, t.memory_ms, t.create_ms, t.state_ms,
		t.resume_ms, t.agent_ms, t.done_ms, (unsigned long long)t.uffd_faults,
		(unsigned long long)t.uffd_copied_pages, (unsigned long long)t.uffd_zero_pages,
		t.uffd_fill_ms);
	if (r < 0) {
		fprintf(stderr, "restore_lazy: %s\n", err.msg);
		return 125;
	}
	return status;
}
