/* SPDX-License-Identifier: Apache-2.0 */
/* iovec helpers with overflow-safe arithmetic. */
#include <errno.h>
#include <string.h>

#include "internal.h"

size_t fuse_iov_total(const struct iovec *iov, int cnt, int *ok)
{
	size_t total = 0;
	*ok = 0;
	if (cnt < 0 || (cnt > 0 && !iov))
		return 0;
	for (int i = 0; i < cnt; i++)
		if (sm_add_overflow(total, iov[i].iov_len, &total))
			return 0;
	*ok = 1;
	return total;
}

size_t fuse_iov_gather(const struct iovec *iov, int cnt, size_t off, void *dst, size_t len)
{
	size_t done = 0;
	for (int i = 0; i < cnt && done < len; i++) {
		size_t l = iov[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		size_t n = l - off;
		if (n > len - done)
			n = len - done;
		memcpy((char *)dst + done, (const char *)iov[i].iov_base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t fuse_iov_scatter(const struct iovec *iov, int cnt, size_t off, const void *src, size_t len)
{
	size_t done = 0;
	for (int i = 0; i < cnt && done < len; i++) {
		size_t l = iov[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		size_t n = l - off;
		if (n > len - done)
			n = len - done;
		memcpy((char *)iov[i].iov_base + off, (const char *)src + done, n);
		done += n;
		off = 0;
	}
	return done;
}

int fuse_iov_slice(const struct iovec *iov, int cnt, size_t off, size_t len, struct iovec *dst,
		   int dst_max)
{
	int used = 0;
	size_t left = len;
	for (int i = 0; i < cnt && left > 0; i++) {
		size_t l = iov[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		if (used == dst_max)
			return -1;
		size_t n = l - off;
		if (n > left)
			n = left;
		dst[used].iov_base = (char *)iov[i].iov_base + off;
		dst[used].iov_len = n;
		used++;
		left -= n;
		off = 0;
	}
	return left == 0 ? used : -1;
}

int fuse_check_name(const char *name)
{
	size_t l = strlen(name);
	if (l == 0 || strchr(name, '/'))
		return -EINVAL;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	if (l > 255)
		return -ENAMETOOLONG;
	return 0;
}
