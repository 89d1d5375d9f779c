/* SPDX-License-Identifier: Apache-2.0 */
/* Layout facts from our fuse/fuse_abi.h, for test_fuse_abi.c (the
 * two headers cannot meet in one translation unit: same struct names). */
#include <stddef.h>
#include "fuse/fuse_abi.h"

#include "abi_facts.h"

#define F(s, m)                                                                                    \
	{                                                                                          \
#s "." #m, offsetof(struct s, m)                                                   \
	}
#define S(s)                                                                                       \
	{                                                                                          \
#s, sizeof(struct s)                                                               \
	}

const struct abi_fact abi_ours_facts[] = {
	S(fuse_attr),
	F(fuse_attr, blksize),
	F(fuse_attr, flags),
	S(fuse_kstatfs),
	F(fuse_kstatfs, frsize),
	S(fuse_in_header),
	F(fuse_in_header, nodeid),
	F(fuse_in_header, pid),
	S(fuse_out_header),
	F(fuse_out_header, unique),
	S(fuse_entry_out),
	F(fuse_entry_out, attr),
	S(fuse_attr_out),
	F(fuse_attr_out, attr),
	S(fuse_getattr_in),
	F(fuse_getattr_in, fh),
	S(fuse_setattr_in),
	F(fuse_setattr_in, size),
	F(fuse_setattr_in, mtimensec),
	F(fuse_setattr_in, mode),
	F(fuse_setattr_in, uid),
	F(fuse_setattr_in, gid),
	S(fuse_mknod_in),
	F(fuse_mknod_in, umask),
	S(fuse_mkdir_in),
	S(fuse_rename2_in),
	F(fuse_rename2_in, flags),
	S(fuse_link_in),
	S(fuse_open_in),
	S(fuse_create_in),
	F(fuse_create_in, umask),
	S(fuse_open_out),
	S(fuse_release_in),
	F(fuse_release_in, lock_owner),
	S(fuse_flush_in),
	S(fuse_read_in),
	F(fuse_read_in, size),
	F(fuse_read_in, lock_owner),
	S(fuse_write_in),
	F(fuse_write_in, size),
	S(fuse_write_out),
	S(fuse_statfs_out),
	S(fuse_fsync_in),
	S(fuse_setxattr_in),
	S(fuse_getxattr_in),
	S(fuse_getxattr_out),
	S(fuse_access_in),
	S(fuse_init_in),
	F(fuse_init_in, flags2),
	S(fuse_init_out),
	F(fuse_init_out, max_write),
	F(fuse_init_out, max_pages),
	F(fuse_init_out, map_alignment),
	F(fuse_init_out, flags2),
	S(fuse_forget_one),
	S(fuse_batch_forget_in),
	S(fuse_dirent),
	F(fuse_dirent, namelen),
	S(fuse_direntplus),
	S(fuse_lseek_in),
	S(fuse_lseek_out),
	S(fuse_fallocate_in),
	F(fuse_fallocate_in, mode),
	S(fuse_setupmapping_in),
	F(fuse_setupmapping_in, moffset),
	S(fuse_removemapping_in),
	S(fuse_removemapping_one),
	{"FUSE_SETUPMAPPING", FUSE_SETUPMAPPING},
	{"FUSE_REMOVEMAPPING", FUSE_REMOVEMAPPING},
	{"FUSE_READDIRPLUS", FUSE_READDIRPLUS},
	{"FUSE_RENAME2", FUSE_RENAME2},
	{"FUSE_LSEEK", FUSE_LSEEK},
	{"FUSE_BATCH_FORGET", FUSE_BATCH_FORGET},
	{"FUSE_MAP_ALIGNMENT", FUSE_MAP_ALIGNMENT},
	{"FUSE_MAX_PAGES", FUSE_MAX_PAGES},
	{"FUSE_DO_READDIRPLUS", FUSE_DO_READDIRPLUS},
	{"FUSE_INIT_EXT", FUSE_INIT_EXT},
	{"FATTR_MTIME_NOW", FATTR_MTIME_NOW},
	{"FUSE_SETUPMAPPING_FLAG_READ", FUSE_SETUPMAPPING_FLAG_READ},
	{NULL, 0},
};
