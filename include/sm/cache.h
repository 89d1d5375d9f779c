/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cache: the content-addressed store under $SM_CACHE.
 *
 * Layout (all beneath the cache root):
 *   blobs/<alg>/<hex>      verified blobs, each stored once, read-only
 *   rootfs/<chainhex>/     unpacked root filesystems by chain ID
 *   images/<hex>.json      image records (roots for gc), keyed by manifest digest
 *   tmp/                   temp files and dirs, renamed into place when complete
 *   locks/                 flock files; "gc.lock" is held shared by every user
 *                          of the cache and exclusively by gc
 *
 * Every entry is written under tmp/ and renamed into place when complete, so
 * a crash never leaves a half entry under blobs/ or rootfs/. Functions return
 * 0 (or a non-negative value) on success and a negative errno on failure.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "sm/error.h"

/* ---- digests (cache/digest.c) ------------------------------------------- */

#define CACHE_DIGEST_MAX 136 /* "sha512:" + 128 hex + NUL, rounded up */

enum cache_digest_alg {
	CACHE_DIGEST_SHA256 = 1,
	CACHE_DIGEST_SHA512 = 2,
};

/* Check that DIGEST is "sha256:<64 lowercase hex>" or "sha512:<128 lowercase
 * hex>"; set *alg and *hex (pointing into DIGEST) when non-NULL. */
int cache_digest_parse(const char *digest, enum cache_digest_alg *alg, const char **hex,
		       struct sm_error *err);

/* Streaming hash. cache_hash_init never fails for a valid alg. */
struct cache_hash {
	void *ctx; /* EVP_MD_CTX */
	enum cache_digest_alg alg;
};
int cache_hash_init(struct cache_hash *h, enum cache_digest_alg alg, struct sm_error *err);
void cache_hash_update(struct cache_hash *h, const void *buf, size_t len);
/* Write "alg:hex" into out (CACHE_DIGEST_MAX bytes) and free the context. */
void cache_hash_final(struct cache_hash *h, char out[CACHE_DIGEST_MAX]);
/* Free the context without a result (safe on a zeroed struct). */
void cache_hash_abort(struct cache_hash *h);

/* Digest of a buffer. */
int cache_digest_buf(enum cache_digest_alg alg, const void *buf, size_t len,
		     char out[CACHE_DIGEST_MAX], struct sm_error *err);
/* Digest of a whole file; *size gets its length when non-NULL. */
int cache_digest_file(enum cache_digest_alg alg, const char *path, char out[CACHE_DIGEST_MAX],
		      uint64_t *size, struct sm_error *err);

/* ---- the store (cache/cache.c) ------------------------------------------ */

struct cache {
	char *root;
	int gc_lock_fd; /* held LOCK_SH for the lifetime of the handle */
};

/* The default root: $SM_CACHE, else $XDG_CACHE_HOME/supermachine, else
 * $HOME/.cache/supermachine. *out is malloc'd. */
int cache_default_root(char **out, struct sm_error *err);

/* Open (creating when missing) the cache at ROOT (NULL: the default) and take
 * the shared gc lock. Free with cache_close. */
int cache_open(const char *root, struct cache **out, struct sm_error *err);
void cache_close(struct cache *c);

/* malloc'd path of blob DIGEST (whether present or not). */
int cache_blob_path(struct cache *c, const char *digest, char **out, struct sm_error *err);

/* 1 if blob DIGEST is present (and, when size >= 0, has that size), else 0. */
int cache_blob_has(struct cache *c, const char *digest, int64_t size);

/* A blob being written: bytes go to a temp file while being hashed. */
struct cache_blob_writer {
	struct cache *c;
	int fd;
	char *tmp_path;
	struct cache_hash hash;
	uint64_t written;
};

/* Start writing a blob that should hash to EXPECTED (its algorithm is used). */
int cache_blob_begin(struct cache *c, const char *expected, struct cache_blob_writer *w,
		     struct sm_error *err);
int cache_blob_write(struct cache_blob_writer *w, const void *buf, size_t len,
		     struct sm_error *err);
/* Throw away everything written so far and start again (a server that
 * ignored a Range request). */
int cache_blob_restart(struct cache_blob_writer *w, struct sm_error *err);
/* Verify digest (and size when size >= 0), fsync and rename into blobs/.
 * On mismatch the temp file is removed and nothing enters the cache. The
 * writer is finished either way. */
int cache_blob_commit(struct cache_blob_writer *w, const char *expected, int64_t size,
		      struct sm_error *err);
/* Remove the temp file (safe after commit, and on a zeroed writer). */
void cache_blob_abort(struct cache_blob_writer *w);

/* Copy the file at SRC into the store, verifying it against DIGEST/SIZE
 * (size < 0: unknown). A blob already present is not rewritten. */
int cache_blob_import(struct cache *c, const char *src, const char *digest, int64_t size,
		      struct sm_error *err);

/* Read a whole (small) blob into memory, at most MAX bytes, and verify it
 * against its digest again. *out is malloc'd and NUL-terminated. */
int cache_blob_read(struct cache *c, const char *digest, size_t max, char **out, size_t *len,
		    struct sm_error *err);

/* Take an exclusive flock on locks/<name>.lock (blocking); *fd gets the lock
 * fd, close it to release. NAME must be a plain file name. */
int cache_lock(struct cache *c, const char *name, int *fd, struct sm_error *err);

/* malloc'd path of rootfs/<hex of CHAIN_ID>. */
int cache_rootfs_path(struct cache *c, const char *chain_id, char **out, struct sm_error *err);
/* 1 if a complete rootfs for CHAIN_ID exists. */
int cache_rootfs_has(struct cache *c, const char *chain_id);
/* Make a fresh empty directory under tmp/ (malloc'd path in *out). */
int cache_tmpdir(struct cache *c, char **out, struct sm_error *err);
/* Rename the finished directory TMP into rootfs/<chainhex>. If another
 * writer got there first, TMP is removed and the existing entry kept. */
int cache_rootfs_commit(struct cache *c, const char *tmp, const char *chain_id,
			struct sm_error *err);

/* Record an image (a gc root): images/<hex of MANIFEST_DIGEST>.json holding
 * JSON with "config", "layers" (array of digests), "chain_id" and "ref". */
int cache_image_record(struct cache *c, const char *manifest_digest, const char *json,
		       struct sm_error *err);

struct cache_gc_stats {
	unsigned blobs_removed, rootfs_removed, tmp_removed;
	unsigned blobs_kept, rootfs_kept;
};

/* Remove every blob and rootfs not referenced by an image record, and all
 * leftovers in tmp/. Takes the gc lock exclusively, so it waits for every
 * other open handle; call it on a handle opened with cache_open (the shared
 * lock is upgraded and then downgraded again). */
int cache_gc(struct cache *c, struct cache_gc_stats *stats, struct sm_error *err);

/* Remove a directory tree at DIRFD/NAME without following symlinks
 * (DIRFD may be AT_FDCWD). Missing is not an error. */
int cache_rm_rf_at(int dirfd, const char *name, struct sm_error *err);
