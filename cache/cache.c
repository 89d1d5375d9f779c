/* SPDX-License-Identifier: Apache-2.0 */
/* The content-addressed store: blobs, root filesystems, image records, gc. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "sm/cache.h"

/* Paths are bounded by PATH_MAX-sized buffers; an over-long one fails later at open. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

int cache_default_root(char **out, struct sm_error *err)
{
	const char *e = getenv("SM_CACHE");
	int n;
	*out = NULL;
	if (e && *e)
		n = asprintf(out, "%s", e);
	else if ((e = getenv("XDG_CACHE_HOME")) && *e == '/')
		n = asprintf(out, "%s/supermachine", e);
	else if ((e = getenv("HOME")) && *e)
		n = asprintf(out, "%s/.cache/supermachine", e);
	else
		return sm_error_set(err, ENOENT,
				    "cannot find a cache directory: set SM_CACHE or HOME");
	if (n < 0) {
		*out = NULL;
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	return 0;
}

static int mkdir_p(const char *path, struct sm_error *err)
{
	char buf[4096];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return sm_error_set(err, ENAMETOOLONG, "path too long: %.100s", path);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char save = *p;
			*p = '\0';
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				return sm_error_errno(err, errno, "cannot create %s", buf);
			*p = save;
			if (!save)
				break;
		}
	}
	return 0;
}

int cache_open(const char *root, struct cache **out, struct sm_error *err)
{
	sm_autofree char *def = NULL;
	int r;
	*out = NULL;
	if (!root) {
		r = cache_default_root(&def, err);
		if (r < 0)
			return r;
		root = def;
	}
	static const char *const subdirs[] = {"blobs/sha256", "blobs/sha512", "rootfs",
					      "images",	      "tmp",	      "locks"};
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		char p[4096];
		if (snprintf(p, sizeof(p), "%s/%s", root, subdirs[i]) >= (int)sizeof(p))
			return sm_error_set(err, ENAMETOOLONG, "cache path too long");
		r = mkdir_p(p, err);
		if (r < 0)
			return sm_error_wrap(err, "cache %s", root);
	}
	struct cache *c = calloc(1, sizeof(*c));
	if (!c || !(c->root = strdup(root))) {
		free(c);
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	char lp[4096];
	snprintf(lp, sizeof(lp), "%s/locks/gc.lock", root);
	c->gc_lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (c->gc_lock_fd < 0 || flock(c->gc_lock_fd, LOCK_SH) < 0) {
		r = sm_error_errno(err, errno, "cannot lock %s", lp);
		cache_close(c);
		return r;
	}
	*out = c;
	return 0;
}

void cache_close(struct cache *c)
{
	if (!c)
		return;
	if (c->gc_lock_fd >= 0)
		close(c->gc_lock_fd);
	free(c->root);
	free(c);
}

int cache_blob_path(struct cache *c, const char *digest, char **out, struct sm_error *err)
{
	enum cache_digest_alg alg;
	const char *hex;
	int r = cache_digest_parse(digest, &alg, &hex, err);
	if (r < 0)
		return r;
	if (asprintf(out, "%s/blobs/%s/%s", c->root,
		     alg == CACHE_DIGEST_SHA512 ? "sha512" : "sha256", hex) < 0) {
		*out = NULL;
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	return 0;
}

int cache_blob_has(struct cache *c, const char *digest, int64_t size)
{
	sm_autofree char *p = NULL;
	struct stat st;
	if (cache_blob_path(c, digest, &p, NULL) < 0)
		return 0;
	if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	return size < 0 || st.st_size == size;
}

int cache_blob_begin(struct cache *c, const char *expected, struct cache_blob_writer *w,
		     struct sm_error *err)
{
	enum cache_digest_alg alg;
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	int r = cache_digest_parse(expected, &alg, NULL, err);
	if (r < 0)
		return r;
	if (asprintf(&w->tmp_path, "%s/tmp/blob-XXXXXX", c->root) < 0) {
		w->tmp_path = NULL;
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
	if (w->fd < 0) {
		r = sm_error_errno(err, errno, "cannot create a temp file in %s/tmp", c->root);
		free(w->tmp_path);
		w->tmp_path = NULL;
		return r;
	}
	w->c = c;
	r = cache_hash_init(&w->hash, alg, err);
	if (r < 0)
		cache_blob_abort(w);
	return r;
}

int cache_blob_write(struct cache_blob_writer *w, const void *buf, size_t len, struct sm_error *err)
{
	const char *p = buf;
	size_t left = len;
	while (left) {
		ssize_t n = write(w->fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return sm_error_errno(err, errno, "cannot write %s", w->tmp_path);
		p += n;
		left -= (size_t)n;
	}
	cache_hash_update(&w->hash, buf, len);
	w->written += len;
	return 0;
}

int cache_blob_restart(struct cache_blob_writer *w, struct sm_error *err)
{
	enum cache_digest_alg alg = w->hash.alg;
	cache_hash_abort(&w->hash);
	if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0)
		return sm_error_errno(err, errno, "cannot truncate %s", w->tmp_path);
	w->written = 0;
	return cache_hash_init(&w->hash, alg, err);
}

void cache_blob_abort(struct cache_blob_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (w->tmp_path) {
		unlink(w->tmp_path);
		free(w->tmp_path);
		w->tmp_path = NULL;
	}
	cache_hash_abort(&w->hash);
}

int cache_blob_commit(struct cache_blob_writer *w, const char *expected, int64_t size,
		      struct sm_error *err)
{
	char got[CACHE_DIGEST_MAX];
	sm_autofree char *final = NULL;
	int r;
	cache_hash_final(&w->hash, got);
	if (strcmp(got, expected) != 0) {
		r = sm_error_set(err, EBADMSG, "digest mismatch: expected %s, got %s", expected,
				 got);
		goto fail;
	}
	if (size >= 0 && w->written != (uint64_t)size) {
		r = sm_error_set(err, EBADMSG, "size mismatch for %s: expected %lld, got %llu",
				 expected, (long long)size, (unsigned long long)w->written);
		goto fail;
	}
	r = cache_blob_path(w->c, expected, &final, err);
	if (r < 0)
		goto fail;
	if (fchmod(w->fd, 0444) < 0 || fsync(w->fd) < 0) {
		r = sm_error_errno(err, errno, "cannot finish %s", w->tmp_path);
		goto fail;
	}
	if (rename(w->tmp_path, final) < 0) {
		r = sm_error_errno(err, errno, "cannot rename %s to %s", w->tmp_path, final);
		goto fail;
	}
	free(w->tmp_path);
	w->tmp_path = NULL;
	cache_blob_abort(w);
	return 0;
fail:
	cache_blob_abort(w);
	return r;
}

int cache_blob_import(struct cache *c, const char *src, const char *digest, int64_t size,
		      struct sm_error *err)
{
	struct cache_blob_writer w;
	if (cache_blob_has(c, digest, size))
		return 0;
	sm_autoclose int fd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot open %s", src);
	int r = cache_blob_begin(c, digest, &w, err);
	if (r < 0)
		return r;
	static __thread char buf[1 << 16];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = sm_error_errno(err, errno, "cannot read %s", src);
			cache_blob_abort(&w);
			return r;
		}
		if (n == 0)
			break;
		if (size >= 0 && w.written + (uint64_t)n > (uint64_t)size) {
			cache_blob_abort(&w);
			return sm_error_set(err, EBADMSG,
					    "%s is larger than its declared size %lld", src,
					    (long long)size);
		}
		r = cache_blob_write(&w, buf, (size_t)n, err);
		if (r < 0) {
			cache_blob_abort(&w);
			return r;
		}
	}
	r = cache_blob_commit(&w, digest, size, err);
	if (r < 0)
		return sm_error_wrap(err, "%s", src);
	return 0;
}

int cache_blob_read(struct cache *c, const char *digest, size_t max, char **out, size_t *len,
		    struct sm_error *err)
{
	sm_autofree char *p = NULL;
	enum cache_digest_alg alg;
	*out = NULL;
	int r = cache_digest_parse(digest, &alg, NULL, err);
	if (r < 0)
		return r;
	r = cache_blob_path(c, digest, &p, err);
	if (r < 0)
		return r;
	sm_autoclose int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot open blob %s", digest);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return sm_error_errno(err, errno, "cannot stat blob %s", digest);
	if ((uint64_t)st.st_size > max)
		return sm_error_set(err, EFBIG, "blob %s is too large (%lld bytes, limit %zu)",
				    digest, (long long)st.st_size, max);
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return sm_error_set(err, ENOMEM, "out of memory");
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return sm_error_errno(err, n < 0 ? errno : EIO, "cannot read blob %s",
					      digest);
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	char d[CACHE_DIGEST_MAX];
	cache_digest_buf(alg, buf, got, d, NULL);
	if (strcmp(d, digest) != 0) {
		free(buf);
		return sm_error_set(err, EBADMSG, "cached blob %s is corrupt (hashes to %s)",
				    digest, d);
	}
	*out = buf;
	if (len)
		*len = got;
	return 0;
}

int cache_lock(struct cache *c, const char *name, int *fd, struct sm_error *err)
{
	char p[4096];
	*fd = -1;
	if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return sm_error_set(err, EINVAL, "bad lock name '%s'", name);
	if (snprintf(p, sizeof(p), "%s/locks/%s.lock", c->root, name) >= (int)sizeof(p))
		return sm_error_set(err, ENAMETOOLONG, "lock path too long");
	int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f < 0)
		return sm_error_errno(err, errno, "cannot open %s", p);
	while (flock(f, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int e = errno;
			close(f);
			return sm_error_errno(err, e, "cannot lock %s", p);
		}
	}
	*fd = f;
	return 0;
}

int cache_rootfs_path(struct cache *c, const char *chain_id, char **out, struct sm_error *err)
{
	const char *hex;
	int r = cache_digest_parse(chain_id, NULL, &hex, err);
	if (r < 0)
		return r;
	if (asprintf(out, "%s/rootfs/%s", c->root, hex) < 0) {
		*out = NULL;
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	return 0;
}

int cache_rootfs_has(struct cache *c, const char *chain_id)
{
	sm_autofree char *p = NULL;
	struct stat st;
	if (cache_rootfs_path(c, chain_id, &p, NULL) < 0)
		return 0;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int cache_tmpdir(struct cache *c, char **out, struct sm_error *err)
{
	if (asprintf(out, "%s/tmp/dir-XXXXXX", c->root) < 0) {
		*out = NULL;
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	if (!mkdtemp(*out)) {
		int r = sm_error_errno(err, errno, "cannot create a temp dir in %s/tmp", c->root);
		free(*out);
		*out = NULL;
		return r;
	}
	return 0;
}

int cache_rootfs_commit(struct cache *c, const char *tmp, const char *chain_id,
			struct sm_error *err)
{
	sm_autofree char *final = NULL;
	int r = cache_rootfs_path(c, chain_id, &final, err);
	if (r < 0)
		return r;
	if (rename(tmp, final) == 0)
		return 0;
	if (errno == EEXIST || errno == ENOTEMPTY)
		return cache_rm_rf_at(AT_FDCWD, tmp, err);
	return sm_error_errno(err, errno, "cannot rename %s to %s", tmp, final);
}

int cache_image_record(struct cache *c, const char *manifest_digest, const char *json,
		       struct sm_error *err)
{
	const char *hex;
	int r = cache_digest_parse(manifest_digest, NULL, &hex, err);
	if (r < 0)
		return r;
	char tmp[4096], final[4096];
	snprintf(tmp, sizeof(tmp), "%s/tmp/image-XXXXXX", c->root);
	if (snprintf(final, sizeof(final), "%s/images/%s.json", c->root, hex) >= (int)sizeof(final))
		return sm_error_set(err, ENAMETOOLONG, "path too long");
	sm_autoclose int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot create %s", tmp);
	size_t len = strlen(json);
	if (write(fd, json, len) != (ssize_t)len || fchmod(fd, 0644) < 0 ||
	    rename(tmp, final) < 0) {
		r = sm_error_errno(err, errno, "cannot write %s", final);
		unlink(tmp);
		return r;
	}
	return 0;
}

int cache_rm_rf_at(int atfd, const char *name, struct sm_error *err)
{
	int fd = openat(atfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ENOTDIR || errno == ELOOP) {
			if (unlinkat(atfd, name, 0) < 0 && errno != ENOENT)
				return sm_error_errno(err, errno, "cannot remove %s", name);
			return 0;
		}
		if (errno == EACCES && unlinkat(atfd, name, 0) == 0)
			return 0;
		return sm_error_errno(err, errno, "cannot open %s", name);
	}
	if (geteuid() != 0)
		fchmod(fd, 0700);
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return sm_error_errno(err, e, "cannot read %s", name);
	}
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)
			r = cache_rm_rf_at(dirfd(d), de->d_name, err);
		else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
			r = sm_error_errno(err, errno, "cannot remove %s/%s", name, de->d_name);
		if (r < 0)
			break;
	}
	closedir(d);
	if (r < 0)
		return sm_error_wrap(err, "removing %s", name);
	if (unlinkat(atfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return sm_error_errno(err, errno, "cannot remove directory %s", name);
	return 0;
}

/* ---- gc ------------------------------------------------------------------ */

struct strset {
	char **v;
	size_t n, cap;
};

static int strset_add(struct strset *s, const char *str)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		char **nv = realloc(s->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		s->v = nv;
		s->cap = nc;
	}
	if (!(s->v[s->n] = strdup(str)))
		return -ENOMEM;
	s->n++;
	return 0;
}

static int strset_has(const struct strset *s, const char *str)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], str))
			return 1;
	return 0;
}

static void strset_free(struct strset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static int add_digest(struct strset *s, json_t *v)
{
	const char *d = json_string_value(v);
	if (!d || cache_digest_parse(d, NULL, NULL, NULL) < 0)
		return 0;
	return strset_add(s, d + 7) < 0 ? -ENOMEM : 0; /* both algs have a 7-char prefix */
}

static int collect_roots(struct cache *c, struct strset *blobs, struct strset *chains,
			 struct sm_error *err)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/images", c->root);
	DIR *d = opendir(p);
	if (!d)
		return sm_error_errno(err, errno, "cannot read %s", p);
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)) != NULL && r == 0) {
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".json"))
			continue;
		char f[4096];
		snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
		json_error_t je;
		json_t *j = json_load_file(f, 0, &je);
		if (!j)
			continue; /* a broken record protects nothing */
		char mhex[200];
		snprintf(mhex, sizeof(mhex), "%.*s", (int)(l - 5), de->d_name);
		r = strset_add(blobs, mhex);
		if (!r)
			r = add_digest(blobs, json_object_get(j, "manifest"));
		if (!r)
			r = add_digest(blobs, json_object_get(j, "config"));
		if (!r)
			r = add_digest(chains, json_object_get(j, "chain_id"));
		size_t i;
		json_t *v;
		json_array_foreach(json_object_get(j, "layers"), i, v)
		{
			if (!r)
				r = add_digest(blobs, v);
		}
		json_decref(j);
	}
	closedir(d);
	if (r < 0)
		return sm_error_set(err, ENOMEM, "out of memory");
	return 0;
}

static int sweep(const char *dir, const struct strset *keep, unsigned *removed, unsigned *kept,
		 struct sm_error *err)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : sm_error_errno(err, errno, "cannot read %s", dir);
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (keep && strset_has(keep, de->d_name)) {
			if (kept)
				(*kept)++;
			continue;
		}
		r = cache_rm_rf_at(dirfd(d), de->d_name, err);
		if (r < 0)
			break;
		(*removed)++;
	}
	closedir(d);
	return r;
}

int cache_gc(struct cache *c, struct cache_gc_stats *stats, struct sm_error *err)
{
	struct cache_gc_stats st = {0};
	struct strset blobs = {0}, chains = {0};
	char p[4096];
	int r;
	while (flock(c->gc_lock_fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return sm_error_errno(err, errno, "cannot take the gc lock");
	r = collect_roots(c, &blobs, &chains, err);
	if (r < 0)
		goto out;
	static const char *const algs[] = {"sha256", "sha512"};
	for (int i = 0; i < 2 && r == 0; i++) {
		snprintf(p, sizeof(p), "%s/blobs/%s", c->root, algs[i]);
		r = sweep(p, &blobs, &st.blobs_removed, &st.blobs_kept, err);
	}
	if (r == 0) {
		snprintf(p, sizeof(p), "%s/rootfs", c->root);
		r = sweep(p, &chains, &st.rootfs_removed, &st.rootfs_kept, err);
	}
	if (r == 0) {
		snprintf(p, sizeof(p), "%s/tmp", c->root);
		r = sweep(p, NULL, &st.tmp_removed, NULL, err);
	}
out:
	strset_free(&blobs);
	strset_free(&chains);
	flock(c->gc_lock_fd, LOCK_SH);
	if (stats)
		*stats = st;
	return r < 0 ? sm_error_wrap(err, "cache gc") : 0;
}
