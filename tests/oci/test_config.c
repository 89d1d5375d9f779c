/* SPDX-License-Identifier: Apache-2.0 */
/* Image config → run config, JSON round trip, chain IDs, platforms, indexes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sm/oci.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static const char config_json[] =
	"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
	"\"Entrypoint\":[\"/docker-entrypoint.sh\"],\"Cmd\":[\"nginx\",\"-g\",\"daemon off;\"],"
	"\"Env\":[\"PATH=/usr/bin:/bin\",\"NGINX_VERSION=1.25\"],\"WorkingDir\":\"/srv\","
	"\"User\":\"101:101\",\"ExposedPorts\":{\"80/tcp\":{},\"443/tcp\":{}},"
	"\"StopSignal\":\"SIGQUIT\",\"Labels\":{\"a\":\"b\"}},"
	"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DA "\",\"" DB "\"]},"
	"\"history\":[]}";

static void test_parse_full(void **state)
{
	(void)state;
	struct oci_image_config c;
	struct sm_error err = {0};
	assert_int_equal(oci_config_parse(config_json, strlen(config_json), &c, &err), 0);
	assert_string_equal(c.entrypoint[0], "/docker-entrypoint.sh");
	assert_null(c.entrypoint[1]);
	assert_string_equal(c.cmd[2], "daemon off;");
	assert_string_equal(c.env[1], "NGINX_VERSION=1.25");
	assert_string_equal(c.working_dir, "/srv");
	assert_string_equal(c.user, "101:101");
	assert_string_equal(c.stop_signal, "SIGQUIT");
	assert_non_null(c.exposed_ports[1]);
	assert_string_equal(c.os, "linux");
	assert_string_equal(c.arch, "amd64");
	assert_int_equal(c.n_diff_ids, 2);
	assert_string_equal(c.diff_ids[1], DB);

	/* JSON round trip */
	char *j = oci_config_to_json(&c);
	assert_non_null(j);
	struct oci_image_config c2;
	assert_int_equal(oci_config_from_json(j, &c2, &err), 0);
	assert_string_equal(c2.cmd[1], "-g");
	assert_string_equal(c2.env[0], "PATH=/usr/bin:/bin");
	assert_string_equal(c2.working_dir, "/srv");
	assert_string_equal(c2.user, "101:101");
	assert_string_equal(c2.stop_signal, "SIGQUIT");
	assert_true((!strcmp(c2.exposed_ports[0], "80/tcp") &&
		     !strcmp(c2.exposed_ports[1], "443/tcp")) ||
		    (!strcmp(c2.exposed_ports[1], "80/tcp") &&
		     !strcmp(c2.exposed_ports[0], "443/tcp")));
	free(j);
	oci_config_free(&c2);
	oci_config_free(&c);
}

static void test_minimal_and_nulls(void **state)
{
	(void)state;
	static const char m[] = "{\"config\":{\"Cmd\":null},\"rootfs\":{\"type\":\"layers\","
				"\"diff_ids\":[]}}";
	struct oci_image_config c;
	assert_int_equal(oci_config_parse(m, strlen(m), &c, NULL), 0);
	assert_null(c.cmd);
	assert_null(c.entrypoint);
	assert_null(c.user);
	assert_int_equal(c.n_diff_ids, 0);
	char *j = oci_config_to_json(&c);
	assert_non_null(strstr(j, "\"Cmd\": null"));
	free(j);
	oci_config_free(&c);
}

static void bad(const char *json, const char *needle)
{
	struct oci_image_config c;
	struct sm_error err = {0};
	assert_true(oci_config_parse(json, strlen(json), &c, &err) < 0);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_invalid(void **state)
{
	(void)state;
	bad("{", "not valid JSON");
	bad("[]", "not a JSON object");
	bad("{\"config\":{}}", "no rootfs");
	bad("{\"rootfs\":{\"type\":\"zip\",\"diff_ids\":[]}}", "layers");
	bad("{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:xyz\"]}}", "diff_ids[0]");
	bad("{\"config\":{\"Cmd\":\"sh\"},\"rootfs\":{\"type\":\"layers\"}}", "Cmd is not");
	bad("{\"config\":{\"Env\":[1]},\"rootfs\":{\"type\":\"layers\"}}", "Env[0]");
	bad("{\"config\":{\"User\":5},\"rootfs\":{\"type\":\"layers\"}}", "User");
}

static void test_chain_id(void **state)
{
	(void)state;
	char out[CACHE_DIGEST_MAX], expect[CACHE_DIGEST_MAX];
	char da[] = DA, db[] = DB;
	char *one[] = {da};
	assert_int_equal(oci_chain_id(one, 1, out, NULL), 0);
	assert_string_equal(out, DA);
	char *two[] = {da, db};
	assert_int_equal(oci_chain_id(two, 2, out, NULL), 0);
	const char *s = DA " " DB;
	cache_digest_buf(CACHE_DIGEST_SHA256, s, strlen(s), expect, NULL);
	assert_string_equal(out, expect);
	/* known vector: sha256("a b") chains */
	char *three[] = {da, db, da};
	char prev[CACHE_DIGEST_MAX], buf[300];
	strcpy(prev, expect);
	snprintf(buf, sizeof(buf), "%s %s", prev, DA);
	cache_digest_buf(CACHE_DIGEST_SHA256, buf, strlen(buf), expect, NULL);
	assert_int_equal(oci_chain_id(three, 3, out, NULL), 0);
	assert_string_equal(out, expect);
}

static void test_platforms(void **state)
{
	(void)state;
	struct oci_platform p;
	assert_int_equal(oci_platform_parse("linux/arm64/v8", &p, NULL), 0);
	assert_string_equal(p.os, "linux");
	assert_string_equal(p.arch, "arm64");
	assert_string_equal(p.variant, "v8");
	assert_int_equal(oci_platform_parse("linux/amd64", &p, NULL), 0);
	assert_string_equal(p.variant, "");
	assert_true(oci_platform_parse("linux", &p, NULL) < 0);
	assert_true(oci_platform_parse("linux/", &p, NULL) < 0);
	assert_true(oci_platform_parse("/amd64", &p, NULL) < 0);
	assert_true(oci_platform_parse("a/b/c/d", &p, NULL) < 0);
	oci_platform_host(&p);
	assert_string_equal(p.os, "linux");
	assert_true(p.arch[0] != '\0');
}

static const char index_json[] =
	"{\"schemaVersion\":2,\"manifests\":["
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DA
	"\",\"size\":100,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\","
	"\"variant\":\"v7\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DB
	"\",\"size\":200,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DA
	"\",\"size\":50,\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}}]}";

static void test_index_select(void **state)
{
	(void)state;
	struct oci_platform p;
	struct sm_error err = {0};
	char *d = NULL;
	int64_t sz;
	oci_platform_parse("linux/amd64", &p, NULL);
	assert_int_equal(oci_index_select(index_json, strlen(index_json), &p, &d, &sz, &err), 0);
	assert_string_equal(d, DB);
	assert_int_equal(sz, 200);
	free(d);
	oci_platform_parse("linux/arm/v7", &p, NULL);
	assert_int_equal(oci_index_select(index_json, strlen(index_json), &p, &d, &sz, &err), 0);
	assert_string_equal(d, DA);
	free(d);
	oci_platform_parse("linux/arm/v6", &p, NULL);
	assert_int_equal(oci_index_select(index_json, strlen(index_json), &p, &d, &sz, &err),
			 -ENOENT);
	oci_platform_parse("linux/s390x", &p, NULL);
	assert_int_equal(oci_index_select(index_json, strlen(index_json), &p, &d, &sz, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "no manifest for platform linux/s390x"));
	assert_non_null(strstr(err.msg, "linux/arm/v7, linux/amd64"));
	assert_null(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_full), cmocka_unit_test(test_minimal_and_nulls),
		cmocka_unit_test(test_invalid),	   cmocka_unit_test(test_chain_id),
		cmocka_unit_test(test_platforms),  cmocka_unit_test(test_index_select),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
