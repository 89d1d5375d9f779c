/* SPDX-License-Identifier: Apache-2.0 */
/*
 * restore/wset.c: the guest pages a restore writes ("write set"), recorded
 * once per cached memory image and copied ahead by later restores.
 * Private to restore/.
 *
 * Guest RAM is a MAP_PRIVATE view of the cached memory image, so the first
 * guest write to a page is a nested page fault that makes the host copy it
 * (and often a second one, after a read fault had mapped it read-only).
 * The first restore of an image records which pages it copied (present and
 * no longer file-backed in /proc/self/pagemap) into IMAGE.wset; later
 * restores copy those pages with MADV_POPULATE_WRITE before the vCPUs run,
 * and the guest's first write to them is a plain NPT fill. The file is a
 * cache hint: one that is missing or does not check out is ignored (and
 * recorded again).
 *
 * File: struct restore_wset_hdr, then count struct restore_wset_range,
 * little-endian; ranges page-aligned, sorted, disjoint, inside the image,
 * RESTORE_WSET_MAX_PAGES pages at most in all.
 */
#pragma once

#include <stdint.h>

#include "sm/error.h"

/* 8 MiB: a restored VM's private memory budget (issue 8: <= 8 MiB each). */
#define RESTORE_WSET_MAX_PAGES 2048u
/* 64 MiB: pages only mapped ahead, not copied. */
#define RESTORE_RSET_MAX_PAGES 16384u
#define RESTORE_WSET_MAGIC     "SMWSET1"

struct restore_wset_hdr {
	char magic[8];	   /* RESTORE_WSET_MAGIC, NUL-padded */
	uint64_t mem_size; /* the memory image's size */
	uint32_t count;	   /* ranges that follow */
	uint32_t pages;	   /* pages in all */
	uint64_t reserved; /* 0 */
};
_Static_assert(sizeof(struct restore_wset_hdr) == 32, "wset header layout");

struct restore_wset_range {
	uint64_t offset; /* bytes into guest RAM */
	uint64_t length; /* bytes, a multiple of the page size */
};
_Static_assert(sizeof(struct restore_wset_range) == 16, "wset range layout");

/* Write to PATH (temp file + rename) the pages of [HOST, HOST+SIZE) that
 * this process has copied on write, the first RESTORE_WSET_MAX_PAGES of
 * them. *PAGES (may be NULL) gets how many were recorded. */
int restore_wset_record(const void *host, uint64_t size, const char *path, uint32_t *pages,
			struct sm_error *err);

/* Read and check PATH against an image of SIZE bytes. *RANGES is malloc'ed.
 * -ENOENT when there is none, -EINVAL when it does not check out. */
int restore_wset_load(const char *path, uint64_t size, struct restore_wset_range **ranges,
		      uint32_t *count, struct sm_error *err);

/* Copy the pages of RANGES (checked by restore_wset_load against SIZE) into
 * private memory of the mapping at HOST. */
/* The read set: the same for the pages the restore only read (present and
 * still the image's page cache), the first RESTORE_RSET_MAX_PAGES of them,
 * in a file of the same format (IMAGE.rset). Later restores map them into
 * KVM's stage-2 tables ahead (vm_prefault) where the host's KVM can. */
int restore_rset_record(const void *host, uint64_t size, const char *path, uint32_t *pages,
			struct sm_error *err);
int restore_rset_load(const char *path, uint64_t size, struct restore_wset_range **ranges,
		      uint32_t *count, struct sm_error *err);

int restore_wset_apply(void *host, uint64_t size, const struct restore_wset_range *ranges,
		       uint32_t count, struct sm_error *err);
