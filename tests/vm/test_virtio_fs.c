/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-fs without KVM: a fake guest driver talks FUSE over the device's
 * queues (config space, SHM region registers, INIT/LOOKUP/OPEN/READ,
 * SETUPMAPPING/REMOVEMAPPING into a host-only DAX window, hostile chains),
 * and the DAX fault path: a window restored from a snapshot is re-mapped by
 * the first guest access (the MMIO exit handler), with the right bytes. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fuse/fuse_abi.h"
#include "sm/fuse.h"
#include "tests/vm/mmio_helper.h"

#define Q0_BASE	  0x10000
#define Q1_BASE	  0x20000
#define REQ_GPA	  0x40000
#define REPLY_GPA 0x80000
#define DAX_GPA	  0x1000000000ULL
#define DAX_LEN	  (16ull << 20)
#define FILE_LEN  (3 * 4096 + 100)

struct env {
	char dir[64];
	struct vm_mem mem;
	struct virtio_mmio t;
	struct virtio_fs *fs;
	struct gq q[2];
	uint64_t unique;
	uint8_t file[FILE_LEN];
};

static void make_dir(struct env *e)
{
	snprintf(e->dir, sizeof(e->dir), "/tmp/sm-vfs-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	char p[128];
	snprintf(p, sizeof(p), "%s/hello", e->dir);
	for (size_t i = 0; i < FILE_LEN; i++)
		e->file[i] = (uint8_t)(i * 7 + (i >> 12));
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, e->file, FILE_LEN), FILE_LEN);
	close(fd);
}

static void rm_dir(struct env *e)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/hello", e->dir);
	unlink(p);
	rmdir(e->dir);
}

static struct virtio_fs *new_fs(struct env *e, int dax)
{
	struct virtio_fs_config cfg = {
		.root_dir = e->dir,
		.read_only = 1,
		.dax_gpa = DAX_GPA,
		.dax_len = dax ? DAX_LEN : 0,
		.vm_fd = -1,
		.first_slot = 32,
		.max_slots = 64,
	};
	struct sm_error err = {0};
	struct virtio_fs *fs = NULL;
	int r = virtio_fs_create(&fs, &cfg, &err);
	if (r < 0)
		fail_msg("virtio_fs_create: %s", err.msg);
	return fs;
}

/* Bring the device up like the Linux driver: both queues, DRIVER_OK. */
static void env_up(struct env *e, int dax)
{
	memset(e, 0, sizeof(*e));
	make_dir(e);
	e->mem = gmem_new();
	e->fs = new_fs(e, dax);
	struct sm_error err = {0};
	assert_int_equal(virtio_mmio_init(&e->t, &virtio_fs_ops, e->fs, &e->mem, &err), 0);
	assert_int_equal(virtio_fs_attach(e->fs, &e->t, &err), 0);
	assert_int_equal(drv_negotiate(&e->t) & 8, 8);
	gq_init(&e->q[0], 16, Q0_BASE);
	gq_init(&e->q[1], 16, Q1_BASE);
	assert_int_equal(drv_setup_queue(&e->t, 0, &e->q[0]), 1);
	assert_int_equal(drv_setup_queue(&e->t, 1, &e->q[1]), 1);
	drv_ok(&e->t);
	e->unique = 1;
}

static void env_down(struct env *e)
{
	virtio_fs_destroy(e->fs);
	virtio_mmio_destroy(&e->t);
	free(e->mem.host);
	rm_dir(e);
}

/* Wait for the next used element of queue QIDX (the worker is async). */
static int wait_used(struct env *e, int qidx, uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < 5000; i++) {
		if (gq_used(&e->mem, &e->q[qidx], id, len))
			return 1;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* One request on queue QIDX: header + A1 + A2 in one readable descriptor,
 * OUTLEN bytes of reply room in two writable ones. Returns the reply's
 * error; *used gets the used length. */
static int call(struct env *e, int qidx, uint32_t op, uint64_t nodeid, const void *a1, size_t l1,
		const void *a2, size_t l2, uint32_t outlen, uint32_t *used)
{
	struct fuse_in_header h = {.len = (uint32_t)(sizeof(h) + l1 + l2),
				   .opcode = op,
				   .unique = ++e->unique,
				   .nodeid = nodeid};
	uint8_t *req = e->mem.host + REQ_GPA;
	memcpy(req, &h, sizeof(h));
	if (l1)
		memcpy(req + sizeof(h), a1, l1);
	if (l2)
		memcpy(req + sizeof(h) + l1, a2, l2);
	memset(e->mem.host + REPLY_GPA, 0xa5, outlen);
	struct gq *g = &e->q[qidx];
	gq_desc(&e->mem, g, 0, REQ_GPA, h.len, F_NEXT, 1);
	gq_desc(&e->mem, g, 1, REPLY_GPA, 20, F_WRITE | F_NEXT, 2);
	gq_desc(&e->mem, g, 2, REPLY_GPA + 20, outlen - 20, F_WRITE, 0);
	gq_publish(&e->mem, g, 0);
	virtio_mmio_kick(&e->t, (uint32_t)qidx);
	uint32_t id = 99, len = 0;
	assert_true(wait_used(e, qidx, &id, &len));
	assert_int_equal(id, 0);
	*used = len;
	if (len == 0)
		return 1; /* no reply */
	struct fuse_out_header oh;
	memcpy(&oh, e->mem.host + REPLY_GPA, sizeof(oh));
	assert_int_equal(oh.len, len);
	assert_int_equal(oh.unique, h.unique);
	return oh.error;
}

static void *reply(struct env *e)
{
	return e->mem.host + REPLY_GPA + sizeof(struct fuse_out_header);
}

static uint32_t fuse_init(struct env *e)
{
	struct fuse_init_in in = {.major = 7, .minor = 36, .flags = 0xffffffffu};
	uint32_t used;
	assert_int_equal(call(e, 1, FUSE_INIT, 0, &in, sizeof(in), NULL, 0, 4096, &used), 0);
	struct fuse_init_out o;
	memcpy(&o, reply(e), sizeof(o));
	assert_int_equal(o.major, 7);
	assert_int_equal(o.max_write, 128 * 1024); /* fits VIRTQ_MAX_SEGS pages */
	return o.flags;
}

static uint64_t lookup_hello(struct env *e)
{
	uint32_t used;
	assert_int_equal(call(e, 1, FUSE_LOOKUP, 1, "hello", 6, NULL, 0, 4096, &used), 0);
	struct fuse_entry_out eo;
	memcpy(&eo, reply(e), sizeof(eo));
	assert_int_equal(eo.attr.size, FILE_LEN);
	return eo.nodeid;
}

static void test_config_and_shm(void **state)
{
	(void)state;
	struct env e;
	env_up(&e, 0);
	assert_int_equal(mr(&e.t, 0x008), 26);
	char tag[37] = {0};
	for (int i = 0; i < 36; i++) {
		uint8_t b;
		virtio_mmio_access(&e.t, 0x100 + (uint64_t)i, &b, 1, 0);
		tag[i] = (char)b;
	}
	assert_string_equal(tag, "rootfs");
	assert_int_equal(mr(&e.t, 0x100 + 36), 1); /* num_request_queues */
	mw(&e.t, 0x0ac, 0);
	assert_int_equal(mr(&e.t, 0x0b0), 0xffffffff); /* no window: length -1 */
	assert_int_equal(mr(&e.t, 0x0b4), 0xffffffff);
	assert_int_equal(fuse_init(&e) & FUSE_MAP_ALIGNMENT, 0);
	env_down(&e);

	env_up(&e, 1);
	mw(&e.t, 0x0ac, 0);
	assert_int_equal(mr(&e.t, 0x0b0), (uint32_t)DAX_LEN);
	assert_int_equal(mr(&e.t, 0x0b4), (uint32_t)(DAX_LEN >> 32));
	assert_int_equal(mr(&e.t, 0x0b8), (uint32_t)DAX_GPA);
	assert_int_equal(mr(&e.t, 0x0bc), (uint32_t)(DAX_GPA >> 32));
	mw(&e.t, 0x0ac, 1);
	assert_int_equal(mr(&e.t, 0x0b0), 0xffffffff); /* only region 0 */
	assert_int_equal(fuse_init(&e) & FUSE_MAP_ALIGNMENT, FUSE_MAP_ALIGNMENT);
	env_down(&e);
}

static void test_requests(void **state)
{
	(void)state;
	struct env e;
	env_up(&e, 0);
	uint32_t used;
	/* Before INIT: EIO, as from any FUSE server. */
	assert_int_equal(call(&e, 1, FUSE_GETATTR, 1, NULL, 0, NULL, 0, 4096, &used), -EIO);
	fuse_init(&e);
	uint64_t node = lookup_hello(&e);
	struct fuse_open_in oi = {.flags = O_RDONLY};
	assert_int_equal(call(&e, 1, FUSE_OPEN, node, &oi, sizeof(oi), NULL, 0, 4096, &used), 0);
	struct fuse_open_out oo;
	memcpy(&oo, reply(&e), sizeof(oo));
	/* READ scatters across both writable descriptors. */
	struct fuse_read_in ri = {.fh = oo.fh, .offset = 4000, .size = 5000};
	assert_int_equal(call(&e, 1, FUSE_READ, node, &ri, sizeof(ri), NULL, 0, 16 + 5000, &used),
			 0);
	assert_int_equal(used, 16 + 5000);
	assert_memory_equal(reply(&e), e.file + 4000, 5000);
	/* Read-only share. */
	struct fuse_mkdir_in mi = {.mode = 0755};
	assert_int_equal(call(&e, 1, FUSE_MKDIR, 1, &mi, sizeof(mi), "d", 2, 4096, &used), -EROFS);
	/* FORGET on the hiprio queue: completed with no reply. */
	struct fuse_forget_in fi = {.nlookup = 1};
	assert_int_equal(call(&e, 0, FUSE_FORGET, node, &fi, sizeof(fi), NULL, 0, 4096, &used), 1);
	assert_int_equal(used, 0);
	/* Garbage: an error reply, the device goes on. */
	assert_int_equal(call(&e, 1, 9999, 1, "xx", 2, NULL, 0, 4096, &used), -ENOSYS);
	struct fuse_in_header bad = {.len = 1000, .opcode = FUSE_GETATTR, .unique = 7};
	memcpy(e.mem.host + REQ_GPA, &bad, sizeof(bad));
	gq_desc(&e.mem, &e.q[1], 0, REQ_GPA, sizeof(bad), F_NEXT, 1);
	gq_desc(&e.mem, &e.q[1], 1, REPLY_GPA, 64, F_WRITE, 0);
	gq_publish(&e.mem, &e.q[1], 0);
	virtio_mmio_kick(&e.t, 1);
	uint32_t id, len;
	assert_true(wait_used(&e, 1, &id, &len));
	struct fuse_out_header oh;
	memcpy(&oh, e.mem.host + REPLY_GPA, sizeof(oh));
	assert_int_equal(oh.error, -EINVAL);
	/* A descriptor outside guest memory breaks the queue: NEEDS_RESET. */
	gq_desc(&e.mem, &e.q[1], 0, GQ_MEM_SIZE - 8, 64, 0, 0);
	gq_publish(&e.mem, &e.q[1], 0);
	virtio_mmio_kick(&e.t, 1);
	for (int i = 0; i < 5000 && !(mr(&e.t, 0x70) & 64); i++)
		usleep(1000);
	assert_int_equal(mr(&e.t, 0x70) & 64, 64);
	env_down(&e);
}

static int setupmapping(struct env *e, uint64_t node, uint64_t moff, uint64_t foff, uint64_t len,
			uint64_t flags)
{
	struct fuse_setupmapping_in si = {
		.fh = ~0ull, .foffset = foff, .len = len, .flags = flags, .moffset = moff};
	uint32_t used;
	return call(e, 1, FUSE_SETUPMAPPING, node, &si, sizeof(si), NULL, 0, 4096, &used);
}

static void test_dax_map_and_io(void **state)
{
	(void)state;
	struct env e;
	env_up(&e, 1);
	fuse_init(&e);
	uint64_t node = lookup_hello(&e);
	uint64_t req, faults;
	uint32_t slots;
	assert_int_equal(setupmapping(&e, node, 2 << 20, 0, 2 << 20, FUSE_SETUPMAPPING_FLAG_READ),
			 0);
	virtio_fs_stats(e.fs, &req, &faults, &slots);
	assert_int_equal(slots, 1);
	uint8_t buf[8];
	/* An MMIO exit inside a mapped slot is claimed and served from it. */
	virtio_fs_dax_io(NULL, (2 << 20) + 4096 + 3, buf, 8, 0, e.fs);
	assert_memory_equal(buf, e.file + 4096 + 3, 8);
	/* Outside every slot: all ones, nothing mapped. */
	virtio_fs_dax_io(NULL, 64 << 10, buf, 4, 0, e.fs);
	assert_memory_equal(buf, "\xff\xff\xff\xff", 4);
	/* A write into the read-only slot is dropped; the file is unchanged. */
	memset(buf, 0, sizeof(buf));
	virtio_fs_dax_io(NULL, 2 << 20, buf, 4, 1, e.fs);
	virtio_fs_dax_io(NULL, 2 << 20, buf, 4, 0, e.fs);
	assert_memory_equal(buf, e.file, 4);
	/* Writable mappings of a read-only share are refused. */
	assert_int_equal(setupmapping(&e, node, 0, 0, 4096, FUSE_SETUPMAPPING_FLAG_WRITE), -EROFS);
	/* Out of the window, misaligned, overlapping. */
	assert_int_equal(setupmapping(&e, node, DAX_LEN, 0, 4096, FUSE_SETUPMAPPING_FLAG_READ),
			 -EINVAL);
	assert_int_equal(setupmapping(&e, node, 100, 0, 4096, FUSE_SETUPMAPPING_FLAG_READ),
			 -EINVAL);
	assert_int_equal(setupmapping(&e, node, 3 << 20, 0, 4096, FUSE_SETUPMAPPING_FLAG_READ),
			 -EEXIST);
	/* REMOVEMAPPING: the range is gone again (reads all ones, no slot). */
	struct fuse_removemapping_in rm = {.count = 1};
	struct fuse_removemapping_one one = {.moffset = 2 << 20, .len = 2 << 20};
	uint32_t used;
	assert_int_equal(call(&e, 1, FUSE_REMOVEMAPPING, node, &rm, sizeof(rm), &one, sizeof(one),
			      4096, &used),
			 0);
	virtio_fs_stats(e.fs, &req, &faults, &slots);
	assert_int_equal(slots, 0);
	virtio_fs_dax_io(NULL, (2 << 20) + 8, buf, 4, 0, e.fs);
	assert_memory_equal(buf, "\xff\xff\xff\xff", 4);
	env_down(&e);
}

/* Snapshot the server and the window with one live slot; a new device over
 * the same directory restores both with nothing mapped; the first guest
 * access (MMIO exit into the window) maps exactly that slot and returns the
 * file's bytes; later accesses fault no more; other places stay unmapped. */
static void test_dax_restore_fault(void **state)
{
	(void)state;
	struct env e;
	env_up(&e, 1);
	fuse_init(&e);
	uint64_t node = lookup_hello(&e);
	assert_int_equal(setupmapping(&e, node, 4 << 20, 0, 2 << 20, FUSE_SETUPMAPPING_FLAG_READ),
			 0);
	struct sm_error err = {0};
	void *nodes, *slots_blob;
	size_t nodes_len, slots_len;
	assert_int_equal(fuse_server_snapshot(virtio_fs_server(e.fs), &nodes, &nodes_len, &err), 0);
	assert_int_equal(fuse_dax_snapshot(virtio_fs_dax(e.fs), &slots_blob, &slots_len, &err), 0);

	struct virtio_fs *fs2 = new_fs(&e, 1);
	assert_int_equal(fuse_server_restore(virtio_fs_server(fs2), nodes, nodes_len, &err), 0);
	assert_int_equal(fuse_dax_restore(virtio_fs_dax(fs2), slots_blob, slots_len, &err), 0);
	uint64_t req, faults;
	uint32_t slots;
	virtio_fs_stats(fs2, &req, &faults, &slots);
	assert_int_equal(slots, 0); /* metadata only */
	assert_int_equal(faults, 0);

	uint8_t buf[8];
	virtio_fs_dax_io(NULL, (4 << 20) + 8192 + 5, buf, 8, 0, fs2);
	assert_memory_equal(buf, e.file + 8192 + 5, 8);
	virtio_fs_stats(fs2, &req, &faults, &slots);
	assert_int_equal(faults, 1);
	assert_int_equal(slots, 1);
	/* Mapped now: the next access is served without another fault. */
	virtio_fs_dax_io(NULL, (4 << 20) + FILE_LEN - 8, buf, 8, 0, fs2);
	assert_memory_equal(buf, e.file + FILE_LEN - 8, 8);
	/* Outside the restored slot: not claimed, nothing new mapped. */
	virtio_fs_dax_io(NULL, 8 << 20, buf, 4, 0, fs2);
	assert_memory_equal(buf, "\xff\xff\xff\xff", 4);
	virtio_fs_stats(fs2, &req, &faults, &slots);
	assert_int_equal(faults, 2); /* both accesses in the slot were claimed, */
	assert_int_equal(slots, 1);  /* but the slot was mapped once */

	virtio_fs_destroy(fs2);
	free(nodes);
	free(slots_blob);
	env_down(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_and_shm),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_dax_map_and_io),
		cmocka_unit_test(test_dax_restore_fault),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
