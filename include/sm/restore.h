/* SPDX-License-Identifier: Apache-2.0 */
/*
 * restore: the smrestore pipeline. Validate a snapshot, map its memory
 * copy-on-write from a decompressed image cached under
 * $SM_CACHE/memory/<key> (shared by every restore of the snapshot), load
 * vCPU/VM/device state into a fresh VM, resume it, connect to the guest
 * agent and run one command.
 *
 * Functions return 0 on success and a negative errno on failure, with
 * details in the struct sm_error out-parameter.
 */
#pragma once

#include <stdint.h>

#include "sm/error.h"

struct restore_opts {
	const char *snapshot;	 /* the snapshot file */
	const char *cache_root;	 /* NULL: $SM_CACHE or the default cache root */
	const char *const *argv; /* command, argc >= 1 */
	uint32_t argc;
	const char *const *env; /* K=V strings */
	uint32_t envc;
	const char *workdir; /* NULL or "": "/" */
	uint32_t uid, gid;
	int forward_stdin; /* forward stdin_fd (else the command reads /dev/null) */
	int stdin_fd, stdout_fd, stderr_fd;
	int console_fd; /* guest UART output, -1 discards */
	int sig_fd;	/* signalfd whose signals are forwarded to CMD, or -1 */
	int timeout_ms; /* for the agent connection; 0: 30 s */
	/* A snapshot with a virtio-fs root: the directory to share (NULL: the
	 * metadata's "rootfs"). It must hold what the snapshot was baked from. */
	const char *rootfs;
};

/* Where a restore spent its time, in milliseconds from the start of
 * restore_run(). */
struct restore_timings {
	double validate_ms; /* open, check header/table, read and check vmstate */
	double memory_ms;   /* memory image ready (cache hit, or unpacked) */
	double create_ms;   /* VM created over the copy-on-write mapping */
	double state_ms;    /* vCPU, VM and device state loaded */
	double resume_ms;   /* vCPU threads started (first KVM_RUN) */
	double agent_ms;    /* connected to the guest agent */
	double done_ms;	    /* command finished */
	int cache_hit;	    /* the memory image was already cached */
};

/* Path of the cached memory image for the snapshot open as FMT reader R
 * under ROOT (malloc'ed): ROOT/memory/<key>, key derived from the
 * snapshot's content (memory section checksum and size, metadata checksum). */
struct fmt_reader;
int restore_memory_path(struct fmt_reader *r, const char *root, char **out, struct sm_error *err);

/* Restore O->snapshot and run O->argv. *STATUS gets the command's exit
 * status (128+N when killed by signal N, 127 not found, 126 not runnable).
 * T may be NULL. */
int restore_run(const struct restore_opts *o, int *status, struct restore_timings *t,
		struct sm_error *err);
