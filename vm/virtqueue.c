/* SPDX-License-Identifier: Apache-2.0 */
/* Split virtqueues (virtio 1.x, section 2.7). Every ring and descriptor
 * address comes from the guest and is checked against guest memory. */
#include <errno.h>
#include <string.h>

#include "sm/vm.h"

#define VRING_DESC_F_NEXT     1
#define VRING_DESC_F_WRITE    2
#define VRING_DESC_F_INDIRECT 4

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
} __attribute__((packed));
_Static_assert(sizeof(struct vring_desc) == 16, "virtq descriptor is 16 bytes");

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
} __attribute__((packed));
_Static_assert(sizeof(struct vring_used_elem) == 8, "used element is 8 bytes");

/* Sizes of the three areas for a queue of N entries (no event idx). */
static uint64_t desc_bytes(uint16_t n)
{
	return 16ULL * n;
}
static uint64_t avail_bytes(uint16_t n)
{
	return 4ULL + 2ULL * n + 2ULL;
}
static uint64_t used_bytes(uint16_t n)
{
	return 4ULL + 8ULL * n + 2ULL;
}

int virtq_validate(const struct virtq *q, const struct vm_mem *mem, struct sm_error *err)
{
	if (q->size == 0)
		return sm_error_set(err, EINVAL, "virtqueue size is 0");
	if (q->size > VIRTQ_MAX_SIZE || (q->max_size && q->size > q->max_size))
		return sm_error_set(err, EINVAL, "virtqueue size %u exceeds maximum %u", q->size,
				    q->max_size ? q->max_size : VIRTQ_MAX_SIZE);
	if (q->size & (q->size - 1))
		return sm_error_set(err, EINVAL, "virtqueue size %u is not a power of 2", q->size);
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return sm_error_set(err, EINVAL, "virtqueue ring addresses misaligned");
	if (!vm_mem_ptr(mem, q->desc_gpa, desc_bytes(q->size)))
		return sm_error_set(err, EINVAL, "descriptor table 0x%llx outside guest memory",
				    (unsigned long long)q->desc_gpa);
	if (!vm_mem_ptr(mem, q->avail_gpa, avail_bytes(q->size)))
		return sm_error_set(err, EINVAL, "avail ring 0x%llx outside guest memory",
				    (unsigned long long)q->avail_gpa);
	if (!vm_mem_ptr(mem, q->used_gpa, used_bytes(q->size)))
		return sm_error_set(err, EINVAL, "used ring 0x%llx outside guest memory",
				    (unsigned long long)q->used_gpa);
	return 0;
}

static volatile uint16_t *avail_idx_ptr(const struct virtq *q, const struct vm_mem *mem)
{
	return vm_mem_ptr(mem, q->avail_gpa + 2, 2);
}

int virtq_has_avail(const struct virtq *q, const struct vm_mem *mem)
{
	if (!q->ready || q->broken || q->size == 0)
		return 0;
	volatile uint16_t *ai = avail_idx_ptr(q, mem);
	if (!ai)
		return 0;
	return *ai != q->last_avail;
}

static int fail(struct virtq *q)
{
	q->broken = 1;
	return -EINVAL;
}

int virtq_pop(struct virtq *q, const struct vm_mem *mem, struct virtq_elem *e)
{
	if (!q->ready || q->broken || q->size == 0)
		return 0;
	volatile uint16_t *ai = avail_idx_ptr(q, mem);
	volatile uint16_t *ring = vm_mem_ptr(mem, q->avail_gpa + 4, 2ULL * q->size);
	struct vring_desc *table = vm_mem_ptr(mem, q->desc_gpa, desc_bytes(q->size));
	if (!ai || !ring || !table)
		return fail(q);
	uint16_t avail = *ai;
	if (avail == q->last_avail)
		return 0;
	/* The driver cannot have more chains outstanding than the queue holds. */
	if ((uint16_t)(avail - q->last_avail) > q->size)
		return fail(q);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);

	uint16_t head = ring[q->last_avail & (q->size - 1)];
	e->head = head;
	e->n_out = e->n_in = 0;
	e->out_len = e->in_len = 0;
	uint16_t idx = head;
	for (unsigned count = 0;; count++) {
		if (idx >= q->size || count >= q->size)
			return fail(q); /* index out of range, or a loop */
		struct vring_desc d;
		memcpy(&d, (const void *)&table[idx], sizeof(d));
		if (d.flags & VRING_DESC_F_INDIRECT)
			return fail(q); /* not negotiated */
		uint8_t *p = vm_mem_ptr(mem, d.addr, d.len);
		if (!p)
			return fail(q);
		if (d.flags & VRING_DESC_F_WRITE) {
			if (e->n_in >= VIRTQ_MAX_SEGS)
				return fail(q);
			e->in[e->n_in++] = (struct virtq_seg){p, d.len};
			e->in_len += d.len;
		} else {
			if (e->n_in > 0 || e->n_out >= VIRTQ_MAX_SEGS)
				return fail(q); /* readable after writable */
			e->out[e->n_out++] = (struct virtq_seg){p, d.len};
			e->out_len += d.len;
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		idx = d.next;
	}
	q->last_avail++;
	return 1;
}

void virtq_push(struct virtq *q, const struct vm_mem *mem, uint16_t head, uint32_t len)
{
	if (!q->ready || q->size == 0)
		return;
	struct vring_used_elem *ring = vm_mem_ptr(mem, q->used_gpa + 4, 8ULL * q->size);
	volatile uint16_t *uidx = vm_mem_ptr(mem, q->used_gpa + 2, 2);
	if (!ring || !uidx) {
		q->broken = 1;
		return;
	}
	struct vring_used_elem u = {.id = head, .len = len};
	memcpy(&ring[q->used_idx & (q->size - 1)], &u, sizeof(u));
	q->used_idx++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	*uidx = q->used_idx;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

size_t virtq_elem_read(const struct virtq_elem *e, size_t off, void *buf, size_t len)
{
	size_t done = 0;
	for (int i = 0; i < e->n_out && done < len; i++) {
		size_t sl = e->out[i].len;
		if (off >= sl) {
			off -= sl;
			continue;
		}
		size_t n = sl - off;
		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)buf + done, e->out[i].p + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_elem_write(const struct virtq_elem *e, size_t off, const void *buf, size_t len)
{
	size_t done = 0;
	for (int i = 0; i < e->n_in && done < len; i++) {
		size_t sl = e->in[i].len;
		if (off >= sl) {
			off -= sl;
			continue;
		}
		size_t n = sl - off;
		if (n > len - done)
			n = len - done;
		memcpy(e->in[i].p + off, (const uint8_t *)buf + done, n);
		done += n;
		off = 0;
	}
	return done;
}
