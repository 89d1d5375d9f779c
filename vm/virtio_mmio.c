/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-mmio transport, register layout version 2 (virtio 1.2, 4.2.2),
 * including the shared memory region registers. Devices plug in through a
 * struct virtio_dev_ops table; the guest drives everything through
 * virtio_mmio_access(), which never fails and never trusts a value. */
#include <errno.h>
#include <string.h>

#include "sm/vm.h"

enum {
	REG_MAGIC = 0x000,
	REG_VERSION = 0x004,
	REG_DEVICE_ID = 0x008,
	REG_VENDOR_ID = 0x00c,
	REG_DEVICE_FEATURES = 0x010,
	REG_DEVICE_FEATURES_SEL = 0x014,
	REG_DRIVER_FEATURES = 0x020,
	REG_DRIVER_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030,
	REG_QUEUE_NUM_MAX = 0x034,
	REG_QUEUE_NUM = 0x038,
	REG_QUEUE_READY = 0x044,
	REG_QUEUE_NOTIFY = 0x050,
	REG_INTERRUPT_STATUS = 0x060,
	REG_INTERRUPT_ACK = 0x064,
	REG_STATUS = 0x070,
	REG_QUEUE_DESC_LOW = 0x080,
	REG_QUEUE_DESC_HIGH = 0x084,
	REG_QUEUE_DRIVER_LOW = 0x090,
	REG_QUEUE_DRIVER_HIGH = 0x094,
	REG_QUEUE_DEVICE_LOW = 0x0a0,
	REG_QUEUE_DEVICE_HIGH = 0x0a4,
	REG_SHM_SEL = 0x0ac,
	REG_SHM_LEN_LOW = 0x0b0,
	REG_SHM_LEN_HIGH = 0x0b4,
	REG_SHM_BASE_LOW = 0x0b8,
	REG_SHM_BASE_HIGH = 0x0bc,
	REG_CONFIG_GENERATION = 0x0fc,
	REG_CONFIG = 0x100,
};

#define MAGIC_VALUE 0x74726976 /* "virt" */
#define VENDOR_ID   0x4d56534d /* "SMVM" */

#define STATUS_ACKNOWLEDGE	  1
#define STATUS_DRIVER		  2
#define STATUS_DRIVER_OK	  4
#define STATUS_FEATURES_OK	  8
#define STATUS_DEVICE_NEEDS_RESET 64
#define STATUS_FAILED		  128

#define INT_USED   1
#define INT_CONFIG 2

static uint64_t dev_features(const struct virtio_mmio *t)
{
	return t->ops->features | (1ULL << VIRTIO_F_VERSION_1_BIT);
}

int virtio_mmio_init(struct virtio_mmio *t, const struct virtio_dev_ops *ops, void *dev,
		     const struct vm_mem *mem, struct sm_error *err)
{
	if (ops->num_queues > VIRTIO_MMIO_MAX_QUEUES)
		return sm_error_set(err, EINVAL, "%s: %u queues, at most %d", ops->name,
				    ops->num_queues, VIRTIO_MMIO_MAX_QUEUES);
	if (ops->queue_max == 0 || ops->queue_max > VIRTQ_MAX_SIZE ||
	    (ops->queue_max & (ops->queue_max - 1)))
		return sm_error_set(err, EINVAL, "%s: bad queue_max %u", ops->name, ops->queue_max);
	memset(t, 0, sizeof(*t));
	t->ops = ops;
	t->dev = dev;
	t->mem = mem;
	int r = pthread_mutex_init(&t->lock, NULL);
	if (r)
		return sm_error_errno(err, r, "%s: mutex", ops->name);
	for (uint32_t i = 0; i < ops->num_queues; i++)
		t->vq[i].max_size = ops->queue_max;
	return 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
	if (t->ops)
		pthread_mutex_destroy(&t->lock);
	t->ops = NULL;
}

static void reset_locked(struct virtio_mmio *t)
{
	int was_running = t->status & STATUS_DRIVER_OK;
	t->status = 0;
	t->dev_features_sel = t->drv_features_sel = 0;
	t->drv_features = 0;
	t->queue_sel = 0;
	t->isr = 0;
	t->shm_sel = 0;
	for (uint32_t i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++) {
		uint16_t max = t->vq[i].max_size;
		memset(&t->vq[i], 0, sizeof(t->vq[i]));
		t->vq[i].max_size = max;
	}
	if (was_running && t->ops->status_changed)
		t->ops->status_changed(t->dev, 0);
}

static struct virtq *selected(struct virtio_mmio *t)
{
	if (t->queue_sel >= t->ops->num_queues)
		return NULL;
	return &t->vq[t->queue_sel];
}

struct virtq *virtio_mmio_queue(struct virtio_mmio *t, uint32_t qidx)
{
	if (qidx >= t->ops->num_queues || !(t->status & STATUS_DRIVER_OK) ||
	    (t->status & STATUS_DEVICE_NEEDS_RESET))
		return NULL;
	struct virtq *q = &t->vq[qidx];
	return q->ready && !q->broken ? q : NULL;
}

void virtio_mmio_signal_used(struct virtio_mmio *t)
{
	t->isr |= INT_USED;
	if (t->irq)
		t->irq(t->irq_ctx);
}

void virtio_mmio_set_broken(struct virtio_mmio *t)
{
	if (!(t->status & STATUS_DRIVER_OK))
		return;
	t->status |= STATUS_DEVICE_NEEDS_RESET;
	t->isr |= INT_CONFIG;
	if (t->irq)
		t->irq(t->irq_ctx);
}

static void notify_locked(struct virtio_mmio *t, uint32_t qidx)
{
	struct virtq *q = virtio_mmio_queue(t, qidx);
	if (!q || !t->ops->queue_notify)
		return;
	t->ops->queue_notify(t->dev, qidx);
	if (q->broken) {
		sm_error_set(&t->last_err, EINVAL, "%s: queue %u: malformed descriptor chain",
			     t->ops->name, qidx);
		virtio_mmio_set_broken(t);
	}
}

void virtio_mmio_kick(struct virtio_mmio *t, uint32_t qidx)
{
	pthread_mutex_lock(&t->lock);
	notify_locked(t, qidx);
	pthread_mutex_unlock(&t->lock);
}

static void set_lo(uint64_t *v, uint32_t x)
{
	*v = (*v & 0xffffffff00000000ULL) | x;
}
static void set_hi(uint64_t *v, uint32_t x)
{
	*v = (*v & 0xffffffffULL) | ((uint64_t)x << 32);
}

static void write_status(struct virtio_mmio *t, uint32_t v)
{
	if (v == 0) {
		reset_locked(t);
		return;
	}
	v &= 0xff;
	/* Bits may only be added, in order; anything else is ignored. */
	if ((v & t->status) != t->status)
		return;
	uint32_t added = v & ~t->status;
	if (added & STATUS_FEATURES_OK) {
		uint64_t df = dev_features(t);
		if ((t->drv_features & ~df) ||
		    !(t->drv_features & (1ULL << VIRTIO_F_VERSION_1_BIT)))
			v &= ~(uint32_t)STATUS_FEATURES_OK; /* refuse: driver reads it back */
	}
	if ((added & STATUS_DRIVER_OK) && !(v & STATUS_FEATURES_OK))
		v &= ~(uint32_t)STATUS_DRIVER_OK;
	v &= ~(uint32_t)STATUS_DEVICE_NEEDS_RESET; /* device-owned bit */
	v |= t->status & STATUS_DEVICE_NEEDS_RESET;
	t->status = v;
	if ((added & STATUS_DRIVER_OK) && (v & STATUS_DRIVER_OK) && t->ops->status_changed)
		t->ops->status_changed(t->dev, 1);
}

static uint32_t read_reg(struct virtio_mmio *t, uint64_t off)
{
	struct virtq *q = selected(t);
	switch (off) {
	case REG_MAGIC:
		return MAGIC_VALUE;
	case REG_VERSION:
		return 2;
	case REG_DEVICE_ID:
		return t->ops->device_id;
	case REG_VENDOR_ID:
		return VENDOR_ID;
	case REG_DEVICE_FEATURES:
		if (t->dev_features_sel > 1)
			return 0;
		return (uint32_t)(dev_features(t) >> (32 * t->dev_features_sel));
	case REG_QUEUE_NUM_MAX:
		return q ? q->max_size : 0;
	case REG_QUEUE_READY:
		return q ? (uint32_t)q->ready : 0;
	case REG_INTERRUPT_STATUS:
		return t->isr;
	case REG_STATUS:
		return t->status;
	case REG_SHM_LEN_LOW:
	case REG_SHM_LEN_HIGH:
	case REG_SHM_BASE_LOW:
	case REG_SHM_BASE_HIGH: {
		uint64_t base, len;
		if (!t->ops->shm_region || !t->ops->shm_region(t->dev, t->shm_sel, &base, &len))
			return 0xffffffff; /* no such region: length -1 */
		uint64_t v = off < REG_SHM_BASE_LOW ? len : base;
		return (off & 4) ? (uint32_t)(v >> 32) : (uint32_t)v;
	}
	case REG_CONFIG_GENERATION:
		return t->config_generation;
	}
	return 0;
}

static void write_reg(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	struct virtq *q = selected(t);
	/* Queue layout may only change while the queue is not live. */
	int q_writable = q && !q->ready;
	switch (off) {
	case REG_DEVICE_FEATURES_SEL:
		t->dev_features_sel = v;
		break;
	case REG_DRIVER_FEATURES_SEL:
		t->drv_features_sel = v;
		break;
	case REG_DRIVER_FEATURES:
		if (t->status & STATUS_FEATURES_OK)
			break;
		if (t->drv_features_sel == 0)
			set_lo(&t->drv_features, v);
		else if (t->drv_features_sel == 1)
			set_hi(&t->drv_features, v);
		break;
	case REG_QUEUE_SEL:
		t->queue_sel = v;
		break;
	case REG_QUEUE_NUM:
		if (q_writable)
			q->size = v > 0xffff ? 0 : (uint16_t)v;
		break;
	case REG_QUEUE_READY:
		if (!q)
			break;
		if (v == 0) {
			q->ready = 0;
		} else if (!q->ready) {
			struct sm_error e = {0};
			if (virtq_validate(q, t->mem, &e) < 0) {
				sm_error_wrap(&e, "%s: queue %u", t->ops->name, t->queue_sel);
				t->last_err = e;
				break; /* stays not ready; the driver sees 0 */
			}
			q->last_avail = 0;
			q->used_idx = 0;
			q->broken = 0;
			q->ready = 1;
		}
		break;
	case REG_QUEUE_NOTIFY:
		notify_locked(t, v & 0xffff);
		break;
	case REG_INTERRUPT_ACK:
		t->isr &= ~v;
		break;
	case REG_STATUS:
		write_status(t, v);
		break;
	case REG_QUEUE_DESC_LOW:
		if (q_writable)
			set_lo(&q->desc_gpa, v);
		break;
	case REG_QUEUE_DESC_HIGH:
		if (q_writable)
			set_hi(&q->desc_gpa, v);
		break;
	case REG_QUEUE_DRIVER_LOW:
		if (q_writable)
			set_lo(&q->avail_gpa, v);
		break;
	case REG_QUEUE_DRIVER_HIGH:
		if (q_writable)
			set_hi(&q->avail_gpa, v);
		break;
	case REG_QUEUE_DEVICE_LOW:
		if (q_writable)
			set_lo(&q->used_gpa, v);
		break;
	case REG_QUEUE_DEVICE_HIGH:
		if (q_writable)
			set_hi(&q->used_gpa, v);
		break;
	case REG_SHM_SEL:
		t->shm_sel = v;
		break;
	default:
		break; /* read-only or unknown: ignored */
	}
}

void virtio_mmio_access(struct virtio_mmio *t, uint64_t off, uint8_t *data, uint32_t len,
			int is_write)
{
	if (!is_write)
		memset(data, 0, len);
	if (len == 0 || len > 8)
		return;
	pthread_mutex_lock(&t->lock);
	if (off >= REG_CONFIG) {
		uint64_t coff = off - REG_CONFIG;
		/* Config space: reads only (our devices have no writable config). */
		if (!is_write && t->ops->config_read && sm_range_ok(coff, len, t->ops->config_len))
			t->ops->config_read(t->dev, (uint32_t)coff, data, len);
	} else if (len == 4 && (off & 3) == 0) {
		if (is_write) {
			uint32_t v;
			memcpy(&v, data, 4);
			write_reg(t, off, v);
		} else {
			uint32_t v = read_reg(t, off);
			memcpy(data, &v, 4);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_io(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len, int is_write,
		    void *opaque)
{
	(void)vcpu;
	virtio_mmio_access(opaque, off, data, len, is_write);
}
