/* SPDX-License-Identifier: Apache-2.0 */
/* Image reference parsing with Docker's defaults. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sm/oci.h"

#define D64 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void check(const char *in, const char *registry, const char *repo, const char *tag,
		  const char *digest, const char *canonical)
{
	struct oci_ref r;
	struct sm_error err = {0};
	int rc = oci_ref_parse(in, &r, &err);
	if (rc < 0)
		fail_msg("%s: %s", in, err.msg);
	assert_int_equal(r.kind, OCI_REF_REGISTRY);
	assert_string_equal(r.registry, registry);
	assert_string_equal(r.repository, repo);
	if (tag)
		assert_string_equal(r.tag, tag);
	else
		assert_null(r.tag);
	if (digest)
		assert_string_equal(r.digest, digest);
	else
		assert_null(r.digest);
	char *s = oci_ref_string(&r);
	assert_string_equal(s, canonical);
	free(s);
	oci_ref_free(&r);
}

static void test_docker_defaults(void **state)
{
	(void)state;
	check("busybox", "docker.io", "library/busybox", "latest", NULL,
	      "docker.io/library/busybox:latest");
	check("busybox:1.36", "docker.io", "library/busybox", "1.36", NULL,
	      "docker.io/library/busybox:1.36");
	check("user/app", "docker.io", "user/app", "latest", NULL, "docker.io/user/app:latest");
	check("docker.io/busybox", "docker.io", "library/busybox", "latest", NULL,
	      "docker.io/library/busybox:latest");
	check("index.docker.io/library/busybox:x", "docker.io", "library/busybox", "x", NULL,
	      "docker.io/library/busybox:x");
	check("docker://alpine:3", "docker.io", "library/alpine", "3", NULL,
	      "docker.io/library/alpine:3");
}

static void test_registries_and_digests(void **state)
{
	(void)state;
	check("127.0.0.1:5000/busybox:latest", "127.0.0.1:5000", "busybox", "latest", NULL,
	      "127.0.0.1:5000/busybox:latest");
	check("localhost/a/b/c", "localhost", "a/b/c", "latest", NULL, "localhost/a/b/c:latest");
	check("quay.io/org/img@" D64, "quay.io", "org/img", NULL, D64, "quay.io/org/img@" D64);
	check("ghcr.io/o/i:v1@" D64, "ghcr.io", "o/i", "v1", D64, "ghcr.io/o/i:v1@" D64);
	check("repo@" D64, "docker.io", "library/repo", NULL, D64, "docker.io/library/repo@" D64);
	check("my-reg.example:443/a__b/c.d-e:T_1.x", "my-reg.example:443", "a__b/c.d-e", "T_1.x",
	      NULL, "my-reg.example:443/a__b/c.d-e:T_1.x");
}

static void bad(const char *in, const char *needle)
{
	struct oci_ref r;
	struct sm_error err = {0};
	assert_int_equal(oci_ref_parse(in, &r, &err), -EINVAL);
	if (needle && !strstr(err.msg, needle))
		fail_msg("'%s': message '%s' lacks '%s'", in, err.msg, needle);
	assert_null(r.registry);
	assert_null(r.repository);
}

static void test_invalid(void **state)
{
	(void)state;
	bad("", "empty");
	bad("Busybox", "invalid repository");
	bad("busybox:", "invalid tag");
	bad("busybox:-x", "invalid tag");
	bad("busybox@sha256:abc", "malformed digest");
	bad("busybox@md5:0123456789abcdef0123456789abcdef", "unsupported digest");
	bad("a//b", "invalid repository");
	bad("a/b/", "invalid repository");
	bad("reg.io/", "empty");
	bad("oci:", "needs a DIR");
	bad("oci:/x:", "empty tag");
	bad("docker-archive:", "needs a FILE");
	bad("x/..", "invalid repository");
}

static void test_local_sources(void **state)
{
	(void)state;
	struct oci_ref r;
	struct sm_error err = {0};
	assert_int_equal(oci_ref_parse("oci:/tmp/layout:v2", &r, &err), 0);
	assert_int_equal(r.kind, OCI_REF_LAYOUT);
	assert_string_equal(r.path, "/tmp/layout");
	assert_string_equal(r.tag, "v2");
	oci_ref_free(&r);
	assert_int_equal(oci_ref_parse("oci:rel/dir", &r, &err), 0);
	assert_string_equal(r.path, "rel/dir");
	assert_null(r.tag);
	char *s = oci_ref_string(&r);
	assert_string_equal(s, "oci:rel/dir");
	free(s);
	oci_ref_free(&r);
	assert_int_equal(oci_ref_parse("docker-archive:/x/y:z.tar", &r, &err), 0);
	assert_int_equal(r.kind, OCI_REF_DOCKER_ARCHIVE);
	assert_string_equal(r.path, "/x/y:z.tar");
	oci_ref_free(&r);
}

static void test_digest_parse(void **state)
{
	(void)state;
	enum cache_digest_alg alg;
	const char *hex;
	assert_int_equal(cache_digest_parse(D64, &alg, &hex, NULL), 0);
	assert_int_equal(alg, CACHE_DIGEST_SHA256);
	assert_int_equal(strlen(hex), 64);
	char d512[200] = "sha512:";
	for (int i = 0; i < 128; i++)
		strcat(d512, "a");
	assert_int_equal(cache_digest_parse(d512, &alg, NULL, NULL), 0);
	assert_int_equal(alg, CACHE_DIGEST_SHA512);
	d512[20] = 'A';
	assert_true(cache_digest_parse(d512, NULL, NULL, NULL) < 0);
	assert_true(cache_digest_parse("sha256:", NULL, NULL, NULL) < 0);
	assert_true(cache_digest_parse(D64 "0", NULL, NULL, NULL) < 0);
	assert_true(cache_digest_parse(NULL, NULL, NULL, NULL) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_docker_defaults),
		cmocka_unit_test(test_registries_and_digests),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_local_sources),
		cmocka_unit_test(test_digest_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
