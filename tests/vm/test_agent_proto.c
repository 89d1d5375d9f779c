/* SPDX-License-Identifier: Apache-2.0 */
/* The agent wire codec: round trips and hostile payloads. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sm/vm.h"

static void test_hdr_roundtrip(void **state)
{
	(void)state;
	uint8_t b[VM_AGENT_HDR_LEN];
	vm_agent_hdr_encode(b, VM_AGENT_STDOUT, 0x01020304, 77);
	/* little-endian on the wire */
	assert_int_equal(b[0], 77);
	assert_int_equal(b[4], VM_AGENT_STDOUT);
	assert_int_equal(b[8], 4);
	assert_int_equal(b[11], 1);
	struct vm_agent_hdr h;
	assert_int_equal(vm_agent_hdr_decode(b, &h), 0);
	assert_int_equal(h.len, 77);
	assert_int_equal(h.type, VM_AGENT_STDOUT);
	assert_int_equal(h.id, 0x01020304);
}

static void test_hdr_hostile(void **state)
{
	(void)state;
	uint8_t b[VM_AGENT_HDR_LEN];
	struct vm_agent_hdr h;
	vm_agent_hdr_encode(b, VM_AGENT_EXEC, 1, VM_AGENT_MAX_PAYLOAD + 1);
	assert_int_equal(vm_agent_hdr_decode(b, &h), -EPROTO);
	vm_agent_hdr_encode(b, 0, 1, 0);
	assert_int_equal(vm_agent_hdr_decode(b, &h), -EPROTO);
	vm_agent_hdr_encode(b, 99, 1, 0);
	assert_int_equal(vm_agent_hdr_decode(b, &h), -EPROTO);
	vm_agent_hdr_encode(b, VM_AGENT_STDIN, 1, 0);
	b[6] = 1; /* flags must be 0 */
	assert_int_equal(vm_agent_hdr_decode(b, &h), -EPROTO);
	memset(b, 0xff, sizeof(b));
	assert_int_equal(vm_agent_hdr_decode(b, &h), -EPROTO);
}

static void test_exec_roundtrip(void **state)
{
	(void)state;
	const char *argv[] = {"/bin/sh", "-c", "echo hello; exit 3", ""};
	const char *env[] = {"PATH=/bin", "A=b=c"};
	struct vm_agent_exec x = {.uid = 1000,
				  .gid = 100,
				  .flags = VM_AGENT_EXEC_STDIN,
				  .cwd = "/tmp",
				  .argv = argv,
				  .argc = 4,
				  .env = env,
				  .envc = 2};
	uint8_t *p;
	size_t len;
	assert_int_equal(vm_agent_exec_encode(&x, &p, &len), 0);
	struct vm_agent_exec y;
	assert_int_equal(vm_agent_exec_decode(p, len, &y), 0);
	assert_int_equal(y.uid, 1000);
	assert_int_equal(y.gid, 100);
	assert_int_equal(y.flags, VM_AGENT_EXEC_STDIN);
	assert_string_equal(y.cwd, "/tmp");
	assert_int_equal(y.argc, 4);
	for (int i = 0; i < 4; i++)
		assert_string_equal(y.argv[i], argv[i]);
	assert_null(y.argv[4]);
	assert_int_equal(y.envc, 2);
	assert_string_equal(y.env[1], "A=b=c");
	assert_null(y.env[2]);
	vm_agent_exec_free(&y);
	/* Every truncation of a valid payload is refused, never over-read. */
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *q = malloc(cut ? cut : 1);
		memcpy(q, p, cut);
		assert_int_equal(vm_agent_exec_decode(q, cut, &y), -EPROTO);
		free(q);
	}
	free(p);
}

static void test_exec_encode_refuses(void **state)
{
	(void)state;
	struct vm_agent_exec x = {0};
	uint8_t *p;
	size_t len;
	assert_int_equal(vm_agent_exec_encode(&x, &p, &len), -EINVAL);
	char *big = malloc(VM_AGENT_MAX_PAYLOAD + 1);
	memset(big, 'a', VM_AGENT_MAX_PAYLOAD);
	big[VM_AGENT_MAX_PAYLOAD] = 0;
	const char *argv[] = {big};
	x.argv = argv;
	x.argc = 1;
	assert_int_equal(vm_agent_exec_encode(&x, &p, &len), -E2BIG);
	free(big);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void test_exec_hostile(void **state)
{
	(void)state;
	uint8_t b[64];
	struct vm_agent_exec y;
	/* huge counts */
	memset(b, 0, sizeof(b));
	put32(b + 12, 0xffffffff);
	assert_int_equal(vm_agent_exec_decode(b, sizeof(b), &y), -EPROTO);
	put32(b + 12, 1);
	put32(b + 16, 0x7fffffff);
	assert_int_equal(vm_agent_exec_decode(b, sizeof(b), &y), -EPROTO);
	/* argc 0 */
	put32(b + 12, 0);
	put32(b + 16, 0);
	assert_int_equal(vm_agent_exec_decode(b, 21, &y), -EPROTO);
	/* strings without their NUL */
	put32(b + 12, 1);
	memcpy(b + 20, "/\0sh", 4); /* cwd "/" then "sh" unterminated */
	assert_int_equal(vm_agent_exec_decode(b, 24, &y), -EPROTO);
	/* trailing garbage after the last string */
	memcpy(b + 20, "/\0sh\0X", 6);
	assert_int_equal(vm_agent_exec_decode(b, 26, &y), -EPROTO);
	/* exactly right: accepted */
	assert_int_equal(vm_agent_exec_decode(b, 25, &y), 0);
	assert_string_equal(y.argv[0], "sh");
	vm_agent_exec_free(&y);
	/* empty argv[0] */
	memcpy(b + 20, "/\0\0", 3);
	assert_int_equal(vm_agent_exec_decode(b, 23, &y), -EPROTO);
	/* unknown flags */
	memcpy(b + 20, "/\0sh\0", 5);
	put32(b + 8, 0x80);
	assert_int_equal(vm_agent_exec_decode(b, 25, &y), -EPROTO);
	/* random garbage never crashes */
	srand(1);
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)(rand() % 64);
		for (size_t j = 0; j < len; j++)
			b[j] = (uint8_t)(rand() % 4 == 0 ? 0 : rand());
		if (len >= 20) {
			put32(b + 12, (uint32_t)(rand() % 4));
			put32(b + 16, (uint32_t)(rand() % 4));
			put32(b + 8, (uint32_t)(rand() % 2));
		}
		if (vm_agent_exec_decode(b, len, &y) == 0) {
			for (uint32_t k = 0; k < y.argc; k++)
				assert_true((const uint8_t *)y.argv[k] >= b &&
					    (const uint8_t *)y.argv[k] < b + len);
			vm_agent_exec_free(&y);
		}
	}
}

static void test_exit_codec(void **state)
{
	(void)state;
	uint8_t b[8];
	int s, c;
	vm_agent_exit_encode(b, 0, 3);
	assert_int_equal(vm_agent_exit_decode(b, 8, &s, &c), 0);
	assert_int_equal(s, 0);
	assert_int_equal(c, 3);
	vm_agent_exit_encode(b, 1, 9);
	assert_int_equal(vm_agent_exit_decode(b, 8, &s, &c), 0);
	assert_int_equal(s, 1);
	assert_int_equal(c, 9);
	assert_int_equal(vm_agent_exit_decode(b, 7, &s, &c), -EPROTO);
	vm_agent_exit_encode(b, 2, 0);
	assert_int_equal(vm_agent_exit_decode(b, 8, &s, &c), -EPROTO);
	vm_agent_exit_encode(b, 0, 256);
	assert_int_equal(vm_agent_exit_decode(b, 8, &s, &c), -EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_roundtrip),  cmocka_unit_test(test_hdr_hostile),
		cmocka_unit_test(test_exec_roundtrip), cmocka_unit_test(test_exec_encode_refuses),
		cmocka_unit_test(test_exec_hostile),   cmocka_unit_test(test_exit_codec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
