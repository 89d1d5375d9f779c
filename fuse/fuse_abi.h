/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FUSE wire format (kernel ABI 7.31 .. 7.36), our own definitions.
 *
 * Every structure is little-endian on x86-64 and padded to 8 bytes by the
 * kernel; each size is pinned with _Static_assert. Only what the server
 * speaks is defined here.
 */
#pragma once

#include <stdint.h>

#define FUSE_KERNEL_VERSION    7
#define FUSE_MIN_MINOR	       31 /* oldest minor we accept (Linux 5.10+) */
#define FUSE_OUR_MINOR	       36 /* newest minor we speak */
#define FUSE_ROOT_ID	       1
#define FUSE_NAME_MAX	       255
#define FUSE_SYMLINK_MAX       4095
#define FUSE_XATTR_NAME_MAX    255
#define FUSE_XATTR_SIZE_MAX    65536
#define FUSE_NO_FH	       UINT64_MAX
#define FUSE_COMPAT_INIT_IN_SZ 16

enum fuse_opcode {
	FUSE_LOOKUP = 1,
	FUSE_FORGET = 2,
	FUSE_GETATTR = 3,
	FUSE_SETATTR = 4,
	FUSE_READLINK = 5,
	FUSE_SYMLINK = 6,
	FUSE_MKNOD = 8,
	FUSE_MKDIR = 9,
	FUSE_UNLINK = 10,
	FUSE_RMDIR = 11,
	FUSE_RENAME = 12,
	FUSE_LINK = 13,
	FUSE_OPEN = 14,
	FUSE_READ = 15,
	FUSE_WRITE = 16,
	FUSE_STATFS = 17,
	FUSE_RELEASE = 18,
	FUSE_FSYNC = 20,
	FUSE_SETXATTR = 21,
	FUSE_GETXATTR = 22,
	FUSE_LISTXATTR = 23,
	FUSE_REMOVEXATTR = 24,
	FUSE_FLUSH = 25,
	FUSE_INIT = 26,
	FUSE_OPENDIR = 27,
	FUSE_READDIR = 28,
	FUSE_RELEASEDIR = 29,
	FUSE_FSYNCDIR = 30,
	FUSE_GETLK = 31,
	FUSE_SETLK = 32,
	FUSE_SETLKW = 33,
	FUSE_ACCESS = 34,
	FUSE_CREATE = 35,
	FUSE_INTERRUPT = 36,
	FUSE_BMAP = 37,
	FUSE_DESTROY = 38,
	FUSE_IOCTL = 39,
	FUSE_POLL = 40,
	FUSE_NOTIFY_REPLY = 41,
	FUSE_BATCH_FORGET = 42,
	FUSE_FALLOCATE = 43,
	FUSE_READDIRPLUS = 44,
	FUSE_RENAME2 = 45,
	FUSE_LSEEK = 46,
	FUSE_COPY_FILE_RANGE = 47,
	FUSE_SETUPMAPPING = 48,
	FUSE_REMOVEMAPPING = 49,
	FUSE_SYNCFS = 50,
	FUSE_TMPFILE = 51,
	FUSE_OPCODE_MAX = 52,
};

/* INIT flags (fuse_init_in.flags / fuse_init_out.flags) */
#define FUSE_ASYNC_READ	      (1u << 0)
#define FUSE_POSIX_LOCKS      (1u << 1)
#define FUSE_ATOMIC_O_TRUNC   (1u << 3)
#define FUSE_EXPORT_SUPPORT   (1u << 4)
#define FUSE_BIG_WRITES	      (1u << 5)
#define FUSE_DONT_MASK	      (1u << 6)
#define FUSE_AUTO_INVAL_DATA  (1u << 12)
#define FUSE_DO_READDIRPLUS   (1u << 13)
#define FUSE_READDIRPLUS_AUTO (1u << 14)
#define FUSE_ASYNC_DIO	      (1u << 15)
#define FUSE_WRITEBACK_CACHE  (1u << 16)
#define FUSE_PARALLEL_DIROPS  (1u << 18)
#define FUSE_HANDLE_KILLPRIV  (1u << 19)
#define FUSE_MAX_PAGES	      (1u << 22)
#define FUSE_CACHE_SYMLINKS   (1u << 23)
#define FUSE_MAP_ALIGNMENT    (1u << 26)
#define FUSE_INIT_EXT	      (1u << 30)
#define FUSE_MAX_MAX_PAGES    256u

/* SETATTR valid bits */
#define FATTR_MODE	(1u << 0)
#define FATTR_UID	(1u << 1)
#define FATTR_GID	(1u << 2)
#define FATTR_SIZE	(1u << 3)
#define FATTR_ATIME	(1u << 4)
#define FATTR_MTIME	(1u << 5)
#define FATTR_FH	(1u << 6)
#define FATTR_ATIME_NOW (1u << 7)
#define FATTR_MTIME_NOW (1u << 8)
#define FATTR_LOCKOWNER (1u << 9)
#define FATTR_CTIME	(1u << 10)

/* open_out.open_flags */
#define FOPEN_DIRECT_IO	  (1u << 0)
#define FOPEN_KEEP_CACHE  (1u << 1)
#define FOPEN_NONSEEKABLE (1u << 2)

#define FUSE_FSYNC_FDATASYNC	     (1u << 0)
#define FUSE_SETUPMAPPING_FLAG_WRITE (1ull << 0)
#define FUSE_SETUPMAPPING_FLAG_READ  (1ull << 1)

struct fuse_attr {
	uint64_t ino;
	uint64_t size;
	uint64_t blocks;
	uint64_t atime;
	uint64_t mtime;
	uint64_t ctime;
	uint32_t atimensec;
	uint32_t mtimensec;
	uint32_t ctimensec;
	uint32_t mode;
	uint32_t nlink;
	uint32_t uid;
	uint32_t gid;
	uint32_t rdev;
	uint32_t blksize;
	uint32_t flags;
};
_Static_assert(sizeof(struct fuse_attr) == 88, "fuse_attr");

struct fuse_kstatfs {
	uint64_t blocks;
	uint64_t bfree;
	uint64_t bavail;
	uint64_t files;
	uint64_t ffree;
	uint32_t bsize;
	uint32_t namelen;
	uint32_t frsize;
	uint32_t padding;
	uint32_t spare[6];
};
_Static_assert(sizeof(struct fuse_kstatfs) == 80, "fuse_kstatfs");

struct fuse_in_header {
	uint32_t len;
	uint32_t opcode;
	uint64_t unique;
	uint64_t nodeid;
	uint32_t uid;
	uint32_t gid;
	uint32_t pid;
	uint16_t total_extlen;
	uint16_t padding;
};
_Static_assert(sizeof(struct fuse_in_header) == 40, "fuse_in_header");

struct fuse_out_header {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};
_Static_assert(sizeof(struct fuse_out_header) == 16, "fuse_out_header");

struct fuse_entry_out {
	uint64_t nodeid;
	uint64_t generation;
	uint64_t entry_valid;
	uint64_t attr_valid;
	uint32_t entry_valid_nsec;
	uint32_t attr_valid_nsec;
	struct fuse_attr attr;
};
_Static_assert(sizeof(struct fuse_entry_out) == 128, "fuse_entry_out");

struct fuse_forget_in {
	uint64_t nlookup;
};
_Static_assert(sizeof(struct fuse_forget_in) == 8, "fuse_forget_in");

struct fuse_forget_one {
	uint64_t nodeid;
	uint64_t nlookup;
};
_Static_assert(sizeof(struct fuse_forget_one) == 16, "fuse_forget_one");

struct fuse_batch_forget_in {
	uint32_t count;
	uint32_t dummy;
};
_Static_assert(sizeof(struct fuse_batch_forget_in) == 8, "fuse_batch_forget_in");

struct fuse_getattr_in {
	uint32_t getattr_flags;
	uint32_t dummy;
	uint64_t fh;
};
_Static_assert(sizeof(struct fuse_getattr_in) == 16, "fuse_getattr_in");
#define FUSE_GETATTR_FH (1u << 0)

struct fuse_attr_out {
	uint64_t attr_valid;
	uint32_t attr_valid_nsec;
	uint32_t dummy;
	struct fuse_attr attr;
};
_Static_assert(sizeof(struct fuse_attr_out) == 104, "fuse_attr_out");

struct fuse_mknod_in {
	uint32_t mode;
	uint32_t rdev;
	uint32_t umask;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_mknod_in) == 16, "fuse_mknod_in");

struct fuse_mkdir_in {
	uint32_t mode;
	uint32_t umask;
};
_Static_assert(sizeof(struct fuse_mkdir_in) == 8, "fuse_mkdir_in");

struct fuse_rename_in {
	uint64_t newdir;
};
_Static_assert(sizeof(struct fuse_rename_in) == 8, "fuse_rename_in");

struct fuse_rename2_in {
	uint64_t newdir;
	uint32_t flags;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_rename2_in) == 16, "fuse_rename2_in");

struct fuse_link_in {
	uint64_t oldnodeid;
};
_Static_assert(sizeof(struct fuse_link_in) == 8, "fuse_link_in");

struct fuse_setattr_in {
	uint32_t valid;
	uint32_t padding;
	uint64_t fh;
	uint64_t size;
	uint64_t lock_owner;
	uint64_t atime;
	uint64_t mtime;
	uint64_t ctime;
	uint32_t atimensec;
	uint32_t mtimensec;
	uint32_t ctimensec;
	uint32_t mode;
	uint32_t unused4;
	uint32_t uid;
	uint32_t gid;
	uint32_t unused5;
};
_Static_assert(sizeof(struct fuse_setattr_in) == 88, "fuse_setattr_in");

struct fuse_open_in {
	uint32_t flags;
	uint32_t open_flags;
};
_Static_assert(sizeof(struct fuse_open_in) == 8, "fuse_open_in");

struct fuse_create_in {
	uint32_t flags;
	uint32_t mode;
	uint32_t umask;
	uint32_t open_flags;
};
_Static_assert(sizeof(struct fuse_create_in) == 16, "fuse_create_in");

struct fuse_open_out {
	uint64_t fh;
	uint32_t open_flags;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_open_out) == 16, "fuse_open_out");

struct fuse_release_in {
	uint64_t fh;
	uint32_t flags;
	uint32_t release_flags;
	uint64_t lock_owner;
};
_Static_assert(sizeof(struct fuse_release_in) == 24, "fuse_release_in");

struct fuse_flush_in {
	uint64_t fh;
	uint32_t unused;
	uint32_t padding;
	uint64_t lock_owner;
};
_Static_assert(sizeof(struct fuse_flush_in) == 24, "fuse_flush_in");

struct fuse_read_in {
	uint64_t fh;
	uint64_t offset;
	uint32_t size;
	uint32_t read_flags;
	uint64_t lock_owner;
	uint32_t flags;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_read_in) == 40, "fuse_read_in");

struct fuse_write_in {
	uint64_t fh;
	uint64_t offset;
	uint32_t size;
	uint32_t write_flags;
	uint64_t lock_owner;
	uint32_t flags;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_write_in) == 40, "fuse_write_in");

struct fuse_write_out {
	uint32_t size;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_write_out) == 8, "fuse_write_out");

struct fuse_statfs_out {
	struct fuse_kstatfs st;
};
_Static_assert(sizeof(struct fuse_statfs_out) == 80, "fuse_statfs_out");

struct fuse_fsync_in {
	uint64_t fh;
	uint32_t fsync_flags;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_fsync_in) == 16, "fuse_fsync_in");

/* Without FUSE_SETXATTR_EXT (which we never offer) the kernel sends only
 * the first FUSE_COMPAT_SETXATTR_IN_SIZE bytes. */
struct fuse_setxattr_in {
	uint32_t size;
	uint32_t flags;
	uint32_t setxattr_flags;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_setxattr_in) == 16, "fuse_setxattr_in");
#define FUSE_COMPAT_SETXATTR_IN_SIZE 8

struct fuse_getxattr_in {
	uint32_t size;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_getxattr_in) == 8, "fuse_getxattr_in");

struct fuse_getxattr_out {
	uint32_t size;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_getxattr_out) == 8, "fuse_getxattr_out");

struct fuse_access_in {
	uint32_t mask;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_access_in) == 8, "fuse_access_in");

struct fuse_init_in {
	uint32_t major;
	uint32_t minor;
	uint32_t max_readahead;
	uint32_t flags;
	uint32_t flags2;
	uint32_t unused[11];
};
_Static_assert(sizeof(struct fuse_init_in) == 64, "fuse_init_in");

struct fuse_init_out {
	uint32_t major;
	uint32_t minor;
	uint32_t max_readahead;
	uint32_t flags;
	uint16_t max_background;
	uint16_t congestion_threshold;
	uint32_t max_write;
	uint32_t time_gran;
	uint16_t max_pages;
	uint16_t map_alignment;
	uint32_t flags2;
	uint32_t unused[7];
};
_Static_assert(sizeof(struct fuse_init_out) == 64, "fuse_init_out");

struct fuse_dirent {
	uint64_t ino;
	uint64_t off;
	uint32_t namelen;
	uint32_t type;
	char name[];
};
_Static_assert(sizeof(struct fuse_dirent) == 24, "fuse_dirent");
#define FUSE_DIRENT_ALIGN(x) (((x) + 7) & ~(uint64_t)7)

struct fuse_direntplus {
	struct fuse_entry_out entry_out;
	struct fuse_dirent dirent;
};
_Static_assert(sizeof(struct fuse_direntplus) == 152, "fuse_direntplus");

struct fuse_lseek_in {
	uint64_t fh;
	uint64_t offset;
	uint32_t whence;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_lseek_in) == 24, "fuse_lseek_in");

struct fuse_lseek_out {
	uint64_t offset;
};
_Static_assert(sizeof(struct fuse_lseek_out) == 8, "fuse_lseek_out");

struct fuse_fallocate_in {
	uint64_t fh;
	uint64_t offset;
	uint64_t length;
	uint32_t mode;
	uint32_t padding;
};
_Static_assert(sizeof(struct fuse_fallocate_in) == 32, "fuse_fallocate_in");

struct fuse_setupmapping_in {
	uint64_t fh;
	uint64_t foffset;
	uint64_t len;
	uint64_t flags;
	uint64_t moffset;
};
_Static_assert(sizeof(struct fuse_setupmapping_in) == 40, "fuse_setupmapping_in");

struct fuse_removemapping_in {
	uint32_t count;
};
_Static_assert(sizeof(struct fuse_removemapping_in) == 4, "fuse_removemapping_in");

struct fuse_removemapping_one {
	uint64_t moffset;
	uint64_t len;
};
_Static_assert(sizeof(struct fuse_removemapping_one) == 16, "fuse_removemapping_one");

/* Name of an opcode for traces ("UNKNOWN" for anything else). */
const char *fuse_opcode_name(uint32_t opcode);
