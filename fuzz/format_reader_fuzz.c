/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: feed arbitrary bytes to the snapshot reader and use
 * every read path (table, sections, metadata, memory pages, unpack,
 * verify). Each input runs twice: as is, and with its file size and every
 * checksum it has recomputed, so that mutations get past the CRCs and reach
 * the validators behind them. Any crash or sanitizer report is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/crc32c.h"
#include "format/layout.h"
#include "sm/format.h"

static int in_range(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* Recompute what the writer would have: file size, frame, bitmap, index,
 * trailer, section, table and header checksums, wherever they are in range. */
static void fixup(uint8_t *f, size_t n)
{
	if (n < 64)
		return;
	fmt_put64(f + 24, n);
	uint64_t toff = fmt_get64(f + 32);
	uint32_t cnt = fmt_get32(f + 40);
	if (cnt <= 4096 && in_range(toff, (uint64_t)cnt * 64, n)) {
		for (uint32_t i = 0; i < cnt; i++) {
			uint8_t *e = f + toff + (uint64_t)i * 64;
			uint64_t off = fmt_get64(e + 8), len = fmt_get64(e + 16);
			if (!in_range(off, len, n) || (off <= toff && off + len > toff))
				continue;
			uint8_t *sec = f + off;
			if (fmt_get32(e) == FMT_SEC_MEMORY && len >= 128) {
				uint8_t *t = sec + len - 128;
				uint64_t body = len - 128;
				uint64_t bo = fmt_get64(t + 48), bl = fmt_get64(t + 56);
				uint64_t io = fmt_get64(t + 64), il = fmt_get64(t + 72);
				uint64_t dof = fmt_get64(t + 80), dl = fmt_get64(t + 88);
				if (in_range(io, il, body) && in_range(dof, dl, body)) {
					for (uint64_t k = 0; k + 16 <= il; k += 16) {
						uint8_t *x = sec + io + k;
						uint64_t fo = fmt_get64(x);
						uint32_t fl = fmt_get32(x + 8);
						if (in_range(fo, fl, dl) &&
						    !(io + k + 16 > dof + fo &&
						      io + k < dof + fo + fl))
							fmt_put32(
								x + 12,
								fmt_crc32c(0, sec + dof + fo, fl));
					}
				}
				if (in_range(bo, bl, body))
					fmt_put32(t + 96, fmt_crc32c(0, sec + bo, bl));
				if (in_range(io, il, body))
					fmt_put32(t + 100, fmt_crc32c(0, sec + io, il));
				fmt_put32(t + 124, fmt_crc32c(0, t, 124));
			}
			fmt_put32(e + 32, fmt_crc32c(0, sec, len));
		}
		fmt_put32(f + 44, fmt_crc32c(0, f + toff, (size_t)cnt * 64));
	}
	fmt_put32(f + 60, fmt_crc32c(0, f, 60));
}

static int memfd_with(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-snap", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	for (size_t off = 0; off < size;) {
		ssize_t n = write(fd, data + off, size - off);
		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const uint8_t *data, size_t size)
{
	struct sm_error err = {0};
	int fd = memfd_with(data, size);
	struct fmt_reader *r;
	if (fmt_reader_open_fd(&r, fd, &err) < 0) {
		close(fd);
		return;
	}
	for (unsigned i = 0; i < fmt_reader_section_count(r); i++) {
		const struct fmt_section_info *s = fmt_reader_section(r, i);
		if (s->type == FMT_SEC_MEMORY)
			continue;
		void *buf;
		size_t len;
		if (fmt_reader_read(r, i, &buf, &len, &err) == 0)
			free(buf);
	}
	char *json;
	if (fmt_reader_meta(r, &json, &err) == 0)
		free(json);
	struct fmt_mem_info mi;
	if (fmt_reader_mem_info(r, &mi, &err) == 0) {
		unsigned char page[4096];
		uint64_t probes[] = {0, mi.mem_size / 2, mi.mem_size - 1, mi.mem_size, 4096, 8192};
		for (unsigned i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
			(void)fmt_reader_mem_present(r, probes[i], &err);
			(void)fmt_reader_mem_page(r, probes[i], page, &err);
		}
		if (mi.mem_size <= (64u << 20)) {
			int out = memfd_create("fuzz-mem", MFD_CLOEXEC);
			if (out >= 0) {
				(void)fmt_reader_mem_unpack(r, out, 1, &err);
				close(out);
			}
		}
	}
	int bad;
	(void)fmt_reader_verify(r, &bad, &err);
	fmt_reader_close(r);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one(data, size);
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	fixup(copy, size);
	one(copy, size);
	free(copy);
	return 0;
}
