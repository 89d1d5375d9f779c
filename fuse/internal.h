/* SPDX-License-Identifier: Apache-2.0 */
/* fuse/: helpers shared by the server and the backends (not public). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "sm/fuse.h"

/* Sum of iov lengths; 0 and *ok = 0 when cnt is negative or the sum
 * overflows. */
size_t fuse_iov_total(const struct iovec *iov, int cnt, int *ok);

/* Copy len bytes starting at byte off of iov into dst; returns the number
 * of bytes copied (less than len when iov is shorter). */
size_t fuse_iov_gather(const struct iovec *iov, int cnt, size_t off, void *dst, size_t len);

/* Copy len bytes from src into iov starting at byte off; returns bytes. */
size_t fuse_iov_scatter(const struct iovec *iov, int cnt, size_t off, const void *src, size_t len);

/* Describe bytes [off, off+len) of iov as a new iovec array in dst (room
 * for dst_max entries). Returns the number of entries used, or -1 when the
 * range does not fit in iov or in dst. */
int fuse_iov_slice(const struct iovec *iov, int cnt, size_t off, size_t len, struct iovec *dst,
		   int dst_max);

/* Is NAME acceptable as one path component from the guest? Returns 0,
 * -EINVAL (empty, '/', "." or "..") or -ENAMETOOLONG. */
int fuse_check_name(const char *name);

/* Little-endian encoders/decoders for snapshot blobs. */
static inline void fuse_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void fuse_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t fuse_get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}
static inline uint64_t fuse_get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}
