/* SPDX-License-Identifier: Apache-2.0 */
/* Manifests, indexes and platforms; image records; unpack into the cache;
 * cloning a cached tree out; the `smbake --unpack-only` pipeline. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <jansson.h>

#include "sm/oci.h"

#define MANIFEST_MAX (4u << 20)
#define CONFIG_MAX   (32u << 20)

#define MT_OCI_MANIFEST	   "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX	   "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST	   "application/vnd.docker.distribution.manifest.list.v2+json"

void oci_image_free(struct oci_image *img)
{
	if (!img)
		return;
	free(img->manifest_digest);
	free(img->config_digest);
	for (size_t i = 0; i < img->n_layers; i++) {
		free(img->layers[i].digest);
		free(img->layers[i].media_type);
	}
	free(img->layers);
	oci_config_free(&img->config);
	memset(img, 0, sizeof(*img));
}

/* Validate a descriptor object: digest well-formed, size a non-negative int. */
static int descriptor(json_t *d, const char *what, const char **digest, int64_t *size,
		      const char **media_type, struct sm_error *err)
{
	if (!json_is_object(d))
		return sm_error_set(err, EINVAL, "%s is not a descriptor object", what);
	*digest = json_string_value(json_object_get(d, "digest"));
	int r = cache_digest_parse(*digest, NULL, NULL, err);
	if (r < 0)
		return sm_error_wrap(err, "%s", what);
	json_t *s = json_object_get(d, "size");
	if (!json_is_integer(s) || json_integer_value(s) < 0)
		return sm_error_set(err, EINVAL, "%s has no valid size", what);
	*size = json_integer_value(s);
	if (media_type)
		*media_type = json_string_value(json_object_get(d, "mediaType"));
	return 0;
}

static int is_schema1(json_t *j)
{
	const char *mt = json_string_value(json_object_get(j, "mediaType"));
	json_t *sv = json_object_get(j, "schemaVersion");
	return (json_is_integer(sv) && json_integer_value(sv) == 1) ||
	       (mt && strstr(mt, "distribution.manifest.v1"));
}

int oci_index_select(const char *json, size_t len, const struct oci_platform *platform,
		     char **digest, int64_t *size, struct sm_error *err)
{
	json_error_t je;
	char offered[512] = "";
	size_t ol = 0;
	int r;
	*digest = NULL;
	json_t *j = json_loadb(json, len, 0, &je);
	if (!j)
		return sm_error_set(err, EINVAL, "image index is not valid JSON: %s", je.text);
	json_t *ms = json_object_get(j, "manifests");
	if (!json_is_array(ms)) {
		r = sm_error_set(err, EINVAL, "image index has no manifests array");
		goto out;
	}
	size_t i;
	json_t *m;
	json_array_foreach(ms, i, m)
	{
		const char *d, *mt;
		int64_t sz;
		if ((r = descriptor(m, "index entry", &d, &sz, &mt, err)) < 0)
			goto out;
		json_t *p = json_object_get(m, "platform");
		const char *os = json_string_value(json_object_get(p, "os"));
		const char *arch = json_string_value(json_object_get(p, "architecture"));
		const char *var = json_string_value(json_object_get(p, "variant"));
		if (!os || !arch)
			continue;
		if (ol < sizeof(offered) - 1)
			ol += (size_t)snprintf(offered + ol, sizeof(offered) - ol, "%s%s/%s%s%s",
					       ol ? ", " : "", os, arch, var ? "/" : "",
					       var ? var : "");
		if (strcmp(os, platform->os) || strcmp(arch, platform->arch))
			continue;
		if (platform->variant[0] && var && strcmp(var, platform->variant))
			continue;
		if (!(*digest = strdup(d))) {
			r = sm_error_set(err, ENOMEM, "out of memory");
			goto out;
		}
		*size = sz;
		r = 0;
		goto out;
	}
	if (ol >= sizeof(offered) - 1)
		snprintf(offered + sizeof(offered) - 5, 5, "...");
	r = sm_error_set(err, ENOENT,
			 "the image has no manifest for platform %s/%s%s%s (it offers: %s)",
			 platform->os, platform->arch, platform->variant[0] ? "/" : "",
			 platform->variant, ol ? offered : "nothing");
out:
	json_decref(j);
	return r;
}

int oci_image_from_manifest(struct cache *c, const char *manifest_digest, oci_fetch_fn fetch,
			    void *fetch_ctx, struct oci_image *img, struct sm_error *err)
{
	sm_autofree char *buf = NULL;
	sm_autofree char *cbuf = NULL;
	size_t len;
	json_error_t je;
	int r;
	memset(img, 0, sizeof(*img));
	r = cache_blob_read(c, manifest_digest, MANIFEST_MAX, &buf, &len, err);
	if (r < 0)
		return r;
	json_t *j = json_loadb(buf, len, 0, &je);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return sm_error_set(err, EINVAL, "manifest %s is not a JSON object",
				    manifest_digest);
	}
	if (is_schema1(j)) {
		r = sm_error_set(err, ENOTSUP,
				 "manifest %s is Docker schema 1, which is deprecated and not "
				 "supported; push the image again with a current tool",
				 manifest_digest);
		goto out;
	}
	const char *mt = json_string_value(json_object_get(j, "mediaType"));
	if (json_object_get(j, "manifests") ||
	    (mt && (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST)))) {
		r = sm_error_set(err, EINVAL, "%s is an image index, not a manifest",
				 manifest_digest);
		goto out;
	}
	if (mt && strcmp(mt, MT_OCI_MANIFEST) && strcmp(mt, MT_DOCKER_MANIFEST)) {
		r = sm_error_set(err, ENOTSUP, "manifest %s has unsupported media type %s",
				 manifest_digest, mt);
		goto out;
	}
	json_t *sv = json_object_get(j, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		r = sm_error_set(err, EINVAL, "manifest %s: schemaVersion must be 2",
				 manifest_digest);
		goto out;
	}
	const char *cd;
	int64_t csz;
	if ((r = descriptor(json_object_get(j, "config"), "manifest config", &cd, &csz, NULL,
			    err)) < 0)
		goto out;
	if (!cache_blob_has(c, cd, csz)) {
		if (!fetch) {
			r = sm_error_set(err, ENOENT, "config blob %s is missing", cd);
			goto out;
		}
		if ((r = fetch(fetch_ctx, cd, csz, err)) < 0)
			goto out;
	}
	size_t clen;
	if ((r = cache_blob_read(c, cd, CONFIG_MAX, &cbuf, &clen, err)) < 0)
		goto out;
	if ((r = oci_config_parse(cbuf, clen, &img->config, err)) < 0) {
		sm_error_wrap(err, "config %s", cd);
		goto out;
	}
	json_t *ls = json_object_get(j, "layers");
	if (!json_is_array(ls)) {
		r = sm_error_set(err, EINVAL, "manifest %s has no layers array", manifest_digest);
		goto out;
	}
	size_t n = json_array_size(ls);
	if (n != img->config.n_diff_ids) {
		r = sm_error_set(err, EINVAL,
				 "manifest %s lists %zu layers but its config has %zu diff_ids",
				 manifest_digest, n, img->config.n_diff_ids);
		goto out;
	}
	img->layers = calloc(n ? n : 1, sizeof(*img->layers));
	img->manifest_digest = strdup(manifest_digest);
	img->config_digest = strdup(cd);
	if (!img->layers || !img->manifest_digest || !img->config_digest) {
		r = sm_error_set(err, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *ld, *lmt;
		int64_t lsz;
		char what[64];
		snprintf(what, sizeof(what), "layer %zu", i);
		if ((r = descriptor(json_array_get(ls, i), what, &ld, &lsz, &lmt, err)) < 0)
			goto out;
		if (lmt && !strstr(lmt, "tar")) {
			r = sm_error_set(err, ENOTSUP,
					 "layer %zu has media type %s, not a tar layer", i, lmt);
			goto out;
		}
		img->layers[i].digest = strdup(ld);
		img->layers[i].media_type = lmt ? strdup(lmt) : NULL;
		img->layers[i].size = lsz;
		img->n_layers++;
		if (!img->layers[i].digest) {
			r = sm_error_set(err, ENOMEM, "out of memory");
			goto out;
		}
	}
	r = oci_chain_id(img->config.diff_ids, img->config.n_diff_ids, img->chain_id, err);
out:
	json_decref(j);
	if (r < 0)
		oci_image_free(img);
	return r;
}

int oci_image_record(struct cache *c, const struct oci_image *img, const char *ref,
		     struct sm_error *err)
{
	json_t *o = json_object();
	json_t *ls = json_array();
	for (size_t i = 0; i < img->n_layers; i++)
		json_array_append_new(ls, json_string(img->layers[i].digest));
	json_object_set_new(o, "ref", json_string(ref ? ref : ""));
	json_object_set_new(o, "manifest", json_string(img->manifest_digest));
	json_object_set_new(o, "config", json_string(img->config_digest));
	json_object_set_new(o, "layers", ls);
	json_object_set_new(o, "chain_id", json_string(img->chain_id));
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		return sm_error_set(err, ENOMEM, "out of memory");
	int r = cache_image_record(c, img->manifest_digest, s, err);
	free(s);
	return r;
}

int oci_pull(struct cache *c, const struct oci_ref *ref, const struct oci_pull_opts *opts,
	     struct oci_image *img, struct sm_error *err)
{
	struct oci_pull_opts def = {0};
	int r;
	if (!opts)
		opts = &def;
	switch (ref->kind) {
	case OCI_REF_LAYOUT:
		r = oci_layout_pull(c, ref, opts, img, err);
		break;
	case OCI_REF_DOCKER_ARCHIVE:
		r = oci_archive_pull(c, ref, opts, img, err);
		break;
	case OCI_REF_REGISTRY:
		r = oci_registry_pull(c, ref, opts, img, err);
		break;
	default:
		return sm_error_set(err, EINVAL, "unknown reference kind");
	}
	if (r < 0)
		return r;
	sm_autofree char *s = oci_ref_string(ref);
	r = oci_image_record(c, img, s, err);
	if (r < 0)
		oci_image_free(img);
	return r;
}

int oci_image_unpack(struct cache *c, const struct oci_image *img, const struct oci_unpack_opts *o,
		     char **rootfs, struct sm_error *err)
{
	const char *hex = img->chain_id + 7;
	char lockname[200];
	sm_autoclose int lfd = -1;
	int r;
	*rootfs = NULL;
	snprintf(lockname, sizeof(lockname), "rootfs-%s", hex);
	if ((r = cache_lock(c, lockname, &lfd, err)) < 0)
		return r;
	if ((r = cache_rootfs_path(c, img->chain_id, rootfs, err)) < 0)
		return r;
	if (cache_rootfs_has(c, img->chain_id))
		return 0;
	sm_autofree char *tmp = NULL;
	if ((r = cache_tmpdir(c, &tmp, err)) < 0)
		goto fail;
	int rootfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		r = sm_error_errno(err, errno, "cannot open %s", tmp);
		goto fail_tmp;
	}
	fchmod(rootfd, 0755);
	for (size_t i = 0; i < img->n_layers; i++) {
		sm_autofree char *bp = NULL;
		if ((r = cache_blob_path(c, img->layers[i].digest, &bp, err)) < 0)
			break;
		r = oci_layer_apply(rootfd, bp, img->config.diff_ids[i], o, err);
		if (r < 0) {
			sm_error_wrap(err, "layer %zu (%s)", i, img->layers[i].digest);
			break;
		}
	}
	close(rootfd);
	if (r < 0)
		goto fail_tmp;
	if ((r = cache_rootfs_commit(c, tmp, img->chain_id, err)) < 0)
		goto fail_tmp;
	return 0;
fail_tmp:
	cache_rm_rf_at(AT_FDCWD, tmp, NULL);
fail:
	free(*rootfs);
	*rootfs = NULL;
	return r;
}

/* ---- cloning a tree out of the cache --------------------------------------- */

static int copy_attrs(int sfd, int dfd, const char *name, struct sm_error *err)
{
	struct stat st;
	if (fstat(sfd, &st) < 0)
		return sm_error_errno(err, errno, "cannot stat %s", name);
	if (geteuid() == 0 && fchown(dfd, st.st_uid, st.st_gid) < 0)
		return sm_error_errno(err, errno, "cannot chown %s", name);
	char names[8192];
	ssize_t nl = flistxattr(sfd, names, sizeof(names));
	for (ssize_t off = 0; nl > 0 && off < nl; off += (ssize_t)strlen(names + off) + 1) {
		char val[8192];
		ssize_t vl = fgetxattr(sfd, names + off, val, sizeof(val));
		if (vl >= 0)
			(void)fsetxattr(dfd, names + off, val, (size_t)vl, 0);
	}
	if (fchmod(dfd, st.st_mode & 07777) < 0)
		return sm_error_errno(err, errno, "cannot chmod %s", name);
	struct timespec ts[2] = {st.st_atim, st.st_mtim};
	futimens(dfd, ts);
	return 0;
}

static int copy_file(int sdir, int ddir, const char *name, const struct stat *st,
		     struct sm_error *err)
{
	if (S_ISLNK(st->st_mode)) {
		char t[4096];
		ssize_t n = readlinkat(sdir, name, t, sizeof(t) - 1);
		if (n < 0)
			return sm_error_errno(err, errno, "cannot read link %s", name);
		t[n] = '\0';
		if (symlinkat(t, ddir, name) < 0)
			return sm_error_errno(err, errno, "cannot create symlink %s", name);
		if (geteuid() == 0)
			fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	if (!S_ISREG(st->st_mode)) {
		if (mknodat(ddir, name, st->st_mode, st->st_rdev) < 0)
			return sm_error_errno(err, errno, "cannot create node %s", name);
		if (geteuid() == 0)
			fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	sm_autoclose int s = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	sm_autoclose int d =
		openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (s < 0 || d < 0)
		return sm_error_errno(err, errno, "cannot copy %s", name);
	off_t left = st->st_size;
	while (left > 0) {
		ssize_t n = copy_file_range(s, NULL, d, NULL, (size_t)left, 0);
		if (n <= 0)
			return sm_error_errno(err, n < 0 ? errno : EIO, "cannot copy %s", name);
		left -= n;
	}
	return copy_attrs(s, d, name, err);
}

static int clone_dir(int sdir, int ddir, int *use_links, struct sm_error *err)
{
	int sfd2 = fcntl(sdir, F_DUPFD_CLOEXEC, 0);
	DIR *d = sfd2 >= 0 ? fdopendir(sfd2) : NULL;
	if (!d) {
		if (sfd2 >= 0)
			close(sfd2);
		return sm_error_errno(err, errno, "cannot read directory");
	}
	struct dirent *de;
	int r = 0;
	while (r == 0 && (de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		struct stat st;
		if (fstatat(sdir, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = sm_error_errno(err, errno, "cannot stat %s", n);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			if (mkdirat(ddir, n, 0700) < 0) {
				r = sm_error_errno(err, errno, "cannot create %s", n);
				break;
			}
			int s = openat(sdir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			int t = openat(ddir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (s < 0 || t < 0)
				r = sm_error_errno(err, errno, "cannot open %s", n);
			else if ((r = clone_dir(s, t, use_links, err)) == 0)
				r = copy_attrs(s, t, n, err);
			if (r < 0)
				sm_error_wrap(err, "%s", n);
			if (s >= 0)
				close(s);
			if (t >= 0)
				close(t);
			continue;
		}
		if (*use_links) {
			if (linkat(sdir, n, ddir, n, 0) == 0)
				continue;
			if (errno != EXDEV && errno != EPERM && errno != EMLINK) {
				r = sm_error_errno(err, errno, "cannot link %s", n);
				break;
			}
			if (errno == EXDEV)
				*use_links = 0;
		}
		r = copy_file(sdir, ddir, n, &st, err);
	}
	closedir(d);
	return r;
}

int oci_tree_clone(const char *src, const char *dest, struct sm_error *err)
{
	sm_autoclose int s = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s < 0)
		return sm_error_errno(err, errno, "cannot open %s", src);
	if (mkdir(dest, 0700) < 0 && errno != EEXIST)
		return sm_error_errno(err, errno, "cannot create %s", dest);
	sm_autoclose int d = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d < 0)
		return sm_error_errno(err, errno, "cannot open %s", dest);
	int dd = fcntl(d, F_DUPFD_CLOEXEC, 0);
	DIR *dir = dd >= 0 ? fdopendir(dd) : NULL;
	if (!dir)
		return sm_error_errno(err, errno, "cannot read %s", dest);
	struct dirent *de;
	int nonempty = 0;
	while ((de = readdir(dir)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			nonempty = 1;
	closedir(dir);
	if (nonempty)
		return sm_error_set(err, EEXIST, "%s exists and is not empty", dest);
	int use_links = 1;
	int r = clone_dir(s, d, &use_links, err);
	if (r == 0)
		r = copy_attrs(s, d, dest, err);
	if (r < 0)
		return sm_error_wrap(err, "cloning %s to %s", src, dest);
	return 0;
}

static int write_file_atomic(const char *path, const char *text, struct sm_error *err)
{
	char tmp[4200];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp))
		return sm_error_set(err, ENAMETOOLONG, "path too long: %.100s", path);
	sm_autoclose int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot create %s", tmp);
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
	    fchmod(fd, 0644) < 0 || rename(tmp, path) < 0) {
		int r = sm_error_errno(err, errno, "cannot write %s", path);
		unlink(tmp);
		return r;
	}
	return 0;
}

int oci_unpack_to(struct cache *c, const char *refstr, const char *dest,
		  const struct oci_pull_opts *opts, struct sm_error *err)
{
	struct oci_ref ref;
	struct oci_image img;
	char dbuf[4096];
	size_t dl = strlen(dest);
	while (dl > 1 && dest[dl - 1] == '/')
		dl--;
	if (dl == 0 || dl >= sizeof(dbuf))
		return sm_error_set(err, EINVAL, "bad output directory '%.100s'", dest);
	memcpy(dbuf, dest, dl);
	dbuf[dl] = '\0';
	dest = dbuf;
	int r = oci_ref_parse(refstr, &ref, err);
	if (r < 0)
		return r;
	r = oci_pull(c, &ref, opts, &img, err);
	oci_ref_free(&ref);
	if (r < 0)
		return r;
	sm_autofree char *rootfs = NULL;
	struct stat st;
	int existed = lstat(dest, &st) == 0;
	r = oci_image_unpack(c, &img, NULL, &rootfs, err);
	if (r == 0) {
		r = oci_tree_clone(rootfs, dest, err);
		if (r < 0 && !existed)
			cache_rm_rf_at(AT_FDCWD, dest, NULL); /* leave nothing half-made */
	}
	if (r == 0) {
		sm_autofree char *json = oci_config_to_json(&img.config);
		sm_autofree char *cpath = NULL;
		if (!json || asprintf(&cpath, "%s.config.json", dest) < 0) {
			cpath = NULL;
			r = sm_error_set(err, ENOMEM, "out of memory");
		} else {
			r = write_file_atomic(cpath, json, err);
		}
	}
	oci_image_free(&img);
	return r;
}
