/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: write layer tarballs (plain, gzip, zstd) with libarchive,
 * hostile ones included, and compute their diff_ids. */
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sm/cache.h"

struct layer {
	struct archive *a;
	char tar_path[512]; /* uncompressed */
	char path[512];	    /* final (maybe compressed) */
	const char *filter;
};

static inline void layer_open(struct layer *l, const char *path, const char *filter)
{
	memset(l, 0, sizeof(*l));
	snprintf(l->path, sizeof(l->path), "%s", path);
	snprintf(l->tar_path, sizeof(l->tar_path), "%s.tar", path);
	l->filter = filter;
	l->a = archive_write_new();
	archive_write_set_format_pax_restricted(l->a);
	if (archive_write_open_filename(l->a, l->tar_path) != ARCHIVE_OK)
		abort();
}

static inline void layer_add(struct layer *l, const char *name, mode_t type, mode_t perm,
			     const char *data, const char *link, int hard)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_mtime(e, 1600000000, 0);
	if (hard) {
		archive_entry_set_hardlink(e, link);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, perm);
		archive_entry_set_size(e, 0);
	} else {
		archive_entry_set_filetype(e, type);
		archive_entry_set_perm(e, perm);
		if (type == AE_IFLNK)
			archive_entry_set_symlink(e, link);
		archive_entry_set_size(e, data ? (la_int64_t)strlen(data) : 0);
	}
	if (archive_write_header(l->a, e) != ARCHIVE_OK) {
		fprintf(stderr, "write_header %s: %s\n", name, archive_error_string(l->a));
		abort();
	}
	if (data && *data)
		archive_write_data(l->a, data, strlen(data));
	archive_entry_free(e);
}

static inline void layer_file(struct layer *l, const char *name, mode_t perm, const char *data)
{
	layer_add(l, name, AE_IFREG, perm, data, NULL, 0);
}
static inline void layer_dir(struct layer *l, const char *name, mode_t perm)
{
	layer_add(l, name, AE_IFDIR, perm, NULL, NULL, 0);
}
static inline void layer_symlink(struct layer *l, const char *name, const char *target)
{
	layer_add(l, name, AE_IFLNK, 0777, NULL, target, 0);
}
static inline void layer_hardlink(struct layer *l, const char *name, const char *target)
{
	layer_add(l, name, AE_IFREG, 0644, NULL, target, 1);
}

/* An entry with full control (owner, xattr, device). */
static inline void layer_entry(struct layer *l, struct archive_entry *e, const char *data)
{
	if (archive_write_header(l->a, e) != ARCHIVE_OK) {
		fprintf(stderr, "write_header: %s\n", archive_error_string(l->a));
		abort();
	}
	if (data && *data)
		archive_write_data(l->a, data, strlen(data));
}

/* Finish; compress with l->filter; put the diff_id in DIFF_ID. */
static inline void layer_close(struct layer *l, char diff_id[CACHE_DIGEST_MAX])
{
	archive_write_close(l->a);
	archive_write_free(l->a);
	if (cache_digest_file(CACHE_DIGEST_SHA256, l->tar_path, diff_id, NULL, NULL) < 0)
		abort();
	if (!strcmp(l->filter, "none")) {
		if (rename(l->tar_path, l->path) < 0)
			abort();
		return;
	}
	/* one raw entry holding the tar bytes, through a compression filter */
	struct archive *w = archive_write_new();
	archive_write_set_format_raw(w);
	if (!strcmp(l->filter, "gzip"))
		archive_write_add_filter_gzip(w);
	else
		archive_write_add_filter_zstd(w);
	if (archive_write_open_filename(w, l->path) != ARCHIVE_OK)
		abort();
	struct archive_entry *e = archive_entry_new();
	struct stat st;
	stat(l->tar_path, &st);
	archive_entry_set_pathname(e, "data");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_size(e, st.st_size);
	archive_write_header(w, e);
	FILE *f = fopen(l->tar_path, "rb");
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		archive_write_data(w, buf, n);
	fclose(f);
	archive_entry_free(e);
	archive_write_close(w);
	archive_write_free(w);
	unlink(l->tar_path);
}
