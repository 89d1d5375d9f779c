/* SPDX-License-Identifier: Apache-2.0 */
/* Local sources: OCI image layouts (oci:DIR[:tag]) and `docker save`
 * archives (docker-archive:FILE, legacy and Docker 25+ forms). Both feed the
 * same verified blob store and manifest path as the registry client. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>

#include "sm/oci.h"

#define INDEX_MAX (4u << 20)

static const struct oci_platform *want_platform(const struct oci_pull_opts *o,
						struct oci_platform *buf)
{
	if (o && o->platform.os[0])
		return &o->platform;
	oci_platform_host(buf);
	return buf;
}

/* ---- oci:DIR[:tag] ---------------------------------------------------------- */

struct layout_ctx {
	struct cache *c;
	const char *dir;
};

static int layout_fetch(void *ctx, const char *digest, int64_t size, struct sm_error *err)
{
	struct layout_ctx *l = ctx;
	enum cache_digest_alg alg;
	const char *hex;
	int r = cache_digest_parse(digest, &alg, &hex, err);
	if (r < 0)
		return r;
	char p[4200];
	if (snprintf(p, sizeof(p), "%s/blobs/%s/%s", l->dir,
		     alg == CACHE_DIGEST_SHA512 ? "sha512" : "sha256", hex) >= (int)sizeof(p))
		return sm_error_set(err, ENAMETOOLONG, "path too long");
	r = cache_blob_import(l->c, p, digest, size, err);
	return r < 0 ? sm_error_wrap(err, "OCI layout %s", l->dir) : 0;
}

static char *read_small(const char *path, size_t max, size_t *len, struct sm_error *err)
{
	sm_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		sm_error_errno(err, errno, "cannot read %s", path);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		sm_error_set(err, EFBIG, "%s is not a regular file under %zu bytes", path, max);
		return NULL;
	}
	char *b = malloc((size_t)st.st_size + 1);
	if (!b) {
		sm_error_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	ssize_t n = read(fd, b, (size_t)st.st_size);
	if (n != st.st_size) {
		free(b);
		sm_error_errno(err, n < 0 ? errno : EIO, "cannot read %s", path);
		return NULL;
	}
	b[n] = '\0';
	*len = (size_t)n;
	return b;
}

/* Resolve DESC (manifest or index) to a manifest digest, fetching blobs. */
static int resolve_descriptor(struct cache *c, oci_fetch_fn fetch, void *ctx, const char *digest,
			      int64_t size, const struct oci_platform *plat, char **manifest,
			      struct sm_error *err)
{
	sm_autofree char *cur = strdup(digest);
	if (!cur)
		return sm_error_set(err, ENOMEM, "out of memory");
	for (int depth = 0; depth < 4; depth++) {
		int r = fetch(ctx, cur, size, err);
		if (r < 0)
			return r;
		sm_autofree char *buf = NULL;
		size_t len;
		if ((r = cache_blob_read(c, cur, INDEX_MAX, &buf, &len, err)) < 0)
			return r;
		json_t *j = json_loadb(buf, len, 0, NULL);
		int is_index = j && json_is_array(json_object_get(j, "manifests"));
		json_decref(j);
		if (!is_index) {
			*manifest = cur;
			cur = NULL;
			return 0;
		}
		char *next;
		if ((r = oci_index_select(buf, len, plat, &next, &size, err)) < 0)
			return r;
		free(cur);
		cur = next;
	}
	return sm_error_set(err, ELOOP, "image indexes nested too deeply");
}

int oci_layout_pull(struct cache *c, const struct oci_ref *ref, const struct oci_pull_opts *opts,
		    struct oci_image *img, struct sm_error *err)
{
	struct layout_ctx l = {.c = c, .dir = ref->path};
	struct oci_platform pbuf;
	char p[4200];
	size_t len;
	int r;
	memset(img, 0, sizeof(*img));
	snprintf(p, sizeof(p), "%s/oci-layout", ref->path);
	sm_autofree char *lay = read_small(p, 4096, &len, err);
	if (!lay)
		return sm_error_wrap(err, "%s is not an OCI image layout", ref->path);
	json_t *lj = json_loadb(lay, len, 0, NULL);
	const char *ver = json_string_value(json_object_get(lj, "imageLayoutVersion"));
	int ok = ver && !strncmp(ver, "1.", 2);
	json_decref(lj);
	if (!ok)
		return sm_error_set(err, EINVAL, "%s: unsupported imageLayoutVersion", p);

	snprintf(p, sizeof(p), "%s/index.json", ref->path);
	sm_autofree char *idx = read_small(p, INDEX_MAX, &len, err);
	if (!idx)
		return -EINVAL;
	json_t *j = json_loadb(idx, len, 0, NULL);
	json_t *ms = json_object_get(j, "manifests");
	if (!json_is_array(ms)) {
		json_decref(j);
		return sm_error_set(err, EINVAL, "%s has no manifests array", p);
	}
	json_t *pick = NULL, *m;
	size_t i, nmatch = 0;
	char tags[300] = "";
	size_t tl = 0;
	json_array_foreach(ms, i, m)
	{
		const char *t = json_string_value(json_object_get(
			json_object_get(m, "annotations"), "org.opencontainers.image.ref.name"));
		if (t && tl < sizeof(tags) - 1)
			tl += (size_t)snprintf(tags + tl, sizeof(tags) - tl, "%s%s", tl ? ", " : "",
					       t);
		if (ref->tag ? (t && !strcmp(t, ref->tag)) : 1) {
			pick = m;
			nmatch++;
		}
	}
	if (nmatch != 1 && !(ref->tag && nmatch > 1)) {
		r = nmatch == 0
			    ? sm_error_set(err, ENOENT, "%s has no image tagged '%s' (tags: %s)",
					   ref->path, ref->tag ? ref->tag : "", tl ? tags : "none")
			    : sm_error_set(err, EINVAL,
					   "%s holds %zu images; name one as oci:%s:TAG (tags: %s)",
					   ref->path, nmatch, ref->path, tl ? tags : "none");
		json_decref(j);
		return r;
	}
	const char *d;
	int64_t sz;
	d = json_string_value(json_object_get(pick, "digest"));
	json_t *szj = json_object_get(pick, "size");
	sz = json_is_integer(szj) ? json_integer_value(szj) : -1;
	sm_autofree char *dcopy = d ? strdup(d) : NULL;
	json_decref(j);
	if (!dcopy || cache_digest_parse(dcopy, NULL, NULL, err) < 0)
		return sm_error_set(err, EINVAL, "%s: bad descriptor digest", p);
	sm_autofree char *mdig = NULL;
	r = resolve_descriptor(c, layout_fetch, &l, dcopy, sz, want_platform(opts, &pbuf), &mdig,
			       err);
	if (r < 0)
		return r;
	r = oci_image_from_manifest(c, mdig, layout_fetch, &l, img, err);
	if (r < 0)
		return r;
	for (i = 0; i < img->n_layers; i++) {
		r = layout_fetch(&l, img->layers[i].digest, img->layers[i].size, err);
		if (r < 0) {
			oci_image_free(img);
			return r;
		}
	}
	return 0;
}

/* ---- docker-archive:FILE ------------------------------------------------------ */

struct member {
	char *name;   /* cleaned path inside the archive */
	char *file;   /* extracted temp file (regular members) */
	char *target; /* symlink target, resolved to an archive path */
};

struct members {
	struct member *v;
	size_t n, cap;
};

static void members_free(struct members *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].name);
		free(m->v[i].file);
		free(m->v[i].target);
	}
	free(m->v);
}

/* Normalise an archive path: drop "./", "." and empty parts, resolve "..". */
static int norm_path(const char *base_dir, const char *in, char *out, size_t outsz)
{
	char tmp[4096];
	if (in[0] == '/')
		base_dir = "";
	if (snprintf(tmp, sizeof(tmp), "%s%s%s", base_dir, *base_dir ? "/" : "", in) >=
	    (int)sizeof(tmp))
		return -1;
	size_t o = 0;
	char *save = NULL;
	for (char *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (!strcmp(c, "."))
			continue;
		if (!strcmp(c, "..")) {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			out[o] = '\0';
			continue;
		}
		size_t l = strlen(c);
		if (o + l + 2 > outsz)
			return -1;
		if (o)
			out[o++] = '/';
		memcpy(out + o, c, l);
		o += l;
		out[o] = '\0';
	}
	out[o] = '\0';
	return 0;
}

static const struct member *find_member(const struct members *m, const char *name)
{
	char cur[4096];
	snprintf(cur, sizeof(cur), "%s", name);
	for (int hops = 0; hops < 16; hops++) {
		const struct member *hit = NULL;
		for (size_t i = 0; i < m->n; i++)
			if (!strcmp(m->v[i].name, cur))
				hit = &m->v[i];
		if (!hit || hit->file)
			return hit;
		snprintf(cur, sizeof(cur), "%s", hit->target);
	}
	return NULL;
}

static int extract_members(struct cache *c, const char *path, const char *tmpdir, struct members *m,
			   struct sm_error *err)
{
	struct archive *a = archive_read_new();
	if (!a)
		return sm_error_set(err, ENOMEM, "out of memory");
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	int r = 0;
	(void)c;
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		r = sm_error_set(err, EIO, "cannot open %s: %s", path, archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	for (;;) {
		int ar = archive_read_next_header(a, &e);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
			r = sm_error_set(err, EBADMSG, "%s: %s", path, archive_error_string(a));
			goto out;
		}
		char name[4096];
		const char *pn = archive_entry_pathname(e);
		if (!pn || norm_path("", pn, name, sizeof(name)) < 0 || !*name)
			continue;
		mode_t t = archive_entry_filetype(e);
		const char *hl = archive_entry_hardlink(e);
		if (t != AE_IFREG && t != AE_IFLNK && !hl)
			continue;
		if (m->n == m->cap) {
			size_t nc = m->cap ? m->cap * 2 : 32;
			struct member *nv = realloc(m->v, nc * sizeof(*nv));
			if (!nv) {
				r = sm_error_set(err, ENOMEM, "out of memory");
				goto out;
			}
			m->v = nv;
			m->cap = nc;
		}
		struct member *mb = &m->v[m->n];
		memset(mb, 0, sizeof(*mb));
		mb->name = strdup(name);
		m->n++;
		if (hl || t == AE_IFLNK) {
			char dir[4096], tgt[4096];
			snprintf(dir, sizeof(dir), "%s", name);
			char *s = strrchr(dir, '/');
			if (s)
				*s = '\0';
			else
				dir[0] = '\0';
			const char *raw = hl ? hl : archive_entry_symlink(e);
			if (!raw || norm_path(hl ? "" : dir, raw, tgt, sizeof(tgt)) < 0) {
				r = sm_error_set(err, EBADMSG, "%s: bad link %s", path, name);
				goto out;
			}
			mb->target = strdup(tgt);
			continue;
		}
		if (asprintf(&mb->file, "%s/m%zu", tmpdir, m->n) < 0) {
			mb->file = NULL;
			r = sm_error_set(err, ENOMEM, "out of memory");
			goto out;
		}
		int fd = open(mb->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			r = sm_error_errno(err, errno, "cannot create %s", mb->file);
			goto out;
		}
		if (archive_read_data_into_fd(a, fd) != ARCHIVE_OK) {
			r = sm_error_set(err, EIO, "%s: reading %s: %s", path, name,
					 archive_error_string(a));
			close(fd);
			goto out;
		}
		close(fd);
	}
out:
	archive_read_free(a);
	return r;
}

/* Import the member NAME as a blob: its digest is computed here. */
static int import_member(struct cache *c, const struct members *m, const char *name,
			 char digest[CACHE_DIGEST_MAX], uint64_t *size, struct sm_error *err)
{
	char clean[4096];
	if (norm_path("", name, clean, sizeof(clean)) < 0)
		return sm_error_set(err, EINVAL, "bad path %s", name);
	const struct member *mb = find_member(m, clean);
	if (!mb)
		return sm_error_set(err, ENOENT, "the archive has no file %s", clean);
	int r = cache_digest_file(CACHE_DIGEST_SHA256, mb->file, digest, size, err);
	if (r < 0)
		return r;
	return cache_blob_import(c, mb->file, digest, (int64_t)*size, err);
}

int oci_archive_pull(struct cache *c, const struct oci_ref *ref, const struct oci_pull_opts *opts,
		     struct oci_image *img, struct sm_error *err)
{
	struct members m = {0};
	sm_autofree char *tmp = NULL;
	json_t *j = NULL, *man = NULL;
	sm_autofree char *mjson = NULL;
	int r;
	(void)opts;
	memset(img, 0, sizeof(*img));
	if ((r = cache_tmpdir(c, &tmp, err)) < 0)
		return r;
	if ((r = extract_members(c, ref->path, tmp, &m, err)) < 0)
		goto out;
	const struct member *mf = find_member(&m, "manifest.json");
	if (!mf) {
		r = sm_error_set(err, EINVAL, "%s has no manifest.json; not a docker save archive",
				 ref->path);
		goto out;
	}
	json_error_t je;
	j = json_load_file(mf->file, 0, &je);
	if (!json_is_array(j) || json_array_size(j) == 0) {
		r = sm_error_set(err, EINVAL, "%s: manifest.json is not a non-empty array",
				 ref->path);
		goto out;
	}
	if (json_array_size(j) > 1) {
		r = sm_error_set(err, ENOTSUP, "%s holds %zu images; save one image per archive",
				 ref->path, json_array_size(j));
		goto out;
	}
	json_t *ent = json_array_get(j, 0);
	const char *cfg = json_string_value(json_object_get(ent, "Config"));
	json_t *layers = json_object_get(ent, "Layers");
	if (!cfg || !json_is_array(layers)) {
		r = sm_error_set(err, EINVAL, "%s: manifest.json entry lacks Config or Layers",
				 ref->path);
		goto out;
	}
	char d[CACHE_DIGEST_MAX];
	uint64_t sz;
	if ((r = import_member(c, &m, cfg, d, &sz, err)) < 0)
		goto out;
	/* synthesise an OCI manifest so everything after this is shared */
	man = json_object();
	json_object_set_new(man, "schemaVersion", json_integer(2));
	json_object_set_new(man, "mediaType",
			    json_string("application/vnd.oci.image.manifest.v1+json"));
	json_t *cd = json_object();
	json_object_set_new(cd, "mediaType",
			    json_string("application/vnd.oci.image.config.v1+json"));
	json_object_set_new(cd, "digest", json_string(d));
	json_object_set_new(cd, "size", json_integer((json_int_t)sz));
	json_object_set_new(man, "config", cd);
	json_t *ls = json_array();
	json_object_set_new(man, "layers", ls);
	size_t i;
	json_t *lv;
	json_array_foreach(layers, i, lv)
	{
		const char *ln = json_string_value(lv);
		if (!ln) {
			r = sm_error_set(err, EINVAL, "%s: Layers[%zu] is not a string", ref->path,
					 i);
			goto out;
		}
		if ((r = import_member(c, &m, ln, d, &sz, err)) < 0)
			goto out;
		json_t *ld = json_object();
		json_object_set_new(ld, "mediaType",
				    json_string("application/vnd.oci.image.layer.v1.tar"));
		json_object_set_new(ld, "digest", json_string(d));
		json_object_set_new(ld, "size", json_integer((json_int_t)sz));
		json_array_append_new(ls, ld);
	}
	mjson = json_dumps(man, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!mjson) {
		r = sm_error_set(err, ENOMEM, "out of memory");
		goto out;
	}
	char md[CACHE_DIGEST_MAX];
	cache_digest_buf(CACHE_DIGEST_SHA256, mjson, strlen(mjson), md, NULL);
	if (!cache_blob_has(c, md, -1)) {
		struct cache_blob_writer w;
		if ((r = cache_blob_begin(c, md, &w, err)) < 0)
			goto out;
		if ((r = cache_blob_write(&w, mjson, strlen(mjson), err)) < 0) {
			cache_blob_abort(&w);
			goto out;
		}
		if ((r = cache_blob_commit(&w, md, (int64_t)strlen(mjson), err)) < 0)
			goto out;
	}
	r = oci_image_from_manifest(c, md, NULL, NULL, img, err);
out:
	json_decref(j);
	json_decref(man);
	members_free(&m);
	cache_rm_rf_at(AT_FDCWD, tmp, NULL);
	if (r < 0)
		return sm_error_wrap(err, "docker-archive %s", ref->path);
	return 0;
}
