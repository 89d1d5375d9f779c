/* SPDX-License-Identifier: Apache-2.0 */
/* The snapshot cache without KVM: checking a cached snapshot, placing it at
 * the output path atomically (link, copy), /bin/sh detection in a root
 * filesystem, and bake_image's cache-hit path over a real OCI layout with a
 * fake snapshot made with the format writer. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sm/bake.h"
#include "sm/cache.h"
#include "sm/format.h"
#include "tests/oci/layers.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

#define KEY1 "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY2 "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sm-bake-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_in(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", tmpdir, name);
}

/* A small but complete snapshot: metadata with KEY, one opaque section and
 * 1 MiB of memory with a few non-zero pages. */
static void make_snapshot(const char *path, const char *key, int seed)
{
	struct sm_error err = {0};
	struct fmt_writer *w = NULL;
	char meta[300];
	snprintf(meta, sizeof(meta),
		 "{\"kind\":\"supermachine-snapshot\",\"bake_key\":\"%s\",\"seed\":%d}", key, seed);
	assert_int_equal(fmt_writer_create(&w, path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, meta, &err), 0);
	char blob[100];
	memset(blob, seed, sizeof(blob));
	assert_int_equal(fmt_writer_add(w, FMT_SEC_VCPU, 0, 0, "cpu0", blob, sizeof(blob), &err),
			 0);
	assert_int_equal(fmt_writer_mem_begin(w, 1 << 20, &err), 0);
	static unsigned char page[FMT_PAGE_SIZE];
	for (int i = 0; i < 256; i++) {
		if (i % 7 == 0) {
			memset(page, (seed + i) | 1, sizeof(page));
			assert_int_equal(fmt_writer_mem_write(w, page, sizeof(page), &err), 0);
		} else {
			assert_int_equal(fmt_writer_mem_skip(w, FMT_PAGE_SIZE, &err), 0);
		}
	}
	assert_int_equal(fmt_writer_mem_end(w, &err), 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	unsigned char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void assert_same_content(const char *a, const char *b)
{
	size_t la, lb;
	unsigned char *x = slurp(a, &la), *y = slurp(b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(x, y, la);
	free(x);
	free(y);
}

/* No ".NAME.smbake-*" temp file is left in DIR. */
static void assert_no_temp(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".smbake-"))
			fail_msg("temp file left behind: %s/%s", dir, e->d_name);
	closedir(d);
}

static void test_snapshot_check(void **state)
{
	(void)state;
	char p[200];
	const char *why = NULL;
	path_in(p, sizeof(p), "a.snap");
	assert_int_equal(bake_snapshot_check(p, KEY1, &why), 0);
	assert_string_equal(why, "not cached");
	make_snapshot(p, KEY1, 1);
	assert_int_equal(bake_snapshot_check(p, KEY1, &why), 1);
	assert_int_equal(bake_snapshot_check(p, KEY2, &why), 0);
	assert_string_equal(why, "cached snapshot has another bake key");

	/* A truncated file and a damaged section table are not used. */
	size_t len;
	unsigned char *buf = slurp(p, &len);
	char q[200];
	path_in(q, sizeof(q), "trunc.snap");
	FILE *f = fopen(q, "wb");
	assert_non_null(f);
	fwrite(buf, 1, len / 2, f);
	fclose(f);
	assert_int_equal(bake_snapshot_check(q, KEY1, &why), 0);
	assert_string_equal(why, "cached snapshot damaged");
	buf[len - 10] ^= 0x55; /* the table sits at the end */
	f = fopen(q, "wb");
	assert_non_null(f);
	fwrite(buf, 1, len, f);
	fclose(f);
	assert_int_equal(bake_snapshot_check(q, KEY1, &why), 0);
	free(buf);
	/* A snapshot without a bake key (smrun --snapshot-out) is not a hit. */
	struct sm_error err = {0};
	struct fmt_writer *w = NULL;
	path_in(q, sizeof(q), "nokey.snap");
	assert_int_equal(fmt_writer_create(&w, q, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{\"kind\":\"x\"}", &err), 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
	assert_int_equal(bake_snapshot_check(q, KEY1, &why), 0);
}

static void test_snapshot_path(void **state)
{
	(void)state;
	char root[200];
	path_in(root, sizeof(root), "cache");
	struct sm_error err = {0};
	struct cache *c = NULL;
	assert_int_equal(cache_open(root, &c, &err), 0);
	char *p = NULL;
	assert_int_equal(bake_snapshot_path(c, KEY1, &p, &err), 0);
	char want[300];
	snprintf(want, sizeof(want), "%s/snapshots/%s.snap", root, KEY1 + 7);
	assert_string_equal(p, want);
	free(p);
	struct stat st;
	snprintf(want, sizeof(want), "%s/snapshots", root);
	assert_int_equal(stat(want, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_true(bake_snapshot_path(c, "sha256:../../etc", &p, &err) < 0);
	assert_true(bake_snapshot_path(c, "md5:aa", &p, &err) < 0);
	cache_close(c);
}

static void test_publish_link_and_copy(void **state)
{
	(void)state;
	char src[200], dst[200], dst2[200];
	struct sm_error err = {0};
	enum bake_publish_how how;
	struct stat s1, s2;
	path_in(src, sizeof(src), "cached.snap");
	path_in(dst, sizeof(dst), "out.snap");
	path_in(dst2, sizeof(dst2), "copy.snap");
	make_snapshot(src, KEY1, 2);

	/* Same filesystem: a hardlink (or a reflink where the fs can). */
	assert_int_equal(bake_publish(src, dst, 0, &how, &err), 0);
	assert_true(how == BAKE_PUBLISH_LINK || how == BAKE_PUBLISH_CLONE);
	assert_same_content(src, dst);
	assert_int_equal(stat(src, &s1), 0);
	assert_int_equal(stat(dst, &s2), 0);
	if (how == BAKE_PUBLISH_LINK)
		assert_true(s1.st_ino == s2.st_ino);
	/* Again: already in place, nothing to do. */
	if (how == BAKE_PUBLISH_LINK) {
		assert_int_equal(bake_publish(src, dst, 0, &how, &err), 0);
		assert_int_equal(how, BAKE_PUBLISH_SAME);
	}

	/* no_link: an independent copy with the same bytes. */
	assert_int_equal(bake_publish(src, dst2, 1, &how, &err), 0);
	assert_true(how == BAKE_PUBLISH_COPY || how == BAKE_PUBLISH_CLONE);
	assert_same_content(src, dst2);
	assert_int_equal(stat(dst2, &s2), 0);
	assert_true(s1.st_ino != s2.st_ino);
	assert_int_equal(s2.st_mode & 0777, 0644);
	const char *why;
	assert_int_equal(bake_snapshot_check(dst2, KEY1, &why), 1);

	/* An existing different output is replaced atomically. */
	char other[200];
	path_in(other, sizeof(other), "other.snap");
	make_snapshot(other, KEY2, 3);
	assert_int_equal(bake_publish(other, dst2, 1, &how, &err), 0);
	assert_same_content(other, dst2);
	assert_int_equal(bake_snapshot_check(dst2, KEY2, &why), 1);
	assert_no_temp(tmpdir);

	/* A relative output path works (temp file in the current dir). */
	char cwd[300];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(tmpdir), 0);
	assert_int_equal(bake_publish(src, "rel.snap", 1, &how, &err), 0);
	assert_int_equal(chdir(cwd), 0);
	path_in(dst2, sizeof(dst2), "rel.snap");
	assert_same_content(src, dst2);
	assert_no_temp(tmpdir);
}

static void test_publish_cross_fs(void **state)
{
	(void)state;
	/* /dev/shm is a different filesystem from /tmp on most machines. */
	struct stat a, b;
	if (stat("/dev/shm", &a) < 0 || stat(tmpdir, &b) < 0 || a.st_dev == b.st_dev)
		skip();
	char shm[] = "/dev/shm/sm-bake-XXXXXX";
	if (!mkdtemp(shm))
		skip();
	char src[200], dst[200];
	snprintf(src, sizeof(src), "%s/cached.snap", shm);
	path_in(dst, sizeof(dst), "x.snap");
	make_snapshot(src, KEY1, 4);
	struct sm_error err = {0};
	enum bake_publish_how how;
	assert_int_equal(bake_publish(src, dst, 0, &how, &err), 0);
	assert_true(how == BAKE_PUBLISH_COPY || how == BAKE_PUBLISH_CLONE);
	assert_same_content(src, dst);
	assert_no_temp(tmpdir);
	unlink(src);
	rmdir(shm);
}

static void test_publish_failures_leave_nothing(void **state)
{
	(void)state;
	char src[200], dst[200], dir[200], missing[200];
	struct sm_error err = {0};
	path_in(src, sizeof(src), "f.snap");
	make_snapshot(src, KEY1, 5);

	/* Output is a directory. */
	path_in(dir, sizeof(dir), "adir");
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(bake_publish(src, dir, 0, NULL, &err), -EISDIR);
	assert_non_null(strstr(err.msg, "directory"));
	snprintf(dst, sizeof(dst), "%s/", dir);
	assert_int_equal(bake_publish(src, dst, 0, NULL, &err), -EISDIR);

	/* Output's directory does not exist. */
	path_in(dst, sizeof(dst), "nodir/out.snap");
	assert_true(bake_publish(src, dst, 0, NULL, &err) < 0);
	assert_int_equal(access(dst, F_OK), -1);

	/* The same checks up front, before any work (bake_image does them
	 * before pulling). */
	assert_int_equal(bake_publish_precheck(dir, &err), -EISDIR);
	path_in(dst, sizeof(dst), "nodir/out.snap");
	assert_int_equal(bake_publish_precheck(dst, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "nodir"));
	snprintf(dst, sizeof(dst), "%s/sub", src); /* a file as the directory */
	assert_int_equal(bake_publish_precheck(dst, &err), -ENOTDIR);
	path_in(dst, sizeof(dst), "fine.snap");
	assert_int_equal(bake_publish_precheck(dst, &err), 0);
	assert_int_equal(bake_publish_precheck("relative.snap", &err), 0);
	assert_int_equal(bake_publish_precheck("", &err), -EINVAL);

	/* Source missing: an existing output stays as it was. */
	path_in(dst, sizeof(dst), "keep.snap");
	make_snapshot(dst, KEY2, 6);
	size_t l1, l2;
	unsigned char *before = slurp(dst, &l1);
	path_in(missing, sizeof(missing), "missing.snap");
	assert_int_equal(bake_publish(missing, dst, 0, NULL, &err), -ENOENT);
	unsigned char *after = slurp(dst, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(before, after, l1);
	free(before);
	free(after);

	/* Read-only output directory (skipped as root, which may write anyway). */
	if (geteuid() != 0) {
		char ro[200];
		path_in(ro, sizeof(ro), "ro");
		assert_int_equal(mkdir(ro, 0555), 0);
		snprintf(dst, sizeof(dst), "%s/out.snap", ro);
		assert_int_equal(bake_publish(src, dst, 0, NULL, &err), -EACCES);
		assert_int_equal(access(dst, F_OK), -1);
		chmod(ro, 0755);
	}
	assert_no_temp(tmpdir);
}

static void mkfile(const char *root, const char *rel, mode_t mode)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "#!x\n", 4), 4);
	close(fd);
	assert_int_equal(chmod(p, mode), 0);
}

static void mklink(const char *root, const char *rel, const char *target)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	unlink(p);
	assert_int_equal(symlink(target, p), 0);
}

static void test_rootfs_has_exec(void **state)
{
	(void)state;
	char r[200], p[300];
	path_in(r, sizeof(r), "rootfs");
	assert_int_equal(mkdir(r, 0755), 0);
	assert_int_equal(bake_rootfs_has_exec(r, "bin/sh"), 0); /* no /bin at all */
	snprintf(p, sizeof(p), "%s/bin", r);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/usr", r);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/usr/bin", r);
	assert_int_equal(mkdir(p, 0755), 0);

	/* busybox style: an absolute symlink, resolved inside the root. */
	mkfile(r, "bin/busybox", 0755);
	mklink(r, "bin/sh", "/bin/busybox");
	assert_int_equal(bake_rootfs_has_exec(r, "bin/sh"), 1);
	assert_int_equal(bake_rootfs_has_exec(r, "/bin/sh"), 1);
	/* Debian style: a relative symlink to dash. */
	mkfile(r, "usr/bin/dash", 0755);
	mklink(r, "bin/sh", "../usr/bin/dash");
	assert_int_equal(bake_rootfs_has_exec(r, "bin/sh"), 1);
	/* Not executable, a directory, a dangling link. */
	mkfile(r, "usr/bin/dash", 0644);
	assert_int_equal(bake_rootfs_has_exec(r, "bin/sh"), 0);
	mklink(r, "bin/sh", "/usr");
	assert_int_equal(bake_rootfs_has_exec(r, "bin/sh"), 0);
	mklink(r, "bin/sh", "/nonexistent/sh");
	assert_int_equal(bake_rootfs_has_exec(r, "bin/sh"), 0);
	/* A link that climbs out of the root is clamped to it: /bin/sh of the
	 * host (which exists) must not count for the image. */
	mklink(r, "bin/sh", "../../../../../../../../bin/sh");
	assert_int_equal(bake_rootfs_has_exec(r, "bin/sh"), 0);
	mklink(r, "bin/sh", "/../../../../bin/busybox");
	assert_int_equal(bake_rootfs_has_exec(r, "bin/sh"), 1);
	/* The root itself missing. */
	path_in(p, sizeof(p), "no-such-root");
	assert_int_equal(bake_rootfs_has_exec(p, "bin/sh"), 0);
}

/* ---- bake_image over an OCI layout, cache hit without KVM ------------------------ */

static void put_blob(const char *layout, const void *data, size_t len,
		     char digest[CACHE_DIGEST_MAX])
{
	struct sm_error err = {0};
	assert_int_equal(cache_digest_buf(CACHE_DIGEST_SHA256, data, len, digest, &err), 0);
	char p[400];
	snprintf(p, sizeof(p), "%s/blobs/sha256/%s", layout, digest + 7);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* An OCI layout with one layer; WITH_SHELL puts an executable /bin/sh in. */
static void make_layout(const char *layout, int with_shell)
{
	char p[400], diff_id[CACHE_DIGEST_MAX], ldig[CACHE_DIGEST_MAX];
	char cdig[CACHE_DIGEST_MAX], mdig[CACHE_DIGEST_MAX];
	snprintf(p, sizeof(p), "mkdir -p '%s/blobs/sha256'", layout);
	assert_int_equal(system(p), 0);
	struct layer l;
	snprintf(p, sizeof(p), "%s/layer.tar", tmpdir);
	layer_open(&l, p, "gzip");
	layer_dir(&l, "bin", 0755);
	layer_dir(&l, "etc", 0755);
	layer_file(&l, "etc/os-release", 0644, "NAME=test\n");
	if (with_shell)
		layer_file(&l, "bin/sh", 0755, "#!fake shell\n");
	layer_close(&l, diff_id);
	size_t llen;
	unsigned char *lbytes = slurp(p, &llen);
	put_blob(layout, lbytes, llen, ldig);
	free(lbytes);
	unlink(p);

	char cfg[1024];
	int cl = snprintf(cfg, sizeof(cfg),
			  "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":"
			  "[\"PATH=/bin\",\"A=image\"],\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\"},"
			  "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
			  diff_id);
	put_blob(layout, cfg, (size_t)cl, cdig);
	char man[2048];
	int ml = snprintf(man, sizeof(man),
			  "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest."
			  "v1+json\",\"config\":{\"mediaType\":\"application/"
			  "vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%d},"
			  "\"layers\":[{\"mediaType\":\"application/"
			  "vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"%s\",\"size\":%zu}]}",
			  cdig, cl, ldig, llen);
	put_blob(layout, man, (size_t)ml, mdig);
	snprintf(p, sizeof(p), "%s/oci-layout", layout);
	FILE *f = fopen(p, "w");
	fputs("{\"imageLayoutVersion\":\"1.0.0\"}", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/index.json", layout);
	f = fopen(p, "w");
	fprintf(f,
		"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/"
		"vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":%d,"
		"\"annotations\":{\"org.opencontainers.image.ref.name\":\"latest\"}}]}",
		mdig, ml);
	fclose(f);
}

static void test_bake_image_cache_hit(void **state)
{
	(void)state;
	char layout[200], root[200], kernel[200], agent[200], out[200], ref[300];
	path_in(layout, sizeof(layout), "layout");
	path_in(root, sizeof(root), "cache");
	path_in(kernel, sizeof(kernel), "vmlinux");
	path_in(agent, sizeof(agent), "sminit");
	path_in(out, sizeof(out), "out.snap");
	make_layout(layout, 1);
	FILE *f = fopen(kernel, "w");
	fputs("not a kernel", f);
	fclose(f);
	f = fopen(agent, "w");
	fputs("not an agent", f);
	fclose(f);
	snprintf(ref, sizeof(ref), "oci:%s:latest", layout);

	struct sm_error err = {0};
	struct cache *c = NULL;
	assert_int_equal(cache_open(root, &c, &err), 0);
	const char *env[] = {"B=1"};
	struct bake_image_opts o = {
		.image = ref,
		.out_path = out,
		.kernel_path = kernel,
		.agent_path = agent,
		.mem_mib = 128,
		.env = env,
		.envc = 1,
		.warmup = "true",
		.console_fd = -1,
		.out_fd = -1,
		.err_fd = -1,
		.timeout_ms = 5000,
	};
	struct bake_image_result res;
	/* Cold: pulled and unpacked, then the bake itself fails (no KVM here,
	 * or a fake kernel where there is KVM): nothing at the output path. */
	assert_true(bake_image(c, &o, &res, &err) < 0);
	assert_int_equal(access(out, F_OK), -1);
	assert_int_equal(res.cache_hit, 0);
	assert_int_equal(cache_digest_parse(res.key, NULL, NULL, NULL), 0);
	assert_int_equal(cache_digest_parse(res.image_digest, NULL, NULL, NULL), 0);
	assert_int_equal(cache_rootfs_has(c, res.chain_id), 1);
	assert_int_equal(access(res.cached_path, F_OK), -1);
	char key[CACHE_DIGEST_MAX], cached[4096];
	snprintf(key, sizeof(key), "%s", res.key);
	snprintf(cached, sizeof(cached), "%s", res.cached_path);

	/* Put a (fake) baked snapshot with that key into the cache: now it is a
	 * hit, placed at the output without any VM. A temp file left by a bake
	 * of this key that was killed is cleaned up; another key's is not. */
	make_snapshot(cached, key, 7);
	char stale[4200], other_stale[4200];
	snprintf(stale, sizeof(stale), "%s", cached);
	char *sl = strrchr(stale, '/');
	snprintf(sl + 1, sizeof(stale) - (size_t)(sl + 1 - stale), ".%s.snap.tmp-Ab12Cd", key + 7);
	snprintf(other_stale, sizeof(other_stale), "%.*s/.%s.snap.tmp-Ab12Cd", (int)(sl - stale),
		 stale, KEY2 + 7);
	f = fopen(stale, "w");
	fclose(f);
	f = fopen(other_stale, "w");
	fclose(f);
	assert_int_equal(bake_image(c, &o, &res, &err), 0);
	assert_int_equal(res.cache_hit, 1);
	assert_string_equal(res.key, key);
	assert_int_equal(access(stale, F_OK), -1);
	assert_int_equal(access(other_stale, F_OK), 0);
	assert_same_content(cached, out);
	assert_true(res.boot_ms == 0 && res.capture_ms == 0 && res.write_ms == 0);
	assert_true(res.total_ms >= res.pull_ms);

	/* While another smbake of this key holds its lock, a second one waits
	 * (and then finds the entry). */
	{
		char lockname[80];
		int lfd = -1;
		snprintf(lockname, sizeof(lockname), "bake-%.64s", key + 7);
		assert_int_equal(cache_lock(c, lockname, &lfd, &err), 0);
		unlink(out);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(lfd);
			struct cache *c2 = NULL;
			struct bake_image_result r2;
			if (cache_open(root, &c2, &err) < 0 || bake_image(c2, &o, &r2, &err) < 0 ||
			    !r2.cache_hit)
				_exit(1);
			_exit(0);
		}
		struct timespec ts = {0, 400 * 1000000L};
		nanosleep(&ts, NULL);
		int st;
		assert_int_equal(waitpid(pid, &st, WNOHANG), 0); /* still waiting */
		assert_int_equal(access(out, F_OK), -1);
		close(lfd);
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		assert_same_content(cached, out);
	}

	/* A hit whose root filesystem was removed from the cache (gc) unpacks
	 * it again: the snapshot's recorded rootfs path must exist. */
	{
		char *rp = NULL;
		assert_int_equal(cache_rootfs_path(c, res.chain_id, &rp, &err), 0);
		assert_int_equal(cache_rm_rf_at(AT_FDCWD, rp, &err), 0);
		assert_int_equal(cache_rootfs_has(c, res.chain_id), 0);
		assert_int_equal(bake_image(c, &o, &res, &err), 0);
		assert_int_equal(res.cache_hit, 1);
		assert_int_equal(cache_rootfs_has(c, res.chain_id), 1);
		char sh[4200];
		snprintf(sh, sizeof(sh), "%s/bin/sh", rp);
		assert_int_equal(access(sh, X_OK), 0);
		free(rp);
	}

	/* Same inputs with the env in another order and a duplicate: same key. */
	const char *env2[] = {"B=0", "B=1"};
	o.env = env2;
	o.envc = 2;
	assert_int_equal(bake_image(c, &o, &res, &err), 0);
	assert_int_equal(res.cache_hit, 1);
	/* Another input: another key, a miss (which fails here), and the
	 * previous output is left as it was. */
	o.mem_mib = 256;
	assert_true(bake_image(c, &o, &res, &err) < 0);
	assert_string_not_equal(res.key, key);
	assert_int_equal(bake_snapshot_check(out, key, NULL), 1);
	o.mem_mib = 128;

	/* A cached snapshot whose metadata names another key is not used. */
	make_snapshot(cached, KEY2, 8);
	assert_true(bake_image(c, &o, &res, &err) < 0);
	assert_int_equal(res.cache_hit, 0);
	make_snapshot(cached, key, 9);

	/* --no-cache always bakes (and fails here), leaving the output alone. */
	o.no_cache = 1;
	char out2[200];
	path_in(out2, sizeof(out2), "out2.snap");
	o.out_path = out2;
	assert_true(bake_image(c, &o, &res, &err) < 0);
	assert_int_equal(access(out2, F_OK), -1);
	o.no_cache = 0;

	/* A changed kernel file is a different key (its digest is memoized by
	 * identity and mtime, so the change is seen). */
	sleep(0);
	f = fopen(kernel, "w");
	fputs("another kernel!", f);
	fclose(f);
	assert_true(bake_image(c, &o, &res, &err) < 0);
	assert_string_not_equal(res.key, key);
	assert_int_equal(access(out2, F_OK), -1);
	cache_close(c);
}

static void test_bake_image_no_shell(void **state)
{
	(void)state;
	char layout[200], root[200], kernel[200], out[200], ref[300];
	path_in(layout, sizeof(layout), "layout-noshell");
	path_in(root, sizeof(root), "cache2");
	path_in(kernel, sizeof(kernel), "vmlinux2");
	path_in(out, sizeof(out), "noshell.snap");
	make_layout(layout, 0);
	FILE *f = fopen(kernel, "w");
	fputs("not a kernel", f);
	fclose(f);
	snprintf(ref, sizeof(ref), "oci:%s", layout);
	struct sm_error err = {0};
	struct cache *c = NULL;
	assert_int_equal(cache_open(root, &c, &err), 0);
	struct bake_image_opts o = {
		.image = ref,
		.out_path = out,
		.kernel_path = kernel,
		.agent_path = kernel,
		.warmup = "echo hi",
		.console_fd = -1,
		.out_fd = -1,
		.err_fd = -1,
	};
	assert_int_equal(bake_image(c, &o, NULL, &err), -ENOENT);
	char want[400];
	snprintf(want, sizeof(want), "image %s has no /bin/sh; --warmup needs a shell", ref);
	assert_string_equal(err.msg, want);
	assert_int_equal(access(out, F_OK), -1);

	/* A missing kernel fails before anything is pulled. */
	char nok[200];
	path_in(nok, sizeof(nok), "no-kernel");
	o.kernel_path = nok;
	assert_true(bake_image(c, &o, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "guest kernel"));
	assert_non_null(strstr(err.msg, nok));
	/* An output directory that does not exist fails before the pull. */
	char bad_out[200];
	path_in(bad_out, sizeof(bad_out), "missing-dir/x.snap");
	o.out_path = bad_out;
	assert_int_equal(bake_image(c, &o, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing-dir"));
	o.out_path = out;
	/* A bad reference. */
	o.kernel_path = kernel;
	o.image = "oci:";
	assert_true(bake_image(c, &o, NULL, &err) < 0);
	assert_int_equal(access(out, F_OK), -1);
	cache_close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snapshot_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_link_and_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_cross_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_failures_leave_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rootfs_has_exec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bake_image_cache_hit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bake_image_no_shell, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
