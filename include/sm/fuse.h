/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuse: a FUSE server for virtio-fs, with no VM inside.
 *
 * The virtio-fs device (vm/virtio_fs.c) hands each request to
 * fuse_server_handle() as two iovec arrays: the bytes of the guest's readable
 * descriptors (in) and the guest's writable descriptors (out). The server
 * parses the request with every length checked, calls a backend through an
 * ops table and writes the reply. See docs/fuse.md for the device's side.
 *
 * Functions return 0 (or a non-negative value) on success and a negative
 * errno on failure, with details in the struct sm_error out-parameter.
 * Backend ops return 0 / a count or -errno, which becomes the guest's error.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "sm/error.h"

struct fuse_server;
struct fuse_dax;

/* ---- Backends --------------------------------------------------------- */

/* Who asks (from the request header), for ops that create files. */
struct fuse_ctx {
	uint32_t uid, gid, pid, umask;
};

/* What LOOKUP-like ops return: a node id the backend owns (its lookup count
 * is incremented by one for every entry returned), and its attributes. */
struct fuse_entry_param {
	uint64_t nodeid;
	uint64_t generation;
	struct stat st;
};

/* SETATTR, decoded: `valid` holds FUSE_SET_* bits. */
#define FUSE_SET_MODE	   (1u << 0)
#define FUSE_SET_UID	   (1u << 1)
#define FUSE_SET_GID	   (1u << 2)
#define FUSE_SET_SIZE	   (1u << 3)
#define FUSE_SET_ATIME	   (1u << 4)
#define FUSE_SET_MTIME	   (1u << 5)
#define FUSE_SET_ATIME_NOW (1u << 7)
#define FUSE_SET_MTIME_NOW (1u << 8)
struct fuse_setattr_req {
	uint32_t valid;
	uint32_t mode, uid, gid;
	uint64_t size;
	struct timespec atime, mtime;
	uint64_t fh; /* FUSE_BACKEND_NO_FH unless the guest named a handle */
};
#define FUSE_BACKEND_NO_FH UINT64_MAX

/* Directory filler: add one entry whose successor starts at next_off.
 * Returns 0 to go on, 1 when the reply is full (entry NOT taken; stop),
 * or -errno to stop with an error. */
typedef int (*fuse_fill_dir_fn)(void *ctx, const char *name, uint64_t ino, uint32_t dtype,
				uint64_t next_off);

struct fuse_backend;

/* The ops table. Every op gets the backend first; node ids and handles come
 * from the guest and must be validated by the backend (unknown → -ESTALE /
 * -EBADF). Ops are called with the server lock held (one at a time). Names
 * are single path components the server has already checked (non-empty,
 * no '/', not "." or "..", at most 255 bytes). */
struct fuse_backend_ops {
	const char *name;
	void (*destroy)(struct fuse_backend *be);
	int (*lookup)(struct fuse_backend *be, uint64_t parent, const char *name,
		      struct fuse_entry_param *e);
	void (*forget)(struct fuse_backend *be, uint64_t nodeid, uint64_t nlookup);
	int (*getattr)(struct fuse_backend *be, uint64_t nodeid, struct stat *st);
	int (*setattr)(struct fuse_backend *be, uint64_t nodeid, const struct fuse_setattr_req *req,
		       struct stat *st);
	/* Returns the target's length (may be truncated to size). */
	int (*readlink)(struct fuse_backend *be, uint64_t nodeid, char *buf, size_t size);
	int (*mknod)(struct fuse_backend *be, uint64_t parent, const char *name, uint32_t mode,
		     dev_t rdev, const struct fuse_ctx *ctx, struct fuse_entry_param *e);
	int (*mkdir)(struct fuse_backend *be, uint64_t parent, const char *name, uint32_t mode,
		     const struct fuse_ctx *ctx, struct fuse_entry_param *e);
	int (*symlink)(struct fuse_backend *be, uint64_t parent, const char *name,
		       const char *target, const struct fuse_ctx *ctx, struct fuse_entry_param *e);
	int (*unlink)(struct fuse_backend *be, uint64_t parent, const char *name);
	int (*rmdir)(struct fuse_backend *be, uint64_t parent, const char *name);
	/* flags: RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT or 0. */
	int (*rename)(struct fuse_backend *be, uint64_t olddir, const char *oldname,
		      uint64_t newdir, const char *newname, uint32_t flags);
	int (*link)(struct fuse_backend *be, uint64_t nodeid, uint64_t newparent,
		    const char *newname, struct fuse_entry_param *e);
	int (*open)(struct fuse_backend *be, uint64_t nodeid, uint32_t flags, uint64_t *fh);
	int (*create)(struct fuse_backend *be, uint64_t parent, const char *name, uint32_t mode,
		      uint32_t flags, const struct fuse_ctx *ctx, struct fuse_entry_param *e,
		      uint64_t *fh);
	/* Scatter up to `size` bytes at off into iov; returns bytes read. */
	ssize_t (*read)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint64_t off,
			const struct iovec *iov, int iovcnt);
	ssize_t (*write)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint64_t off,
			 const struct iovec *iov, int iovcnt);
	int (*flush)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh);
	int (*fsync)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int datasync);
	int (*release)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh);
	int (*statfs)(struct fuse_backend *be, uint64_t nodeid, struct statvfs *sv);
	int (*setxattr)(struct fuse_backend *be, uint64_t nodeid, const char *name,
			const void *value, size_t size, uint32_t flags);
	/* size 0: return the value's size; else copy and return its length
	 * (-ERANGE when it does not fit). listxattr: same, NUL-separated names. */
	ssize_t (*getxattr)(struct fuse_backend *be, uint64_t nodeid, const char *name, void *buf,
			    size_t size);
	ssize_t (*listxattr)(struct fuse_backend *be, uint64_t nodeid, char *buf, size_t size);
	int (*removexattr)(struct fuse_backend *be, uint64_t nodeid, const char *name);
	int (*opendir)(struct fuse_backend *be, uint64_t nodeid, uint32_t flags, uint64_t *fh);
	/* Emit entries starting at off (0 = first) until fill says full. */
	int (*readdir)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint64_t off,
		       fuse_fill_dir_fn fill, void *fill_ctx);
	int (*releasedir)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh);
	int (*fsyncdir)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int datasync);
	int (*access)(struct fuse_backend *be, uint64_t nodeid, uint32_t mask);
	/* Returns the new offset (>= 0). */
	int64_t (*lseek)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int64_t off,
			 int whence);
	int (*fallocate)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, uint32_t mode,
			 uint64_t off, uint64_t len);
	/* A new host fd for DAX: from handle fh when it is not FUSE_BACKEND_NO_FH,
	 * else re-opened from the node (O_RDWR when writable, else O_RDONLY).
	 * The caller closes it. */
	int (*open_fd)(struct fuse_backend *be, uint64_t nodeid, uint64_t fh, int writable,
		       int *fd);
	/* Node/handle table snapshot (optional: NULL = not supported). The
	 * blob is malloc'd; the caller frees it. Restore needs a fresh backend. */
	int (*snapshot)(struct fuse_backend *be, void **blob, size_t *len, struct sm_error *err);
	int (*restore)(struct fuse_backend *be, const void *blob, size_t len, struct sm_error *err);
};

/* Every backend starts with this header. */
struct fuse_backend {
	const struct fuse_backend_ops *ops;
};

/* Passthrough backend over the host directory ROOT. Nothing outside ROOT
 * is ever reached: node fds are O_PATH, every name is resolved with
 * openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|
 * RESOLVE_NO_XDEV) from its parent's fd, symlinks are returned to the guest
 * and never followed by the host, only regular files and directories can be
 * opened, and device nodes cannot be created. */
int fuse_passthrough_new(const char *root, struct fuse_backend **out, struct sm_error *err);

/* In-memory backend (for tests): an empty root directory owned by uid/gid
 * 0, mode 0755; mutations allowed. */
int fuse_memfs_new(struct fuse_backend **out, struct sm_error *err);

/* Destroy a backend not handed to a server. */
void fuse_backend_free(struct fuse_backend *be);

/* ---- Server ----------------------------------------------------------- */

struct fuse_server_config {
	int read_only;		 /* every mutating request gets EROFS */
	uint32_t max_write;	 /* bytes per WRITE/READ, 4 KiB .. 1 MiB */
	uint32_t max_readahead;	 /* upper bound offered at INIT */
	uint32_t entry_valid_ms; /* guest dentry cache time */
	uint32_t attr_valid_ms;	 /* guest attribute cache time */
	const char *trace_path;	 /* NULL: $SM_FUSE_TRACE, if set */
};

/* Fill cfg with defaults: read-write, 1 MiB max_write, 1 s timeouts. */
void fuse_server_config_init(struct fuse_server_config *cfg);

/* Create a server over backend BE, which it then owns (freed with the
 * server, also on failure). */
int fuse_server_new(const struct fuse_server_config *cfg, struct fuse_backend *be,
		    struct fuse_server **out, struct sm_error *err);

/* Free the server and its backend. Detaches (does not free) a DAX session. */
void fuse_server_free(struct fuse_server *s);

/* Attach a DAX session: SETUPMAPPING/REMOVEMAPPING go to it, INIT offers
 * FUSE_MAP_ALIGNMENT, and its faults re-open files through this server.
 * The session must outlive the server (or be detached with NULL). */
void fuse_server_attach_dax(struct fuse_server *s, struct fuse_dax *dax);

/* Handle one request. in/in_cnt: the request bytes (readable descriptors);
 * out/out_cnt: where the reply goes (writable descriptors). Returns the
 * number of reply bytes written (0 for FORGET / BATCH_FORGET, which have no
 * reply, and when out cannot even hold a reply header). Guest mistakes give
 * an error reply, never a negative return. Thread-safe. */
size_t fuse_server_handle(struct fuse_server *s, const struct iovec *in, int in_cnt,
			  const struct iovec *out, int out_cnt);

/* A new host fd for NODEID (re-opened from the node), for DAX faults. */
int fuse_server_open_node_fd(struct fuse_server *s, uint64_t nodeid, int writable, int *fd);

/* Serialize the protocol state (INIT result) and the backend's node and
 * handle tables ("FUSN" v1). *blob is malloc'd; free it. */
int fuse_server_snapshot(struct fuse_server *s, void **blob, size_t *len, struct sm_error *err);

/* Restore a blob from fuse_server_snapshot into a fresh server (no request
 * handled yet). Nodes and handles are re-opened on first use. */
int fuse_server_restore(struct fuse_server *s, const void *blob, size_t len, struct sm_error *err);

/* ---- DAX window ------------------------------------------------------- */

#define FUSE_DAX_GRANULE 4096ull /* alignment of moffset, foffset and len */

/* How the VMM maps file ranges into the guest's window. gpa_off is the
 * offset inside the window; fd is borrowed for the call; prot is PROT_READ
 * and/or PROT_WRITE. map over an already mapped range (a prot upgrade of the
 * same slot) must replace it. Both return 0 or -errno. map is called
 * WITHOUT the session lock (the slot is marked busy meanwhile), possibly
 * from several threads at once for disjoint ranges; unmap is called with
 * the lock held. Neither may call back into the session. */
struct fuse_dax_mapper {
	int (*map)(void *ctx, uint64_t gpa_off, int fd, uint64_t foffset, uint64_t len, int prot);
	int (*unmap)(void *ctx, uint64_t gpa_off, uint64_t len);
	void *ctx;
};

/* Create a session for the window [base_gpa, base_gpa + window_len), both
 * granule-aligned, that maps at most cap bytes at once (0: window_len). */
int fuse_dax_new(uint64_t base_gpa, uint64_t window_len, uint64_t cap,
		 const struct fuse_dax_mapper *mapper, struct fuse_dax **out, struct sm_error *err);

/* Unmap every live slot and free the session. */
void fuse_dax_free(struct fuse_dax *d);

/* Who re-opens files for faults: fn(ctx, nodeid, writable, &fd). Set by
 * fuse_server_attach_dax(). */
void fuse_dax_set_opener(struct fuse_dax *d, int (*fn)(void *, uint64_t, int, int *), void *ctx);

/* SETUPMAPPING: map [foffset, +len) of fd (borrowed) at window offset
 * moffset for nodeid. -EINVAL misaligned/out of window/bad prot, -EEXIST
 * overlap with another slot, -ENOSPC over the cap, or the mapper's error;
 * on any error nothing stays taken. Re-mapping exactly an existing slot of
 * the same node replaces it (the guest's read→write upgrade). */
int fuse_dax_setup(struct fuse_dax *d, uint64_t moffset, uint64_t len, uint64_t nodeid, int fd,
		   uint64_t foffset, int prot);

/* REMOVEMAPPING of one slot: [moffset, +len) must be exactly a slot. */
int fuse_dax_remove(struct fuse_dax *d, uint64_t moffset, uint64_t len);

/* A guest access at gpa: returns 1 (claimed: the slot holding gpa is mapped
 * now, re-opened and mapped here if it came from a snapshot), 0 (not in any
 * slot: not ours), or -errno (the slot could not be re-mapped). */
int fuse_dax_fault(struct fuse_dax *d, uint64_t gpa);

/* Bytes mapped (or reserved) now, and the number of slots. */
uint64_t fuse_dax_mapped_bytes(struct fuse_dax *d);
size_t fuse_dax_slot_count(struct fuse_dax *d);

/* Serialize slots as metadata ("DAXS" v1, little-endian). Free *blob. */
int fuse_dax_snapshot(struct fuse_dax *d, void **blob, size_t *len, struct sm_error *err);

/* Restore into an empty session with the same base and window length; slots
 * come back unmapped until fuse_dax_fault(). Refuses a different layout,
 * entries outside the window, misaligned or overlapping entries, a total
 * over the cap, and truncated or trailing bytes. */
int fuse_dax_restore(struct fuse_dax *d, const void *blob, size_t len, struct sm_error *err);
