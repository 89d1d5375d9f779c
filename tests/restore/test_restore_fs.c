/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshots with a virtio-fs root, without KVM: the vmstate probe accepts
 * the virtio-fs device flag only with a matching device count and a valid
 * virtio-fs record (and reports its DAX window); restore_run finds the root
 * directory in the metadata's "rootfs" (or restore_opts.rootfs) and refuses
 * a directory that is gone, or no directory at all, with one clear line
 * before anything else is set up. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "sm/format.h"
#include "sm/restore.h"
#include "sm/vm.h"

/* virtio-fs device record (docs/snapshot.md). */
#define FSREC_SIZE 96
#define FS_DEV	   2 /* rng, vsock, virtio-fs */

static char dir[] = "/tmp/sm-test-restore-fs-XXXXXX";
#define TEST_DIR dir
#include "vmstate_helper.h"

static void vmstate(uint8_t *b, uint32_t n_virtio, uint32_t flags)
{
	vmstate_build(b, 1, n_virtio, flags);
}

static void fs_record(uint8_t *b, uint64_t dax_len)
{
	memset(b, 0, FSREC_SIZE);
	put32(b, 0, 0x56445346u); /* "FSDV" */
	b[4] = VM_SNAP_VERSION;
	put32(b, 8, FSREC_SIZE);
	put32(b, 16, VIRTIO_FS_DEVICE_ID);
	put32(b, 20, 1);
	put64(b, 24, dax_len ? VM_DAX_WINDOW_GPA : 0);
	put64(b, 32, dax_len);
	put64(b, 40, 32);		/* FUSN length */
	put64(b, 48, dax_len ? 48 : 0); /* DAXS length */
	memcpy(b + 56, "rootfs", 6);
}

/* A snapshot with VMSTATE, an optional virtio-fs record, META and 1 MiB of memory. */
static void write_snap(const char *path, const uint8_t *vms, const uint8_t *fsrec, const char *meta)
{
	struct sm_error err = {0};
	struct fmt_writer *w = NULL;
	assert_int_equal(fmt_writer_create(&w, path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, meta, &err), 0);
	assert_int_equal(fmt_writer_add(w, FMT_SEC_VMSTATE, 0, 0, "vmstate", vms, VMST_SIZE, &err),
			 0);
	if (fsrec)
		assert_int_equal(fmt_writer_add(w, FMT_SEC_DEVICE, 0, FS_DEV, "virtio-fs", fsrec,
						FSREC_SIZE, &err),
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

static int probe(const char *path, struct vm_snapshot_info *info, struct sm_error *err)
{
	struct fmt_reader *r = NULL;
	assert_int_equal(fmt_reader_open(&r, path, err), 0);
	int ret = vm_snapshot_probe(r, info, err);
	fmt_reader_close(r);
	return ret;
}

static void test_probe_fs(void **state)
{
	(void)state;
	char path[128];
	snprintf(path, sizeof(path), "%s/p.snap", dir);
	uint8_t vms[VMST_SIZE], rec[FSREC_SIZE];
	struct vm_snapshot_info info;
	struct sm_error err = {0};

	vmstate(vms, 3, 7);
	fs_record(rec, 1ULL << 30);
	write_snap(path, vms, rec, "{}");
	assert_int_equal(probe(path, &info, &err), 0);
	assert_int_equal(info.has_fs, 1);
	assert_int_equal(info.fs_dax_len, 1ULL << 30);
	assert_int_equal(info.n_virtio, 3);

	fs_record(rec, 0);
	write_snap(path, vms, rec, "{}");
	assert_int_equal(probe(path, &info, &err), 0);
	assert_int_equal(info.has_fs, 1);
	assert_int_equal(info.fs_dax_len, 0);

	/* Without the flag there is no virtio-fs, whatever else is in the file. */
	vmstate(vms, 2, 3);
	write_snap(path, vms, rec, "{}");
	assert_int_equal(probe(path, &info, &err), 0);
	assert_int_equal(info.has_fs, 0);

	/* The flag with a wrong device count, an unknown flag. */
	vmstate(vms, 2, 7);
	write_snap(path, vms, rec, "{}");
	memset(&err, 0, sizeof(err));
	assert_int_equal(probe(path, &info, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "device set"));
	vmstate(vms, 3, 0xb);
	write_snap(path, vms, rec, "{}");
	memset(&err, 0, sizeof(err));
	assert_int_equal(probe(path, &info, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "device set"));

	/* The flag without its record, or with a bad one. */
	vmstate(vms, 3, 7);
	write_snap(path, vms, NULL, "{}");
	memset(&err, 0, sizeof(err));
	assert_int_equal(probe(path, &info, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "device"));
	fs_record(rec, 3ULL << 19); /* 1.5 MiB window */
	write_snap(path, vms, rec, "{}");
	memset(&err, 0, sizeof(err));
	assert_int_equal(probe(path, &info, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "bad DAX window"));
	unlink(path);
}

static int run_restore(const char *snap, const char *rootfs, struct sm_error *err)
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
		.rootfs = rootfs,
	};
	int status = -1;
	int r = restore_run(&o, &status, NULL, err);
	assert_int_equal(status, -1); /* never ran */
	return r;
}

static void test_restore_rootfs(void **state)
{
	(void)state;
	char path[128], root[128], meta[256];
	snprintf(path, sizeof(path), "%s/r.snap", dir);
	snprintf(root, sizeof(root), "%s/root", dir);
	uint8_t vms[VMST_SIZE], rec[FSREC_SIZE];
	vmstate(vms, 3, 7);
	fs_record(rec, 0);
	struct sm_error err = {0};

	/* The metadata names a directory that is gone. */
	snprintf(meta, sizeof(meta), "{\"rootfs\":\"%s\",\"dax_mib\":0}", root);
	write_snap(path, vms, rec, meta);
	assert_int_equal(run_restore(path, NULL, &err), -ENOENT);
	char want[512];
	snprintf(want, sizeof(want),
		 "snapshot %s needs its root filesystem %s, which is gone (was the cache "
		 "cleaned? run smbake again)",
		 path, root);
	assert_string_equal(err.msg, want);
	/* ... also when it is a file. */
	FILE *f = fopen(root, "w");
	assert_non_null(f);
	fclose(f);
	memset(&err, 0, sizeof(err));
	assert_int_equal(run_restore(path, NULL, &err), -ENOENT);
	assert_string_equal(err.msg, want);
	unlink(root);

	/* An override that is gone is named instead. */
	memset(&err, 0, sizeof(err));
	assert_int_equal(run_restore(path, "/nonexistent-sm-root", &err), -ENOENT);
	assert_non_null(strstr(err.msg, "root filesystem /nonexistent-sm-root, which is gone"));

	/* No "rootfs" in the metadata, or not a string. */
	write_snap(path, vms, rec, "{\"dax_mib\":0}");
	memset(&err, 0, sizeof(err));
	assert_int_equal(run_restore(path, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "names no \"rootfs\" directory"));
	write_snap(path, vms, rec, "{\"rootfs\":7}");
	memset(&err, 0, sizeof(err));
	assert_int_equal(run_restore(path, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "names no \"rootfs\" directory"));

	/* With the directory present the rootfs step passes: restore goes on
	 * to the memory image and the VM (which needs KVM, absent here, or
	 * fails on this fake snapshot's missing records). */
	assert_int_equal(mkdir(root, 0755), 0);
	snprintf(meta, sizeof(meta), "{\"rootfs\":\"%s\"}", root);
	write_snap(path, vms, rec, meta);
	memset(&err, 0, sizeof(err));
	assert_true(run_restore(path, NULL, &err) < 0);
	assert_null(strstr(err.msg, "root filesystem"));
	memset(&err, 0, sizeof(err));
	write_snap(path, vms, rec, "{}");
	assert_true(run_restore(path, root, &err) < 0); /* the override suffices */
	assert_null(strstr(err.msg, "root filesystem"));
	assert_null(strstr(err.msg, "rootfs"));
	rmdir(root);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_fs),
		cmocka_unit_test(test_restore_rootfs),
	};
	return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
