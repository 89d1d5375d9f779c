/* SPDX-License-Identifier: Apache-2.0 */
/* The bake key, memoized file digests and the baked-snapshot cache. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sm/bake.h"
#include "sm/cache.h"
#include "sm/format.h"
#include "sm/version.h"
#include "sm/vm.h"

/* Paths are bounded by PATH_MAX-sized buffers; an over-long one fails at open. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* ---- canonical key text ------------------------------------------------------ */

struct text {
	char *buf;
	size_t len, cap;
	int oom;
};

static void text_add(struct text *t, const void *data, size_t n)
{
	if (t->oom)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 512;
		while (cap < t->len + n + 1)
			cap *= 2;
		char *nb = realloc(t->buf, cap);
		if (!nb) {
			t->oom = 1;
			return;
		}
		t->buf = nb;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, data, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		t->oom = 1;
		return;
	}
	text_add(t, tmp, (size_t)n);
}

/* "name <len>:<bytes>\n": length-prefixed, so a value can hold anything. */
static void text_field(struct text *t, const char *name, const char *val)
{
	size_t n = strlen(val);
	text_printf(t, "%s %zu:", name, n);
	text_add(t, val, n);
	text_add(t, "\n", 1);
}

static int env_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	size_t lx = strcspn(x, "="), ly = strcspn(y, "=");
	int c = memcmp(x, y, lx < ly ? lx : ly);
	if (c)
		return c;
	return lx < ly ? -1 : lx > ly;
}

static int env_same_key(const char *x, const char *y)
{
	size_t lx = strcspn(x, "="), ly = strcspn(y, "=");
	return lx == ly && memcmp(x, y, lx) == 0;
}

int bake_key_text(const struct bake_key_inputs *in, char **out, struct sm_error *err)
{
	*out = NULL;
	const char *digests[3] = {in->manifest_digest, in->kernel_digest, in->agent_digest};
	static const char *const names[3] = {"image manifest", "kernel", "agent"};
	for (int i = 0; i < 3; i++) {
		if (!digests[i])
			return sm_error_set(err, EINVAL, "bake key: no %s digest", names[i]);
		int r = cache_digest_parse(digests[i], NULL, NULL, err);
		if (r < 0)
			return sm_error_wrap(err, "bake key: %s digest", names[i]);
	}
	if (!in->platform || !*in->platform)
		return sm_error_set(err, EINVAL, "bake key: no platform");
	if (in->envc && !in->env)
		return sm_error_set(err, EINVAL, "bake key: no env list");
	/* Last entry of each key wins (as in the warm-up's environment), then
	 * sort by key: the order of --env options does not matter. */
	const char **env = calloc(in->envc + 1, sizeof(*env));
	if (!env)
		return sm_error_set(err, ENOMEM, "out of memory");
	uint32_t n = 0;
	for (uint32_t i = 0; i < in->envc; i++) {
		const char *e = in->env[i];
		if (!e || !strchr(e, '=') || e[0] == '=') {
			free(env);
			return sm_error_set(err, EINVAL, "bake key: env entry '%.100s' is not K=V",
					    e ? e : "(null)");
		}
		uint32_t j;
		for (j = 0; j < n && !env_same_key(env[j], e); j++)
			;
		env[j] = e;
		if (j == n)
			n++;
	}
	qsort(env, n, sizeof(*env), env_cmp);

	struct text t = {0};
	text_printf(&t, "supermachine-bake-key %d\n", BAKE_KEY_VERSION);
	text_field(&t, "manifest", in->manifest_digest);
	text_field(&t, "kernel", in->kernel_digest);
	text_field(&t, "agent", in->agent_digest);
	text_printf(&t, "memory_mib %llu\n", (unsigned long long)(in->mem_mib ? in->mem_mib : 256));
	text_printf(&t, "vcpus %d\n", in->ncpus ? in->ncpus : 1);
	text_printf(&t, "env_count %u\n", n);
	for (uint32_t i = 0; i < n; i++)
		text_field(&t, "env", env[i]);
	if (in->warmup)
		text_field(&t, "warmup", in->warmup);
	else
		text_printf(&t, "warmup none\n");
	text_printf(&t, "dax_mib %llu\n", (unsigned long long)in->dax_mib);
	text_field(&t, "platform", in->platform);
	text_printf(&t, "state_version %d\n", VM_SNAP_VERSION);
	text_printf(&t, "format_version %d.%d\n", FMT_VERSION_MAJOR, FMT_VERSION_MINOR);
	text_field(&t, "tool_version", SM_VERSION);
	free(env);
	if (t.oom) {
		free(t.buf);
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	*out = t.buf;
	return 0;
}

int bake_key_compute(const struct bake_key_inputs *in, char out[CACHE_DIGEST_MAX],
		     struct sm_error *err)
{
	sm_autofree char *text = NULL;
	int r = bake_key_text(in, &text, err);
	if (r < 0)
		return r;
	return cache_digest_buf(CACHE_DIGEST_SHA256, text, strlen(text), out, err);
}

/* ---- memoized file digests ---------------------------------------------------- */

static int write_small_atomic(const char *dir, const char *path, const char *data,
			      struct sm_error *err)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s/.tmp-XXXXXX", dir);
	sm_autoclose int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot create a temp file in %s", dir);
	size_t len = strlen(data);
	if (write(fd, data, len) != (ssize_t)len || fchmod(fd, 0644) < 0 || rename(tmp, path) < 0) {
		int e = errno ? errno : EIO;
		unlink(tmp);
		return sm_error_errno(err, e, "cannot write %s", path);
	}
	return 0;
}

int bake_file_digest(struct cache *c, const char *path, char out[CACHE_DIGEST_MAX],
		     struct sm_error *err)
{
	struct stat st;
	sm_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot open %s", path);
	if (fstat(fd, &st) < 0)
		return sm_error_errno(err, errno, "cannot stat %s", path);
	if (!S_ISREG(st.st_mode))
		return sm_error_set(err, EINVAL, "%s is not a regular file", path);
	if (!c)
		return cache_digest_file(CACHE_DIGEST_SHA256, path, out, NULL, err);

	/* The memo's name is a digest of the file's identity and version. */
	char ident[256], name[CACHE_DIGEST_MAX], dir[4096], memo[4096];
	snprintf(ident, sizeof(ident),
		 "dev %llu ino %llu size %lld mtime %lld.%09ld ctime %lld.%09ld",
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
		 (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
		 (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
	int r = cache_digest_buf(CACHE_DIGEST_SHA256, ident, strlen(ident), name, err);
	if (r < 0)
		return r;
	snprintf(dir, sizeof(dir), "%s/bake/digests", c->root);
	snprintf(memo, sizeof(memo), "%s/%s", dir, name + 7);
	char buf[CACHE_DIGEST_MAX + 2];
	sm_autoclose int mfd = open(memo, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (mfd >= 0) {
		ssize_t n = read(mfd, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			buf[strcspn(buf, "\n")] = '\0';
			if (strncmp(buf, "sha256:", 7) == 0 &&
			    cache_digest_parse(buf, NULL, NULL, NULL) == 0) {
				memcpy(out, buf, strlen(buf) + 1);
				return 0;
			}
		}
		/* A damaged memo is recomputed and replaced. */
	}

	struct cache_hash h;
	r = cache_hash_init(&h, CACHE_DIGEST_SHA256, err);
	if (r < 0)
		return r;
	static __thread char rbuf[1 << 17];
	for (;;) {
		ssize_t n = read(fd, rbuf, sizeof(rbuf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = sm_error_errno(err, errno, "cannot read %s", path);
			cache_hash_abort(&h);
			return r;
		}
		if (n == 0)
			break;
		cache_hash_update(&h, rbuf, (size_t)n);
	}
	cache_hash_final(&h, out);
	/* Only remember it when the file did not change while we read it. */
	struct stat st2;
	if (fstat(fd, &st2) < 0 || st2.st_size != st.st_size ||
	    st2.st_mtim.tv_sec != st.st_mtim.tv_sec || st2.st_mtim.tv_nsec != st.st_mtim.tv_nsec ||
	    st2.st_ctim.tv_sec != st.st_ctim.tv_sec || st2.st_ctim.tv_nsec != st.st_ctim.tv_nsec)
		return 0;
	char bdir[4096];
	snprintf(bdir, sizeof(bdir), "%s/bake", c->root);
	if ((mkdir(bdir, 0755) < 0 && errno != EEXIST) || (mkdir(dir, 0755) < 0 && errno != EEXIST))
		return 0; /* the memo is an optimisation: no memo, no error */
	char line[CACHE_DIGEST_MAX + 2];
	snprintf(line, sizeof(line), "%s\n", out);
	write_small_atomic(dir, memo, line, NULL);
	return 0;
}

/* ---- the snapshot cache ------------------------------------------------------ */

int bake_snapshot_path(struct cache *c, const char *key, char **out, struct sm_error *err)
{
	enum cache_digest_alg alg;
	const char *hex;
	*out = NULL;
	int r = cache_digest_parse(key, &alg, &hex, err);
	if (r < 0)
		return sm_error_wrap(err, "bake key");
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/snapshots", c->root);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return sm_error_errno(err, errno, "cannot create %s", dir);
	if (asprintf(out, "%s/%s.snap", dir, hex) < 0) {
		*out = NULL;
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	return 0;
}

int bake_snapshot_check(const char *path, const char *key, const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	struct stat st;
	if (stat(path, &st) < 0) {
		*why = "not cached";
		return 0;
	}
	struct fmt_reader *rd = NULL;
	struct sm_error e = {0};
	if (fmt_reader_open(&rd, path, &e) < 0) {
		*why = "cached snapshot damaged";
		return 0;
	}
	char *meta = NULL;
	int ok = 0;
	*why = "cached snapshot damaged";
	if (fmt_reader_meta(rd, &meta, &e) == 0) {
		json_t *j = json_loads(meta, 0, NULL);
		json_t *k = j ? json_object_get(j, "bake_key") : NULL;
		if (json_is_string(k) && strcmp(json_string_value(k), key) == 0)
			ok = 1;
		else if (j)
			*why = "cached snapshot has another bake key";
		json_decref(j);
	}
	free(meta);
	fmt_reader_close(rd);
	if (ok)
		*why = "cached";
	return ok;
}
