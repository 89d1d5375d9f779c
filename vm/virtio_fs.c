/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-fs (device id 26) over the FUSE server of fuse/.
 *
 * Queue 0 is hiprio (FORGET, BATCH_FORGET), queue 1 the request queue.
 * Each chain's device-readable segments become the request iovecs and its
 * device-writable segments the reply iovecs of fuse_server_handle(); the
 * transport's virtq_pop() has already checked every descriptor against
 * guest RAM. Kicks only wake a worker thread, which pops chains under the
 * transport lock, serves them without it, and pushes the replies back, so
 * neither a vCPU nor the I/O thread ever waits on the host file system.
 *
 * With a DAX window the device advertises it as shared memory region 0 and
 * attaches a fuse_dax session whose mapper is vm/dax_map.c. Guest accesses
 * to window parts without a memory slot come here as MMIO
 * (virtio_fs_dax_io) and go to fuse_dax_fault(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "sm/fuse.h"
#include "sm/vm.h"

#define FS_QUEUES    2 /* hiprio + one request queue */
#define FS_QUEUE_MAX 256
#define FS_BATCH     16
#define FS_TAG_LEN   36
#define FS_MAX_WRITE (128u * 1024) /* 32 pages + headers fit VIRTQ_MAX_SEGS */

struct virtio_fs {
	struct virtio_mmio *t;
	struct fuse_server *srv;
	struct fuse_dax *dax;
	struct vm_dax_map *map;
	uint64_t dax_gpa, dax_len;
	char tag[FS_TAG_LEN];
	int read_only;

	pthread_mutex_t lock;	  /* pending, quit, paused, busy; after the transport lock */
	pthread_cond_t cond;	  /* wakes the worker */
	pthread_cond_t idle_cond; /* busy went to 0 */
	uint32_t pending;	  /* queues kicked since the worker last looked */
	int quit;
	int paused; /* virtio_fs_pause(): take no new chains */
	int busy;   /* the worker is popping, serving or pushing chains */
	pthread_t thread;
	int started;
	uint64_t gen; /* bumped on device reset (transport lock) */
	struct virtq_elem *batch;

	uint64_t requests, dax_faults; /* stats */
};

static void fs_config_read(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_fs *fs = dev;
	uint8_t cfg[FS_TAG_LEN + 4];
	memcpy(cfg, fs->tag, FS_TAG_LEN);
	uint32_t nq = FS_QUEUES - 1; /* num_request_queues, little-endian on x86 */
	memcpy(cfg + FS_TAG_LEN, &nq, 4);
	memcpy(data, cfg + off, len); /* the transport checked off+len <= config_len */
}

static void fs_notify(void *dev, uint32_t qidx)
{
	struct virtio_fs *fs = dev;
	pthread_mutex_lock(&fs->lock);
	fs->pending |= 1u << qidx;
	pthread_cond_signal(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
}

static void fs_status_changed(void *dev, int driver_ok)
{
	struct virtio_fs *fs = dev;
	if (!driver_ok)
		fs->gen++; /* chains popped before the reset must not be pushed */
}

static int fs_shm_region(void *dev, uint32_t id, uint64_t *base, uint64_t *len)
{
	struct virtio_fs *fs = dev;
	if (id != 0 || !fs->dax)
		return 0;
	*base = fs->dax_gpa;
	*len = fs->dax_len;
	return 1;
}

const struct virtio_dev_ops virtio_fs_ops = {
	.name = "virtio-fs",
	.device_id = VIRTIO_FS_DEVICE_ID,
	.features = 0,
	.num_queues = FS_QUEUES,
	.queue_max = FS_QUEUE_MAX,
	.config_len = FS_TAG_LEN + 4,
	.config_read = fs_config_read,
	.queue_notify = fs_notify,
	.status_changed = fs_status_changed,
	.shm_region = fs_shm_region,
};

static uint32_t serve(struct virtio_fs *fs, const struct virtq_elem *e)
{
	struct iovec in[VIRTQ_MAX_SEGS], out[VIRTQ_MAX_SEGS];
	for (int i = 0; i < e->n_out; i++)
		in[i] = (struct iovec){.iov_base = e->out[i].p, .iov_len = e->out[i].len};
	for (int i = 0; i < e->n_in; i++)
		out[i] = (struct iovec){.iov_base = e->in[i].p, .iov_len = e->in[i].len};
	size_t n = fuse_server_handle(fs->srv, in, e->n_out, out, e->n_in);
	return n > UINT32_MAX ? 0 : (uint32_t)n;
}

/* Pop, serve and push everything queue QIDX holds. */
static void drain_queue(struct virtio_fs *fs, uint32_t qidx)
{
	struct virtio_mmio *t = fs->t;
	uint32_t lens[FS_BATCH];
	for (;;) {
		pthread_mutex_lock(&t->lock);
		struct virtq *q = virtio_mmio_queue(t, qidx);
		uint64_t gen = fs->gen;
		int n = 0;
		while (q && n < FS_BATCH) {
			int r = virtq_pop(q, t->mem, &fs->batch[n]);
			if (r < 0) {
				sm_error_set(&t->last_err, EINVAL,
					     "virtio-fs: queue %u: malformed descriptor chain",
					     qidx);
				virtio_mmio_set_broken(t);
				break;
			}
			if (r == 0)
				break;
			n++;
		}
		pthread_mutex_unlock(&t->lock);
		if (n == 0)
			return;
		for (int i = 0; i < n; i++)
			lens[i] = serve(fs, &fs->batch[i]);
		pthread_mutex_lock(&t->lock);
		q = virtio_mmio_queue(t, qidx);
		if (q && gen == fs->gen) {
			for (int i = 0; i < n; i++)
				virtq_push(q, t->mem, fs->batch[i].head, lens[i]);
			virtio_mmio_signal_used(t);
		}
		fs->requests += (uint64_t)n;
		pthread_mutex_unlock(&t->lock);
	}
}

static void *fs_worker(void *arg)
{
	struct virtio_fs *fs = arg;
	for (;;) {
		pthread_mutex_lock(&fs->lock);
		while ((!fs->pending || fs->paused) && !fs->quit)
			pthread_cond_wait(&fs->cond, &fs->lock);
		uint32_t pending = fs->pending;
		int quit = fs->quit;
		fs->pending = 0;
		fs->busy = !quit;
		pthread_mutex_unlock(&fs->lock);
		if (quit)
			return NULL;
		for (uint32_t q = 0; q < FS_QUEUES; q++)
			if (pending & (1u << q))
				drain_queue(fs, q);
		pthread_mutex_lock(&fs->lock);
		fs->busy = 0;
		pthread_cond_broadcast(&fs->idle_cond);
		pthread_mutex_unlock(&fs->lock);
	}
}

int virtio_fs_create(struct virtio_fs **out, const struct virtio_fs_config *cfg,
		     struct sm_error *err)
{
	*out = NULL;
	const char *tag = cfg->tag ? cfg->tag : "rootfs";
	if (!cfg->root_dir)
		return sm_error_set(err, EINVAL, "virtio-fs: no directory to share");
	if (!*tag || strlen(tag) > FS_TAG_LEN)
		return sm_error_set(err, EINVAL, "virtio-fs: tag '%s' must be 1..%d bytes", tag,
				    FS_TAG_LEN);
	struct virtio_fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return sm_error_set(err, ENOMEM, "virtio-fs");
	fs->batch = calloc(FS_BATCH, sizeof(*fs->batch));
	if (!fs->batch) {
		free(fs);
		return sm_error_set(err, ENOMEM, "virtio-fs");
	}
	strncpy(fs->tag, tag, FS_TAG_LEN); /* NUL-padded, not terminated at 36 */
	fs->read_only = !!cfg->read_only;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_cond_init(&fs->cond, NULL);
	pthread_cond_init(&fs->idle_cond, NULL);
	*out = fs; /* from here on virtio_fs_destroy() cleans up */

	struct fuse_backend *be;
	struct fuse_server_config scfg;
	fuse_server_config_init(&scfg);
	scfg.read_only = cfg->read_only;
	scfg.max_write = FS_MAX_WRITE;
	if (cfg->read_only) /* the image never changes under the guest */
		scfg.entry_valid_ms = scfg.attr_valid_ms = 3600 * 1000;
	int r = fuse_passthrough_new(cfg->root_dir, &be, err);
	if (r == 0)
		r = fuse_server_new(&scfg, be, &fs->srv, err);
	if (r < 0)
		goto fail;
	if (cfg->dax_len) {
		fs->dax_gpa = cfg->dax_gpa;
		fs->dax_len = cfg->dax_len;
		r = vm_dax_map_new(cfg->vm_fd, cfg->dax_gpa, cfg->dax_len, cfg->first_slot,
				   cfg->max_slots, &fs->map, err);
		struct fuse_dax_mapper m;
		if (r == 0) {
			vm_dax_map_mapper(fs->map, &m);
			r = fuse_dax_new(cfg->dax_gpa, cfg->dax_len, 0, &m, &fs->dax, err);
		}
		if (r < 0)
			goto fail;
		fuse_server_attach_dax(fs->srv, fs->dax);
	}
	return 0;
fail:
	sm_error_wrap(err, "virtio-fs %s", cfg->root_dir);
	virtio_fs_destroy(fs);
	*out = NULL;
	return r;
}

int virtio_fs_attach(struct virtio_fs *fs, struct virtio_mmio *t, struct sm_error *err)
{
	fs->t = t;
	int r = pthread_create(&fs->thread, NULL, fs_worker, fs);
	if (r)
		return sm_error_errno(err, r, "virtio-fs: cannot start the worker");
	fs->started = 1;
	return 0;
}

void virtio_fs_destroy(struct virtio_fs *fs)
{
	if (!fs)
		return;
	if (fs->started) {
		pthread_mutex_lock(&fs->lock);
		fs->quit = 1;
		pthread_cond_signal(&fs->cond);
		pthread_mutex_unlock(&fs->lock);
		pthread_join(fs->thread, NULL);
	}
	if (fs->srv)
		fuse_server_free(fs->srv); /* first the server (it detaches the window), */
	if (fs->dax)
		fuse_dax_free(fs->dax); /* then the session (it unmaps live slots), */
	vm_dax_map_free(fs->map);	/* then the host reservation */
	pthread_cond_destroy(&fs->cond);
	pthread_cond_destroy(&fs->idle_cond);
	pthread_mutex_destroy(&fs->lock);
	free(fs->batch);
	free(fs);
}

void virtio_fs_dax_io(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len, int is_write,
		      void *opaque)
{
	(void)vcpu;
	struct virtio_fs *fs = opaque;
	int r = fs->dax ? fuse_dax_fault(fs->dax, fs->dax_gpa + off) : 0;
	if (r == 1) {
		__atomic_add_fetch(&fs->dax_faults, 1, __ATOMIC_RELAXED);
		/* The slot is mapped now. KVM completes this very access from
		 * run->mmio, so do it here through the new host mapping; later
		 * accesses go straight to the memory slot. A write into a
		 * read-only slot (or past EOF) fails and is dropped. */
		if (vm_dax_map_access(fs->map, off, data, len, is_write) == 0)
			return;
	}
	/* Not in any slot (or the file is gone): reads see all ones, writes
	 * are ignored, as for any unclaimed MMIO. */
	if (!is_write)
		memset(data, 0xff, len);
}

struct fuse_server *virtio_fs_server(struct virtio_fs *fs)
{
	return fs->srv;
}

struct fuse_dax *virtio_fs_dax(struct virtio_fs *fs)
{
	return fs->dax;
}

void virtio_fs_stats(struct virtio_fs *fs, uint64_t *requests, uint64_t *dax_faults,
		     uint32_t *dax_slots)
{
	*requests = 0;
	if (fs->t) {
		pthread_mutex_lock(&fs->t->lock);
		*requests = fs->requests;
		pthread_mutex_unlock(&fs->t->lock);
	}
	*dax_faults = __atomic_load_n(&fs->dax_faults, __ATOMIC_RELAXED);
	*dax_slots = fs->map ? vm_dax_map_slots_used(fs->map) : 0;
}

int virtio_fs_pause(struct virtio_fs *fs, int timeout_ms, struct sm_error *err)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	int r = 0;
	pthread_mutex_lock(&fs->lock);
	fs->paused = 1;
	while (fs->busy && r == 0)
		r = pthread_cond_timedwait(&fs->idle_cond, &fs->lock, &dl);
	int busy = fs->busy;
	pthread_mutex_unlock(&fs->lock);
	if (busy) {
		virtio_fs_resume(fs);
		return sm_error_set(err, ETIMEDOUT,
				    "virtio-fs: a request was still being served after %d ms",
				    timeout_ms);
	}
	return 0;
}

void virtio_fs_resume(struct virtio_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	fs->paused = 0;
	/* Look at every queue: kicks may have come while paused, or before a
	 * capture this device was restored from. */
	fs->pending = (1u << FS_QUEUES) - 1;
	pthread_cond_signal(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
}

void virtio_fs_layout(struct virtio_fs *fs, struct virtio_fs_layout *out)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->tag, fs->tag, FS_TAG_LEN);
	out->read_only = fs->read_only;
	out->dax_gpa = fs->dax ? fs->dax_gpa : 0;
	out->dax_len = fs->dax ? fs->dax_len : 0;
}
