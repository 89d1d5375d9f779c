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

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* A valid SYNC payload with ELEN entropy bytes (0xA5 ^ index) into B. */
static size_t sync_payload(uint8_t *b, int64_t sec, uint32_t nsec, uint32_t elen)
{
	uint8_t ent[VM_AGENT_SYNC_ENTROPY_MAX];
	for (uint32_t i = 0; i < sizeof(ent); i++)
		ent[i] = (uint8_t)(0xA5 ^ i);
	struct vm_agent_sync s = {.sec = sec, .nsec = nsec, .entropy = ent, .entropy_len = elen};
	size_t len = 0;
	assert_int_equal(
		vm_agent_sync_encode(&s, b, VM_AGENT_SYNC_FIXED + VM_AGENT_SYNC_ENTROPY_MAX, &len),
		0);
	assert_int_equal(len, VM_AGENT_SYNC_FIXED + elen);
	return len;
}

static void test_sync_roundtrip(void **state)
{
	(void)state;
	uint8_t b[VM_AGENT_SYNC_FIXED + VM_AGENT_SYNC_ENTROPY_MAX];
	uint32_t lens[] = {VM_AGENT_SYNC_ENTROPY_MIN, 64, VM_AGENT_SYNC_ENTROPY_MAX};
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		size_t len = sync_payload(b, 1764094493, 999999999, lens[k]);
		/* the wire layout of docs/agent-protocol.md, little-endian */
		assert_int_equal(b[0], VM_AGENT_SYNC_VERSION);
		assert_int_equal(b[4] | b[5] | b[6] | b[7], 0);
		uint64_t sec;
		memcpy(&sec, b + 8, 8);
		assert_int_equal(sec, 1764094493);
		uint32_t el;
		memcpy(&el, b + 20, 4);
		assert_int_equal(el, lens[k]);
		struct vm_agent_sync s;
		assert_int_equal(vm_agent_sync_decode(b, len, &s), 0);
		assert_int_equal(s.sec, 1764094493);
		assert_int_equal(s.nsec, 999999999);
		assert_int_equal(s.entropy_len, lens[k]);
		assert_ptr_equal(s.entropy, b + VM_AGENT_SYNC_FIXED);
		for (uint32_t i = 0; i < lens[k]; i++)
			assert_int_equal(s.entropy[i], (uint8_t)(0xA5 ^ i));
		/* Every truncation and every extension is refused. */
		for (size_t cut = 0; cut < len; cut++)
			assert_int_equal(vm_agent_sync_decode(b, cut, &s), -EPROTO);
		if (len < sizeof(b))
			assert_int_equal(vm_agent_sync_decode(b, len + 1, &s), -EPROTO);
	}
	/* the epoch itself is a valid time */
	size_t len = sync_payload(b, 0, 0, 32);
	struct vm_agent_sync s;
	assert_int_equal(vm_agent_sync_decode(b, len, &s), 0);
	assert_int_equal(s.sec, 0);
}

static void test_sync_encode_refuses(void **state)
{
	(void)state;
	uint8_t ent[VM_AGENT_SYNC_ENTROPY_MAX + 1] = {0};
	uint8_t b[VM_AGENT_SYNC_FIXED + VM_AGENT_SYNC_ENTROPY_MAX + 1];
	size_t len = 12345;
	struct vm_agent_sync s = {.sec = 1, .nsec = 0, .entropy = ent, .entropy_len = 31};
	assert_int_equal(vm_agent_sync_encode(&s, b, sizeof(b), &len), -EINVAL);
	s.entropy_len = VM_AGENT_SYNC_ENTROPY_MAX + 1;
	assert_int_equal(vm_agent_sync_encode(&s, b, sizeof(b), &len), -EINVAL);
	s.entropy_len = 32;
	s.sec = -1;
	assert_int_equal(vm_agent_sync_encode(&s, b, sizeof(b), &len), -EINVAL);
	s.sec = INT64_MAX;
	assert_int_equal(vm_agent_sync_encode(&s, b, sizeof(b), &len), -EINVAL);
	s.sec = 5;
	s.nsec = 1000000000;
	assert_int_equal(vm_agent_sync_encode(&s, b, sizeof(b), &len), -EINVAL);
	s.nsec = 0;
	s.entropy = NULL;
	assert_int_equal(vm_agent_sync_encode(&s, b, sizeof(b), &len), -EINVAL);
	s.entropy = ent;
	assert_int_equal(vm_agent_sync_encode(&s, b, VM_AGENT_SYNC_FIXED + 31, &len), -ENOSPC);
	assert_int_equal(len, 12345); /* untouched on failure */
	assert_int_equal(vm_agent_sync_encode(&s, b, VM_AGENT_SYNC_FIXED + 32, &len), 0);
	assert_int_equal(len, VM_AGENT_SYNC_FIXED + 32);
}

static void test_sync_hostile(void **state)
{
	(void)state;
	uint8_t b[VM_AGENT_SYNC_FIXED + VM_AGENT_SYNC_ENTROPY_MAX + 64];
	struct vm_agent_sync s;
	size_t len = sync_payload(b, 1000, 5, 64);
	assert_int_equal(vm_agent_sync_decode(b, len, &s), 0);
	/* unknown payload version */
	put32(b, 2);
	assert_int_equal(vm_agent_sync_decode(b, len, &s), -EPROTO);
	put32(b, 0);
	assert_int_equal(vm_agent_sync_decode(b, len, &s), -EPROTO);
	put32(b, VM_AGENT_SYNC_VERSION);
	/* any reserved flag */
	for (int bit = 0; bit < 32; bit++) {
		put32(b + 4, 1u << bit);
		assert_int_equal(vm_agent_sync_decode(b, len, &s), -EPROTO);
	}
	put32(b + 4, 0);
	/* negative or absurd seconds */
	put64(b + 8, (uint64_t)-1);
	assert_int_equal(vm_agent_sync_decode(b, len, &s), -EPROTO);
	put64(b + 8, UINT64_C(1) << 63);
	assert_int_equal(vm_agent_sync_decode(b, len, &s), -EPROTO);
	put64(b + 8, UINT64_C(253402300800)); /* year 10000 */
	assert_int_equal(vm_agent_sync_decode(b, len, &s), -EPROTO);
	put64(b + 8, 1000);
	/* nsec out of range */
	put32(b + 16, 1000000000);
	assert_int_equal(vm_agent_sync_decode(b, len, &s), -EPROTO);
	put32(b + 16, 0xffffffff);
	assert_int_equal(vm_agent_sync_decode(b, len, &s), -EPROTO);
	put32(b + 16, 5);
	assert_int_equal(vm_agent_sync_decode(b, len, &s), 0);
	/* entropy length disagreeing with the payload's size */
	uint32_t off_by[] = {63,	 65,	     0,
			     0xffffffff, 0x80000000, 0xffffffe8 /* + 24 wraps to 0 in 32 bits */};
	for (size_t i = 0; i < sizeof(off_by) / sizeof(off_by[0]); i++) {
		put32(b + 20, off_by[i]);
		assert_int_equal(vm_agent_sync_decode(b, len, &s), -EPROTO);
	}
	/* consistent but out of range */
	uint32_t out_of_range[] = {0, 1, 31, VM_AGENT_SYNC_ENTROPY_MAX + 1,
				   VM_AGENT_SYNC_ENTROPY_MAX + 40};
	for (size_t i = 0; i < sizeof(out_of_range) / sizeof(out_of_range[0]); i++) {
		put32(b + 20, out_of_range[i]);
		assert_int_equal(vm_agent_sync_decode(b, VM_AGENT_SYNC_FIXED + out_of_range[i], &s),
				 -EPROTO);
	}
	/* a 31-byte entropy block with a matching length is still too short */
	put32(b + 20, 31);
	assert_int_equal(vm_agent_sync_decode(b, VM_AGENT_SYNC_FIXED + 31, &s), -EPROTO);
	/* and 257 bytes too long, even when consistent */
	put32(b + 20, VM_AGENT_SYNC_ENTROPY_MAX + 1);
	assert_int_equal(
		vm_agent_sync_decode(b, VM_AGENT_SYNC_FIXED + VM_AGENT_SYNC_ENTROPY_MAX + 1, &s),
		-EPROTO);
	/* random garbage never crashes; anything accepted is consistent */
	srand(7);
	int accepted = 0;
	for (int i = 0; i < 50000; i++) {
		size_t l = (size_t)(rand() % (int)sizeof(b));
		for (size_t j = 0; j < l; j++)
			b[j] = (uint8_t)rand();
		if (l >= VM_AGENT_SYNC_FIXED && rand() % 2) {
			/* make it plausible so the later checks get exercised */
			put32(b, VM_AGENT_SYNC_VERSION);
			put32(b + 4, rand() % 8 ? 0 : 1);
			put64(b + 8, (uint64_t)(rand() % 4 ? rand() : -rand()));
			put32(b + 16, (uint32_t)(rand() % 4 ? rand() % 1000000000 : rand()));
			put32(b + 20,
			      (uint32_t)(l - VM_AGENT_SYNC_FIXED + (size_t)(rand() % 3) - 1));
		}
		if (vm_agent_sync_decode(b, l, &s) == 0) {
			accepted++;
			assert_true(s.sec >= 0);
			assert_true(s.nsec < 1000000000u);
			assert_true(s.entropy_len >= VM_AGENT_SYNC_ENTROPY_MIN &&
				    s.entropy_len <= VM_AGENT_SYNC_ENTROPY_MAX);
			assert_int_equal(VM_AGENT_SYNC_FIXED + s.entropy_len, l);
		} else {
			assert_null(s.entropy);
		}
	}
	assert_true(accepted > 0);
}

static void test_sync_ack_codec(void **state)
{
	(void)state;
	uint8_t b[VM_AGENT_SYNC_ACK_LEN + 1] = {0};
	int c = -1, e = -1, r = -1;
	vm_agent_sync_ack_encode(b, 0, 0, 0);
	assert_int_equal(vm_agent_sync_ack_decode(b, VM_AGENT_SYNC_ACK_LEN, &c, &e, &r), 0);
	assert_int_equal(c | e | r, 0);
	vm_agent_sync_ack_encode(b, EPERM, ENOTTY, EINVAL);
	assert_int_equal(b[0], EPERM);
	assert_int_equal(b[4], ENOTTY);
	assert_int_equal(b[8], EINVAL);
	assert_int_equal(vm_agent_sync_ack_decode(b, VM_AGENT_SYNC_ACK_LEN, &c, &e, &r), 0);
	assert_int_equal(c, EPERM);
	assert_int_equal(e, ENOTTY);
	assert_int_equal(r, EINVAL);
	for (size_t l = 0; l <= sizeof(b); l++)
		if (l != VM_AGENT_SYNC_ACK_LEN)
			assert_int_equal(vm_agent_sync_ack_decode(b, l, &c, &e, &r), -EPROTO);
	/* negative or huge "errno" values are not errno values */
	for (int f = 0; f < 3; f++) {
		vm_agent_sync_ack_encode(b, 0, 0, 0);
		put32(b + 4 * f, 0xffffffff);
		assert_int_equal(vm_agent_sync_ack_decode(b, VM_AGENT_SYNC_ACK_LEN, &c, &e, &r),
				 -EPROTO);
		put32(b + 4 * f, 4096);
		assert_int_equal(vm_agent_sync_ack_decode(b, VM_AGENT_SYNC_ACK_LEN, &c, &e, &r),
				 -EPROTO);
	}
}

static void test_hdr_sync_types(void **state)
{
	(void)state;
	uint8_t b[VM_AGENT_HDR_LEN];
	struct vm_agent_hdr h;
	vm_agent_hdr_encode(b, VM_AGENT_SYNC, 0, VM_AGENT_SYNC_FIXED + 64);
	assert_int_equal(vm_agent_hdr_decode(b, &h), 0);
	assert_int_equal(h.type, VM_AGENT_SYNC);
	vm_agent_hdr_encode(b, VM_AGENT_SYNC_ACK, 0, VM_AGENT_SYNC_ACK_LEN);
	assert_int_equal(vm_agent_hdr_decode(b, &h), 0);
	assert_int_equal(h.type, VM_AGENT_SYNC_ACK);
	vm_agent_hdr_encode(b, VM_AGENT_SYNC_ACK + 1, 0, 0);
	assert_int_equal(vm_agent_hdr_decode(b, &h), -EPROTO);
	assert_int_equal(VM_AGENT_PROTO_VERSION, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_roundtrip),  cmocka_unit_test(test_hdr_hostile),
		cmocka_unit_test(test_exec_roundtrip), cmocka_unit_test(test_exec_encode_refuses),
		cmocka_unit_test(test_exec_hostile),   cmocka_unit_test(test_exit_codec),
		cmocka_unit_test(test_sync_roundtrip), cmocka_unit_test(test_sync_encode_refuses),
		cmocka_unit_test(test_sync_hostile),   cmocka_unit_test(test_sync_ack_codec),
		cmocka_unit_test(test_hdr_sync_types),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
