/* SPDX-License-Identifier: Apache-2.0 */
/* The DAX window: rules, cap under concurrency, snapshot, lazy faults. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuse_client.h"

#define MB   (1ull << 20)
#define BASE 0x100000000ull

/* A mapper that only records what it is asked to do. */
struct fake {
	atomic_int maps, unmaps;
	atomic_llong live, peak;
	int fail; /* next map fails with -ENOMEM */
	int slow; /* microseconds per map, to widen races */
	uint64_t last_off, last_len, last_foff;
	int last_prot;
	pthread_mutex_t lock;
	uint64_t cap;
};

static int fake_map(void *ctx, uint64_t off, int fd, uint64_t foff, uint64_t len, int prot)
{
	struct fake *f = ctx;
	assert_true(fd >= 0);
	if (f->fail) {
		f->fail = 0;
		return -ENOMEM;
	}
	long long now = atomic_fetch_add(&f->live, (long long)len) + (long long)len;
	long long peak = atomic_load(&f->peak);
	while (now > peak && !atomic_compare_exchange_weak(&f->peak, &peak, now))
		;
	if (f->slow)
		usleep((useconds_t)f->slow);
	atomic_fetch_add(&f->maps, 1);
	pthread_mutex_lock(&f->lock);
	f->last_off = off;
	f->last_len = len;
	f->last_foff = foff;
	f->last_prot = prot;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static int fake_unmap(void *ctx, uint64_t off, uint64_t len)
{
	(void)off;
	struct fake *f = ctx;
	atomic_fetch_sub(&f->live, (long long)len);
	atomic_fetch_add(&f->unmaps, 1);
	return 0;
}

static struct fuse_dax *new_dax(struct fake *f, uint64_t wlen, uint64_t cap)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	struct fuse_dax_mapper m = {.map = fake_map, .unmap = fake_unmap, .ctx = f};
	struct fuse_dax *d;
	struct sm_error err = {0};
	assert_int_equal(fuse_dax_new(BASE, wlen, cap, &m, &d, &err), 0);
	return d;
}

static int dummy_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static void test_new_checks_window(void **state)
{
	(void)state;
	struct fake f = {0};
	struct fuse_dax_mapper m = {.map = fake_map, .unmap = fake_unmap, .ctx = &f};
	struct fuse_dax *d;
	struct sm_error err = {0};
	assert_true(fuse_dax_new(BASE + 1, 8 * MB, 0, &m, &d, &err) < 0);
	assert_true(fuse_dax_new(BASE, 8 * MB + 1, 0, &m, &d, &err) < 0);
	assert_true(fuse_dax_new(BASE, 0, 0, &m, &d, &err) < 0);
	assert_true(fuse_dax_new(UINT64_MAX - 4095, 8192, 0, &m, &d, &err) < 0);
	assert_true(fuse_dax_new(BASE, 8 * MB, 16 * MB, &m, &d, &err) < 0);
	struct fuse_dax_mapper nomap = {.unmap = fake_unmap};
	assert_true(fuse_dax_new(BASE, 8 * MB, 0, &nomap, &d, &err) < 0);
	assert_int_equal(fuse_dax_new(BASE, 8 * MB, 0, &m, &d, &err), 0);
	fuse_dax_free(d);
}

static void test_alignment_and_bounds(void **state)
{
	(void)state;
	struct fake f;
	struct fuse_dax *d = new_dax(&f, 8 * MB, 0);
	int fd = dummy_fd();
	int rw = PROT_READ | PROT_WRITE;
	assert_int_equal(fuse_dax_setup(d, 1, 4096, 5, fd, 0, PROT_READ), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, 0, 4095, 5, fd, 0, PROT_READ), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, 0, 4096, 5, fd, 512, PROT_READ), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, 0, 0, 5, fd, 0, PROT_READ), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, 8 * MB - 4096, 8192, 5, fd, 0, PROT_READ), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, 8 * MB, 4096, 5, fd, 0, PROT_READ), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, UINT64_MAX - 4095, 8192, 5, fd, 0, PROT_READ), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, 0, 4096, 5, fd, UINT64_MAX - 4095, PROT_READ), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, 0, 4096, 5, fd, 0, PROT_WRITE), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, 0, 4096, 5, fd, 0, PROT_EXEC | PROT_READ), -EINVAL);
	assert_int_equal(fuse_dax_setup(d, 0, 4096, 0, fd, 0, PROT_READ), -EINVAL);
	assert_int_equal(atomic_load(&f.maps), 0);
	/* The last granule of the window is fine. */
	assert_int_equal(fuse_dax_setup(d, 8 * MB - 4096, 4096, 5, fd, 4096, rw), 0);
	assert_int_equal(f.last_off, 8 * MB - 4096);
	assert_int_equal(f.last_foff, 4096);
	assert_int_equal(f.last_prot, rw);
	assert_int_equal(fuse_dax_mapped_bytes(d), 4096);
	/* Faults: inside the slot claimed, elsewhere not. */
	assert_int_equal(fuse_dax_fault(d, BASE + 8 * MB - 1), 1);
	assert_int_equal(fuse_dax_fault(d, BASE), 0);
	assert_int_equal(fuse_dax_fault(d, BASE - 1), 0);
	assert_int_equal(fuse_dax_fault(d, BASE + 8 * MB), 0);
	close(fd);
	fuse_dax_free(d);
	assert_int_equal(atomic_load(&f.unmaps), 1);
}

static void test_overlap_cap_and_failure(void **state)
{
	(void)state;
	struct fake f;
	struct fuse_dax *d = new_dax(&f, 16 * MB, 4 * MB);
	int fd = dummy_fd();
	assert_int_equal(fuse_dax_setup(d, 2 * MB, 2 * MB, 7, fd, 0, PROT_READ), 0);
	/* Same moffset, other length or other node: EEXIST. */
	assert_int_equal(fuse_dax_setup(d, 2 * MB, 4096, 7, fd, 0, PROT_READ), -EEXIST);
	assert_int_equal(fuse_dax_setup(d, 2 * MB, 2 * MB, 8, fd, 0, PROT_READ), -EEXIST);
	/* Partial overlaps from either side. */
	assert_int_equal(fuse_dax_setup(d, 1 * MB, 2 * MB, 9, fd, 0, PROT_READ), -EEXIST);
	assert_int_equal(fuse_dax_setup(d, 4 * MB - 4096, 8192, 9, fd, 0, PROT_READ), -EEXIST);
	assert_int_equal(fuse_dax_setup(d, 0, 16 * MB, 9, fd, 0, PROT_READ), -EEXIST);
	/* Adjacent is fine. */
	assert_int_equal(fuse_dax_setup(d, 4 * MB, 1 * MB, 9, fd, 0, PROT_READ), 0);
	/* The same slot of the same node again is the guest's upgrade to RW:
	 * re-mapped in place, no new bytes. */
	int maps = atomic_load(&f.maps);
	assert_int_equal(fuse_dax_setup(d, 2 * MB, 2 * MB, 7, fd, 0, PROT_READ | PROT_WRITE), 0);
	assert_int_equal(atomic_load(&f.maps), maps + 1);
	assert_int_equal(fuse_dax_mapped_bytes(d), 3 * MB);
	assert_int_equal(fuse_dax_slot_count(d), 2);
	/* Cap: 1 MiB left. */
	assert_int_equal(fuse_dax_setup(d, 8 * MB, 2 * MB, 10, fd, 0, PROT_READ), -ENOSPC);
	assert_int_equal(fuse_dax_setup(d, 8 * MB, 1 * MB, 10, fd, 0, PROT_READ), 0);
	assert_int_equal(fuse_dax_setup(d, 12 * MB, 4096, 10, fd, 0, PROT_READ), -ENOSPC);
	/* REMOVEMAPPING must name a slot exactly. */
	assert_int_equal(fuse_dax_remove(d, 8 * MB, 4096), -EINVAL);
	assert_int_equal(fuse_dax_remove(d, 8 * MB + 4096, 1 * MB - 4096), -EINVAL);
	assert_int_equal(fuse_dax_remove(d, 20 * MB, 4096), -EINVAL);
	assert_int_equal(fuse_dax_remove(d, 8 * MB, 1 * MB), 0);
	assert_int_equal(fuse_dax_remove(d, 8 * MB, 1 * MB), -EINVAL);
	assert_int_equal(fuse_dax_mapped_bytes(d), 3 * MB);
	/* A failed map leaves nothing behind: no bytes, no slot. */
	f.fail = 1;
	assert_int_equal(fuse_dax_setup(d, 8 * MB, 1 * MB, 11, fd, 0, PROT_READ), -ENOMEM);
	assert_int_equal(fuse_dax_mapped_bytes(d), 3 * MB);
	assert_int_equal(fuse_dax_slot_count(d), 2);
	assert_int_equal(fuse_dax_fault(d, BASE + 8 * MB), 0);
	assert_int_equal(fuse_dax_setup(d, 8 * MB, 1 * MB, 11, fd, 0, PROT_READ), 0);
	/* A failed upgrade keeps the old slot. */
	f.fail = 1;
	assert_int_equal(fuse_dax_setup(d, 8 * MB, 1 * MB, 11, fd, 0, PROT_READ | PROT_WRITE),
			 -ENOMEM);
	assert_int_equal(fuse_dax_slot_count(d), 3);
	assert_int_equal(fuse_dax_fault(d, BASE + 8 * MB), 1);
	close(fd);
	fuse_dax_free(d);
}

struct racer {
	struct fuse_dax *d;
	int id, ok, nospc;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	int fd = dummy_fd();
	for (int i = 0; i < 8; i++) {
		uint64_t off = ((uint64_t)r->id * 8 + (uint64_t)i) * MB;
		int e = fuse_dax_setup(r->d, off, MB, 100 + (uint64_t)r->id, fd, 0, PROT_READ);
		if (e == 0)
			r->ok++;
		else if (e == -ENOSPC)
			r->nospc++;
		else
			fail_msg("unexpected %d", e);
	}
	close(fd);
	return NULL;
}

static void test_concurrent_cap(void **state)
{
	(void)state;
	struct fake f;
	struct fuse_dax *d = new_dax(&f, 128 * MB, 10 * MB);
	f.slow = 2000; /* every map sleeps: requests overlap in time */
	pthread_t t[16];
	struct racer r[16];
	for (int i = 0; i < 16; i++) {
		r[i] = (struct racer){.d = d, .id = i};
		assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
	}
	int ok = 0, nospc = 0;
	for (int i = 0; i < 16; i++) {
		pthread_join(t[i], NULL);
		ok += r[i].ok;
		nospc += r[i].nospc;
	}
	assert_int_equal(ok, 10);
	assert_int_equal(nospc, 128 - 10);
	assert_int_equal(fuse_dax_mapped_bytes(d), 10 * MB);
	assert_true(atomic_load(&f.peak) <= (long long)(10 * MB));
	fuse_dax_free(d);
}

static void *blob_of(struct fuse_dax *d, size_t *len)
{
	void *blob;
	struct sm_error err = {0};
	assert_int_equal(fuse_dax_snapshot(d, &blob, len, &err), 0);
	return blob;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void test_snapshot_round_trip(void **state)
{
	(void)state;
	struct fake f, g;
	struct fuse_dax *d = new_dax(&f, 64 * MB, 32 * MB);
	int fd = dummy_fd();
	assert_int_equal(fuse_dax_setup(d, 6 * MB, 2 * MB, 42, fd, 8 * MB, PROT_READ), 0);
	assert_int_equal(fuse_dax_setup(d, 0, 2 * MB, 41, fd, 0, PROT_READ | PROT_WRITE), 0);
	assert_int_equal(fuse_dax_setup(d, 10 * MB, 4096, 43, fd, 4096, PROT_READ), 0);
	size_t len;
	uint8_t *blob = blob_of(d, &len);
	assert_int_equal(len, 48 + 3 * 40);
	assert_memory_equal(blob, "DAXS", 4);
	assert_int_equal(blob[4], 1); /* version, little-endian */
	assert_int_equal(le64(blob + 8), BASE);
	assert_int_equal(le64(blob + 16), 64 * MB);
	assert_int_equal(le64(blob + 24), 32 * MB);
	assert_int_equal(le64(blob + 32), 4 * MB + 4096);
	assert_int_equal(blob[40], 3);
	/* entries in window order: moffset, len, nodeid, foffset, prot */
	assert_int_equal(le64(blob + 48), 0);
	assert_int_equal(le64(blob + 48 + 16), 41);
	assert_int_equal(le64(blob + 88), 6 * MB);
	assert_int_equal(le64(blob + 88 + 8), 2 * MB);
	assert_int_equal(le64(blob + 88 + 16), 42);
	assert_int_equal(le64(blob + 88 + 24), 8 * MB);
	assert_int_equal(blob[88 + 32], PROT_READ);

	struct fuse_dax *r = new_dax(&g, 64 * MB, 32 * MB);
	struct sm_error err = {0};
	assert_int_equal(fuse_dax_restore(r, blob, len, &err), 0);
	assert_int_equal(atomic_load(&g.maps), 0); /* metadata only */
	assert_int_equal(fuse_dax_slot_count(r), 3);
	assert_int_equal(fuse_dax_mapped_bytes(r), 4 * MB + 4096);
	/* The restored session snapshots to the same bytes. */
	size_t len2;
	uint8_t *blob2 = blob_of(r, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(blob2, blob, len);
	/* Restoring into a session that has slots is refused. */
	assert_true(fuse_dax_restore(r, blob, len, &err) < 0);
	/* The rules still hold on restored slots. */
	assert_int_equal(fuse_dax_setup(r, 6 * MB, 4096, 9, fd, 0, PROT_READ), -EEXIST);
	assert_int_equal(fuse_dax_remove(r, 10 * MB, 4096), 0);
	assert_int_equal(atomic_load(&g.unmaps), 0); /* it was never mapped */
	free(blob2);
	free(blob);
	close(fd);
	fuse_dax_free(r);
	fuse_dax_free(d);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void test_malformed_blobs(void **state)
{
	(void)state;
	struct fake f, g;
	struct fuse_dax *d = new_dax(&f, 64 * MB, 32 * MB);
	int fd = dummy_fd();
	assert_int_equal(fuse_dax_setup(d, 0, 2 * MB, 41, fd, 0, PROT_READ), 0);
	assert_int_equal(fuse_dax_setup(d, 4 * MB, 2 * MB, 42, fd, 0, PROT_READ), 0);
	size_t len;
	uint8_t *blob = blob_of(d, &len);
	uint8_t *bad = malloc(len + 40);
	struct sm_error err = {0};
	struct fuse_dax *r = new_dax(&g, 64 * MB, 32 * MB);
	/* Every truncation, and trailing bytes. */
	for (size_t cut = 0; cut < len; cut++)
		assert_true(fuse_dax_restore(r, blob, cut, &err) < 0);
	memcpy(bad, blob, len);
	memset(bad + len, 0, 40);
	assert_true(fuse_dax_restore(r, bad, len + 40, &err) < 0);
	assert_true(fuse_dax_restore(r, NULL, 0, &err) < 0);
#define MUTATE(stmt)                                                                               \
	do {                                                                                       \
		memcpy(bad, blob, len);                                                            \
		stmt;                                                                              \
		assert_true(fuse_dax_restore(r, bad, len, &err) < 0);                              \
		assert_int_equal(fuse_dax_slot_count(r), 0);                                       \
	} while (0)
	MUTATE(bad[0] = 'X');			     /* magic */
	MUTATE(bad[4] = 2);			     /* version */
	MUTATE(put64(bad + 8, BASE + 4096));	     /* other base */
	MUTATE(put64(bad + 16, 128 * MB));	     /* other window length */
	MUTATE(put64(bad + 32, 5 * MB));	     /* bytes disagree */
	MUTATE(bad[40] = 3);			     /* count disagrees with size */
	MUTATE(bad[40] = 0xff; bad[43] = 0xff);	     /* absurd count */
	MUTATE(bad[44] = 1);			     /* reserved */
	MUTATE(put64(bad + 88, 63 * MB));	     /* entry crosses the window end */
	MUTATE(put64(bad + 88, UINT64_MAX - 4095));  /* wraps */
	MUTATE(put64(bad + 88, 1 * MB));	     /* overlaps entry 0 */
	MUTATE(put64(bad + 88, 0));		     /* same moffset as entry 0 */
	MUTATE(put64(bad + 88, 4 * MB + 512));	     /* misaligned */
	MUTATE(put64(bad + 96, 0));		     /* empty */
	MUTATE(put64(bad + 104, 0));		     /* node 0 */
	MUTATE(put64(bad + 112, UINT64_MAX - 4095)); /* file range wraps */
	MUTATE(bad[120] = 4);			     /* PROT_EXEC */
	MUTATE(bad[124] = 1);			     /* entry reserved */
	/* Sum over this session's cap. */
	struct fake h;
	struct fuse_dax *small = new_dax(&h, 64 * MB, 2 * MB);
	assert_true(fuse_dax_restore(small, blob, len, &err) < 0);
	assert_non_null(strstr(err.msg, "cap"));
	fuse_dax_free(small);
	/* After all of that the good blob still restores. */
	assert_int_equal(fuse_dax_restore(r, blob, len, &err), 0);
	free(bad);
	free(blob);
	close(fd);
	fuse_dax_free(r);
	fuse_dax_free(d);
}

struct opener {
	atomic_int calls;
	uint64_t last_node;
	int last_writable;
	int fail;
};

static int test_open(void *ctx, uint64_t nodeid, int writable, int *fd)
{
	struct opener *o = ctx;
	atomic_fetch_add(&o->calls, 1);
	o->last_node = nodeid;
	o->last_writable = writable;
	if (o->fail)
		return -ESTALE;
	*fd = dummy_fd();
	return 0;
}

static void test_restore_then_fault(void **state)
{
	(void)state;
	struct fake f, g;
	struct fuse_dax *d = new_dax(&f, 64 * MB, 0);
	int fd = dummy_fd();
	assert_int_equal(fuse_dax_setup(d, 0, 2 * MB, 41, fd, 0, PROT_READ), 0);
	assert_int_equal(fuse_dax_setup(d, 4 * MB, 2 * MB, 42, fd, 6 * MB, PROT_READ), 0);
	assert_int_equal(fuse_dax_setup(d, 8 * MB, 2 * MB, 43, fd, 0, PROT_READ | PROT_WRITE), 0);
	close(fd);
	size_t len;
	void *blob = blob_of(d, &len);
	fuse_dax_free(d);

	struct fuse_dax *r = new_dax(&g, 64 * MB, 0);
	struct sm_error err = {0};
	assert_int_equal(fuse_dax_restore(r, blob, len, &err), 0);
	/* No opener yet: a fault in a slot is an error, not a silent claim. */
	assert_int_equal(fuse_dax_fault(r, BASE + 4 * MB), -ENODEV);
	struct opener o = {0};
	fuse_dax_set_opener(r, test_open, &o);
	/* Fault in the middle of slot 1: exactly that slot is mapped, once. */
	assert_int_equal(fuse_dax_fault(r, BASE + 5 * MB + 123), 1);
	assert_int_equal(atomic_load(&o.calls), 1);
	assert_int_equal(o.last_node, 42);
	assert_int_equal(o.last_writable, 0);
	assert_int_equal(atomic_load(&g.maps), 1);
	assert_int_equal(g.last_off, 4 * MB);
	assert_int_equal(g.last_len, 2 * MB);
	assert_int_equal(g.last_foff, 6 * MB);
	assert_int_equal(g.last_prot, PROT_READ);
	/* Again in the same slot: claimed, nothing re-mapped. */
	assert_int_equal(fuse_dax_fault(r, BASE + 4 * MB), 1);
	assert_int_equal(fuse_dax_fault(r, BASE + 6 * MB - 1), 1);
	assert_int_equal(atomic_load(&o.calls), 1);
	assert_int_equal(atomic_load(&g.maps), 1);
	/* Outside every slot: not claimed, nothing opened. */
	assert_int_equal(fuse_dax_fault(r, BASE + 6 * MB), 0);
	assert_int_equal(fuse_dax_fault(r, BASE + 3 * MB), 0);
	assert_int_equal(fuse_dax_fault(r, BASE + 64 * MB), 0);
	assert_int_equal(fuse_dax_fault(r, 0), 0);
	assert_int_equal(atomic_load(&o.calls), 1);
	/* A failing re-open: error, slot stays unmapped, a later try works. */
	o.fail = 1;
	assert_int_equal(fuse_dax_fault(r, BASE + 8 * MB), -ESTALE);
	o.fail = 0;
	assert_int_equal(fuse_dax_fault(r, BASE + 8 * MB), 1);
	assert_int_equal(o.last_node, 43);
	assert_int_equal(o.last_writable, 1);
	assert_int_equal(g.last_prot, PROT_READ | PROT_WRITE);
	assert_int_equal(atomic_load(&g.maps), 2);
	/* Removing a restored-but-never-faulted slot unmaps nothing. */
	assert_int_equal(fuse_dax_remove(r, 0, 2 * MB), 0);
	assert_int_equal(atomic_load(&g.unmaps), 0);
	assert_int_equal(fuse_dax_remove(r, 4 * MB, 2 * MB), 0);
	assert_int_equal(atomic_load(&g.unmaps), 1);
	free(blob);
	fuse_dax_free(r);
}

/* ---- a real mapper: mmap into a reserved window, through the server --- */

struct realmap {
	uint8_t *win;
};

static int real_map(void *ctx, uint64_t off, int fd, uint64_t foff, uint64_t len, int prot)
{
	struct realmap *m = ctx;
	void *p = mmap(m->win + off, len, prot, MAP_SHARED | MAP_FIXED, fd, (off_t)foff);
	return p == MAP_FAILED ? -errno : 0;
}

static int real_unmap(void *ctx, uint64_t off, uint64_t len)
{
	struct realmap *m = ctx;
	void *p =
		mmap(m->win + off, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	return p == MAP_FAILED ? -errno : 0;
}

static void test_real_mapping_via_server(void **state)
{
	(void)state;
	char dir[] = "/tmp/sm-fuse-dax-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[64];
	snprintf(path, sizeof(path), "%s/data", dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	for (int i = 0; i < 3 * 4096; i++)
		fputc('a' + i / 4096, fp);
	fclose(fp);

	struct realmap rm = {
		mmap(NULL, 4 * MB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)};
	assert_true(rm.win != MAP_FAILED);
	struct fuse_dax_mapper m = {.map = real_map, .unmap = real_unmap, .ctx = &rm};
	struct sm_error err = {0};
	struct fuse_dax *d;
	assert_int_equal(fuse_dax_new(BASE, 4 * MB, 1 * MB, &m, &d, &err), 0);
	struct fuse_backend *be;
	assert_int_equal(fuse_passthrough_new(dir, &be, &err), 0);
	struct fuse_server_config cfg;
	fuse_server_config_init(&cfg);
	cfg.read_only = 1;
	struct fuse_server *s;
	assert_int_equal(fuse_server_new(&cfg, be, &s, &err), 0);
	fuse_server_attach_dax(s, d);
	struct tc c;
	tc_open_client(&c, s);
	struct fuse_init_out io = tc_init(&c);
	assert_true(io.flags & FUSE_MAP_ALIGNMENT);
	assert_int_equal(io.map_alignment, 12);
	struct fuse_entry_out eo;
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "data", &eo), 0);
	/* As Linux does it: fh = -1, the node in the header. */
	struct fuse_setupmapping_in sm = {.fh = UINT64_MAX,
					  .foffset = 4096,
					  .len = 8192,
					  .flags = FUSE_SETUPMAPPING_FLAG_READ,
					  .moffset = 64 * 1024};
	assert_int_equal(
		tc_call(&c, FUSE_SETUPMAPPING, eo.nodeid, &sm, sizeof(sm), NULL, 0, NULL, 0), 0);
	assert_int_equal(rm.win[64 * 1024], 'b');
	assert_int_equal(rm.win[64 * 1024 + 8191], 'c');
	/* Read-only share: a writable mapping is refused. */
	sm.flags |= FUSE_SETUPMAPPING_FLAG_WRITE;
	sm.moffset = 0;
	assert_int_equal(
		tc_call(&c, FUSE_SETUPMAPPING, eo.nodeid, &sm, sizeof(sm), NULL, 0, NULL, 0),
		-EROFS);
	/* Over the 1 MiB cap. */
	sm = (struct fuse_setupmapping_in){.fh = UINT64_MAX,
					   .len = 2 * MB,
					   .moffset = 2 * MB,
					   .flags = FUSE_SETUPMAPPING_FLAG_READ};
	assert_int_equal(
		tc_call(&c, FUSE_SETUPMAPPING, eo.nodeid, &sm, sizeof(sm), NULL, 0, NULL, 0),
		-ENOSPC);
	/* Through an open handle too. */
	uint64_t fh = 0;
	assert_int_equal(tc_open(&c, eo.nodeid, O_RDONLY, 0, &fh), 0);
	sm = (struct fuse_setupmapping_in){
		.fh = fh, .len = 4096, .moffset = 128 * 1024, .flags = FUSE_SETUPMAPPING_FLAG_READ};
	assert_int_equal(
		tc_call(&c, FUSE_SETUPMAPPING, eo.nodeid, &sm, sizeof(sm), NULL, 0, NULL, 0), 0);
	assert_int_equal(rm.win[128 * 1024], 'a');
	sm.fh = fh + 100;
	sm.moffset = 256 * 1024;
	assert_int_equal(
		tc_call(&c, FUSE_SETUPMAPPING, eo.nodeid, &sm, sizeof(sm), NULL, 0, NULL, 0),
		-EBADF);

	/* Snapshot both, then restore into a fresh window, server and session. */
	void *sblob, *dblob;
	size_t slen, dlen;
	assert_int_equal(fuse_server_snapshot(s, &sblob, &slen, &err), 0);
	assert_int_equal(fuse_dax_snapshot(d, &dblob, &dlen, &err), 0);
	tc_close_client(&c);
	fuse_dax_free(d);
	munmap(rm.win, 4 * MB);

	rm.win = mmap(NULL, 4 * MB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(rm.win != MAP_FAILED);
	assert_int_equal(fuse_dax_new(BASE, 4 * MB, 1 * MB, &m, &d, &err), 0);
	assert_int_equal(fuse_passthrough_new(dir, &be, &err), 0);
	assert_int_equal(fuse_server_new(&cfg, be, &s, &err), 0);
	assert_int_equal(fuse_server_restore(s, sblob, slen, &err), 0);
	fuse_server_attach_dax(s, d);
	assert_int_equal(fuse_dax_restore(d, dblob, dlen, &err), 0);
	/* The guest touches the second page of the first slot: the VMM gets an
	 * MMIO exit there and asks the session; afterwards the data is there. */
	assert_int_equal(fuse_dax_fault(d, BASE + 64 * 1024 + 4096 + 5), 1);
	assert_int_equal(rm.win[64 * 1024], 'b');
	assert_int_equal(rm.win[64 * 1024 + 4096], 'c');
	assert_int_equal(fuse_dax_fault(d, BASE + 128 * 1024), 1);
	assert_int_equal(rm.win[128 * 1024], 'a');
	/* REMOVEMAPPING through the server. */
	tc_open_client(&c, s);
	struct {
		struct fuse_removemapping_in h;
		struct fuse_removemapping_one one[2];
	} __attribute__((packed)) rmv = {{2}, {{64 * 1024, 8192}, {128 * 1024, 4096}}};
	assert_int_equal(
		tc_call(&c, FUSE_REMOVEMAPPING, eo.nodeid, &rmv, sizeof(rmv), NULL, 0, NULL, 0), 0);
	assert_int_equal(fuse_dax_slot_count(d), 0);
	assert_int_equal(fuse_dax_fault(d, BASE + 64 * 1024), 0);
	tc_close_client(&c);
	fuse_dax_free(d);
	munmap(rm.win, 4 * MB);
	free(sblob);
	free(dblob);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_checks_window),
		cmocka_unit_test(test_alignment_and_bounds),
		cmocka_unit_test(test_overlap_cap_and_failure),
		cmocka_unit_test(test_concurrent_cap),
		cmocka_unit_test(test_snapshot_round_trip),
		cmocka_unit_test(test_malformed_blobs),
		cmocka_unit_test(test_restore_then_fault),
		cmocka_unit_test(test_real_mapping_via_server),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
