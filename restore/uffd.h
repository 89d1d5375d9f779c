/* SPDX-License-Identifier: Apache-2.0 */
/*
 * restore/uffd.c: guest RAM filled on first touch from the snapshot's
 * compressed memory section (smrestore --lazy=uffd). Private to restore/.
 *
 * The RAM is an anonymous private mapping registered with userfaultfd in
 * MISSING mode. A handler thread reads the faults (from guest vCPUs through
 * KVM as well as from host threads touching guest memory) and fills the
 * aligned block around each one: runs of stored pages with UFFDIO_COPY
 * (decompressed by the format reader, which caches the last frame), runs of
 * pages the snapshot does not store with UFFDIO_ZEROPAGE. Nothing is read
 * or decompressed up front.
 */
#pragma once

#include <stdint.h>

#include "sm/error.h"

struct fmt_reader;
struct vm;
struct restore_uffd;

/* Guest memory is filled in aligned blocks of this many pages. */
#define RESTORE_UFFD_BLOCK_PAGES 32

struct restore_uffd_stats {
	uint64_t faults;       /* fault messages read */
	uint64_t blocks;       /* blocks filled */
	uint64_t copied_pages; /* pages filled with UFFDIO_COPY */
	uint64_t zero_pages;   /* pages filled with UFFDIO_ZEROPAGE */
	double fill_ms;	       /* time spent filling (reading, decompressing, ioctls) */
};

/* Map MEM_SIZE bytes of guest RAM (anonymous, private, not yet populated),
 * register it with a new userfaultfd and start the handler thread, which
 * fills it from the memory section of R (R must stay open until
 * restore_uffd_stop). *RAM gets the mapping: pass it to vm_create() as
 * vm_config.restore_ram (which takes it over), or munmap it yourself if
 * you never do. MEM_SIZE must equal the snapshot's memory size. */
int restore_uffd_start(struct fmt_reader *r, uint64_t mem_size, struct restore_uffd **out,
		       void **ram, struct sm_error *err);

/* Tell the handler which VM runs on the memory: when a block cannot be
 * filled (a corrupt frame, an I/O error) it stops that VM (the faulting
 * access gets zeroes so no thread hangs) and restore_uffd_stop() reports it.
 * After attach(NULL) (teardown) a fill that fails because the RAM is gone
 * (ENOENT, ESRCH) is not reported. */
void restore_uffd_attach(struct restore_uffd *u, struct vm *vm);

/* Stop and join the handler, close the userfaultfd and free U (NULL is a
 * no-op). Call after vm_destroy() has unmapped the RAM. Returns 0, or the
 * handler's first error (in ERR). ST (may be NULL) gets the counters. */
int restore_uffd_stop(struct restore_uffd *u, struct restore_uffd_stats *st, struct sm_error *err);
