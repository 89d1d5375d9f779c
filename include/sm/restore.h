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
#include "sm/vm.h"

struct fmt_reader;
struct restore_timings;

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
	/* 1 (--lazy=uffd): no decompressed memory image; guest RAM is anonymous
	 * memory that a userfaultfd handler fills on first touch from the
	 * snapshot's compressed frames (restore/uffd.c). 0: the cached image. */
	int lazy_uffd;
	/* Called once, as soon as the command's status is known (*STATUS of
	 * restore_run(), T filled up to done_ms; the agent connection is
	 * closed and the temporary directory removed), before the VM is torn
	 * down: vCPU and device threads, guest RAM, the kernel's release of the
	 * VM. A tool reports the status here and lets a waiting caller go
	 * (smrestore does). NULL: none. Not called when the restore fails. */
	void (*on_done)(int status, const struct restore_timings *t, void *arg);
	void *on_done_arg;
	/* An open reader of SNAPSHOT (restore_runcfg_load's) to use instead of
	 * opening it again; borrowed: the caller closes it after restore_run(). */
	struct fmt_reader *reader;
	/* Dry run (smrestore --dry-run): do all the host-side work of the
	 * restore up to the first KVM_RUN (vm_config.dry_run), then stop and
	 * tear down; the guest never runs, CMD (still resolved) is not run,
	 * *STATUS is 0. T's first_run_ms is when KVM_RUN would have been
	 * called; agent_ms stays 0. Takes kvm-pvm, which refuses real runs. */
	int dry_run;
};

/* Where a restore spent its time, in milliseconds from the start of
 * restore_run(). */
struct restore_timings {
	double validate_ms;	 /* open, check header/table, read and check vmstate */
	double memory_ms;	 /* memory image ready (cache hit, or unpacked) */
	double create_ms;	 /* VM created over the copy-on-write mapping */
	double state_ms;	 /* vCPU, VM and device state loaded */
	double resume_ms;	 /* vCPU threads started (vm_start returned) */
	double first_run_ms;	 /* the first KVM_RUN called (a dry run: reached);
				  * the end of the host-side restore work */
	double agent_ms;	 /* connected to the guest agent (the kept connection:
				  * at once) */
	double done_ms;		 /* command finished */
	double teardown_ms;	 /* VM destroyed, everything released (the end; after
				  * on_done) */
	int cache_hit;		 /* the memory image was already cached */
	uint32_t wset_pages;	 /* pages copied ahead from the image's write set
				  * (restore/wset.h; part of create_ms) */
	uint32_t prefault_pages; /* pages mapped into KVM's stage-2 tables ahead
				  * (write and read set, vm_prefault; 0 where the
				  * host's KVM cannot) */
	double prefault_ms;	 /* the time that took (part of state_ms) */
	int conn_kept;		 /* the snapshot's kept agent connection was used
				  * (no reconnect; vm_take_kept_conn) */
	int dry_run;		 /* restore_opts.dry_run: the guest did not run */
	struct vm_timings vm;	 /* vm_create()'s own split of create_ms */
	struct vm_exits exits;	 /* the VM's exits to user space up to done_ms */
	/* lazy_uffd only: what the userfaultfd handler did up to the VM's end */
	uint64_t uffd_faults;	    /* fault messages */
	uint64_t uffd_copied_pages; /* pages decompressed and copied in */
	uint64_t uffd_zero_pages;   /* pages mapped to the zero page */
	double uffd_fill_ms;	    /* handler time spent filling */
};

/* Path of the cached memory image for the snapshot open as FMT reader R
 * under ROOT (malloc'ed): ROOT/memory/<key>, key derived from the
 * snapshot's content (memory section checksum and size, metadata checksum). */
int restore_memory_path(struct fmt_reader *r, const char *root, char **out, struct sm_error *err);

/* Restore O->snapshot and run O->argv. *STATUS gets the command's exit
 * status (128+N when killed by signal N, 127 not found, 126 not runnable).
 * T may be NULL. */
int restore_run(const struct restore_opts *o, int *status, struct restore_timings *t,
		struct sm_error *err);

/* ---- Run config: what CMD runs and how (restore/runcfg.c) ----------------- */

/* The command line's say; NULL (or argc/envc 0) means "not given". */
struct restore_cmd_opts {
	const char *const *argv; /* CMD after "--" */
	uint32_t argc;
	const char *entrypoint; /* --entrypoint: replaces the image's (and drops its
				 * Cmd); "" clears the entrypoint */
	const char *const *env; /* --env K=V, applied in order over the image's Env */
	uint32_t envc;
	const char *workdir; /* --workdir (absolute); NULL: the image's, else "/" */
	const char *user;    /* --user NAME|UID[:GROUP|GID]; NULL: the image's, else root */
	const char *rootfs;  /* the root filesystem to resolve names in; NULL: metadata's */
};

/* The resolved command. Every string is owned; restore_runcfg_free(). */
struct restore_runcfg {
	char **argv; /* NULL-terminated, argc entries */
	uint32_t argc;
	char **env; /* NULL-terminated, envc "K=V" entries */
	uint32_t envc;
	char *workdir;
	uint32_t uid, gid;
	char *rootfs;	  /* the image's root filesystem dir, NULL for initramfs snapshots */
	int image_config; /* the snapshot carried an image run config ("config") */
};

void restore_runcfg_free(struct restore_runcfg *rc);

/* Open SNAPSHOT, read its metadata and resolve C against it
 * (restore_runcfg_from_meta). Snapshot errors name the file. READER, if not
 * NULL, gets the open reader on success (the caller closes it: hand it to
 * restore_run() through restore_opts.reader rather than open the file twice). */
int restore_runcfg_load(const char *snapshot, const struct restore_cmd_opts *c,
			struct restore_runcfg *out, struct fmt_reader **reader,
			struct sm_error *err);

/* Resolve C against snapshot metadata META (JSON text). "config" (the image's
 * run config, oci_config_to_json's form) gives the defaults with Docker's
 * rules: CMD replaces Cmd and follows Entrypoint; --env overrides by key;
 * PATH and HOME are added when unset. "rootfs" (or C->rootfs) must be a
 * directory; user and group names are looked up in its /etc/passwd and
 * /etc/group. No command at all: -EINVAL "snapshot has no default command". */
int restore_runcfg_from_meta(const char *meta, const struct restore_cmd_opts *c,
			     struct restore_runcfg *out, struct sm_error *err);

/* Docker's merge of ENTRYPOINT/CMD: image arrays IMG_EP and IMG_CMD
 * (NULL-terminated or NULL), C's argv and entrypoint. *ARGV is malloc'ed
 * and NULL-terminated (argc 0 when nothing is left to run). */
int restore_runcfg_argv(char *const *img_ep, char *const *img_cmd, const struct restore_cmd_opts *c,
			char ***argv, uint32_t *argc, struct sm_error *err);

/* Image Env IMG (NULL-terminated or NULL; entries without a key are dropped)
 * overridden by OVER[N] ("K=V": replaces every K, or appends). */
int restore_runcfg_env(char *const *img, const char *const *over, uint32_t n, char ***env,
		       uint32_t *envc, struct sm_error *err);

/* One /etc/passwd or /etc/group entry found by restore_passwd_find/_group_find. */
struct restore_pwent {
	uint32_t uid, gid; /* for a group: gid only */
	char home[256];	   /* "" when absent or too long */
};

/* Look up NAME (or, with NAME NULL, UID) in passwd text BUF[LEN] (not
 * NUL-terminated; malformed lines are skipped). 1 found, 0 not. */
int restore_passwd_find(const char *buf, size_t len, const char *name, uint32_t uid,
			struct restore_pwent *out);
/* Look up group NAME in group text BUF[LEN]. 1 found (out->gid), 0 not. */
int restore_group_find(const char *buf, size_t len, const char *name, struct restore_pwent *out);

/* Resolve SPEC ("", NAME, UID, NAME:GROUP, UID:GID, ...) against ROOTFS's
 * /etc/passwd and /etc/group (opened beneath ROOTFS; ROOTFS NULL: numeric
 * only). A UID without a group takes its passwd gid, else 0. *HOME gets the
 * passwd home ("" if none; HOME_LEN bytes). Unknown names: -ENOENT. */
int restore_user_resolve(const char *rootfs, const char *spec, uint32_t *uid, uint32_t *gid,
			 char *home, size_t home_len, struct sm_error *err);
