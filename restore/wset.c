/* SPDX-License-Identifier: Apache-2.0 */
/* The write set of a restore: recorded from /proc/self/pagemap, copied ahead
 * with MADV_POPULATE_WRITE (restore/wset.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wset.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PAGE 4096u

#define PM_PRESENT (1ULL << 63)
#define PM_FILE	   (1ULL << 61) /* file page or shared anonymous */

/* Page OFF joins the last range when it follows it, else starts one. */
static void add_page(struct restore_wset_range *r, uint32_t *n, uint64_t off)
{
	if (*n && r[*n - 1].offset + r[*n - 1].length == off)
		r[*n - 1].length += PAGE;
	else
		r[(*n)++] = (struct restore_wset_range){.offset = off, .length = PAGE};
}

/* The pages of [HOST, HOST+SIZE) that are present, copied on write (FILE 0)
 * or still the image's page cache (FILE 1), the first MAX of them, to PATH. */
static int record(const void *host, uint64_t size, const char *path, int file, uint32_t max,
		  uint32_t *pages, struct sm_error *err)
{
	if ((uintptr_t)host % PAGE || size % PAGE)
		return sm_error_set(err, EINVAL, "write set: unaligned guest RAM");
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0)
		return sm_error_errno(err, errno, "open /proc/self/pagemap");
	struct restore_wset_range *r = malloc(max * sizeof(*r));
	uint64_t *buf = malloc(4096 * sizeof(uint64_t));
	uint32_t n = 0, np = 0;
	int ret = 0;
	if (!r || !buf) {
		ret = sm_error_set(err, ENOMEM, "out of memory");
		goto out;
	}
	uint64_t first = (uintptr_t)host / PAGE, total = size / PAGE;
	uint64_t want_flags = PM_PRESENT | (file ? PM_FILE : 0);
	for (uint64_t i = 0; i < total && np < max;) {
		uint64_t want = total - i < 4096 ? total - i : 4096;
		ssize_t got = pread(pm, buf, want * 8, (off_t)((first + i) * 8));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0 || got % 8) {
			ret = sm_error_errno(err, got < 0 ? errno : EIO, "read /proc/self/pagemap");
			goto out;
		}
		for (uint64_t k = 0; k < (uint64_t)got / 8 && np < max; k++)
			if ((buf[k] & (PM_PRESENT | PM_FILE)) == want_flags) {
				add_page(r, &n, (i + k) * PAGE);
				np++;
			}
		i += (uint64_t)got / 8;
	}
	struct restore_wset_hdr h = {.mem_size = size, .count = n, .pages = np};
	memcpy(h.magic, RESTORE_WSET_MAGIC, sizeof(RESTORE_WSET_MAGIC));
	char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0) {
		ret = sm_error_set(err, ENOMEM, "out of memory");
		goto out;
	}
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		ret = sm_error_errno(err, errno, "cannot create %s", tmp);
		free(tmp);
		goto out;
	}
	size_t len = (size_t)n * sizeof(*r);
	if (write(fd, &h, sizeof(h)) != (ssize_t)sizeof(h) ||
	    (len && write(fd, r, len) != (ssize_t)len))
		ret = sm_error_errno(err, errno ? errno : EIO, "write %s", tmp);
	if (close(fd) < 0 && ret == 0)
		ret = sm_error_errno(err, errno, "close %s", tmp);
	if (ret == 0 && rename(tmp, path) < 0)
		ret = sm_error_errno(err, errno, "rename %s", tmp);
	if (ret < 0)
		unlink(tmp);
	free(tmp);
	if (ret == 0 && pages)
		*pages = np;
out:
	free(buf);
	free(r);
	close(pm);
	return ret;
}

int restore_wset_record(const void *host, uint64_t size, const char *path, uint32_t *pages,
			struct sm_error *err)
{
	return record(host, size, path, 0, RESTORE_WSET_MAX_PAGES, pages, err);
}

int restore_rset_record(const void *host, uint64_t size, const char *path, uint32_t *pages,
			struct sm_error *err)
{
	return record(host, size, path, 1, RESTORE_RSET_MAX_PAGES, pages, err);
}

static int load(const char *path, uint64_t size, uint32_t max, struct restore_wset_range **ranges,
		uint32_t *count, struct sm_error *err)
{
	*ranges = NULL;
	*count = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "open %s", path);
	struct restore_wset_hdr h;
	struct stat st;
	struct restore_wset_range *r = NULL;
	int ret = 0;
	if (fstat(fd, &st) < 0 || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		ret = sm_error_set(err, EINVAL, "%s: short or unreadable header", path);
		goto out;
	}
	char magic[8] = RESTORE_WSET_MAGIC;
	if (memcmp(h.magic, magic, sizeof(magic)) || h.reserved || h.mem_size != size ||
	    h.count > max || h.pages > max ||
	    (uint64_t)st.st_size != sizeof(h) + (uint64_t)h.count * sizeof(*r)) {
		ret = sm_error_set(err, EINVAL, "%s: not a write set of this image", path);
		goto out;
	}
	r = malloc(h.count ? h.count * sizeof(*r) : 1);
	if (!r) {
		ret = sm_error_set(err, ENOMEM, "out of memory");
		goto out;
	}
	size_t len = h.count * sizeof(*r);
	if (len && pread(fd, r, len, sizeof(h)) != (ssize_t)len) {
		ret = sm_error_set(err, EINVAL, "%s: short read", path);
		goto out;
	}
	/* Aligned, non-empty, sorted, disjoint, inside the image; the pages
	 * add up to the header's count. */
	uint64_t end = 0, pages = 0;
	for (uint32_t i = 0; i < h.count; i++) {
		uint64_t off = r[i].offset, l = r[i].length;
		if (off % PAGE || l % PAGE || !l || off < end || l > size || off > size - l) {
			ret = sm_error_set(err, EINVAL, "%s: bad range %u", path, i);
			goto out;
		}
		end = off + l;
		pages += l / PAGE;
	}
	if (pages != h.pages) {
		ret = sm_error_set(err, EINVAL, "%s: page count does not add up", path);
		goto out;
	}
	*ranges = r;
	*count = h.count;
	r = NULL;
out:
	free(r);
	close(fd);
	return ret;
}

int restore_wset_load(const char *path, uint64_t size, struct restore_wset_range **ranges,
		      uint32_t *count, struct sm_error *err)
{
	return load(path, size, RESTORE_WSET_MAX_PAGES, ranges, count, err);
}

int restore_rset_load(const char *path, uint64_t size, struct restore_wset_range **ranges,
		      uint32_t *count, struct sm_error *err)
{
	return load(path, size, RESTORE_RSET_MAX_PAGES, ranges, count, err);
}

int restore_wset_apply(void *host, uint64_t size, const struct restore_wset_range *ranges,
		       uint32_t count, struct sm_error *err)
{
	for (uint32_t i = 0; i < count; i++) {
		if (ranges[i].length > size || ranges[i].offset > size - ranges[i].length)
			return sm_error_set(err, EINVAL, "write set range %u outside guest RAM", i);
		if (madvise((char *)host + ranges[i].offset, ranges[i].length,
			    MADV_POPULATE_WRITE) < 0)
			return sm_error_errno(err, errno, "MADV_POPULATE_WRITE");
	}
	return 0;
}
