/* SPDX-License-Identifier: Apache-2.0 */
/* The bake key: stable for the same inputs, different when any input
 * changes; the memoized file digests. No KVM needed. */
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
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sm/bake.h"
#include "sm/cache.h"
#include "sm/version.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"

static struct bake_key_inputs base(void)
{
	return (struct bake_key_inputs){
		.manifest_digest = D1,
		.kernel_digest = D2,
		.agent_digest = D3,
		.mem_mib = 256,
		.ncpus = 1,
		.platform = "linux/amd64",
	};
}

static void key_of(const struct bake_key_inputs *in, char out[CACHE_DIGEST_MAX])
{
	struct sm_error err = {0};
	assert_int_equal(bake_key_compute(in, out, &err), 0);
	assert_int_equal(cache_digest_parse(out, NULL, NULL, NULL), 0);
	assert_memory_equal(out, "sha256:", 7);
}

static void test_key_stable(void **state)
{
	(void)state;
	struct bake_key_inputs in = base();
	char a[CACHE_DIGEST_MAX], b[CACHE_DIGEST_MAX];
	key_of(&in, a);
	key_of(&in, b);
	assert_string_equal(a, b);

	/* The key is the sha256 of the canonical text, which names every input. */
	struct sm_error err = {0};
	char *text = NULL, d[CACHE_DIGEST_MAX];
	assert_int_equal(bake_key_text(&in, &text, &err), 0);
	assert_int_equal(cache_digest_buf(CACHE_DIGEST_SHA256, text, strlen(text), d, &err), 0);
	assert_string_equal(a, d);
	assert_non_null(strstr(text, "manifest 71:" D1 "\n"));
	assert_non_null(strstr(text, "kernel 71:" D2 "\n"));
	assert_non_null(strstr(text, "agent 71:" D3 "\n"));
	assert_non_null(strstr(text, "memory_mib 256\n"));
	assert_non_null(strstr(text, "vcpus 1\n"));
	assert_non_null(strstr(text, "warmup none\n"));
	assert_non_null(strstr(text, "dax_mib 0\n"));
	assert_non_null(strstr(text, "platform 11:linux/amd64\n"));
	assert_non_null(strstr(text, "state_version "));
	assert_non_null(strstr(text, "format_version 1."));
	assert_non_null(strstr(text, "tool_version "));
	assert_non_null(strstr(text, SM_VERSION));
	free(text);

	/* Defaults: 0 MiB means 256 and 0 vCPUs means 1, as bake_run does. */
	in.mem_mib = 0;
	in.ncpus = 0;
	key_of(&in, b);
	assert_string_equal(a, b);
}

static void test_key_changes_with_each_input(void **state)
{
	(void)state;
	const char *env1[] = {"A=1"};
	const char *env2[] = {"A=2"};
	struct bake_key_inputs v[16];
	int n = 0;
	v[n++] = base();
	v[n] = base(), v[n++].manifest_digest = D4;
	v[n] = base(), v[n++].kernel_digest = D4;
	v[n] = base(), v[n++].agent_digest = D4;
	v[n] = base(), v[n++].mem_mib = 512;
	v[n] = base(), v[n++].ncpus = 2;
	v[n] = base(), v[n].env = env1, v[n++].envc = 1;
	v[n] = base(), v[n].env = env2, v[n++].envc = 1;
	v[n] = base(), v[n++].warmup = "";
	v[n] = base(), v[n++].warmup = "python3 -c 'import json'";
	v[n] = base(), v[n++].warmup = "none";
	v[n] = base(), v[n++].dax_mib = 1024;
	v[n] = base(), v[n++].platform = "linux/arm64/v8";
	/* A digest swap between fields is a different key, too. */
	v[n] = base(), v[n].kernel_digest = D3, v[n++].agent_digest = D2;
	char keys[16][CACHE_DIGEST_MAX];
	for (int i = 0; i < n; i++)
		key_of(&v[i], keys[i]);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++) {
			if (!strcmp(keys[i], keys[j]))
				fail_msg("inputs %d and %d give the same key %s", i, j, keys[i]);
		}
}

static void test_key_env_canonical(void **state)
{
	(void)state;
	const char *ab[] = {"A=1", "B=2"};
	const char *ba[] = {"B=2", "A=1"};
	const char *aab[] = {"A=0", "B=2", "A=1"};
	const char *a_only[] = {"A=1"};
	const char *eq[] = {"A=1=2", "B=2"};
	char k1[CACHE_DIGEST_MAX], k2[CACHE_DIGEST_MAX], k3[CACHE_DIGEST_MAX];
	char k4[CACHE_DIGEST_MAX], k5[CACHE_DIGEST_MAX];
	struct bake_key_inputs in = base();
	in.env = ab, in.envc = 2;
	key_of(&in, k1);
	in.env = ba;
	key_of(&in, k2);
	in.env = aab, in.envc = 3; /* the last A wins */
	key_of(&in, k3);
	in.env = a_only, in.envc = 1;
	key_of(&in, k4);
	in.env = eq, in.envc = 2; /* value with '=' in it */
	key_of(&in, k5);
	assert_string_equal(k1, k2);
	assert_string_equal(k1, k3);
	assert_string_not_equal(k1, k4);
	assert_string_not_equal(k1, k5);

	/* Values cannot forge other fields: the text is length-prefixed. */
	const char *sneaky[] = {"X=1\nwarmup 4:true"};
	struct sm_error err = {0};
	char *t1 = NULL;
	in = base();
	in.env = sneaky, in.envc = 1;
	char ks[CACHE_DIGEST_MAX], kw[CACHE_DIGEST_MAX];
	key_of(&in, ks);
	assert_int_equal(bake_key_text(&in, &t1, &err), 0);
	assert_non_null(strstr(t1, "env 17:X=1\nwarmup 4:true\n"));
	assert_non_null(strstr(t1, "warmup none\n"));
	free(t1);
	in = base();
	in.warmup = "true";
	key_of(&in, kw);
	assert_string_not_equal(ks, kw);
}

static void test_key_bad_inputs(void **state)
{
	(void)state;
	struct sm_error err = {0};
	char k[CACHE_DIGEST_MAX];
	struct bake_key_inputs in = base();
	in.manifest_digest = NULL;
	assert_int_equal(bake_key_compute(&in, k, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "manifest"));
	in = base();
	in.kernel_digest = "sha256:XYZ";
	assert_true(bake_key_compute(&in, k, &err) < 0);
	assert_non_null(strstr(err.msg, "kernel"));
	in = base();
	in.platform = "";
	assert_int_equal(bake_key_compute(&in, k, &err), -EINVAL);
	const char *bad[] = {"NOEQUALS"};
	in = base();
	in.env = bad, in.envc = 1;
	assert_int_equal(bake_key_compute(&in, k, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "NOEQUALS"));
	const char *bad2[] = {"=x"};
	in.env = bad2;
	assert_int_equal(bake_key_compute(&in, k, &err), -EINVAL);
}

/* ---- memoized file digests ----------------------------------------------------- */

static void write_file(const char *path, const char *data)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(data, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int count_memos(const char *root)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "exit $(ls '%s/bake/digests' 2>/dev/null | wc -l)", root);
	int st = system(cmd);
	return WEXITSTATUS(st);
}

static void test_file_digest_memo(void **state)
{
	(void)state;
	char dir[] = "/tmp/sm-bake-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char root[300], file[300], want[CACHE_DIGEST_MAX], got[CACHE_DIGEST_MAX];
	snprintf(root, sizeof(root), "%s/cache", dir);
	snprintf(file, sizeof(file), "%s/vmlinux", dir);
	struct sm_error err = {0};
	struct cache *c = NULL;
	assert_int_equal(cache_open(root, &c, &err), 0);

	write_file(file, "first kernel");
	assert_int_equal(cache_digest_file(CACHE_DIGEST_SHA256, file, want, NULL, &err), 0);
	assert_int_equal(bake_file_digest(c, file, got, &err), 0);
	assert_string_equal(got, want);
	assert_int_equal(count_memos(root), 1);

	/* A second call is answered from the memo, not by reading the file:
	 * plant a different (valid) digest in the memo and see it come back. */
	char cmd[900];
	snprintf(cmd, sizeof(cmd), "for f in '%s'/bake/digests/*; do echo '%s' > \"$f\"; done",
		 root, D4);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(bake_file_digest(c, file, got, &err), 0);
	assert_string_equal(got, D4);

	/* A damaged memo is ignored and replaced with the real digest. */
	snprintf(cmd, sizeof(cmd), "for f in '%s'/bake/digests/*; do echo garbage > \"$f\"; done",
		 root);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(bake_file_digest(c, file, got, &err), 0);
	assert_string_equal(got, want);
	assert_int_equal(bake_file_digest(c, file, got, &err), 0);
	assert_string_equal(got, want);

	/* A changed file (same size, new mtime) gets a fresh digest. */
	struct timespec ts = {0, 20 * 1000000L};
	nanosleep(&ts, NULL);
	write_file(file, "other kernel");
	char want2[CACHE_DIGEST_MAX];
	assert_int_equal(cache_digest_file(CACHE_DIGEST_SHA256, file, want2, NULL, &err), 0);
	assert_string_not_equal(want, want2);
	assert_int_equal(bake_file_digest(c, file, got, &err), 0);
	assert_string_equal(got, want2);
	assert_int_equal(count_memos(root), 2);

	/* Without a cache: plain digest. Errors name the file. */
	assert_int_equal(bake_file_digest(NULL, file, got, &err), 0);
	assert_string_equal(got, want2);
	char missing[320];
	snprintf(missing, sizeof(missing), "%s/none", dir);
	assert_int_equal(bake_file_digest(c, missing, got, &err), -ENOENT);
	assert_non_null(strstr(err.msg, missing));
	assert_int_equal(bake_file_digest(c, dir, got, &err), -EINVAL);

	cache_close(c);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_stable),
		cmocka_unit_test(test_key_changes_with_each_input),
		cmocka_unit_test(test_key_env_canonical),
		cmocka_unit_test(test_key_bad_inputs),
		cmocka_unit_test(test_file_digest_memo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
