/* SPDX-License-Identifier: Apache-2.0 */
/* The smrestore pipeline: validate, map memory copy-on-write from a cached
 * decompressed image, load state, resume, run one command via the agent. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sm/cache.h"
#include "sm/format.h"
#include "sm/restore.h"
#include "sm/vm.h"
#include "uffd.h"
#include "wset.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int mkdir_p(const char *path, struct sm_error *err)
{
	char buf[4096];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return sm_error_set(err, ENAMETOOLONG, "path too long: %s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return sm_error_errno(err, errno, "cannot create %s", buf);
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return sm_error_errno(err, errno, "cannot create %s", buf);
	return 0;
}

int restore_memory_path(struct fmt_reader *r, const char *root, char **out, struct sm_error *err)
{
	int mi = fmt_reader_find(r, FMT_SEC_MEMORY, 0, err);
	if (mi < 0)
		return mi;
	int ti = fmt_reader_find(r, FMT_SEC_META, 0, err);
	if (ti < 0)
		return ti;
	const struct fmt_section_info *m = fmt_reader_section(r, (unsigned)mi);
	const struct fmt_section_info *t = fmt_reader_section(r, (unsigned)ti);
	/* The section table is CRC-checked, so these pin the content: the
	 * memory section's checksum, sizes, and the metadata's checksum (which
	 * holds the creation time and kernel digest). */
	if (asprintf(out, "%s/memory/m1-%08x-%016llx-%016llx-%08x", root, m->crc,
		     (unsigned long long)m->length, (unsigned long long)m->raw_length, t->crc) < 0)
		return sm_error_set(err, ENOMEM, "out of memory");
	return 0;
}

/* Make sure the decompressed memory image exists; *hit says it did. */
static int memory_image(struct fmt_reader *r, const char *root, uint64_t mem_size, char **path,
			int *hit, struct sm_error *err)
{
	int ret = restore_memory_path(r, root, path, err);
	if (ret < 0)
		return ret;
	struct stat st;
	if (stat(*path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == mem_size) {
		*hit = 1;
		return 0;
	}
	*hit = 0;
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/memory", root);
	ret = mkdir_p(dir, err);
	if (ret < 0)
		return ret;
	sm_autofree char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp-XXXXXX", *path) < 0)
		return sm_error_set(err, ENOMEM, "out of memory");
	sm_autoclose int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot create %s", tmp);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	ret = fmt_reader_mem_unpack(r, fd, ncpu > 0 && ncpu < 16 ? (unsigned)ncpu : 4, err);
	if (ret == 0 && fsync(fd) < 0)
		ret = sm_error_errno(err, errno, "fsync %s", tmp);
	if (ret == 0 && rename(tmp, *path) < 0)
		ret = sm_error_errno(err, errno, "rename %s", tmp);
	if (ret < 0) {
		unlink(tmp);
		return sm_error_wrap(err, "memory image");
	}
	return 0;
}

static int cache_root(const struct restore_opts *o, char **out, struct sm_error *err)
{
	if (o->cache_root) {
		*out = strdup(o->cache_root);
		return *out ? 0 : sm_error_set(err, ENOMEM, "out of memory");
	}
	return cache_default_root(out, err);
}

/* The root filesystem a snapshot with a virtio-fs device shares: O->rootfs
 * or the metadata's "rootfs"; it must still be a directory. */
static int fs_root_dir(const struct restore_opts *o, struct fmt_reader *rd, char **out,
		       struct sm_error *err)
{
	const char *dir = o->rootfs;
	json_t *j = NULL;
	if (!dir) {
		sm_autofree char *meta = NULL;
		int r = fmt_reader_meta(rd, &meta, err);
		if (r < 0)
			return r;
		j = json_loads(meta, 0, NULL);
		json_t *v = j ? json_object_get(j, "rootfs") : NULL;
		dir = json_is_string(v) ? json_string_value(v) : NULL;
		if (!dir || !*dir) {
			json_decref(j);
			return sm_error_set(err, EINVAL,
					    "snapshot %s has a virtio-fs root but its metadata "
					    "names no \"rootfs\" directory",
					    o->snapshot);
		}
	}
	struct stat st;
	int r = 0;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		r = sm_error_set(err, ENOENT,
				 "snapshot %s needs its root filesystem %s, which is gone (was the "
				 "cache cleaned? run smbake again)",
				 o->snapshot, dir);
	else if (!(*out = strdup(dir)))
		r = sm_error_set(err, ENOMEM, "out of memory");
	json_decref(j);
	if (r == 0) {
		/* The passthrough backend holds one fd per node the guest looks up. */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	return r;
}

/* KVM's part of the VM (vm_kvm_open), made on a thread of its own while the
 * main thread reads and checks the snapshot: nothing in it depends on the
 * snapshot, and KVM_CREATE_VM is the slowest single step of a restore. */
struct early_kvm {
	pthread_t thread;
	int started;
	int no_run; /* a dry run: kvm-pvm will do */
	struct vm_kvm kvm;
	struct sm_error err;
	int r;
};

static void *early_kvm_thread(void *arg)
{
	struct early_kvm *e = arg;
	e->r = vm_kvm_open(&e->kvm, e->no_run, &e->err);
	return NULL;
}

/* Only where a second CPU can run it: on one CPU the thread's work is the
 * same and its creation and switches come on top (early_kvm_join does the
 * work inline then). */
static void early_kvm_start(struct early_kvm *e, int no_run)
{
	memset(e, 0, sizeof(*e));
	e->no_run = no_run;
	e->kvm.kvm_fd = e->kvm.vm_fd = -1;
	cpu_set_t cpus;
	if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) < 2)
		return;
	if (pthread_create(&e->thread, NULL, early_kvm_thread, e) == 0)
		e->started = 1;
}

/* Wait for it; -1 and *ERR when it failed. Without a thread, make it here. */
static int early_kvm_join(struct early_kvm *e, struct sm_error *err)
{
	if (e->started) {
		pthread_join(e->thread, NULL);
		e->started = 0;
	} else {
		e->r = vm_kvm_open(&e->kvm, e->no_run, &e->err);
	}
	if (e->r < 0 && err)
		*err = e->err;
	return e->r;
}

/* The run's directory and the vsock sockets in it (UDS, and UDS_<ready port>
 * that the device may have made), once. */
static void remove_run_dir(const char *dir, const char *uds, int *have_dir)
{
	if (!*have_dir)
		return;
	char p[160];
	snprintf(p, sizeof(p), "%s_%d", uds, VM_AGENT_READY_PORT);
	unlink(p);
	unlink(uds);
	rmdir(dir);
	*have_dir = 0;
}

int restore_run(const struct restore_opts *o, int *status, struct restore_timings *tm,
		struct sm_error *err)
{
	struct restore_timings t_local;
	struct restore_timings *t = tm ? tm : &t_local;
	memset(t, 0, sizeof(*t));
	double t0 = now_ms();
	if (!o->argv || o->argc < 1)
		return sm_error_set(err, EINVAL, "no command");

	struct fmt_reader *rd = NULL;
	struct vm *vm = NULL;
	struct restore_uffd *uffd = NULL;
	void *ram = NULL; /* lazy_uffd: guest RAM until vm_create takes it */
	char *root = NULL, *mem_path = NULL, *fs_root = NULL, *wset_path = NULL, *rset_path = NULL;
	int record_wset = 0, record_rset = 0;
	struct restore_wset_range *wr = NULL, *rr = NULL;
	uint32_t wn = 0, rn = 0;
	char dir[] = "/tmp/smrestore-XXXXXX";
	int have_dir = 0, conn = -1;
	char uds[128] = "";
	struct early_kvm ek;
	early_kvm_start(&ek, o->dry_run);
	int r = 0;
	if (o->reader) /* borrowed: never closed here */
		rd = o->reader;
	else
		r = fmt_reader_open(&rd, o->snapshot, err);
	if (r < 0) {
		sm_error_wrap(err, "snapshot %s", o->snapshot);
		goto out;
	}
	struct vm_snapshot_info info;
	r = vm_snapshot_probe(rd, &info, err);
	if (r < 0) {
		sm_error_wrap(err, "snapshot %s", o->snapshot);
		goto out;
	}
	if (!info.has_vsock) {
		r = sm_error_set(err, EINVAL,
				 "snapshot %s has no vsock device: no agent to talk to",
				 o->snapshot);
		goto out;
	}
	if (info.has_fs) {
		r = fs_root_dir(o, rd, &fs_root, err);
		if (r < 0)
			goto out;
	}
	t->validate_ms = now_ms() - t0;

	if (o->lazy_uffd) {
		r = restore_uffd_start(rd, info.mem_size, &uffd, &ram, err);
	} else {
		r = cache_root(o, &root, err);
		if (r == 0)
			r = memory_image(rd, root, info.mem_size, &mem_path, &t->cache_hit, err);
	}
	if (r < 0) {
		sm_error_wrap(err, "snapshot %s", o->snapshot);
		goto out;
	}
	t->memory_ms = now_ms() - t0;

	if (!mkdtemp(dir)) {
		r = sm_error_errno(err, errno, "mkdtemp");
		goto out;
	}
	have_dir = 1;
	snprintf(uds, sizeof(uds), "%s/vsock", dir);
	struct vm_config cfg = {
		.mem_mib = info.mem_size >> 20,
		.ncpus = info.ncpus,
		.console_fd = o->console_fd,
		.vsock_uds = uds,
		.no_rng = !info.has_rng,
		.restore_mem = mem_path,
		.restore_ram = ram,
		.fs_root = fs_root,
		.fs_dax_mib = info.fs_dax_len >> 20,
		.dry_run = o->dry_run,
	};
	ram = NULL; /* vm_create takes it over, even when it fails */
	r = early_kvm_join(&ek, err);
	if (r < 0) {
		if (cfg.restore_ram)
			munmap(cfg.restore_ram, info.mem_size);
		goto out;
	}
	cfg.kvm = &ek.kvm; /* vm_create takes it over, even when it fails */
	r = vm_create(&vm, &cfg, err);
	if (r < 0)
		goto out;
	if (uffd)
		restore_uffd_attach(uffd, vm);
	if (mem_path && asprintf(&wset_path, "%s.wset", mem_path) < 0)
		wset_path = NULL;
	if (mem_path && asprintf(&rset_path, "%s.rset", mem_path) < 0)
		rset_path = NULL;
	if (wset_path) {
		/* Copy ahead what the first restore of this image wrote; none
		 * recorded yet (or a bad file): record it after this command. */
		struct sm_error werr = {0};
		const struct vm_mem *m = vm_memory(vm);
		if (restore_wset_load(wset_path, info.mem_size, &wr, &wn, &werr) < 0) {
			record_wset = 1;
		} else if (restore_wset_apply(m->host, m->size, wr, wn, &werr) == 0) {
			for (uint32_t i = 0; i < wn; i++)
				t->wset_pages += (uint32_t)(wr[i].length / 4096);
		} else {
			wn = 0;
		}
	}
	if (rset_path) {
		struct sm_error rerr = {0};
		if (restore_rset_load(rset_path, info.mem_size, &rr, &rn, &rerr) < 0)
			record_rset = 1;
	}
	t->create_ms = now_ms() - t0;
	vm_get_timings(vm, &t->vm);
	r = vm_snapshot_load(vm, rd, err);
	if (r < 0) {
		sm_error_wrap(err, "snapshot %s", o->snapshot);
		goto out;
	}
	/* The pages this image's first restore touched, mapped into KVM's
	 * stage-2 tables now rather than one nested page fault each later.
	 * A hint: where the host's KVM cannot (before Linux 6.10, kvm-pvm)
	 * or a range fails, the guest faults them in as before. */
	if (wn + rn) {
		double p0 = now_ms();
		struct sm_error perr = {0};
		int pr = 0;
		for (uint32_t i = 0; i < wn + rn && pr == 0; i++) {
			const struct restore_wset_range *x = i < wn ? &wr[i] : &rr[i - wn];
			pr = vm_prefault(vm, x->offset, x->length, &perr);
			if (pr == 0)
				t->prefault_pages += (uint32_t)(x->length / 4096);
		}
		t->prefault_ms = now_ms() - p0;
	}
	if (!uffd && !o->reader) { /* the uffd handler reads memory from it until the end */
		fmt_reader_close(rd);
		rd = NULL;
	}
	t->state_ms = now_ms() - t0;
	r = vm_start(vm, err);
	if (r < 0)
		goto out;
	t->resume_ms = now_ms() - t0;
	if (o->dry_run) {
		t->dry_run = 1;
		/* Every vCPU got to its first KVM_RUN and stopped there. */
		struct sm_error verr = {0};
		enum vm_stop_reason why = vm_wait(vm, &verr);
		t->first_run_ms = vm_first_run_ms(vm) - t0;
		vm_get_exits(vm, &t->exits); /* none: no vCPU entered the guest */
		if (why != VM_STOP_REQUESTED) {
			r = sm_error_set(err, EIO, "dry run: the VM stopped (reason %d)%s%s",
					 (int)why, verr.msg[0] ? ": " : "", verr.msg);
			goto out;
		}
		t->done_ms = now_ms() - t0;
		*status = 0;
		if (o->on_done) {
			remove_run_dir(dir, uds, &have_dir);
			o->on_done(0, t, o->on_done_arg);
		}
		goto out; /* the guest wrote nothing: no write set to record */
	}

	int timeout = o->timeout_ms > 0 ? o->timeout_ms : 30000;
	/* The snapshot's own agent connection, if it kept one (bake does). */
	conn = vm_take_kept_conn(vm);
	t->conn_kept = conn >= 0;
	/* Else: the guest handles the transport reset right after resume; a
	 * connection racing with it may be reset once: try again. */
	for (int attempt = 0; attempt < 3 && conn < 0; attempt++) {
		conn = vm_agent_connect(uds, VM_AGENT_PORT, timeout, err);
		if (conn < 0) {
			struct timespec ts = {0, 20 * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	if (conn < 0) {
		r = conn;
		sm_error_wrap(err, "agent");
		goto out;
	}
	t->agent_ms = now_ms() - t0;

	struct vm_agent_job job;
	memset(&job, 0, sizeof(job));
	job.exec = (struct vm_agent_exec){
		.uid = o->uid,
		.gid = o->gid,
		.flags = o->forward_stdin ? VM_AGENT_EXEC_STDIN : 0,
		.cwd = o->workdir && *o->workdir ? o->workdir : "/",
		.argv = o->argv,
		.argc = o->argc,
		.env = o->env,
		.envc = o->envc,
	};
	job.stdin_fd = o->stdin_fd;
	job.stdout_fd = o->stdout_fd;
	job.stderr_fd = o->stderr_fd;
	/* SYNC ahead of the command, in the same round trip: the guest's wall
	 * clock to now and fresh entropy into its RNG before CMD starts
	 * (docs/agent-protocol.md, SYNC). */
	r = vm_agent_run_synced(conn, &job, 1, vm_stopped_fd(vm), o->sig_fd, err);
	if (r < 0) {
		struct sm_error verr = {0};
		if (r == -ECANCELED) {
			enum vm_stop_reason why = vm_wait(vm, &verr);
			sm_error_set(err, EIO, "the VM stopped (reason %d)%s%s", (int)why,
				     verr.msg[0] ? ": " : "", verr.msg);
		}
		goto out;
	}
	t->done_ms = now_ms() - t0;
	t->first_run_ms = vm_first_run_ms(vm) - t0;
	vm_get_exits(vm, &t->exits);
	if (job.exec_errno) {
		*status = job.exec_errno == ENOENT ? 127 : job.exec_errno == EACCES ? 126 : 125;
		if (o->stderr_fd >= 0)
			dprintf(o->stderr_fd, "smrestore: %s\n", job.error);
	} else {
		*status = job.signaled ? 128 + job.code : job.code;
	}
	r = 0;
	if (o->on_done) {
		/* Nothing the caller could see is left behind: the command's
		 * output is written, the connection and the directory are gone. */
		close(conn);
		conn = -1;
		remove_run_dir(dir, uds, &have_dir);
		o->on_done(*status, t, o->on_done_arg);
	}
	if (record_wset) { /* a hint for later restores: failures only cost speed */
		struct sm_error werr = {0};
		const struct vm_mem *m = vm_memory(vm);
		restore_wset_record(m->host, m->size, wset_path, NULL, &werr);
	}
	if (record_rset) {
		struct sm_error rerr = {0};
		const struct vm_mem *m = vm_memory(vm);
		restore_rset_record(m->host, m->size, rset_path, NULL, &rerr);
	}
out:
	if (ek.started) /* left before the VM was made */
		pthread_join(ek.thread, NULL);
	vm_kvm_close(&ek.kvm);
	if (conn >= 0)
		close(conn);
	if (uffd)
		restore_uffd_attach(uffd, NULL);
	vm_destroy(vm);
	if (ram)
		munmap(ram, info.mem_size);
	if (uffd) {
		struct restore_uffd_stats us;
		struct sm_error uerr = {0};
		int ur = restore_uffd_stop(uffd, &us, &uerr);
		t->uffd_faults = us.faults;
		t->uffd_copied_pages = us.copied_pages;
		t->uffd_zero_pages = us.zero_pages;
		t->uffd_fill_ms = us.fill_ms;
		if (ur < 0) { /* the real cause of a VM stopped by the handler */
			r = ur;
			if (err)
				*err = uerr;
		}
	}
	if (rd != o->reader)
		fmt_reader_close(rd);
	remove_run_dir(dir, uds, &have_dir);
	free(root);
	free(mem_path);
	free(wset_path);
	free(rset_path);
	free(wr);
	free(rr);
	free(fs_root);
	t->teardown_ms = now_ms() - t0;
	return r;
}
