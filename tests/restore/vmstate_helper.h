/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the restore unit tests: the vmstate record's layout
 * (vm/snapshot.c, VM_SNAP_VERSION 1), a builder for a valid record, and the
 * per-test temporary directory TEST_DIR (defined by the including file). */
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm/vm.h"

#define VMST_SIZE      1784
#define OFF_MEM_SIZE   16
#define OFF_NCPUS      24
#define OFF_NVIRTIO    28
#define OFF_FLAGS      32
#define OFF_RESERVED   36
#define OFF_PIC_MASTER 40
#define OFF_PIC_SLAVE  560
#define OFF_IOAPIC     1080
#define OFF_KBD_OUT_N  1770
#define OFF_RESERVED2  1780

static inline void put32(uint8_t *b, size_t off, uint32_t v)
{
	memcpy(b + off, &v, 4);
}

static inline void put64(uint8_t *b, size_t off, uint64_t v)
{
	memcpy(b + off, &v, 8);
}

/* A valid vmstate record (VMST_SIZE bytes) of a 256 MiB guest. */
static inline void vmstate_build(uint8_t *b, uint32_t ncpus, uint32_t n_virtio, uint32_t flags)
{
	memset(b, 0, VMST_SIZE);
	put32(b, 0, 0x54534d56u); /* "VMST" */
	b[4] = VM_SNAP_VERSION;
	put32(b, 8, VMST_SIZE);
	put64(b, OFF_MEM_SIZE, 256ULL << 20);
	put32(b, OFF_NCPUS, ncpus);
	put32(b, OFF_NVIRTIO, n_virtio);
	put32(b, OFF_FLAGS, flags);
	put32(b, OFF_PIC_MASTER, 0);
	put32(b, OFF_PIC_SLAVE, 1);
	put32(b, OFF_IOAPIC, 2);
}

static inline int tmpdir_setup(void **state)
{
	(void)state;
	return mkdtemp(TEST_DIR) ? 0 : -1;
}

static inline int tmpdir_teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", TEST_DIR);
	return system(cmd) == 0 ? 0 : -1;
}
