/* SPDX-License-Identifier: Apache-2.0 */
/* The whole smbake pipeline: pull, bake key, cache lookup, unpack, bake
 * with the root filesystem over virtio-fs, publish. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sm/bake.h"
#include "sm/cache.h"
#include "sm/oci.h"
#include "sm/vm.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void progress(const struct bake_image_opts *o, const char *phase, const char *detail)
{
	if (o->progress)
		o->progress(o->progress_ctx, phase, detail ? detail : "");
}

/* ---- /bin/sh inside the image ----------------------------------------------- */

int bake_rootfs_has_exec(const char *rootfs, const char *path)
{
	sm_autoclose int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return 0;
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
	if (fd < 0)
		/* Without openat2 (Linux < 5.6) we cannot resolve safely beneath
		 * the root: let the guest report a missing file instead. */
		return errno == ENOSYS ? 1 : 0;
	struct stat st;
	int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		 (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
	close(fd);
	return ok;
}

/* ---- helpers ------------------------------------------------------------------ */

static void platform_string(const struct oci_platform *p, char *out, size_t n)
{
	if (p->variant[0])
		snprintf(out, n, "%s/%s/%s", p->os, p->arch, p->variant);
	else
		snprintf(out, n, "%s/%s", p->os, p->arch);
}

static int same_key(const char *a, const char *b)
{
	size_t la = strcspn(a, "="), lb = strcspn(b, "=");
	return la == lb && !memcmp(a, b, la);
}

/* The warm-up's environment: the image's Env, then --env (same key
 * replaces), and a default PATH when neither has one. Pointers borrow. */
static const char **warmup_env(const struct oci_image_config *cfg, const struct bake_image_opts *o,
			       uint32_t *envc)
{
	size_t ni = 0;
	while (cfg->env && cfg->env[ni])
		ni++;
	const char **env = calloc(ni + o->envc + 2, sizeof(*env));
	if (!env)
		return NULL;
	uint32_t n = 0;
	for (size_t i = 0; i < ni + o->envc; i++) {
		const char *e = i < ni ? cfg->env[i] : o->env[i - ni];
		if (!strchr(e, '='))
			continue;
		uint32_t j;
		for (j = 0; j < n && !same_key(env[j], e); j++)
			;
		env[j] = e;
		if (j == n)
			n++;
	}
	uint32_t j;
	for (j = 0; j < n && !same_key(env[j], DEFAULT_PATH); j++)
		;
	if (j == n)
		env[n++] = DEFAULT_PATH;
	*envc = n;
	return env;
}

/* {"image","image_digest","chain_id","config","bake_key","platform",...}. */
static char *meta_extra(const struct bake_image_opts *o, const struct oci_image *img,
			const char *key, const char *platform)
{
	sm_autofree char *cfg = oci_config_to_json(&img->config);
	json_t *jc = cfg ? json_loads(cfg, 0, NULL) : NULL;
	if (!jc)
		return NULL;
	json_t *env = json_array();
	for (uint32_t i = 0; env && i < o->envc; i++)
		json_array_append_new(env, json_string(o->env[i]));
	json_t *j = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:o, s:o}", "image", o->image,
			      "image_digest", img->manifest_digest, "chain_id", img->chain_id,
			      "config", jc, "bake_key", key, "platform", platform, "bake_env",
			      env ? env : json_null(), "warmup",
			      o->warmup ? json_string(o->warmup) : json_null());
	if (!j)
		return NULL;
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	return s;
}

/* With the key's lock held, any temp file of this key's cache entry is a
 * leftover of a bake that died (killed mid-write): remove it. */
static void remove_stale_temps(const char *cached)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", cached);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return;
	*slash = '\0';
	char prefix[300];
	snprintf(prefix, sizeof(prefix), ".%s.tmp-", slash + 1);
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix)))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

/* ---- the pipeline ----------------------------------------------------------------- */

static int bake_miss(const struct bake_image_opts *o, const struct oci_image *img,
		     const char *rootfs, const char *key, const char *platform,
		     struct bake_image_result *res, struct sm_error *err)
{
	if (o->warmup && !bake_rootfs_has_exec(rootfs, "bin/sh"))
		return sm_error_set(err, ENOENT, "image %s has no /bin/sh; --warmup needs a shell",
				    o->image);
	int r = vm_kvm_require_usable(err);
	if (r < 0)
		return r;
	void *initrd = NULL;
	size_t initrd_len = 0;
	r = vm_initramfs_build(o->agent_path, NULL, &initrd, &initrd_len, err);
	if (r < 0)
		return sm_error_wrap(err, "cannot build the initramfs");
	uint32_t envc = 0;
	const char **env = warmup_env(&img->config, o, &envc);
	char *extra = meta_extra(o, img, key, platform);
	if (!env || !extra) {
		free(initrd);
		free(env);
		free(extra);
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	const char *wargv[] = {"/bin/sh", "-c", o->warmup, NULL};
	struct bake_opts bo = {
		.kernel_path = o->kernel_path,
		.agent_path = o->agent_path,
		.initrd = initrd,
		.initrd_len = initrd_len,
		.mem_mib = o->mem_mib,
		.ncpus = o->ncpus,
		.console_fd = o->console_fd,
		.warmup_argv = o->warmup ? wargv : NULL,
		.warmup_argc = o->warmup ? 3 : 0,
		.env = env,
		.envc = envc,
		.out_fd = o->out_fd,
		.err_fd = o->err_fd,
		.image_ref = o->image,
		.out_path = res->cached_path,
		.timeout_ms = o->timeout_ms,
		.fs_root = rootfs,
		.fs_dax_mib = o->dax_mib,
		.meta_extra = extra,
		.progress = o->progress,
		.progress_ctx = o->progress_ctx,
	};
	struct bake_timings t;
	progress(o, "booting", o->image);
	r = bake_run(&bo, &t, err);
	free(initrd);
	free(env);
	free(extra);
	if (r < 0)
		return r;
	res->boot_ms = t.boot_ms;
	res->ready_ms = t.ready_ms - t.boot_ms;
	res->warmup_ms = o->warmup ? t.warmup_ms - t.ready_ms : 0;
	/* vm_snapshot_save() writes state and memory in one call, so the
	 * split is: capture = pause + state + memory compression, write =
	 * section table, fsync and rename (docs/bake.md). */
	res->capture_ms = t.saved_ms - t.warmup_ms;
	res->write_ms = t.capture_ms - t.saved_ms;
	return 0;
}

int bake_image(struct cache *c, const struct bake_image_opts *o, struct bake_image_result *res,
	       struct sm_error *err)
{
	struct bake_image_result local;
	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	double t0 = now_ms();
	if (!o->image || !o->out_path || !o->kernel_path || !o->agent_path)
		return sm_error_set(err, EINVAL,
				    "bake needs an image, an output path, a kernel and an agent");

	/* Cheap checks first: an unusable output path or a missing kernel
	 * fails before anything is pulled. */
	int r = bake_publish_precheck(o->out_path, err);
	if (r < 0)
		return r;
	char kdig[CACHE_DIGEST_MAX], adig[CACHE_DIGEST_MAX];
	r = bake_file_digest(c, o->kernel_path, kdig, err);
	if (r < 0)
		return sm_error_wrap(err, "guest kernel");
	r = bake_file_digest(c, o->agent_path, adig, err);
	if (r < 0)
		return sm_error_wrap(err, "guest agent");

	struct oci_pull_opts po = o->pull;
	if (!po.platform.os[0])
		oci_platform_host(&po.platform);
	char want_platform[100];
	platform_string(&po.platform, want_platform, sizeof(want_platform));

	struct oci_ref ref;
	r = oci_ref_parse(o->image, &ref, err);
	if (r < 0)
		return r;
	progress(o, "pulling", o->image);
	struct oci_image img;
	memset(&img, 0, sizeof(img));
	r = oci_pull(c, &ref, &po, &img, err);
	oci_ref_free(&ref);
	if (r < 0)
		return sm_error_wrap(err, "cannot pull %s", o->image);
	res->pull_ms = now_ms() - t0;
	snprintf(res->image_digest, sizeof(res->image_digest), "%s", img.manifest_digest);
	snprintf(res->chain_id, sizeof(res->chain_id), "%s", img.chain_id);

	struct bake_key_inputs ki = {
		.manifest_digest = img.manifest_digest,
		.kernel_digest = kdig,
		.agent_digest = adig,
		.mem_mib = o->mem_mib,
		.ncpus = o->ncpus,
		.env = o->env,
		.envc = o->envc,
		.warmup = o->warmup,
		.dax_mib = o->dax_mib,
		.platform = want_platform,
	};
	sm_autofree char *cached = NULL, *rootfs = NULL;
	sm_autoclose int lock = -1;
	r = bake_key_compute(&ki, res->key, err);
	if (r == 0)
		r = bake_snapshot_path(c, res->key, &cached, err);
	if (r < 0)
		goto out;
	snprintf(res->cached_path, sizeof(res->cached_path), "%s", cached);
	char lockname[80];
	snprintf(lockname, sizeof(lockname), "bake-%.64s", res->key + 7);
	r = cache_lock(c, lockname, &lock, err);
	if (r < 0)
		goto out;

	remove_stale_temps(cached);
	int hit = !o->no_cache && bake_snapshot_check(cached, res->key, NULL);
	double t1 = now_ms();
	if (!hit || !cache_rootfs_has(c, img.chain_id)) {
		/* A hit whose root filesystem was collected unpacks it again:
		 * the snapshot names rootfs/<chain id>, which is content-addressed. */
		progress(o, "unpacking", o->image);
		r = oci_image_unpack(c, &img, NULL, &rootfs, err);
		if (r < 0) {
			sm_error_wrap(err, "cannot unpack %s", o->image);
			goto out;
		}
	}
	res->unpack_ms = now_ms() - t1;
	if (!hit) {
		char platform[100];
		if (img.config.os && img.config.arch) {
			struct oci_platform p = {0};
			snprintf(p.os, sizeof(p.os), "%s", img.config.os);
			snprintf(p.arch, sizeof(p.arch), "%s", img.config.arch);
			if (img.config.variant)
				snprintf(p.variant, sizeof(p.variant), "%s", img.config.variant);
			platform_string(&p, platform, sizeof(platform));
		} else {
			snprintf(platform, sizeof(platform), "%s", want_platform);
		}
		r = bake_miss(o, &img, rootfs, res->key, platform, res, err);
		if (r < 0)
			goto out;
	}
	res->cache_hit = hit;
	double t2 = now_ms();
	if (hit)
		progress(o, "cache hit", res->key);
	r = bake_publish(cached, o->out_path, o->no_link, &res->how, err);
	res->publish_ms = now_ms() - t2;
out:
	oci_image_free(&img);
	res->total_ms = now_ms() - t0;
	return r;
}
