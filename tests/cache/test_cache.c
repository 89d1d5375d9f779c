/* SPDX-License-Identifier: Apache-2.0 */
/* The content-addressed store: default root, verified blob writes, locks,
 * atomic rootfs commits and gc. */
#include <errno.h>
#include <fcntl.h>
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

#include "sm/cache.h"

struct t {
	char root[256];
	struct cache *c;
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	snprintf(t->root, sizeof(t->root), "/tmp/sm-cache-XXXXXX");
	if (!mkdtemp(t->root))
		return -1;
	struct sm_error err = {0};
	if (cache_open(t->root, &t->c, &err) < 0)
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	cache_close(t->c);
	cache_rm_rf_at(AT_FDCWD, t->root, NULL);
	free(t);
	return 0;
}

static int count_entries(const char *root, const char *sub)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "exit $(ls -A '%s/%s' | wc -l)", root, sub);
	return WEXITSTATUS(system(cmd));
}

static void put(struct cache *c, const char *data, char d[CACHE_DIGEST_MAX])
{
	struct cache_blob_writer w;
	struct sm_error err = {0};
	cache_digest_buf(CACHE_DIGEST_SHA256, data, strlen(data), d, NULL);
	assert_int_equal(cache_blob_begin(c, d, &w, &err), 0);
	assert_int_equal(cache_blob_write(&w, data, strlen(data), &err), 0);
	assert_int_equal(cache_blob_commit(&w, d, (int64_t)strlen(data), &err), 0);
}

static void test_default_root(void **state)
{
	(void)state;
	char *r = NULL;
	char *save_sm = getenv("SM_CACHE") ? strdup(getenv("SM_CACHE")) : NULL;
	setenv("SM_CACHE", "/x/sm", 1);
	assert_int_equal(cache_default_root(&r, NULL), 0);
	assert_string_equal(r, "/x/sm");
	free(r);
	unsetenv("SM_CACHE");
	setenv("XDG_CACHE_HOME", "/x/xdg", 1);
	assert_int_equal(cache_default_root(&r, NULL), 0);
	assert_string_equal(r, "/x/xdg/supermachine");
	free(r);
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", "/x/home", 1);
	assert_int_equal(cache_default_root(&r, NULL), 0);
	assert_string_equal(r, "/x/home/.cache/supermachine");
	free(r);
	if (save_sm)
		setenv("SM_CACHE", save_sm, 1);
	free(save_sm);
}

static void test_blob_roundtrip(void **state)
{
	struct t *t = *state;
	char d[CACHE_DIGEST_MAX];
	struct sm_error err = {0};
	put(t->c, "hello blob", d);
	assert_true(cache_blob_has(t->c, d, 10));
	assert_false(cache_blob_has(t->c, d, 11));
	char *buf;
	size_t len;
	assert_int_equal(cache_blob_read(t->c, d, 100, &buf, &len, &err), 0);
	assert_int_equal(len, 10);
	assert_string_equal(buf, "hello blob");
	free(buf);
	assert_int_equal(cache_blob_read(t->c, d, 5, &buf, &len, &err), -EFBIG);
	assert_int_equal(count_entries(t->root, "tmp"), 0);

	/* sha512 blobs live under blobs/sha512 */
	char d5[CACHE_DIGEST_MAX];
	struct cache_blob_writer w;
	cache_digest_buf(CACHE_DIGEST_SHA512, "x", 1, d5, NULL);
	assert_int_equal(cache_blob_begin(t->c, d5, &w, &err), 0);
	assert_int_equal(cache_blob_write(&w, "x", 1, &err), 0);
	assert_int_equal(cache_blob_commit(&w, d5, 1, &err), 0);
	assert_int_equal(count_entries(t->root, "blobs/sha512"), 1);
}

static void test_mismatch_leaves_nothing(void **state)
{
	struct t *t = *state;
	char d[CACHE_DIGEST_MAX];
	struct sm_error err = {0};
	struct cache_blob_writer w;
	cache_digest_buf(CACHE_DIGEST_SHA256, "expected", 8, d, NULL);
	assert_int_equal(cache_blob_begin(t->c, d, &w, &err), 0);
	assert_int_equal(cache_blob_write(&w, "tampered", 8, &err), 0);
	assert_int_equal(cache_blob_commit(&w, d, 8, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "digest mismatch"));
	assert_false(cache_blob_has(t->c, d, -1));
	assert_int_equal(count_entries(t->root, "blobs/sha256"), 0);
	assert_int_equal(count_entries(t->root, "tmp"), 0);

	/* right bytes, wrong declared size */
	assert_int_equal(cache_blob_begin(t->c, d, &w, &err), 0);
	assert_int_equal(cache_blob_write(&w, "expected", 8, &err), 0);
	assert_int_equal(cache_blob_commit(&w, d, 9, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "size mismatch"));
	assert_int_equal(count_entries(t->root, "blobs/sha256"), 0);

	/* restart discards what was written */
	assert_int_equal(cache_blob_begin(t->c, d, &w, &err), 0);
	assert_int_equal(cache_blob_write(&w, "garbage", 7, &err), 0);
	assert_int_equal(cache_blob_restart(&w, &err), 0);
	assert_int_equal(cache_blob_write(&w, "expected", 8, &err), 0);
	assert_int_equal(cache_blob_commit(&w, d, 8, &err), 0);
	assert_true(cache_blob_has(t->c, d, 8));
}

static void test_import_and_corruption(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	char src[400], d[CACHE_DIGEST_MAX], wrong[CACHE_DIGEST_MAX];
	snprintf(src, sizeof(src), "%s/src", t->root);
	FILE *f = fopen(src, "w");
	fputs("import me", f);
	fclose(f);
	uint64_t sz;
	assert_int_equal(cache_digest_file(CACHE_DIGEST_SHA256, src, d, &sz, &err), 0);
	assert_int_equal(sz, 9);
	cache_digest_buf(CACHE_DIGEST_SHA256, "other", 5, wrong, NULL);
	assert_int_equal(cache_blob_import(t->c, src, wrong, -1, &err), -EBADMSG);
	assert_int_equal(cache_blob_import(t->c, src, d, 8, &err), -EBADMSG);
	assert_int_equal(count_entries(t->root, "blobs/sha256"), 0);
	assert_int_equal(cache_blob_import(t->c, src, d, 9, &err), 0);
	assert_true(cache_blob_has(t->c, d, 9));
	/* a blob corrupted on disk is caught when read back */
	char *p;
	assert_int_equal(cache_blob_path(t->c, d, &p, &err), 0);
	chmod(p, 0644);
	f = fopen(p, "w");
	fputs("IMPORT ME", f);
	fclose(f);
	char *buf;
	size_t len;
	assert_int_equal(cache_blob_read(t->c, d, 100, &buf, &len, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "corrupt"));
	free(p);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_lock_serialises(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	int fd, pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct cache *c2;
		if (cache_open(t->root, &c2, NULL) < 0 || cache_lock(c2, "x", &fd, NULL) < 0)
			_exit(1);
		if (write(pipefd[1], "L", 1) != 1)
			_exit(1);
		usleep(300000);
		close(fd);
		_exit(0);
	}
	char ch;
	assert_int_equal(read(pipefd[0], &ch, 1), 1);
	double t0 = now();
	assert_int_equal(cache_lock(t->c, "x", &fd, &err), 0);
	assert_true(now() - t0 > 0.2); /* waited for the child to let go */
	close(fd);
	int st;
	waitpid(pid, &st, 0);
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(cache_lock(t->c, "../x", &fd, &err), -EINVAL);
	close(pipefd[0]);
	close(pipefd[1]);
}

static void test_rootfs_commit_race(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	char chain[CACHE_DIGEST_MAX], p[600];
	cache_digest_buf(CACHE_DIGEST_SHA256, "chain", 5, chain, NULL);
	char *a, *b, *final;
	assert_int_equal(cache_tmpdir(t->c, &a, &err), 0);
	assert_int_equal(cache_tmpdir(t->c, &b, &err), 0);
	snprintf(p, sizeof(p), "%s/first", a);
	close(open(p, O_CREAT | O_WRONLY, 0644));
	snprintf(p, sizeof(p), "%s/second", b);
	close(open(p, O_CREAT | O_WRONLY, 0644));
	assert_false(cache_rootfs_has(t->c, chain));
	assert_int_equal(cache_rootfs_commit(t->c, a, chain, &err), 0);
	assert_int_equal(cache_rootfs_commit(t->c, b, chain, &err), 0);
	assert_true(cache_rootfs_has(t->c, chain));
	assert_int_equal(cache_rootfs_path(t->c, chain, &final, &err), 0);
	snprintf(p, sizeof(p), "%s/first", final);
	assert_int_equal(access(p, F_OK), 0);
	assert_int_equal(count_entries(t->root, "tmp"), 0);
	free(a);
	free(b);
	free(final);
}

static void test_gc(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	char keep[CACHE_DIGEST_MAX], drop[CACHE_DIGEST_MAX], man[CACHE_DIGEST_MAX];
	char kchain[CACHE_DIGEST_MAX], dchain[CACHE_DIGEST_MAX];
	put(t->c, "kept layer", keep);
	put(t->c, "dropped layer", drop);
	put(t->c, "manifest", man);
	cache_digest_buf(CACHE_DIGEST_SHA256, "kc", 2, kchain, NULL);
	cache_digest_buf(CACHE_DIGEST_SHA256, "dc", 2, dchain, NULL);
	char *tmp;
	assert_int_equal(cache_tmpdir(t->c, &tmp, &err), 0);
	assert_int_equal(cache_rootfs_commit(t->c, tmp, kchain, &err), 0);
	free(tmp);
	assert_int_equal(cache_tmpdir(t->c, &tmp, &err), 0);
	assert_int_equal(cache_rootfs_commit(t->c, tmp, dchain, &err), 0);
	free(tmp);
	assert_int_equal(cache_tmpdir(t->c, &tmp, &err), 0); /* a leftover */
	free(tmp);
	char json[1024];
	snprintf(json, sizeof(json),
		 "{\"manifest\":\"%s\",\"config\":\"%s\",\"layers\":[\"%s\"],\"chain_id\":\"%s\"}",
		 man, keep, keep, kchain);
	assert_int_equal(cache_image_record(t->c, man, json, &err), 0);
	struct cache_gc_stats st;
	assert_int_equal(cache_gc(t->c, &st, &err), 0);
	assert_int_equal(st.blobs_removed, 1);
	assert_int_equal(st.blobs_kept, 2);
	assert_int_equal(st.rootfs_removed, 1);
	assert_int_equal(st.rootfs_kept, 1);
	assert_int_equal(st.tmp_removed, 1);
	assert_true(cache_blob_has(t->c, keep, -1));
	assert_true(cache_blob_has(t->c, man, -1));
	assert_false(cache_blob_has(t->c, drop, -1));
	assert_true(cache_rootfs_has(t->c, kchain));
	assert_false(cache_rootfs_has(t->c, dchain));
	/* gc waits for other users: a second handle holds the shared lock */
	pid_t pid = fork();
	if (pid == 0) {
		struct cache *c2;
		if (cache_open(t->root, &c2, NULL) < 0)
			_exit(1);
		usleep(300000);
		cache_close(c2);
		_exit(0);
	}
	usleep(100000);
	double t0 = now();
	assert_int_equal(cache_gc(t->c, &st, &err), 0);
	assert_true(now() - t0 > 0.1);
	int ws;
	waitpid(pid, &ws, 0);
	assert_int_equal(WEXITSTATUS(ws), 0);
}

static void test_rm_rf(void **state)
{
	struct t *t = *state;
	char cmd[4096], p[300];
	snprintf(p, sizeof(p), "%s/tree", t->root);
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p %s/a/b/c && touch %s/a/b/c/f && chmod 0 %s/a/b && "
		 "ln -s /etc %s/a/etclink && mkdir %s/victim && touch %s/victim/keep && "
		 "ln -s %s/victim %s/a/vl",
		 p, p, p, p, t->root, t->root, t->root, p);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(cache_rm_rf_at(AT_FDCWD, p, NULL), 0);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/victim/keep", t->root);
	assert_int_equal(access(p, F_OK), 0); /* symlinks were not followed */
	assert_int_equal(cache_rm_rf_at(AT_FDCWD, "/nonexistent/sm", NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_root),
		cmocka_unit_test_setup_teardown(test_blob_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mismatch_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_and_corruption, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_serialises, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rootfs_commit_race, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rm_rf, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
