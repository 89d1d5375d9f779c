/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-fs without KVM: a fake guest driver talks FUSE over the device's
 * queues (config space, SHM region registers, INIT/LOOKUP/OPEN/READ,
 * SETUPMAPPING/REMOVEMAPPING into a host-only DAX window, hostile chains),
 * and the DAX fault path: a window restored from a snapshot is re-mapped by
 * the first guest access (the MMIO exit handler), with the right bytes.
 * The device's snapshot records (vm/snapshot.c) round-trip through a real
 * snapshot file, and hostile records and blobs are refused with a message. */
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
#include "sm/format.h"
#include "sm/fuse.h"
#include "tests/vm/mmio_helper.h"
#include "vm/vm_internal.h"

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

/* ---- snapshot records (vm_snapshot_fs_save / _probe / _load) ---------------- */

#define FS_INST 2 /* device number: rng, vsock, then virtio-fs */

struct fs_snap {
	char path[96];
	void *dev, *fusn, *daxs; /* the sections a capture wrote */
	size_t dev_len, fusn_len, daxs_len;
};

static void *section(struct fmt_reader *rd, uint32_t type, size_t *len)
{
	struct sm_error err = {0};
	int idx = fmt_reader_find(rd, type, FS_INST, &err);
	if (idx < 0) {
		*len = 0;
		return NULL;
	}
	void *p = NULL;
	assert_int_equal(fmt_reader_read(rd, (unsigned)idx, &p, len, &err), 0);
	return p;
}

/* Capture E's device into a snapshot file and keep its three sections. */
static void capture(struct env *e, struct fs_snap *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "%s.smsnap", e->dir);
	struct sm_error err = {0};
	struct fmt_writer *w = NULL;
	assert_int_equal(fmt_writer_create(&w, c->path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{}", &err), 0);
	assert_int_equal(virtio_fs_pause(e->fs, 1000, &err), 0);
	int r = vm_snapshot_fs_save(e->fs, FS_INST, w, &err);
	virtio_fs_resume(e->fs);
	if (r < 0)
		fail_msg("vm_snapshot_fs_save: %s", err.msg);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
	struct fmt_reader *rd = NULL;
	assert_int_equal(fmt_reader_open(&rd, c->path, &err), 0);
	c->dev = section(rd, FMT_SEC_DEVICE, &c->dev_len);
	c->fusn = section(rd, FMT_SEC_FUSE_NODES, &c->fusn_len);
	c->daxs = section(rd, FMT_SEC_DAX, &c->daxs_len);
	fmt_reader_close(rd);
	assert_non_null(c->dev);
	assert_non_null(c->fusn);
}

static void capture_free(struct fs_snap *c)
{
	unlink(c->path);
	free(c->dev);
	free(c->fusn);
	free(c->daxs);
}

/* Write a snapshot file holding the given sections (NULL: left out). */
static void write_snap(const char *path, const void *dev, size_t dev_len, const void *fusn,
		       size_t fusn_len, const void *daxs, size_t daxs_len)
{
	struct sm_error err = {0};
	struct fmt_writer *w = NULL;
	assert_int_equal(fmt_writer_create(&w, path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{}", &err), 0);
	if (dev)
		assert_int_equal(fmt_writer_add(w, FMT_SEC_DEVICE, 0, FS_INST, "virtio-fs", dev,
						dev_len, &err),
				 0);
	if (fusn)
		assert_int_equal(fmt_writer_add(w, FMT_SEC_FUSE_NODES, FMT_SECF_ZSTD, FS_INST,
						"virtio-fs", fusn, fusn_len, &err),
				 0);
	if (daxs)
		assert_int_equal(fmt_writer_add(w, FMT_SEC_DAX, FMT_SECF_ZSTD, FS_INST, "virtio-fs",
						daxs, daxs_len, &err),
				 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
}

/* Load the file at PATH into a fresh device (probing first when PROBE);
 * returns the result, the message in ERR. */
static int load_into_fresh(struct env *e, const char *path, int dax, int probe,
			   struct sm_error *err)
{
	struct fmt_reader *rd = NULL;
	assert_int_equal(fmt_reader_open(&rd, path, err), 0);
	struct virtio_fs *fs = new_fs(e, dax);
	uint64_t dax_len = 99;
	int r = probe ? vm_snapshot_fs_probe(rd, FS_INST, &dax_len, err) : 0;
	if (r == 0)
		r = vm_snapshot_fs_load(fs, FS_INST, rd, err);
	virtio_fs_destroy(fs);
	fmt_reader_close(rd);
	return r;
}

/* Record offsets (docs/snapshot.md, "virtio-fs device record"). */
#define REC_MAGIC    0
#define REC_VERSION  4
#define REC_RSV0     6
#define REC_SIZE     8
#define REC_DEVID    16
#define REC_RO	     20
#define REC_DAX_GPA  24
#define REC_DAX_LEN  32
#define REC_FUSN_LEN 40
#define REC_DAXS_LEN 48
#define REC_TAG	     56
#define REC_RSV	     92

static void put32(void *p, size_t off, uint32_t v)
{
	memcpy((uint8_t *)p + off, &v, 4);
}

static void put64(void *p, size_t off, uint64_t v)
{
	memcpy((uint8_t *)p + off, &v, 8);
}

/* A capture with a live DAX slot restores into a fresh device: the probe
 * reports the window, the node table and slot table come back, and the
 * first access to the slot re-maps it with the file's bytes. */
static void test_fs_snapshot_roundtrip(void **state)
{
	(void)state;
	struct env e;
	env_up(&e, 1);
	fuse_init(&e);
	uint64_t node = lookup_hello(&e);
	assert_int_equal(setupmapping(&e, node, 6 << 20, 0, 2 << 20, FUSE_SETUPMAPPING_FLAG_READ),
			 0);
	struct fs_snap c;
	capture(&e, &c);
	assert_int_equal(c.dev_len, 96);
	assert_non_null(c.daxs);
	assert_int_equal(c.daxs_len, 48 + 40); /* one slot */

	struct sm_error err = {0};
	struct fmt_reader *rd = NULL;
	assert_int_equal(fmt_reader_open(&rd, c.path, &err), 0);
	uint64_t dax_len = 0;
	assert_int_equal(vm_snapshot_fs_probe(rd, FS_INST, &dax_len, &err), 0);
	assert_int_equal(dax_len, DAX_LEN);
	struct virtio_fs *fs2 = new_fs(&e, 1);
	if (vm_snapshot_fs_load(fs2, FS_INST, rd, &err) < 0)
		fail_msg("load: %s", err.msg);
	fmt_reader_close(rd);
	uint64_t req, faults;
	uint32_t slots;
	virtio_fs_stats(fs2, &req, &faults, &slots);
	assert_int_equal(slots, 0);
	uint8_t buf[8];
	virtio_fs_dax_io(NULL, (6 << 20) + 4096 + 9, buf, 8, 0, fs2);
	assert_memory_equal(buf, e.file + 4096 + 9, 8);
	virtio_fs_stats(fs2, &req, &faults, &slots);
	assert_int_equal(faults, 1);
	assert_int_equal(slots, 1);
	virtio_fs_destroy(fs2);

	/* The same snapshot into a device without a window: refused. */
	memset(&err, 0, sizeof(err));
	assert_true(load_into_fresh(&e, c.path, 0, 1, &err) < 0);
	if (!strstr(err.msg, "DAX window of 16 MiB, this VM has 0 MiB"))
		fail_msg("window mismatch: '%s'", err.msg);

	/* Without a window there is no DAX section, and it loads. */
	capture_free(&c);
	env_down(&e);
	env_up(&e, 0);
	fuse_init(&e);
	lookup_hello(&e);
	capture(&e, &c);
	assert_null(c.daxs);
	memset(&err, 0, sizeof(err));
	if (load_into_fresh(&e, c.path, 0, 1, &err) < 0)
		fail_msg("load without window: %s", err.msg);
	capture_free(&c);
	env_down(&e);
}

struct mutation {
	const char *what;
	size_t off; /* in the record */
	int width;  /* 1, 4 or 8 bytes */
	uint64_t value;
	const char *want; /* in the error message */
	int probe_fails;  /* the record alone is bad (the probe refuses it too) */
};

static void expect_refused(struct env *e, const char *path, int dax, const char *what,
			   const char *want)
{
	struct sm_error err = {0};
	int r = load_into_fresh(e, path, dax, 1, &err);
	if (r >= 0 || !strstr(err.msg, want))
		fail_msg("%s: r=%d, message '%s' (want '%s')", what, r, err.msg, want);
}

/* Every field of the record flipped, sections truncated, missing or extra:
 * each is refused with a message naming the problem; none crashes. */
static void test_fs_snapshot_hostile(void **state)
{
	(void)state;
	struct env e;
	env_up(&e, 1);
	fuse_init(&e);
	uint64_t node = lookup_hello(&e);
	assert_int_equal(setupmapping(&e, node, 0, 0, 2 << 20, FUSE_SETUPMAPPING_FLAG_READ), 0);
	struct fs_snap c;
	capture(&e, &c);
	char bad[128];
	snprintf(bad, sizeof(bad), "%s.bad", c.path);
	struct sm_error err;

	static const struct mutation muts[] = {
		{"magic", REC_MAGIC, 4, 0x56454453, "bad magic", 1},
		{"version", REC_VERSION, 1, 2, "version 2", 1},
		{"reserved0", REC_RSV0, 1, 1, "reserved bits", 1},
		{"size", REC_SIZE, 4, 95, "size 95", 1},
		{"device id", REC_DEVID, 4, 19, "bad device id 19", 1},
		{"read-only flag", REC_RO, 4, 2, "read-only flag 2", 1},
		{"read-only differs", REC_RO, 4, 0, "this VM has 'rootfs' (read-only)", 0},
		{"window base", REC_DAX_GPA, 8, 0x2000000000ULL, "bad DAX window", 1},
		{"window length", REC_DAX_LEN, 8, 8 << 20, "DAX window of 8 MiB, this VM has 16",
		 0},
		{"window not MiB", REC_DAX_LEN, 8, (16 << 20) + 4096, "bad DAX window", 1},
		{"window huge", REC_DAX_LEN, 8, 1ULL << 40, "bad DAX window", 1},
		{"no window", REC_DAX_LEN, 8, 0, "bad DAX window", 1},
		{"slot table size", REC_DAXS_LEN, 8, 48,
		 "DAX slot table is 88 bytes, record says 48", 0},
		{"no slot table", REC_DAXS_LEN, 8, 0, "bad DAX window", 1},
		{"FUSE state size", REC_FUSN_LEN, 8, 1, "record says 1", 0},
		{"FUSE state huge", REC_FUSN_LEN, 8, 1ULL << 40, "bad FUSE state size", 1},
		{"empty tag", REC_TAG, 8, 0, "empty tag", 1},
		{"other tag", REC_TAG, 1, 'R', "tag 'Rootfs' (read-only), this VM has 'rootfs'", 0},
		{"tag padding", REC_TAG + 30, 1, 'x', "tag not NUL-padded", 1},
		{"reserved", REC_RSV, 4, 1, "reserved field", 1},
	};
	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		const struct mutation *m = &muts[i];
		uint8_t rec[96];
		memcpy(rec, c.dev, sizeof(rec));
		if (m->width == 1)
			rec[m->off] = (uint8_t)m->value;
		else if (m->width == 4)
			put32(rec, m->off, (uint32_t)m->value);
		else
			put64(rec, m->off, m->value);
		write_snap(bad, rec, sizeof(rec), c.fusn, c.fusn_len, c.daxs, c.daxs_len);
		expect_refused(&e, bad, 1, m->what, m->want);
		struct fmt_reader *rd = NULL;
		assert_int_equal(fmt_reader_open(&rd, bad, &err), 0);
		uint64_t dl;
		memset(&err, 0, sizeof(err));
		int r = vm_snapshot_fs_probe(rd, FS_INST, &dl, &err);
		fmt_reader_close(rd);
		if ((r < 0) != m->probe_fails)
			fail_msg("%s: probe r=%d (%s)", m->what, r, err.msg);
	}

	/* Truncated or padded record. */
	uint8_t big[100] = {0};
	memcpy(big, c.dev, 96);
	for (size_t len = 0; len <= sizeof(big); len += len < 90 ? 16 : 1) {
		if (len == 96)
			continue;
		write_snap(bad, big, len, c.fusn, c.fusn_len, c.daxs, c.daxs_len);
		char want[64];
		snprintf(want, sizeof(want), "%zu bytes, want 96", len);
		expect_refused(&e, bad, 1, "record length", want);
	}

	/* Missing sections. */
	write_snap(bad, NULL, 0, c.fusn, c.fusn_len, c.daxs, c.daxs_len);
	expect_refused(&e, bad, 1, "no device record", "no device section");
	write_snap(bad, c.dev, c.dev_len, NULL, 0, c.daxs, c.daxs_len);
	expect_refused(&e, bad, 1, "no FUSE state", "no fuse-nodes section");
	write_snap(bad, c.dev, c.dev_len, c.fusn, c.fusn_len, NULL, 0);
	expect_refused(&e, bad, 1, "no slot table", "no dax section");

	/* Blobs whose length matches the record but whose content is bad: the
	 * FUSE server and DAX session validators refuse them. */
	uint8_t rec[96];
	memcpy(rec, c.dev, sizeof(rec));
	sm_autofree uint8_t *fusn = malloc(c.fusn_len);
	memcpy(fusn, c.fusn, c.fusn_len);
	memcpy(fusn, "XXXX", 4);
	write_snap(bad, rec, sizeof(rec), fusn, c.fusn_len, c.daxs, c.daxs_len);
	expect_refused(&e, bad, 1, "FUSE state magic", "not a FUSN blob");
	put64(rec, REC_FUSN_LEN, c.fusn_len - 1); /* one byte short */
	write_snap(bad, rec, sizeof(rec), c.fusn, c.fusn_len - 1, c.daxs, c.daxs_len);
	expect_refused(&e, bad, 1, "FUSE state truncated", "fuse restore");
	memcpy(rec, c.dev, sizeof(rec));
	put64(rec, REC_DAXS_LEN, c.daxs_len - 1);
	write_snap(bad, rec, sizeof(rec), c.fusn, c.fusn_len, c.daxs, c.daxs_len - 1);
	expect_refused(&e, bad, 1, "slot table truncated", "dax restore");
	sm_autofree uint8_t *daxs = malloc(c.daxs_len);
	memcpy(daxs, c.daxs, c.daxs_len);
	put64(daxs, 48, 100); /* the slot's window offset: misaligned */
	memcpy(rec, c.dev, sizeof(rec));
	write_snap(bad, rec, sizeof(rec), c.fusn, c.fusn_len, daxs, c.daxs_len);
	expect_refused(&e, bad, 1, "slot misaligned", "dax restore");
	unlink(bad);

	/* A slot table next to a record without a window. */
	capture_free(&c);
	env_down(&e);
	env_up(&e, 0);
	fuse_init(&e);
	capture(&e, &c);
	snprintf(bad, sizeof(bad), "%s.bad", c.path);
	uint8_t junk[48 + 40] = "DAXS";
	write_snap(bad, c.dev, c.dev_len, c.fusn, c.fusn_len, junk, sizeof(junk));
	expect_refused(&e, bad, 0, "slot table without window", "DAX slot table without a window");
	unlink(bad);
	capture_free(&c);
	env_down(&e);
}

/* virtio_fs_pause: no chain is taken while paused (the kick waits), and
 * resume serves what came meanwhile. */
static void test_fs_pause(void **state)
{
	(void)state;
	struct env e;
	env_up(&e, 0);
	fuse_init(&e);
	struct sm_error err = {0};
	assert_int_equal(virtio_fs_pause(e.fs, 1000, &err), 0);
	struct fuse_in_header h = {
		.len = sizeof(h), .opcode = FUSE_GETATTR, .unique = 77, .nodeid = 1};
	memcpy(e.mem.host + REQ_GPA, &h, sizeof(h));
	gq_desc(&e.mem, &e.q[1], 0, REQ_GPA, sizeof(h), F_NEXT, 1);
	gq_desc(&e.mem, &e.q[1], 1, REPLY_GPA, 4096, F_WRITE, 0);
	gq_publish(&e.mem, &e.q[1], 0);
	virtio_mmio_kick(&e.t, 1);
	struct timespec ts = {0, 100 * 1000000L};
	nanosleep(&ts, NULL);
	uint32_t id, len;
	assert_false(gq_used(&e.mem, &e.q[1], &id, &len)); /* not served while paused */
	virtio_fs_resume(e.fs);
	assert_true(wait_used(&e, 1, &id, &len));
	assert_int_equal(id, 0);
	struct fuse_out_header oh;
	memcpy(&oh, e.mem.host + REPLY_GPA, sizeof(oh));
	assert_int_equal(len, oh.len);
	assert_int_equal(oh.unique, 77);
	env_down(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_and_shm),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_dax_map_and_io),
		cmocka_unit_test(test_dax_restore_fault),
		cmocka_unit_test(test_fs_snapshot_roundtrip),
		cmocka_unit_test(test_fs_snapshot_hostile),
		cmocka_unit_test(test_fs_pause),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
