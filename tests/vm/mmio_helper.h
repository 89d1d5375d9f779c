/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: play the guest driver against a virtio-mmio transport. */
#pragma once

#include "tests/vm/vq_helper.h"

static inline uint32_t mr(struct virtio_mmio *t, uint64_t off)
{
	uint32_t v;
	virtio_mmio_access(t, off, (uint8_t *)&v, 4, 0);
	return v;
}

static inline void mw(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	virtio_mmio_access(t, off, (uint8_t *)&v, 4, 1);
}

/* Negotiate VERSION_1 only and reach FEATURES_OK. Returns the status. */
static inline uint32_t drv_negotiate(struct virtio_mmio *t)
{
	mw(t, 0x70, 0);
	mw(t, 0x70, 1);
	mw(t, 0x70, 1 | 2);
	mw(t, 0x24, 0);
	mw(t, 0x20, 0);
	mw(t, 0x24, 1);
	mw(t, 0x20, 1); /* VERSION_1 is bit 32 */
	mw(t, 0x70, 1 | 2 | 8);
	return mr(t, 0x70);
}

static inline uint32_t drv_setup_queue(struct virtio_mmio *t, uint32_t idx, const struct gq *g)
{
	mw(t, 0x30, idx);
	mw(t, 0x38, g->size);
	mw(t, 0x80, (uint32_t)g->desc);
	mw(t, 0x84, (uint32_t)(g->desc >> 32));
	mw(t, 0x90, (uint32_t)g->avail);
	mw(t, 0x94, (uint32_t)(g->avail >> 32));
	mw(t, 0xa0, (uint32_t)g->used);
	mw(t, 0xa4, (uint32_t)(g->used >> 32));
	mw(t, 0x44, 1);
	return mr(t, 0x44);
}

static inline void drv_ok(struct virtio_mmio *t)
{
	mw(t, 0x70, 1 | 2 | 8 | 4);
}
