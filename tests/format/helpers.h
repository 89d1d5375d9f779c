/* SPDX-License-Identifier: Apache-2.0 */
/* Shared helpers for the format tests. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <zstd.h>

#include "format/crc32c.h"
#include "format/layout.h"
#include "sm/format.h"

/* Deterministic xorshift64* bytes. */
static inline uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static inline void rnd_fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t s = seed ? seed : 1;
	unsigned char *p = buf;
	while (len >= 8) {
		uint64_t v = rnd_next(&s);
		memcpy(p, &v, 8);
		p += 8;
		len -= 8;
	}
	while (len--)
		*p++ = (unsigned char)rnd_next(&s);
}

/* Text-like page: compressible, never all zero. */
static inline void text_fill(void *buf, size_t len, uint64_t seed)
{
	static const char *words[] = {"kernel ", "page ",    "struct ", "return ", "0x", "ffff ",
				      "memory ", "busybox ", "init ",	"\n",	   "{ ", "} "};
	uint64_t s = seed ? seed : 7;
	char *p = buf;
	for (size_t i = 0; i < len;) {
		const char *w = words[rnd_next(&s) % 12];
		for (; *w && i < len; w++)
			p[i++] = *w;
	}
}

static inline void make_tmpdir(char *dir, size_t n)
{
	snprintf(dir, n, "/tmp/sm-fmt-XXXXXX");
	assert_non_null(mkdtemp(dir));
}

static inline void rm_rf(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static inline unsigned char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	unsigned char *buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static inline void spit(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* Recompute the table and header CRCs of an in-memory snapshot after a test
 * edited them, so that the validator's other checks are what gets hit. */
static inline void refix_crcs(unsigned char *f, size_t len)
{
	assert_true(len >= 64);
	uint64_t toff = fmt_get64(f + 32);
	uint32_t cnt = fmt_get32(f + 40);
	if (toff <= len && (uint64_t)cnt * 64 <= len - toff)
		fmt_put32(f + 44, fmt_crc32c(0, f + toff, (size_t)cnt * 64));
	fmt_put32(f + 60, fmt_crc32c(0, f, 60));
}

/* Byte offset of table entry I. */
static inline unsigned char *entry(unsigned char *f, unsigned i)
{
	return f + fmt_get64(f + 32) + (uint64_t)i * 64;
}
