/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between the format/ sources; not public. */
#pragma once

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "crc32c.h"
#include "layout.h"
#include "sm/format.h"

/* pread/pwrite the whole range or fail with a message (short read: EBADMSG
 * "truncated"). WHAT names the thing for the message. */
int fmt_pread_full(int fd, void *buf, size_t len, uint64_t off, const char *what,
		   struct sm_error *err);
int fmt_pwrite_full(int fd, const void *buf, size_t len, uint64_t off, struct sm_error *err);

/* A tiny pool of worker threads running fn(ctx, item, worker) for items
 * [0, n); the calling thread works too (as worker 0). */
struct fmt_pool;
int fmt_pool_create(struct fmt_pool **out, unsigned threads, struct sm_error *err);
void fmt_pool_run(struct fmt_pool *p, uint64_t n, void (*fn)(void *, uint64_t, unsigned),
		  void *ctx);
void fmt_pool_free(struct fmt_pool *p);

/* Memory section state of a reader (format/mem_read.c). */
struct fmt_mem_reader;
void fmt_mem_reader_free(struct fmt_mem_reader *m);
/* Deep check of the memory section (every frame decompressed). */
int fmt_mem_verify(struct fmt_reader *r, const struct fmt_section_info *s, struct sm_error *err);

struct fmt_reader {
	int fd;
	struct fmt_file_info file;
	struct fmt_section_info *secs;
	int mem_index; /* -1 when none */
	pthread_mutex_t mem_lock;
	struct fmt_mem_reader *mem;
	pthread_mutex_t dctx_lock; /* guards dctx */
	void *dctx;		   /* ZSTD_DCtx reused by fmt_reader_read (created lazily) */
};
