/* SPDX-License-Identifier: Apache-2.0 */
/*
 * format: the snapshot file (docs/format.md is its specification).
 *
 * One file: a 64-byte header, sections at 4 KiB-aligned offsets, and a
 * section table at the end; every byte is covered by a CRC32C or must be
 * zero. Section payloads are opaque bytes here, except metadata (a JSON
 * object) and memory (sparse guest RAM in independently decompressible zstd
 * frames with an index).
 *
 * Functions return 0 (or a non-negative value) on success and a negative
 * errno on failure, with details in the struct sm_error out-parameter.
 * A damaged or hostile file fails with -EBADMSG; a file from a newer,
 * incompatible format (unknown major version, unknown required section or
 * flag) with -ENOTSUP; a missing section with -ENOENT.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "sm/error.h"

#define FMT_VERSION_MAJOR 1
#define FMT_VERSION_MINOR 1 /* 1: section type 9, vsock (docs/format.md) */
#define FMT_PAGE_SIZE	  4096u

/* Section types (stable numbers; see docs/format.md). */
enum fmt_section_type {
	FMT_SEC_META = 1,	/* metadata: one JSON object, required, unique */
	FMT_SEC_VCPU = 2,	/* vCPU state (instance = vCPU index) */
	FMT_SEC_VMSTATE = 3,	/* VM-wide state: irqchip, PIT, clock */
	FMT_SEC_MMIO = 4,	/* virtio-mmio transport state, one record per device */
	FMT_SEC_DEVICE = 5,	/* device state (instance = device number) */
	FMT_SEC_DAX = 6,	/* DAX window metadata (DAXS v1) */
	FMT_SEC_FUSE_NODES = 7, /* FUSE node table */
	FMT_SEC_MEMORY = 8,	/* guest memory, unique */
	FMT_SEC_VSOCK = 9,	/* vsock connection kept across the snapshot (optional) */
};

/* Section flags. */
#define FMT_SECF_OPTIONAL 0x1u /* readers that do not know the type may skip it */
#define FMT_SECF_ZSTD	  0x2u /* stored as one zstd frame; raw_length is its size */

/* "metadata", "vcpu", "vmstate", "mmio", "device", "dax", "fuse-nodes",
 * "memory", "vsock", or "unknown". */
const char *fmt_section_type_name(uint32_t type);

/* A validated section table entry. */
struct fmt_section_info {
	unsigned index;	     /* position in the table */
	uint32_t type;	     /* enum fmt_section_type, or unknown (then optional) */
	uint32_t flags;	     /* FMT_SECF_* */
	uint32_t instance;   /* tells apart sections of one type */
	char name[17];	     /* label, NUL-terminated, may be empty */
	uint64_t offset;     /* in the file */
	uint64_t length;     /* stored bytes */
	uint64_t raw_length; /* decompressed bytes; memory: guest memory size */
	uint32_t crc;	     /* CRC32C of the stored bytes */
};

/* ---- Writer (format/writer.c, format/mem_write.c) ------------------------ */

struct fmt_writer_opts {
	unsigned threads;    /* compression threads; 0 = 1 */
	int level;	     /* zstd level; 0 = 3 */
	uint32_t frame_size; /* bytes of non-zero guest pages per memory frame,
			      * multiple of 4096, <= 64 MiB; 0 = FMT_DEFAULT_FRAME */
};
#define FMT_DEFAULT_FRAME (16u * 1024u)

struct fmt_writer;

/* Start writing the snapshot that will be named PATH: creates a temporary
 * file in PATH's directory. Nothing appears under PATH until
 * fmt_writer_commit() succeeds. opts may be NULL. */
int fmt_writer_create(struct fmt_writer **out, const char *path, const struct fmt_writer_opts *opts,
		      struct sm_error *err);

/* Append an opaque section. flags: FMT_SECF_OPTIONAL and/or FMT_SECF_ZSTD
 * (compress the payload). name may be NULL (at most 16 bytes). Not allowed
 * for FMT_SEC_META (use fmt_writer_add_meta) or FMT_SEC_MEMORY, nor while a
 * memory section is open. */
int fmt_writer_add(struct fmt_writer *w, uint32_t type, uint32_t flags, uint32_t instance,
		   const char *name, const void *data, size_t len, struct sm_error *err);

/* Append the metadata section: JSON text that must parse as one object.
 * Exactly one per file; commit fails without it. */
int fmt_writer_add_meta(struct fmt_writer *w, const char *json, struct sm_error *err);

/* Begin the memory section for MEM_SIZE bytes of guest memory (a multiple of
 * 4096). Then feed guest memory in order with fmt_writer_mem_write() and
 * fmt_writer_mem_skip() until MEM_SIZE bytes are covered, and call
 * fmt_writer_mem_end(). Memory use is bounded whatever MEM_SIZE: a batch of
 * max(4 MiB, threads * 2 frames) of input and its compressed output, a bitmap
 * of MEM_SIZE/32768 bytes and 16 bytes of index per frame. */
int fmt_writer_mem_begin(struct fmt_writer *w, uint64_t mem_size, struct sm_error *err);

/* Feed the next LEN bytes of guest memory (LEN a multiple of 4096). All-zero
 * pages are dropped; the rest are compressed. */
int fmt_writer_mem_write(struct fmt_writer *w, const void *data, size_t len, struct sm_error *err);

/* The next LEN bytes of guest memory are zero (LEN a multiple of 4096). */
int fmt_writer_mem_skip(struct fmt_writer *w, uint64_t len, struct sm_error *err);

/* Finish the memory section: flush frames, write bitmap, index, trailer. */
int fmt_writer_mem_end(struct fmt_writer *w, struct sm_error *err);

/* Write the section table and header, fsync, rename to the final name and
 * fsync the directory. After success the writer only awaits fmt_writer_free. */
int fmt_writer_commit(struct fmt_writer *w, struct sm_error *err);

/* Free the writer; if it was not committed, remove the temporary file. */
void fmt_writer_free(struct fmt_writer *w);

/* ---- Reader (format/reader.c, format/mem_read.c) ------------------------- */

struct fmt_file_info {
	uint16_t major, minor;
	uint32_t flags;
	uint64_t file_size;
	uint64_t table_offset;
	unsigned section_count;
};

struct fmt_reader;

/* Open and validate PATH: header, section table (checksums, bounds,
 * overlaps, versions, unknown required sections). Section payloads are not
 * checked here (see fmt_reader_verify); every read checks what it reads. */
int fmt_reader_open(struct fmt_reader **out, const char *path, struct sm_error *err);

/* Same over an open file descriptor (duplicated; the caller keeps FD). */
int fmt_reader_open_fd(struct fmt_reader **out, int fd, struct sm_error *err);

void fmt_reader_close(struct fmt_reader *r);

const struct fmt_file_info *fmt_reader_file(const struct fmt_reader *r);

/* Number of table entries, and entry IDX (NULL when out of range). */
unsigned fmt_reader_section_count(const struct fmt_reader *r);
const struct fmt_section_info *fmt_reader_section(const struct fmt_reader *r, unsigned idx);

/* Index of the first section of TYPE with INSTANCE, or -ENOENT naming it. */
int fmt_reader_find(const struct fmt_reader *r, uint32_t type, uint32_t instance,
		    struct sm_error *err);

/* Read section IDX into a malloc'd buffer (*data, *len; caller frees),
 * checking its CRC and decompressing it when stored with FMT_SECF_ZSTD.
 * The buffer has one extra NUL byte after *len. Not for memory sections. */
int fmt_reader_read(struct fmt_reader *r, unsigned idx, void **data, size_t *len,
		    struct sm_error *err);

/* The metadata JSON text (malloc'd, NUL-terminated; caller frees). */
int fmt_reader_meta(struct fmt_reader *r, char **json, struct sm_error *err);

/* Check everything: every section's CRC, the metadata JSON, the memory
 * section's trailer, bitmap, index and every frame (decompressed), and that
 * bytes outside header, sections and table are zero. Returns 0, or
 * -EBADMSG with *bad_section set to the first bad section's index (-1 when
 * the damage is outside any section). bad_section may be NULL. */
int fmt_reader_verify(struct fmt_reader *r, int *bad_section, struct sm_error *err);

/* ---- Memory ------------------------------------------------------------- */

struct fmt_mem_info {
	uint64_t mem_size;	/* guest memory bytes */
	uint32_t page_size;	/* 4096 */
	uint32_t frame_pages;	/* non-zero pages per frame */
	uint64_t nonzero_pages; /* pages stored */
	uint64_t frame_count;
	uint64_t data_length;	 /* compressed frame bytes */
	uint64_t section_length; /* whole memory section */
	uint32_t level;		 /* zstd level the writer used */
};

/* Load and validate the memory section's trailer, bitmap and index (done
 * once, then cached). -ENOENT when the file has no memory section. */
int fmt_reader_mem_info(struct fmt_reader *r, struct fmt_mem_info *info, struct sm_error *err);

/* Is the page holding GPA stored (non-zero)? 1 yes, 0 no (zero page or
 * beyond memory), negative on error. */
int fmt_reader_mem_present(struct fmt_reader *r, uint64_t gpa, struct sm_error *err);

/* Copy the 4096-byte page holding GPA into PAGE (zero-filled when the page
 * is not stored). Decompresses only the frame holding it (the last frame
 * used is cached per decoder). Thread-safe; GPA must be < mem_size. */
int fmt_reader_mem_page(struct fmt_reader *r, uint64_t gpa, void *page, struct sm_error *err);

/* Write all guest memory into FD (a regular file): it is truncated to
 * mem_size and only stored pages are written, so zero pages stay holes.
 * THREADS decoders work in parallel (0 = 1). */
int fmt_reader_mem_unpack(struct fmt_reader *r, int fd, unsigned threads, struct sm_error *err);
