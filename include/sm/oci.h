/* SPDX-License-Identifier: Apache-2.0 */
/*
 * oci: image references, sources (registry, OCI layout, docker-archive),
 * manifests and platforms, layer unpack and image config.
 *
 * Every function returns 0 (or a non-negative value) on success and a
 * negative errno on failure with details in the struct sm_error
 * out-parameter. Inputs (references, manifests, layers, registry replies)
 * are treated as hostile.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "sm/cache.h"
#include "sm/error.h"

/* ---- references (oci/ref.c) --------------------------------------------- */

enum oci_ref_kind {
	OCI_REF_REGISTRY = 1,	    /* [registry/]repo[:tag][@digest] */
	OCI_REF_LAYOUT = 2,	    /* oci:DIR[:tag] */
	OCI_REF_DOCKER_ARCHIVE = 3, /* docker-archive:FILE */
};

struct oci_ref {
	enum oci_ref_kind kind;
	char *registry;	  /* REGISTRY: "docker.io", "127.0.0.1:5000", ... */
	char *repository; /* REGISTRY: "library/busybox" */
	char *tag;	  /* REGISTRY, LAYOUT: may be NULL (REGISTRY: "latest" unless digest) */
	char *digest;	  /* REGISTRY: "sha256:..." or NULL */
	char *path;	  /* LAYOUT, DOCKER_ARCHIVE */
};

/* Parse S. Docker defaults apply to registry references: no registry means
 * docker.io, a one-part docker.io name gets "library/", no tag and no
 * digest means "latest". Free with oci_ref_free. */
int oci_ref_parse(const char *s, struct oci_ref *ref, struct sm_error *err);
void oci_ref_free(struct oci_ref *ref);
/* Canonical string form (malloc'd), e.g. "docker.io/library/busybox:latest". */
char *oci_ref_string(const struct oci_ref *ref);

/* ---- platforms (oci/platform.c) ----------------------------------------- */

struct oci_platform {
	char os[32];
	char arch[32];
	char variant[32]; /* "" when none */
};

/* The host's platform in OCI terms (linux/amd64, linux/arm64/v8, ...). */
void oci_platform_host(struct oci_platform *p);
/* Parse "os/arch[/variant]". */
int oci_platform_parse(const char *s, struct oci_platform *p, struct sm_error *err);

/* ---- image config → run config (oci/config.c) ---------------------------- */

struct oci_image_config {
	char **entrypoint; /* NULL-terminated arrays; NULL when absent */
	char **cmd;
	char **env;
	char *working_dir; /* NULL when absent */
	char *user;
	char **exposed_ports; /* "80/tcp", ... */
	char *stop_signal;
	char *os, *arch, *variant;
	char **diff_ids; /* rootfs.diff_ids, n_diff_ids entries */
	size_t n_diff_ids;
};

/* Parse an OCI/Docker image config blob. Validates every diff_id. */
int oci_config_parse(const char *json, size_t len, struct oci_image_config *cfg,
		     struct sm_error *err);
void oci_config_free(struct oci_image_config *cfg);
/* The run config as JSON (malloc'd): {"Entrypoint":[..],"Cmd":[..],"Env":[..],
 * "WorkingDir":"..","User":"..","ExposedPorts":[..],"StopSignal":"..",
 * "os":..,"architecture":..}. Absent fields are null. */
char *oci_config_to_json(const struct oci_image_config *cfg);
/* Read back what oci_config_to_json wrote (diff_ids stay empty). */
int oci_config_from_json(const char *json, struct oci_image_config *cfg, struct sm_error *err);
/* ChainID of the layers (sha256, OCI image spec): *out is CACHE_DIGEST_MAX. */
int oci_chain_id(char *const *diff_ids, size_t n, char out[CACHE_DIGEST_MAX], struct sm_error *err);

/* ---- layer unpack (oci/unpack.c) ------------------------------------------ */

struct oci_unpack_opts {
	uint64_t max_file_size; /* per entry, incl. sparse claims; 0: OCI_UNPACK_MAX_FILE */
	int no_chown;		/* keep files owned by the caller even when root */
};

#define OCI_UNPACK_MAX_FILE (64ULL << 30)

/* Apply the layer blob at LAYER_PATH (tar, tar+gzip or tar+zstd, sniffed by
 * magic) on top of the tree at ROOTFD: whiteouts, opaque dirs, hardlinks,
 * symlinks, owners (when root), modes, mtimes, xattrs, devices (when root).
 * Every path is resolved beneath ROOTFD (symlinks included); "../" names
 * and links to outside paths are refused, absolute names made relative.
 * When DIFF_ID is non-NULL the uncompressed stream must hash to it.
 * On failure the tree is left part-applied: callers unpack into a temp dir. */
int oci_layer_apply(int rootfd, const char *layer_path, const char *diff_id,
		    const struct oci_unpack_opts *opts, struct sm_error *err);

/* ---- resolved images and sources (oci/image.c, oci/local.c, oci/registry.c) */

struct oci_layer {
	char *digest;	  /* blob digest in the cache */
	char *media_type; /* may be NULL */
	int64_t size;	  /* -1 when unknown */
};

struct oci_image {
	char *manifest_digest; /* identity of the image (record key) */
	char *config_digest;
	struct oci_layer *layers;
	size_t n_layers;
	struct oci_image_config config;
	char chain_id[CACHE_DIGEST_MAX];
};

void oci_image_free(struct oci_image *img);

struct oci_pull_opts {
	struct oci_platform platform; /* os[0] == 0: the host's */
	int insecure;		      /* allow plain http / unverified TLS for any registry */
	int parallel;		      /* concurrent blob downloads; 0: 3 */
	int max_retries;	      /* per request; 0: 5 (negative: none) */
	int progress;		      /* 1: draw progress on stderr (callers check isatty) */
	const char *docker_config; /* dir holding config.json; NULL: $DOCKER_CONFIG or ~/.docker */
	unsigned retry_base_ms;	   /* first backoff; 0: 200 */
};

/* Fetch everything REF needs into the cache (verified) and describe it in
 * *img: manifest, config (parsed), layers, chain ID. Records the image as a
 * gc root. Dispatches on ref->kind. */
int oci_pull(struct cache *c, const struct oci_ref *ref, const struct oci_pull_opts *opts,
	     struct oci_image *img, struct sm_error *err);

/* Local sources, used by oci_pull. */
int oci_layout_pull(struct cache *c, const struct oci_ref *ref, const struct oci_pull_opts *opts,
		    struct oci_image *img, struct sm_error *err);
int oci_archive_pull(struct cache *c, const struct oci_ref *ref, const struct oci_pull_opts *opts,
		     struct oci_image *img, struct sm_error *err);
/* The registry client, used by oci_pull. */
int oci_registry_pull(struct cache *c, const struct oci_ref *ref, const struct oci_pull_opts *opts,
		      struct oci_image *img, struct sm_error *err);

/* From a manifest blob already in the cache: read, validate (media type,
 * refuse schema1), pull the config (through FETCH for remote sources) and
 * fill *img. Shared by all sources; FETCH may be NULL when every blob is
 * already in the cache. */
typedef int (*oci_fetch_fn)(void *ctx, const char *digest, int64_t size, struct sm_error *err);
int oci_image_from_manifest(struct cache *c, const char *manifest_digest, oci_fetch_fn fetch,
			    void *fetch_ctx, struct oci_image *img, struct sm_error *err);
/* Pick the manifest for PLATFORM from an image index / manifest list JSON.
 * *digest and *size get the chosen descriptor (digest malloc'd). ENOENT
 * with a message listing what the index offers when none matches. */
int oci_index_select(const char *json, size_t len, const struct oci_platform *platform,
		     char **digest, int64_t *size, struct sm_error *err);
/* Write the cache's gc root for IMG (ref string REF for humans). */
int oci_image_record(struct cache *c, const struct oci_image *img, const char *ref,
		     struct sm_error *err);

/* Unpack IMG's layers (in order, each verified against its diff_id) into
 * the cache as rootfs/<chainid>, unless already there. Holds a per-chain
 * lock so concurrent callers do not collide. *rootfs gets the malloc'd
 * path of the finished tree. */
int oci_image_unpack(struct cache *c, const struct oci_image *img, const struct oci_unpack_opts *o,
		     char **rootfs, struct sm_error *err);

/* Make DEST (must not exist, or be an empty dir) a tree equal to SRC:
 * hardlinks where possible, copies across filesystems. */
int oci_tree_clone(const char *src, const char *dest, struct sm_error *err);

/* The whole of `smbake --unpack-only`: parse REF, pull, unpack into the
 * cache, clone the tree to DEST and write DEST.config.json. */
int oci_unpack_to(struct cache *c, const char *ref, const char *dest,
		  const struct oci_pull_opts *opts, struct sm_error *err);
