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

#include "sm/cache.h"
#include "sm/error.h"
#include "sm/oci.h"

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
	/* Called at "warming up", "capturing" and "writing", or NULL. */
	void (*progress)(void *ctx, const char *phase, const char *detail);
	void *progress_ctx;
};

struct bake_timings {
	double boot_ms;	   /* VM created and started */
	double ready_ms;   /* agent reported ready */
	double warmup_ms;  /* warm-up command done */
	double pause_ms;   /* vCPUs paused */
	double saved_ms;   /* vCPU/VM/device state and memory (compressed) written */
	double capture_ms; /* snapshot committed: table, fsync, renamed */
};

/* Boot, wait for the agent, run the warm-up (a non-zero exit is an error),
 * pause, capture and write O->out_path. Nothing appears at out_path unless
 * everything succeeded. T may be NULL. With O->fs_root the metadata records
 * "rootfs" (its absolute path) and "dax_mib"; O->meta_extra's keys are merged
 * in last (not a JSON object: EINVAL). */
int bake_run(const struct bake_opts *o, struct bake_timings *t, struct sm_error *err);

/* ---- bake key and snapshot cache (bake/key.c; docs/bake.md) ------------- */

#define BAKE_KEY_VERSION 1 /* bumps when the canonical key text changes */

/* Everything a baked snapshot depends on. Strings are copied into the key
 * text as length-prefixed bytes, so no value can forge another field. */
struct bake_key_inputs {
	const char *manifest_digest; /* the image (platform-specific manifest) */
	const char *kernel_digest;   /* sha256 of the vmlinux file */
	const char *agent_digest;    /* sha256 of the agent file */
	uint64_t mem_mib;
	int ncpus;
	const char *const *env; /* --env K=V entries (last one of a key wins) */
	uint32_t envc;
	const char *warmup; /* warm-up shell command, or NULL */
	uint64_t dax_mib;
	const char *platform; /* "os/arch[/variant]" asked for */
};

/* The canonical key text (malloc'd, NUL-terminated): one "name value" line
 * per input plus the snapshot state/format versions and SM_VERSION. The env
 * list is reduced to the last entry per key and sorted, so option order does
 * not matter. EINVAL on a missing digest or an env entry without '='. */
int bake_key_text(const struct bake_key_inputs *in, char **out, struct sm_error *err);

/* The bake key: "sha256:" + hex of the canonical key text. */
int bake_key_compute(const struct bake_key_inputs *in, char out[CACHE_DIGEST_MAX],
		     struct sm_error *err);

/* sha256 digest of the file at PATH, memoized in the cache under
 * bake/digests/ by (device, inode, size, mtime ns, ctime ns): a file that
 * did not change is not read again. C may be NULL (no memo). */
int bake_file_digest(struct cache *c, const char *path, char out[CACHE_DIGEST_MAX],
		     struct sm_error *err);

/* Path of the cached snapshot for KEY: <root>/snapshots/<hex>.snap
 * (malloc'd); the directory is created when missing. */
int bake_snapshot_path(struct cache *c, const char *key, char **out, struct sm_error *err);

/* Is PATH a usable cached snapshot for KEY? Opens it (header and section
 * table checked) and compares its metadata "bake_key" with KEY. 1 yes,
 * 0 no (missing, damaged or another key; *why, when non-NULL, gets a
 * static reason), never an error. */
int bake_snapshot_check(const char *path, const char *key, const char **why);

/* How bake_publish placed the file. */
enum bake_publish_how {
	BAKE_PUBLISH_SAME = 0,	/* DEST already is SRC (same inode) */
	BAKE_PUBLISH_CLONE = 1, /* reflink (FICLONE) */
	BAKE_PUBLISH_LINK = 2,	/* hardlink */
	BAKE_PUBLISH_COPY = 3,	/* byte copy */
};

/* Make DEST a copy of the finished file SRC atomically: a temp file next to
 * DEST (reflink, else hardlink, else copy; fsync'd) renamed over DEST, then
 * the directory fsync'd. With NO_LINK no hardlink is made. Nothing is left
 * at DEST's temp name on failure, and an existing DEST is replaced only on
 * success. *HOW (may be NULL) tells which way was used. */
int bake_publish(const char *src, const char *dest, int no_link, enum bake_publish_how *how,
		 struct sm_error *err);

/* Is PATH (e.g. "bin/sh") inside the root filesystem ROOTFS an executable
 * regular file, resolving symlinks as the guest would (beneath ROOTFS)?
 * 1 yes, 0 no. */
int bake_rootfs_has_exec(const char *rootfs, const char *path);

/* Fail early, before any work, when DEST cannot be published: its directory
 * is missing or not writable, or DEST is a directory. */
int bake_publish_precheck(const char *dest, struct sm_error *err);

/* ---- the whole smbake pipeline (bake/image.c; docs/bake.md) -------------- */

struct bake_image_opts {
	const char *image;	   /* reference as given: registry, oci:DIR, docker-archive: */
	const char *out_path;	   /* the snapshot to write (atomically) */
	struct oci_pull_opts pull; /* platform (os[0] == 0: the host's), insecure, ... */
	const char *kernel_path;   /* vmlinux */
	const char *agent_path;	   /* static guest agent (the initramfs holds only it) */
	uint64_t mem_mib;	   /* 0: 256 */
	int ncpus;		   /* 0: 1 */
	const char *const *env;	   /* --env K=V, added to the image Env for the warm-up */
	uint32_t envc;
	const char *warmup; /* run as /bin/sh -c WARMUP before capture, or NULL */
	uint64_t dax_mib;   /* DAX window MiB (0: none) */
	int no_cache;	    /* always bake (the cache entry is replaced) */
	int no_link;	    /* never hardlink OUT_PATH to the cache entry */
	int console_fd;	    /* guest console, -1 discards */
	int out_fd, err_fd; /* where the warm-up's output goes (-1: discarded) */
	int timeout_ms;	    /* boot to agent ready; 0: 120 s */
	/* Called at each phase ("pulling", "unpacking", "booting", "warming up",
	 * "capturing", "writing", "cache hit"), with a detail; may be NULL. */
	void (*progress)(void *ctx, const char *phase, const char *detail);
	void *progress_ctx;
};

struct bake_image_result {
	char key[CACHE_DIGEST_MAX];	     /* the bake key */
	char image_digest[CACHE_DIGEST_MAX]; /* manifest digest */
	char chain_id[CACHE_DIGEST_MAX];
	char cached_path[4096]; /* the snapshot in the cache */
	int cache_hit;
	enum bake_publish_how how; /* how out_path was made */
	/* Phase durations in milliseconds (0 for phases that did not run). */
	double pull_ms, unpack_ms, boot_ms, ready_ms, warmup_ms, capture_ms, write_ms;
	double publish_ms, total_ms;
};

/* Pull O->image, compute the bake key, and either reuse the cached snapshot
 * (snapshots/<hex>.snap, checked) or unpack, boot with the root filesystem
 * over virtio-fs, wait for the agent, run the warm-up, capture into the cache;
 * then place the snapshot at O->out_path with bake_publish(). Nothing appears
 * at O->out_path on failure. Concurrent bakes of one key wait for each other
 * (lock bake-<hex>). RES may be NULL. */
int bake_image(struct cache *c, const struct bake_image_opts *o, struct bake_image_result *res,
	       struct sm_error *err);
