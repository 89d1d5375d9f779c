/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bake: the smbake pipeline. Boot a guest, wait for its agent, optionally
 * run a warm-up command, capture the VM and write the snapshot atomically.
 *
 * Functions return 0 on success and a negative errno on failure, with
 * details in the struct sm_error out-parameter.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "sm/error.h"

struct bake_opts {
	const char *kernel_path; /* uncompressed vmlinux */
	const char *agent_path;	 /* the agent in the initramfs (for its digest), or NULL */
	const void *initrd;	 /* initramfs bytes (copied into the guest) */
	size_t initrd_len;
	uint64_t mem_mib; /* 0: 256 */
	int ncpus;	  /* 0: 1 */
	const char *cmdline_extra;
	int console_fd;			/* guest UART output, -1 discards */
	const char *const *warmup_argv; /* warm-up command, or NULL */
	uint32_t warmup_argc;
	const char *const *env; /* environment for the warm-up command */
	uint32_t envc;
	int out_fd, err_fd;    /* where the warm-up command's output goes */
	const char *image_ref; /* recorded in the metadata when not NULL */
	const char *out_path;  /* the snapshot to write (atomically) */
	int timeout_ms;	       /* boot to agent ready; 0: 120 s */
	/* Share this dir read-only over virtio-fs as the guest root, or NULL. */
	const char *fs_root;
	uint64_t fs_dax_mib; /* DAX window MiB with fs_root (0: none) */
	/* JSON object text; its keys are merged into the metadata, or NULL. */
	const char *meta_extra;
};

struct bake_timings {
	double boot_ms;	   /* VM created and started */
	double ready_ms;   /* agent reported ready */
	double warmup_ms;  /* warm-up command done */
	double pause_ms;   /* vCPUs paused */
	double capture_ms; /* snapshot written, fsync'd and renamed */
};

/* Boot, wait for the agent, run the warm-up (a non-zero exit is an error),
 * pause, capture and write O->out_path. Nothing appears at out_path unless
 * everything succeeded. T may be NULL. With O->fs_root the metadata records
 * "rootfs" (its absolute path) and "dax_mib"; O->meta_extra's keys are merged
 * in last (not a JSON object: EINVAL). */
int bake_run(const struct bake_opts *o, struct bake_timings *t, struct sm_error *err);
