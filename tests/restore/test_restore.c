/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshot state records are validated before anything reaches KVM: the
 * vmstate probe accepts exactly the record vm/snapshot.c writes and refuses
 * every damaged variant; restore_run refuses bad snapshots before it needs
 * /dev/kvm; the memory cache key follows the snapshot's content. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sm/format.h"
#include "sm/restore.h"
#include "sm/vm.h"

static char dir[] = "/tmp/sm-test-restore-XXXXXX";
#define TEST_DIR dir
#include "vmstate_helper.h"

static void good_vmstate(uint8_t *b)
{
	vmstate_build(b, 2, 2, 3); /* 2 vCPUs, rng + vsock */
}

/* Write a snapshot holding VMSTATE (LEN bytes) and 1 MiB of memory. */
static void write_snap(const char *path, const uint8_t *vmstate, size_t len, const char *meta)
{
	struct sm_error err = {0};
	struct fmt_writer *w = NULL;
	assert_int_equal(fmt_writer_create(&w, path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, meta, &err), 0);
	if (vmstate)
		assert_int_equal(fmt_writer_add(w, FMT_SEC_VMSTATE, FMT_SECF_ZSTD, 0, "vmstate",
						vmstate, len, &err),
				 0);
	static uint8_t page[4096];
	memset(page, 0x5a, sizeof(page));
	assert_int_equal(fmt_writer_mem_begin(w, 1 << 20, &err), 0);
	assert_int_equal(fmt_writer_mem_write(w, page, sizeof(page), &err), 0);
	assert_int_equal(fmt_writer_mem_skip(w, (1 << 20) - 4096, &err), 0);
	assert_int_equal(fmt_writer_mem_end(w, &err), 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
}

static int probe(const uint8_t *vmstate, size_t len, struct vm_snapshot_info *info,
		 struct sm_error *err)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/probe.snap", dir);
	write_snap(path, vmstate, len, "{\"kind\":\"test\"}");
	struct fmt_reader *r = NULL;
	assert_int_equal(fmt_reader_open(&r, path, err), 0);
	int ret = vm_snapshot_probe(r, info, err);
	fmt_reader_close(r);
	return ret;
}

static void test_probe_good(void **state)
{
	(void)state;
	uint8_t b[VMST_SIZE];
	good_vmstate(b);
	struct vm_snapshot_info info;
	struct sm_error err = {0};
	assert_int_equal(probe(b, sizeof(b), &info, &err), 0);
	assert_int_equal(info.mem_size, 256ULL << 20);
	assert_int_equal(info.ncpus, 2);
	assert_int_equal(info.has_rng, 1);
	assert_int_equal(info.has_vsock, 1);
	assert_int_equal(info.n_virtio, 2);
}

static void expect_bad(const uint8_t *b, size_t len, int want, const char *needle)
{
	struct vm_snapshot_info info;
	struct sm_error err = {0};
	int r = probe(b, len, &info, &err);
	if (r != -want || !strstr(err.msg, needle))
		fail_msg("want -%d with '%s', got %d: %s", want, needle, r, err.msg);
}

static void test_probe_bad(void **state)
{
	(void)state;
	uint8_t b[VMST_SIZE + 8];
	struct {
		size_t off;
		uint32_t val;
		int width;
		int want;
		const char *needle;
	} cases[] = {
		{0, 0x12345678, 4, EBADMSG, "bad magic"},
		{4, VM_SNAP_VERSION + 1, 2, ENOTSUP, "version"},
		{6, 1, 2, EBADMSG, "reserved"},
		{8, VMST_SIZE - 8, 4, EBADMSG, "size"},
		{12, 1, 4, EBADMSG, "reserved"},
		{OFF_MEM_SIZE, 12345, 4, EBADMSG, "memory size"},
		{OFF_MEM_SIZE + 4, 0x10, 4, EBADMSG, "memory size"}, /* 64 GiB + 256 MiB */
		{OFF_NCPUS, 0, 4, EBADMSG, "vCPU count"},
		{OFF_NCPUS, 65, 4, EBADMSG, "vCPU count"},
		{OFF_NVIRTIO, 3, 4, EBADMSG, "device set"},
		{OFF_NVIRTIO, 9, 4, EBADMSG, "device set"},
		{OFF_FLAGS, 4, 4, EBADMSG, "device set"},
		{OFF_RESERVED, 1, 4, EBADMSG, "reserved"},
		{OFF_RESERVED2, 1, 4, EBADMSG, "reserved"},
		{OFF_KBD_OUT_N, 9, 1, EBADMSG, "reserved"},
		{OFF_PIC_SLAVE, 2, 4, EBADMSG, "irqchip"},
		{OFF_IOAPIC, 0, 4, EBADMSG, "irqchip"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		good_vmstate(b);
		if (cases[i].width == 4)
			put32(b, cases[i].off, cases[i].val);
		else if (cases[i].width == 2)
			memcpy(b + cases[i].off, &(uint16_t){(uint16_t)cases[i].val}, 2);
		else
			b[cases[i].off] = (uint8_t)cases[i].val;
		expect_bad(b, VMST_SIZE, cases[i].want, cases[i].needle);
	}
	good_vmstate(b);
	expect_bad(b, VMST_SIZE - 1, EBADMSG, "bytes");
	expect_bad(b, VMST_SIZE + 8, EBADMSG, "bytes");
	expect_bad(b, 0, EBADMSG, "bytes");
}

static void test_probe_missing(void **state)
{
	(void)state;
	struct vm_snapshot_info info;
	struct sm_error err = {0};
	assert_int_equal(probe(NULL, 0, &info, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "vmstate"));
}

static int run_restore(const char *snap, struct sm_error *err)
{
	const char *argv[] = {"/bin/true"};
	struct restore_opts o = {
		.snapshot = snap,
		.cache_root = dir,
		.argv = argv,
		.argc = 1,
		.stdin_fd = -1,
		.stdout_fd = -1,
		.stderr_fd = -1,
		.console_fd = -1,
		.sig_fd = -1,
	};
	int status = -1;
	int r = restore_run(&o, &status, NULL, err);
	assert_int_equal(status, -1); /* never ran */
	return r;
}

static void test_restore_refuses(void **state)
{
	(void)state;
	struct sm_error err = {0};
	char path[128];
	/* Missing file. */
	snprintf(path, sizeof(path), "%s/nope.snap", dir);
	assert_int_equal(run_restore(path, &err), -ENOENT);
	assert_non_null(strstr(err.msg, path));
	/* Not a snapshot. */
	snprintf(path, sizeof(path), "%s/garbage.snap", dir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	for (int i = 0; i < 10000; i++)
		fputc(i * 7, f);
	fclose(f);
	assert_int_equal(run_restore(path, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "not a supermachine snapshot"));
	/* A snapshot without VM state (e.g. packed by smsnap). */
	snprintf(path, sizeof(path), "%s/nostate.snap", dir);
	write_snap(path, NULL, 0, "{}");
	assert_int_equal(run_restore(path, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "vmstate"));
	/* Damaged vCPU count. */
	uint8_t b[VMST_SIZE];
	good_vmstate(b);
	put32(b, OFF_NCPUS, 1000);
	snprintf(path, sizeof(path), "%s/badstate.snap", dir);
	write_snap(path, b, sizeof(b), "{}");
	assert_int_equal(run_restore(path, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "vCPU count"));
	/* No vsock: nothing to talk to. */
	good_vmstate(b);
	put32(b, OFF_NVIRTIO, 1);
	put32(b, OFF_FLAGS, 1);
	snprintf(path, sizeof(path), "%s/novsock.snap", dir);
	write_snap(path, b, sizeof(b), "{}");
	assert_int_equal(run_restore(path, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "vsock"));
	/* Nothing was cached for refused snapshots. */
	char mem[160];
	snprintf(mem, sizeof(mem), "%s/memory", dir);
	assert_int_not_equal(access(mem, F_OK), 0);
}

static void test_memory_key(void **state)
{
	(void)state;
	struct sm_error err = {0};
	uint8_t b[VMST_SIZE];
	good_vmstate(b);
	char p1[128], p2[128], p3[128];
	snprintf(p1, sizeof(p1), "%s/k1.snap", dir);
	snprintf(p2, sizeof(p2), "%s/k2.snap", dir);
	snprintf(p3, sizeof(p3), "%s/k3.snap", dir);
	write_snap(p1, b, sizeof(b), "{\"created\":\"a\"}");
	write_snap(p2, b, sizeof(b), "{\"created\":\"a\"}");
	write_snap(p3, b, sizeof(b), "{\"created\":\"b\"}");
	char *k[3];
	const char *paths[3] = {p1, p2, p3};
	for (int i = 0; i < 3; i++) {
		struct fmt_reader *r = NULL;
		assert_int_equal(fmt_reader_open(&r, paths[i], &err), 0);
		assert_int_equal(restore_memory_path(r, "/root", &k[i], &err), 0);
		fmt_reader_close(r);
		assert_int_equal(strncmp(k[i], "/root/memory/m1-", 16), 0);
	}
	assert_string_equal(k[0], k[1]);     /* same content, same image */
	assert_string_not_equal(k[0], k[2]); /* other bake, other image */
	for (int i = 0; i < 3; i++)
		free(k[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_good),    cmocka_unit_test(test_probe_bad),
		cmocka_unit_test(test_probe_missing), cmocka_unit_test(test_restore_refuses),
		cmocka_unit_test(test_memory_key),
	};
	return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
