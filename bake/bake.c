/* SPDX-License-Identifier: Apache-2.0 */
/* The smbake pipeline (VM part): boot, agent ready, warm-up, capture, write. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sm/bake.h"
#include "sm/cache.h"
#include "sm/format.h"
#include "sm/version.h"
#include "sm/vm.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int build_meta(const struct bake_opts *o, char **out, struct sm_error *err)
{
	char kdig[CACHE_DIGEST_MAX], adig[CACHE_DIGEST_MAX] = "";
	int r = cache_digest_file(CACHE_DIGEST_SHA256, o->kernel_path, kdig, NULL, err);
	if (r < 0)
		return sm_error_wrap(err, "kernel digest");
	if (o->agent_path) {
		r = cache_digest_file(CACHE_DIGEST_SHA256, o->agent_path, adig, NULL, err);
		if (r < 0)
			return sm_error_wrap(err, "agent digest");
	}
	char created[32];
	time_t now = time(NULL);
	struct tm tmv;
	gmtime_r(&now, &tmv);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tmv);
	uint64_t mib = o->mem_mib ? o->mem_mib : 256;
	char fver[16];
	snprintf(fver, sizeof(fver), "%d.%d", FMT_VERSION_MAJOR, FMT_VERSION_MINOR);
	json_t *j = json_pack("{s:s, s:s, s:i, s:s, s:I, s:i, s:s, s:s}", "kind",
			      "supermachine-snapshot", "format_version", fver, "state_version",
			      VM_SNAP_VERSION, "kernel_digest", kdig, "memory_size",
			      (json_int_t)(mib << 20), "vcpus", o->ncpus ? o->ncpus : 1, "created",
			      created, "tool_version", SM_VERSION);
	if (!j)
		return sm_error_set(err, ENOMEM, "metadata");
	if (adig[0])
		json_object_set_new(j, "agent_digest", json_string(adig));
	if (o->image_ref)
		json_object_set_new(j, "image", json_string(o->image_ref));
	if (o->fs_root) {
		char *abs = realpath(o->fs_root, NULL);
		if (!abs) {
			json_decref(j);
			return sm_error_errno(err, errno, "root filesystem %s", o->fs_root);
		}
		json_object_set_new(j, "rootfs", json_string(abs));
		json_object_set_new(j, "dax_mib", json_integer((json_int_t)o->fs_dax_mib));
		free(abs);
	}
	if (o->meta_extra) {
		json_error_t jerr;
		json_t *x = json_loads(o->meta_extra, JSON_REJECT_DUPLICATES, &jerr);
		if (!x || !json_is_object(x)) {
			json_decref(x);
			json_decref(j);
			return sm_error_set(err, EINVAL, "extra metadata is not a JSON object%s%s",
					    x ? "" : ": ", x ? "" : jerr.text);
		}
		json_object_update(j, x);
		json_decref(x);
	}
	*out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	return *out ? 0 : sm_error_set(err, ENOMEM, "metadata");
}

static int warmup(const struct bake_opts *o, struct vm *vm, const char *uds, int timeout_ms,
		  struct sm_error *err)
{
	int conn = vm_agent_connect(uds, VM_AGENT_PORT, timeout_ms, err);
	if (conn < 0)
		return sm_error_wrap(err, "warm-up");
	struct vm_agent_job job;
	memset(&job, 0, sizeof(job));
	job.exec = (struct vm_agent_exec){
		.cwd = "/",
		.argv = o->warmup_argv,
		.argc = o->warmup_argc,
		.env = o->env,
		.envc = o->envc,
	};
	job.stdin_fd = -1;
	job.stdout_fd = o->out_fd;
	job.stderr_fd = o->err_fd;
	int r = vm_agent_run(conn, &job, 1, vm_stopped_fd(vm), -1, err);
	close(conn);
	if (r < 0)
		return sm_error_wrap(err, "warm-up");
	if (job.exec_errno)
		return sm_error_set(err, job.exec_errno, "warm-up command: %s", job.error);
	if (job.signaled || job.code)
		return sm_error_set(err, EINVAL, "warm-up command %s %d",
				    job.signaled ? "killed by signal" : "exited with", job.code);
	return 0;
}

int bake_run(const struct bake_opts *o, struct bake_timings *tm, struct sm_error *err)
{
	struct bake_timings t_local;
	struct bake_timings *t = tm ? tm : &t_local;
	memset(t, 0, sizeof(*t));
	double t0 = now_ms();
	if (!o->kernel_path || !o->out_path)
		return sm_error_set(err, EINVAL, "bake needs a kernel and an output path");
	int timeout = o->timeout_ms > 0 ? o->timeout_ms : 120000;
	char dir[] = "/tmp/smbake-XXXXXX";
	if (!mkdtemp(dir))
		return sm_error_errno(err, errno, "mkdtemp");
	char uds[128], ready_path[160];
	snprintf(uds, sizeof(uds), "%s/vsock", dir);
	snprintf(ready_path, sizeof(ready_path), "%s_%d", uds, VM_AGENT_READY_PORT);
	struct vm *vm = NULL;
	struct fmt_writer *w = NULL;
	char *meta = NULL;
	int keep_fd = -1;
	int r = build_meta(o, &meta, err);
	int ready_fd = r < 0 ? -1 : vm_agent_ready_listen(uds, err);
	if (r == 0 && ready_fd < 0)
		r = ready_fd;
	if (r < 0)
		goto out;
	struct vm_config cfg = {
		.kernel_path = o->kernel_path,
		.initrd = o->initrd,
		.initrd_len = o->initrd_len,
		.mem_mib = o->mem_mib,
		.ncpus = o->ncpus,
		.cmdline_extra = o->cmdline_extra,
		.console_fd = o->console_fd,
		.vsock_uds = uds,
		.fs_root = o->fs_root,
		.fs_dax_mib = o->fs_root ? o->fs_dax_mib : 0,
	};
	if (o->fs_root) {
		/* The passthrough backend holds one fd per node the guest looks up. */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	r = vm_create(&vm, &cfg, err);
	if (r == 0)
		r = vm_start(vm, err);
	if (r < 0)
		goto out;
	t->boot_ms = now_ms() - t0;
	r = vm_agent_wait_ready(ready_fd, vm_stopped_fd(vm), timeout, err);
	if (r < 0) {
		sm_error_wrap(err, "waiting for the guest agent");
		goto out;
	}
	t->ready_ms = now_ms() - t0;
	if (o->progress)
		o->progress(o->progress_ctx, "guest agent ready", "");
	if (o->warmup_argv && o->warmup_argc) {
		if (o->progress)
			o->progress(o->progress_ctx, "warming up", "");
		r = warmup(o, vm, uds, timeout, err);
		if (r < 0)
			goto out;
	}
	t->warmup_ms = now_ms() - t0;
	/* Let the guest see the closed connections before the capture. */
	struct timespec ts = {0, 100 * 1000000L};
	nanosleep(&ts, NULL);
	/* One agent connection rides along in the snapshot: a restore sends
	 * its first request at once, with no reset, connect and accept in the
	 * guest first. SYNC's round trip proves the agent holds it and that
	 * nothing is in flight on it. */
	uint32_t host_port = 0;
	keep_fd = vm_agent_connect_port(uds, VM_AGENT_PORT, timeout, &host_port, err);
	r = keep_fd < 0 ? keep_fd : vm_agent_sync(keep_fd, vm_stopped_fd(vm), timeout, err);
	if (r == 0)
		r = vm_vsock_keep(vm, host_port, VM_AGENT_PORT, err);
	if (r < 0) {
		sm_error_wrap(err, "agent connection for restores");
		goto out;
	}
	if (o->progress)
		o->progress(o->progress_ctx, "capturing", "");
	r = vm_pause(vm, 5000, err);
	if (r < 0)
		goto out;
	t->pause_ms = now_ms() - t0;
	r = fmt_writer_create(&w, o->out_path, NULL, err);
	if (r == 0)
		r = fmt_writer_add_meta(w, meta, err);
	if (r == 0)
		r = vm_snapshot_save(vm, w, err);
	t->saved_ms = now_ms() - t0;
	if (o->progress && r == 0)
		o->progress(o->progress_ctx, "writing", o->out_path);
	if (r == 0)
		r = fmt_writer_commit(w, err);
	if (r < 0) {
		sm_error_wrap(err, "cannot write %s", o->out_path);
		goto out;
	}
	t->capture_ms = now_ms() - t0;
out:
	fmt_writer_free(w);
	vm_destroy(vm);
	if (keep_fd >= 0)
		close(keep_fd);
	if (ready_fd >= 0)
		close(ready_fd);
	unlink(ready_path);
	unlink(uds);
	rmdir(dir);
	free(meta);
	return r;
}
