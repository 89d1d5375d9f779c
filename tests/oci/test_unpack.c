/* SPDX-License-Identifier: Apache-2.0 */
/* oci_layer_apply: formats, whiteouts, links, metadata, diff_id checks, and
 * hostile layers generated here; nothing may appear outside the root. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <cmocka.h>

#include "sm/oci.h"
#include "tests/oci/layers.h"

struct t {
	char base[256];	   /* temp dir */
	char root[300];	   /* base/root: the unpack target */
	char outside[300]; /* base/outside: must stay untouched */
	int rootfd;
	int n;
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	snprintf(t->base, sizeof(t->base), "/tmp/sm-unpack-XXXXXX");
	if (!mkdtemp(t->base))
		return -1;
	snprintf(t->root, sizeof(t->root), "%s/root", t->base);
	snprintf(t->outside, sizeof(t->outside), "%s/outside", t->base);
	mkdir(t->root, 0755);
	mkdir(t->outside, 0755);
	char p[400];
	snprintf(p, sizeof(p), "%s/sentinel", t->outside);
	FILE *f = fopen(p, "w");
	fputs("untouched\n", f);
	fclose(f);
	t->rootfd = open(t->root, O_RDONLY | O_DIRECTORY);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	close(t->rootfd);
	cache_rm_rf_at(AT_FDCWD, t->base, NULL);
	free(t);
	return 0;
}

static void new_layer(struct t *t, struct layer *l, const char *filter)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/layer%d", t->base, t->n++);
	layer_open(l, p, filter);
}

static char *slurp(const char *root, const char *rel)
{
	static char buf[4096];
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	FILE *f = fopen(p, "r");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int lstat_rel(const char *root, const char *rel, struct stat *st)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return lstat(p, st);
}

/* The base dir holds exactly root/, outside/ and our layer files, and
 * outside/ holds exactly the untouched sentinel. */
static void assert_contained(struct t *t)
{
	char p[400];
	struct stat st;
	assert_string_equal(slurp(t->outside, "sentinel"), "untouched\n");
	snprintf(p, sizeof(p), "%s/sentinel", t->outside);
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", t->outside);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "test -z \"$(ls -A '%s' | grep -v -e '^root$' -e '^outside$' -e '^layer')\"",
		 t->base);
	assert_int_equal(system(cmd), 0);
}

static void test_basic_tree(void **state)
{
	struct t *t = *state;
	struct layer l;
	char d[CACHE_DIGEST_MAX];
	struct sm_error err = {0};
	new_layer(t, &l, "none");
	layer_dir(&l, "etc", 0755);
	layer_file(&l, "etc/hosts", 0644, "127.0.0.1 localhost\n");
	layer_file(&l, "bin/tool", 04755, "#!/bin/sh\n"); /* parent dir implied */
	layer_symlink(&l, "bin/sh", "/bin/tool");
	layer_hardlink(&l, "bin/tool2", "bin/tool");
	layer_file(&l, "./dot/slash//name", 0600, "x");
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, "owned");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0640);
	archive_entry_set_uid(e, 1234);
	archive_entry_set_gid(e, 5678);
	archive_entry_set_mtime(e, 1500000000, 123);
	archive_entry_set_size(e, 3);
	archive_entry_xattr_add_entry(e, "user.sm_test", "val", 3);
	layer_entry(&l, e, "abc");
	archive_entry_free(e);
	e = archive_entry_new();
	archive_entry_set_pathname(e, "dev/null");
	archive_entry_set_filetype(e, AE_IFCHR);
	archive_entry_set_perm(e, 0666);
	archive_entry_set_rdev(e, makedev(1, 3));
	layer_entry(&l, e, NULL);
	archive_entry_free(e);
	e = archive_entry_new();
	archive_entry_set_pathname(e, "fifo");
	archive_entry_set_filetype(e, AE_IFIFO);
	archive_entry_set_perm(e, 0600);
	layer_entry(&l, e, NULL);
	archive_entry_free(e);
	layer_close(&l, d);
	if (oci_layer_apply(t->rootfd, l.path, d, NULL, &err) < 0)
		fail_msg("%s", err.msg);

	struct stat st, st2;
	assert_string_equal(slurp(t->root, "etc/hosts"), "127.0.0.1 localhost\n");
	assert_int_equal(lstat_rel(t->root, "bin/tool", &st), 0);
	assert_int_equal(st.st_mode & 07777, 04755);
	assert_int_equal(lstat_rel(t->root, "bin/tool2", &st2), 0);
	assert_int_equal(st.st_ino, st2.st_ino);
	assert_int_equal(st.st_nlink, 2);
	char target[100] = {0};
	char p[600];
	snprintf(p, sizeof(p), "%s/bin/sh", t->root);
	assert_int_equal(readlink(p, target, sizeof(target)), 9);
	assert_string_equal(target, "/bin/tool");
	assert_string_equal(slurp(t->root, "dot/slash/name"), "x");
	assert_int_equal(lstat_rel(t->root, "owned", &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_mtim.tv_sec, 1500000000);
	assert_int_equal(st.st_mtim.tv_nsec, 123);
	assert_int_equal(lstat_rel(t->root, "fifo", &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	if (geteuid() == 0) {
		assert_int_equal(lstat_rel(t->root, "owned", &st), 0);
		assert_int_equal(st.st_uid, 1234);
		assert_int_equal(st.st_gid, 5678);
		assert_int_equal(lstat_rel(t->root, "dev/null", &st), 0);
		assert_true(S_ISCHR(st.st_mode));
		assert_int_equal(st.st_rdev, makedev(1, 3));
	}
	/* user xattrs where the filesystem keeps them */
	char xv[16] = {0};
	snprintf(p, sizeof(p), "%s/owned", t->root);
	if (setxattr(p, "user.sm_probe", "1", 1, 0) == 0) {
		assert_int_equal(getxattr(p, "user.sm_test", xv, sizeof(xv)), 3);
		assert_memory_equal(xv, "val", 3);
	}
	assert_contained(t);
}

static void test_compressed_and_diff_id(void **state)
{
	struct t *t = *state;
	static const char *const filters[] = {"gzip", "zstd", "none"};
	for (int i = 0; i < 3; i++) {
		struct layer l;
		char d[CACHE_DIGEST_MAX], name[64];
		struct sm_error err = {0};
		new_layer(t, &l, filters[i]);
		snprintf(name, sizeof(name), "f-%s", filters[i]);
		layer_file(&l, name, 0644, filters[i]);
		layer_close(&l, d);
		if (oci_layer_apply(t->rootfd, l.path, d, NULL, &err) < 0)
			fail_msg("%s", err.msg);
		assert_string_equal(slurp(t->root, name), filters[i]);
		/* the same layer against a wrong diff_id is refused */
		char wrong[CACHE_DIGEST_MAX];
		snprintf(wrong, sizeof(wrong), "sha256:%064d", 0);
		assert_int_equal(oci_layer_apply(t->rootfd, l.path, wrong, NULL, &err), -EBADMSG);
		assert_non_null(strstr(err.msg, "diff_id"));
	}
}

static void test_whiteouts_and_replacement(void **state)
{
	struct t *t = *state;
	struct layer l;
	char d[CACHE_DIGEST_MAX];
	struct sm_error err = {0};
	new_layer(t, &l, "gzip");
	layer_file(&l, "a/keep", 0644, "keep");
	layer_file(&l, "a/gone", 0644, "gone");
	layer_file(&l, "b/old1", 0644, "1");
	layer_dir(&l, "b/olddir", 0755);
	layer_file(&l, "b/olddir/x", 0644, "x");
	layer_dir(&l, "d2f", 0755);
	layer_file(&l, "d2f/child", 0644, "c");
	layer_file(&l, "f2d", 0644, "file");
	layer_symlink(&l, "l2f", "a/keep");
	layer_close(&l, d);
	if (oci_layer_apply(t->rootfd, l.path, d, NULL, &err) < 0)
		fail_msg("%s", err.msg);

	new_layer(t, &l, "zstd");
	layer_file(&l, "a/.wh.gone", 0644, "");
	layer_file(&l, "b/new", 0644, "new"); /* before the opaque marker, same layer */
	layer_file(&l, "b/.wh..wh..opq", 0644, "");
	layer_file(&l, "d2f", 0600, "now a file");
	layer_file(&l, "f2d/inner", 0644, "now a dir");
	layer_file(&l, "l2f", 0644, "not a link");
	layer_file(&l, "nothere/.wh.ghost", 0644, ""); /* whiteout of nothing */
	layer_close(&l, d);
	if (oci_layer_apply(t->rootfd, l.path, d, NULL, &err) < 0)
		fail_msg("%s", err.msg);

	struct stat st;
	assert_string_equal(slurp(t->root, "a/keep"), "keep");
	assert_int_equal(lstat_rel(t->root, "a/gone", &st), -1);
	assert_int_equal(lstat_rel(t->root, "a/.wh.gone", &st), -1);
	assert_int_equal(lstat_rel(t->root, "b/old1", &st), -1);
	assert_int_equal(lstat_rel(t->root, "b/olddir", &st), -1);
	assert_int_equal(lstat_rel(t->root, "b/.wh..wh..opq", &st), -1);
	assert_string_equal(slurp(t->root, "b/new"), "new");
	assert_string_equal(slurp(t->root, "d2f"), "now a file");
	assert_int_equal(lstat_rel(t->root, "f2d", &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_string_equal(slurp(t->root, "f2d/inner"), "now a dir");
	assert_int_equal(lstat_rel(t->root, "l2f", &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_string_equal(slurp(t->root, "a/keep"), "keep"); /* not written through l2f */
	assert_int_equal(lstat_rel(t->root, "nothere/.wh.ghost", &st), -1);
}

static void test_empty_blob_is_empty_layer(void **state)
{
	struct t *t = *state;
	char p[400], d[CACHE_DIGEST_MAX];
	struct sm_error err = {0};
	snprintf(p, sizeof(p), "%s/layer-empty", t->base);
	close(open(p, O_WRONLY | O_CREAT, 0644));
	cache_digest_buf(CACHE_DIGEST_SHA256, "", 0, d, NULL);
	assert_int_equal(oci_layer_apply(t->rootfd, p, d, NULL, &err), 0);
}

static void test_garbage_and_xz_refused(void **state)
{
	struct t *t = *state;
	char p[400];
	struct sm_error err = {0};
	snprintf(p, sizeof(p), "%s/layer-xz", t->base);
	FILE *f = fopen(p, "w");
	fwrite("\xfd"
	       "7zXZ\0rest",
	       1, 10, f);
	fclose(f);
	assert_true(oci_layer_apply(t->rootfd, p, NULL, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "xz"));
	snprintf(p, sizeof(p), "%s/layer-garbage", t->base);
	f = fopen(p, "w");
	for (int i = 0; i < 2000; i++)
		fputc('A' + i % 26, f);
	fclose(f);
	assert_true(oci_layer_apply(t->rootfd, p, NULL, NULL, &err) < 0);
	assert_contained(t);
}

/* ---- hostile layers ------------------------------------------------------- */

static int apply_one(struct t *t, void (*build)(struct t *, struct layer *), struct sm_error *err)
{
	struct layer l;
	char d[CACHE_DIGEST_MAX];
	new_layer(t, &l, "none");
	build(t, &l);
	layer_close(&l, d);
	return oci_layer_apply(t->rootfd, l.path, d, NULL, err);
}

static void build_dotdot(struct t *t, struct layer *l)
{
	(void)t;
	layer_file(l, "../outside/pwned", 0644, "evil");
}
static void build_dotdot_deep(struct t *t, struct layer *l)
{
	(void)t;
	layer_file(l, "a/b/../../../outside/pwned", 0644, "evil");
}

static void test_dotdot_rejected(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	assert_int_equal(apply_one(t, build_dotdot, &err), -EPERM);
	assert_non_null(strstr(err.msg, "escapes the root"));
	assert_int_equal(apply_one(t, build_dotdot_deep, &err), -EPERM);
	assert_contained(t);
}

static char abs_name[400];
static void build_absolute(struct t *t, struct layer *l)
{
	(void)t;
	layer_file(l, abs_name, 0644, "contained");
}

static void test_absolute_names_contained(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	snprintf(abs_name, sizeof(abs_name), "%s/abs-pwned", t->outside);
	assert_int_equal(apply_one(t, build_absolute, &err), 0);
	/* written beneath the root instead, at the same relative path */
	assert_string_equal(slurp(t->root, abs_name + 1), "contained");
	assert_contained(t);
}

/* Without openat2 (old kernel, seccomp) symlinked parents are refused
 * instead of being resolved beneath the root: also contained. */
static int have_openat2(void)
{
	struct open_how how = {.flags = O_PATH | O_DIRECTORY, .resolve = RESOLVE_IN_ROOT};
	long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));
	if (fd < 0)
		return 0;
	close((int)fd);
	return 1;
}

static void build_symlink_escape(struct t *t, struct layer *l)
{
	char target[400];
	/* the link targets exist inside the root too, so resolution succeeds */
	layer_dir(l, "outside", 0755);
	layer_dir(l, t->outside + 1, 0755);
	layer_symlink(l, "rel", "../../../../../../outside");
	snprintf(target, sizeof(target), "%s", t->outside);
	layer_symlink(l, "abs", target);
	layer_file(l, "rel/pwned", 0644, "in root");
	layer_file(l, "abs/pwned", 0644, "in root too");
	layer_dir(l, "abs/newdir", 0755);
}

static void test_symlink_escape_contained(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	/* either contained (resolved as if the root were /) or refused */
	int r = apply_one(t, build_symlink_escape, &err);
	if (getenv("SM_TEST_VERBOSE"))
		fprintf(stderr, "symlink escape: r=%d %s\n", r, err.msg);
	if (r < 0 && have_openat2())
		fail_msg("%s", err.msg);
	if (r == 0) {
		assert_string_equal(slurp(t->root, "outside/pwned"), "in root");
		char rel[400];
		snprintf(rel, sizeof(rel), "%s/pwned", t->outside + 1);
		assert_string_equal(slurp(t->root, rel), "in root too");
	}
	assert_contained(t);
}

static void build_symlink_then_file(struct t *t, struct layer *l)
{
	char target[400];
	snprintf(target, sizeof(target), "%s/sentinel", t->outside);
	layer_symlink(l, "victim", target);
	layer_file(l, "victim", 0644, "replaced the link, not the target");
}

static void test_file_over_symlink_does_not_follow(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	assert_int_equal(apply_one(t, build_symlink_then_file, &err), 0);
	assert_string_equal(slurp(t->root, "victim"), "replaced the link, not the target");
	assert_contained(t);
}

static void build_hardlink_dotdot(struct t *t, struct layer *l)
{
	(void)t;
	layer_hardlink(l, "hl", "../outside/sentinel");
}
static void build_hardlink_abs(struct t *t, struct layer *l)
{
	char target[400];
	snprintf(target, sizeof(target), "%s/sentinel", t->outside);
	layer_hardlink(l, "hl", target);
}
static void build_hardlink_via_symlink(struct t *t, struct layer *l)
{
	layer_symlink(l, "esc", t->outside);
	layer_hardlink(l, "hl", "esc/sentinel");
}

static void test_hardlinks_outside_refused(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	assert_int_equal(apply_one(t, build_hardlink_dotdot, &err), -EPERM);
	assert_true(apply_one(t, build_hardlink_abs, &err) < 0);
	assert_true(apply_one(t, build_hardlink_via_symlink, &err) < 0);
	struct stat st;
	assert_int_equal(lstat_rel(t->root, "hl", &st), -1);
	assert_contained(t);
}

static void build_whiteout_through_symlink(struct t *t, struct layer *l)
{
	layer_symlink(l, "esc", t->outside);
	layer_file(l, "esc/.wh.sentinel", 0644, "");
	layer_file(l, "esc/.wh..wh..opq", 0644, "");
}

static void test_whiteout_through_symlink_contained(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	apply_one(t, build_whiteout_through_symlink, &err);
	assert_contained(t);
}

static void build_huge(struct t *t, struct layer *l)
{
	(void)t;
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, "huge");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, 1LL << 42); /* 4 TiB claimed */
	archive_entry_sparse_add_entry(e, 0, 4);
	archive_entry_sparse_add_entry(e, (1LL << 42) - 4, 4);
	layer_entry(l, e, NULL);
	archive_write_data(l->a, "headtail", 8);
	archive_entry_free(e);
}

static void test_huge_sparse_claim_refused(void **state)
{
	struct t *t = *state;
	struct sm_error err = {0};
	assert_int_equal(apply_one(t, build_huge, &err), -EFBIG);
	struct stat st;
	assert_int_equal(lstat_rel(t->root, "huge", &st), -1);
	/* a lower limit applies to ordinary files too */
	struct layer l;
	char d[CACHE_DIGEST_MAX];
	new_layer(t, &l, "none");
	layer_file(&l, "big", 0644, "0123456789");
	layer_close(&l, d);
	struct oci_unpack_opts o = {.max_file_size = 5};
	assert_int_equal(oci_layer_apply(t->rootfd, l.path, d, &o, &err), -EFBIG);
	assert_contained(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_basic_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compressed_and_diff_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_whiteouts_and_replacement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_blob_is_empty_layer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_and_xz_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dotdot_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absolute_names_contained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_escape_contained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_over_symlink_does_not_follow, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hardlinks_outside_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_whiteout_through_symlink_contained, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_huge_sparse_claim_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
