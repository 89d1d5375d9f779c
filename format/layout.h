/* SPDX-License-Identifier: Apache-2.0 */
/*
 * On-disk layout of the snapshot file (docs/format.md is the specification).
 * Every multi-byte field is little-endian; these structs are only ever
 * filled and read through the le*() helpers below, never cast from a
 * hostile buffer without validating it first.
 */
#pragma once

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FMT_MAGIC	   "SMSNAP\r\n" /* 8 bytes, no NUL */
#define FMT_MAGIC_LEN	   8
#define FMT_MEM_MAGIC	   "SMMEMORY"
#define FMT_ALIGN	   4096u	/* writers start every section here */
#define FMT_MAX_SECTIONS   4096u	/* readers refuse more */
#define FMT_MAX_RAW	   (1ull << 30) /* largest decompressed opaque section */
#define FMT_MAX_META	   (16u << 20)	/* largest metadata section */
#define FMT_MAX_FRAME	   (64u << 20)	/* largest uncompressed memory frame */
#define FMT_MEM_VERSION	   1u
#define FMT_KNOWN_SECFLAGS 0x3u

/* File header, at offset 0. */
struct fmt_disk_header {
	uint8_t magic[8];	/* FMT_MAGIC */
	uint16_t major;		/* FMT_VERSION_MAJOR */
	uint16_t minor;		/* FMT_VERSION_MINOR */
	uint32_t flags;		/* must be 0 */
	uint32_t header_size;	/* 64 */
	uint32_t entry_size;	/* 64 */
	uint64_t file_size;	/* exact size of the file */
	uint64_t table_offset;	/* section table */
	uint32_t section_count; /* entries in the table */
	uint32_t table_crc;	/* CRC32C of the whole table */
	uint8_t reserved[12];	/* zero */
	uint32_t header_crc;	/* CRC32C of bytes [0, 60) */
};
_Static_assert(sizeof(struct fmt_disk_header) == 64, "header is 64 bytes");
_Static_assert(offsetof(struct fmt_disk_header, major) == 8, "layout");
_Static_assert(offsetof(struct fmt_disk_header, file_size) == 24, "layout");
_Static_assert(offsetof(struct fmt_disk_header, table_offset) == 32, "layout");
_Static_assert(offsetof(struct fmt_disk_header, section_count) == 40, "layout");
_Static_assert(offsetof(struct fmt_disk_header, table_crc) == 44, "layout");
_Static_assert(offsetof(struct fmt_disk_header, header_crc) == 60, "layout");

/* One section table entry. */
struct fmt_disk_section {
	uint32_t type;	     /* enum fmt_section_type */
	uint32_t flags;	     /* FMT_SECF_* */
	uint64_t offset;     /* from the start of the file */
	uint64_t length;     /* stored bytes */
	uint64_t raw_length; /* decompressed bytes (memory: guest memory size) */
	uint32_t crc;	     /* CRC32C of the stored bytes */
	uint32_t instance;   /* tells apart sections of one type (device number) */
	char name[16];	     /* optional label, NUL-padded */
	uint8_t reserved[8]; /* zero */
};
_Static_assert(sizeof(struct fmt_disk_section) == 64, "section entry is 64 bytes");
_Static_assert(offsetof(struct fmt_disk_section, offset) == 8, "layout");
_Static_assert(offsetof(struct fmt_disk_section, raw_length) == 24, "layout");
_Static_assert(offsetof(struct fmt_disk_section, crc) == 32, "layout");
_Static_assert(offsetof(struct fmt_disk_section, name) == 40, "layout");

/* Memory section trailer: the last 128 bytes of the memory section. Offsets
 * are relative to the start of the memory section. */
struct fmt_disk_mem {
	uint8_t magic[8];	/* FMT_MEM_MAGIC */
	uint32_t version;	/* FMT_MEM_VERSION */
	uint32_t page_size;	/* 4096 */
	uint64_t mem_size;	/* guest memory bytes, multiple of page_size */
	uint32_t frame_pages;	/* non-zero pages per zstd frame */
	uint32_t level;		/* zstd level used (informational) */
	uint64_t nonzero_pages; /* set bits in the bitmap */
	uint64_t frame_count;	/* ceil(nonzero_pages / frame_pages) */
	uint64_t bitmap_offset;
	uint64_t bitmap_length; /* ceil(mem_size / page_size / 64) * 8 */
	uint64_t index_offset;
	uint64_t index_length; /* frame_count * 16 */
	uint64_t data_offset;
	uint64_t data_length; /* sum of frame lengths */
	uint32_t bitmap_crc;  /* CRC32C of the bitmap */
	uint32_t index_crc;   /* CRC32C of the index */
	uint32_t flags;	      /* zero */
	uint8_t reserved[16]; /* zero */
	uint32_t trailer_crc; /* CRC32C of bytes [0, 124) */
};
_Static_assert(sizeof(struct fmt_disk_mem) == 128, "memory trailer is 128 bytes");
_Static_assert(offsetof(struct fmt_disk_mem, mem_size) == 16, "layout");
_Static_assert(offsetof(struct fmt_disk_mem, nonzero_pages) == 32, "layout");
_Static_assert(offsetof(struct fmt_disk_mem, bitmap_offset) == 48, "layout");
_Static_assert(offsetof(struct fmt_disk_mem, data_length) == 88, "layout");
_Static_assert(offsetof(struct fmt_disk_mem, bitmap_crc) == 96, "layout");
_Static_assert(offsetof(struct fmt_disk_mem, flags) == 104, "layout");
_Static_assert(offsetof(struct fmt_disk_mem, trailer_crc) == 124, "layout");

/* Frame index entry. */
struct fmt_disk_frame {
	uint64_t offset; /* relative to data_offset */
	uint32_t length; /* compressed bytes */
	uint32_t crc;	 /* CRC32C of the compressed bytes */
};
_Static_assert(sizeof(struct fmt_disk_frame) == 16, "frame index entry is 16 bytes");

/* Little-endian accessors over raw bytes (no alignment assumed). */
static inline uint16_t fmt_get16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return le16toh(v);
}
static inline uint32_t fmt_get32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}
static inline uint64_t fmt_get64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}
static inline void fmt_put16(void *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}
static inline void fmt_put32(void *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}
static inline void fmt_put64(void *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}
