/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: a fake guest memory and the driver side of a split virtqueue. */
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sm/vm.h"

#define GQ_MEM_SIZE (1024 * 1024)

struct gq {
	uint16_t size;
	uint64_t desc, avail, used;
	uint16_t avail_idx;
	uint16_t used_seen;
};

static inline struct vm_mem gmem_new(void)
{
	struct vm_mem m = {.host = calloc(1, GQ_MEM_SIZE), .size = GQ_MEM_SIZE};
	return m;
}

static inline void gq_init(struct gq *g, uint16_t size, uint64_t base)
{
	memset(g, 0, sizeof(*g));
	g->size = size;
	g->desc = base;
	g->avail = base + 0x1000;
	g->used = base + 0x2000;
}

static inline void gq_desc(const struct vm_mem *m, struct gq *g, int i, uint64_t addr, uint32_t len,
			   uint16_t flags, uint16_t next)
{
	uint8_t *d = m->host + g->desc + 16 * (uint64_t)i;
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static inline void gq_publish(const struct vm_mem *m, struct gq *g, uint16_t head)
{
	uint16_t slot = g->avail_idx % g->size;
	memcpy(m->host + g->avail + 4 + 2 * slot, &head, 2);
	g->avail_idx++;
	memcpy(m->host + g->avail + 2, &g->avail_idx, 2);
}

/* Next used element, if the device published one. */
static inline int gq_used(const struct vm_mem *m, struct gq *g, uint32_t *id, uint32_t *len)
{
	uint16_t idx;
	memcpy(&idx, m->host + g->used + 2, 2);
	if (idx == g->used_seen)
		return 0;
	uint16_t slot = g->used_seen % g->size;
	memcpy(id, m->host + g->used + 4 + 8 * slot, 4);
	memcpy(len, m->host + g->used + 4 + 8 * slot + 4, 4);
	g->used_seen++;
	return 1;
}

static inline void gq_to_virtq(const struct gq *g, struct virtq *q)
{
	memset(q, 0, sizeof(*q));
	q->size = g->size;
	q->max_size = 256;
	q->desc_gpa = g->desc;
	q->avail_gpa = g->avail;
	q->used_gpa = g->used;
	q->ready = 1;
}

#define F_NEXT	   1
#define F_WRITE	   2
#define F_INDIRECT 4
