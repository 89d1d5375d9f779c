/* SPDX-License-Identifier: Apache-2.0 */
/* Every opcode through fuse_server_handle, against memfs and passthrough. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fuse_client.h"

struct env {
	int passthrough;
	char dir[64];
	char trace[96];
	struct tc c;
};

static int setup_any(void **state, int passthrough, int read_only)
{
	struct env *e = calloc(1, sizeof(*e));
	struct sm_error err = {0};
	struct fuse_backend *be;
	e->passthrough = passthrough;
	if (passthrough) {
		snprintf(e->dir, sizeof(e->dir), "/tmp/sm-fuse-dispatch-XXXXXX");
		if (!mkdtemp(e->dir))
			return -1;
		if (fuse_passthrough_new(e->dir, &be, &err) < 0)
			return -1;
	} else if (fuse_memfs_new(&be, &err) < 0) {
		return -1;
	}
	snprintf(e->trace, sizeof(e->trace), "/tmp/sm-fuse-trace-%d-%d", getpid(), passthrough);
	unlink(e->trace);
	struct fuse_server_config cfg;
	fuse_server_config_init(&cfg);
	cfg.read_only = read_only;
	cfg.trace_path = e->trace;
	struct fuse_server *s;
	if (fuse_server_new(&cfg, be, &s, &err) < 0)
		return -1;
	tc_open_client(&e->c, s);
	*state = e;
	return 0;
}

static int setup_memfs(void **state)
{
	return setup_any(state, 0, 0);
}

static int setup_pt(void **state)
{
	return setup_any(state, 1, 0);
}

static int teardown(void **state)
{
	struct env *e = *state;
	tc_close_client(&e->c);
	unlink(e->trace);
	if (e->passthrough) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
		if (system(cmd) != 0)
			return -1;
	}
	free(e);
	return 0;
}

static void test_init_negotiation(void **state)
{
	struct env *e = *state;
	struct tc *c = &e->c;
	/* Anything before INIT is refused. */
	struct fuse_entry_out eo;
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "x", &eo), -EIO);
	/* Too old a minor. */
	struct fuse_init_in old = {.major = 7, .minor = 30};
	assert_int_equal(tc_call(c, FUSE_INIT, 0, &old, sizeof(old), NULL, 0, NULL, 0), -EPROTO);
	/* Truncated INIT. */
	assert_int_equal(tc_call(c, FUSE_INIT, 0, &old, 12, NULL, 0, NULL, 0), -EINVAL);
	struct fuse_init_out o = tc_init(c);
	assert_int_equal(o.major, 7);
	assert_int_equal(o.minor, FUSE_OUR_MINOR);
	assert_int_equal(o.max_write, 1u << 20);
	assert_int_equal(o.max_pages, 256);
	assert_int_equal(o.max_readahead, 128 * 1024);
	assert_true(o.flags & FUSE_DO_READDIRPLUS);
	assert_true(o.flags & FUSE_MAX_PAGES);
	assert_false(o.flags & FUSE_MAP_ALIGNMENT); /* no DAX session attached */
	assert_false(o.flags & FUSE_WRITEBACK_CACHE);
	assert_false(o.flags & FUSE_POSIX_LOCKS);
	assert_int_equal(o.map_alignment, 0);
	/* A second INIT is refused; DESTROY allows a new one. */
	struct fuse_init_in again = {.major = 7, .minor = 31};
	assert_int_equal(tc_call(c, FUSE_INIT, 0, &again, sizeof(again), NULL, 0, NULL, 0),
			 -EINVAL);
	assert_int_equal(tc_call(c, FUSE_DESTROY, 0, NULL, 0, NULL, 0, NULL, 0), 0);
	/* A 7.31 kernel: minor 31 back, only the flags it offered. */
	struct fuse_init_in k531 = {.major = 7,
				    .minor = 31,
				    .max_readahead = 1u << 30,
				    .flags = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS};
	assert_int_equal(tc_call(c, FUSE_INIT, 0, &k531, FUSE_COMPAT_INIT_IN_SZ, NULL, 0, NULL, 0),
			 0);
	memcpy(&o, tc_payload(c), sizeof(o));
	assert_int_equal(o.minor, 31);
	assert_int_equal(o.flags, FUSE_ASYNC_READ);
	assert_int_equal(o.max_readahead, 1u << 20);
}

static void test_file_roundtrip(void **state)
{
	struct env *e = *state;
	struct tc *c = &e->c;
	tc_init(c);
	struct fuse_entry_out eo, eo2;
	uint64_t fh = 0;
	assert_int_equal(tc_create(c, FUSE_ROOT_ID, "f.txt", 0644, O_RDWR | O_CREAT, &eo, &fh), 0);
	assert_true(S_ISREG(eo.attr.mode));
	assert_int_equal(eo.attr.mode & 0777, 0644);
	assert_int_equal(tc_write(c, eo.nodeid, fh, 0, "hello world", 11), 11);
	assert_int_equal(tc_write(c, eo.nodeid, fh, 6, "WORLD", 5), 5);
	char buf[64] = {0};
	assert_int_equal(tc_read(c, eo.nodeid, fh, 0, sizeof(buf), buf), 11);
	assert_memory_equal(buf, "hello WORLD", 11);
	assert_int_equal(tc_read(c, eo.nodeid, fh, 6, 3, buf), 3);
	assert_memory_equal(buf, "WOR", 3);
	assert_int_equal(tc_read(c, eo.nodeid, fh, 100, 10, buf), 0);
	/* A reply room smaller than the request clamps the read. */
	struct fuse_read_in ri = {.fh = fh, .offset = 0, .size = 11};
	assert_int_equal(
		tc_call_sized(c, FUSE_READ, eo.nodeid, &ri, sizeof(ri), NULL, 0, NULL, 0, 16 + 4),
		0);
	assert_int_equal(tc_payload_len(c), 4);
	struct fuse_attr a;
	assert_int_equal(tc_getattr(c, eo.nodeid, &a), 0);
	assert_int_equal(a.size, 11);
	assert_int_equal(a.ino, eo.attr.ino);
	struct fuse_flush_in fl = {.fh = fh};
	assert_int_equal(tc_call(c, FUSE_FLUSH, eo.nodeid, &fl, sizeof(fl), NULL, 0, NULL, 0), 0);
	struct fuse_fsync_in fs = {.fh = fh, .fsync_flags = FUSE_FSYNC_FDATASYNC};
	assert_int_equal(tc_call(c, FUSE_FSYNC, eo.nodeid, &fs, sizeof(fs), NULL, 0, NULL, 0), 0);
	/* Wrong handle for this node. */
	assert_int_equal(tc_read(c, eo.nodeid, fh + 77, 0, 4, buf), -EBADF);
	assert_int_equal(tc_release(c, eo.nodeid, fh, 0), 0);
	assert_int_equal(tc_release(c, eo.nodeid, fh, 0), -EBADF);
	/* LOOKUP finds the same node; open read-only and read again. */
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "f.txt", &eo2), 0);
	assert_int_equal(eo2.nodeid, eo.nodeid);
	assert_int_equal(tc_open(c, eo.nodeid, O_RDONLY, 0, &fh), 0);
	assert_int_equal(tc_read(c, eo.nodeid, fh, 0, 5, buf), 5);
	assert_int_equal(tc_write(c, eo.nodeid, fh, 0, "x", 1), -EBADF);
	assert_int_equal(tc_release(c, eo.nodeid, fh, 0), 0);
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "nope", &eo2), -ENOENT);
	/* CREATE with O_EXCL on an existing name. */
	assert_int_equal(
		tc_create(c, FUSE_ROOT_ID, "f.txt", 0644, O_RDWR | O_CREAT | O_EXCL, &eo2, &fh),
		-EEXIST);
	if (e->passthrough) {
		char path[128], got[32] = {0};
		snprintf(path, sizeof(path), "%s/f.txt", e->dir);
		FILE *f = fopen(path, "r");
		assert_non_null(f);
		assert_int_equal(fread(got, 1, sizeof(got), f), 11);
		fclose(f);
		assert_string_equal(got, "hello WORLD");
	}
}

static void test_dirs(void **state)
{
	struct env *e = *state;
	struct tc *c = &e->c;
	tc_init(c);
	struct fuse_entry_out d, f;
	uint64_t fh = 0;
	assert_int_equal(tc_mkdir(c, FUSE_ROOT_ID, "d", 0755, &d), 0);
	assert_true(S_ISDIR(d.attr.mode));
	assert_int_equal(tc_mkdir(c, FUSE_ROOT_ID, "d", 0755, &f), -EEXIST);
	char name[32];
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "file%02d", i);
		assert_int_equal(tc_create(c, d.nodeid, name, 0600, O_WRONLY, &f, &fh), 0);
		assert_int_equal(tc_release(c, f.nodeid, fh, 0), 0);
	}
	assert_int_equal(tc_open(c, d.nodeid, O_RDONLY, 1, &fh), 0);
	char list[2048];
	assert_int_equal(tc_readdir_all(c, d.nodeid, fh, 0, list, sizeof(list)), 0);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "file%02d,", i);
		assert_non_null(strstr(list, name));
	}
	assert_int_equal(strlen(list), 20 * 7);
	assert_int_equal(tc_readdir_all(c, d.nodeid, fh, 1, list, sizeof(list)), 0);
	assert_int_equal(strlen(list), 20 * 7);
	struct fuse_fsync_in fs = {.fh = fh};
	assert_int_equal(tc_call(c, FUSE_FSYNCDIR, d.nodeid, &fs, sizeof(fs), NULL, 0, NULL, 0), 0);
	assert_int_equal(tc_release(c, d.nodeid, fh, 1), 0);
	/* OPENDIR on a file, OPEN on a directory. */
	assert_int_equal(tc_lookup(c, d.nodeid, "file00", &f), 0);
	assert_int_equal(tc_open(c, f.nodeid, O_RDONLY, 1, &fh), -ENOTDIR);
	assert_int_equal(tc_open(c, d.nodeid, O_RDONLY, 0, &fh), -EISDIR);
	assert_int_equal(tc_remove(c, FUSE_ROOT_ID, "d", 1), -ENOTEMPTY);
	assert_int_equal(tc_remove(c, d.nodeid, "file00", 1), -ENOTDIR);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "file%02d", i);
		assert_int_equal(tc_remove(c, d.nodeid, name, 0), 0);
	}
	assert_int_equal(tc_remove(c, FUSE_ROOT_ID, "d", 0), -EISDIR);
	assert_int_equal(tc_remove(c, FUSE_ROOT_ID, "d", 1), 0);
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "d", &f), -ENOENT);
}

static void test_links_and_renames(void **state)
{
	struct env *e = *state;
	struct tc *c = &e->c;
	tc_init(c);
	struct fuse_entry_out a, l, s, b;
	uint64_t fh = 0;
	assert_int_equal(tc_create(c, FUSE_ROOT_ID, "a", 0644, O_RDWR, &a, &fh), 0);
	assert_int_equal(tc_write(c, a.nodeid, fh, 0, "AAAA", 4), 4);
	assert_int_equal(tc_release(c, a.nodeid, fh, 0), 0);
	/* SYMLINK + READLINK */
	assert_int_equal(tc_symlink(c, FUSE_ROOT_ID, "s", "a/../a", &s), 0);
	assert_true(S_ISLNK(s.attr.mode));
	assert_int_equal(tc_call(c, FUSE_READLINK, s.nodeid, NULL, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(tc_payload_len(c), 6);
	assert_memory_equal(tc_payload(c), "a/../a", 6);
	assert_int_equal(tc_call(c, FUSE_READLINK, a.nodeid, NULL, 0, NULL, 0, NULL, 0), -EINVAL);
	/* LINK */
	struct fuse_link_in li = {.oldnodeid = a.nodeid};
	assert_int_equal(tc_name_op(c, FUSE_LINK, FUSE_ROOT_ID, &li, sizeof(li), "hard", &l), 0);
	assert_int_equal(l.nodeid, a.nodeid);
	assert_int_equal(l.attr.nlink, 2);
	/* RENAME (v1) */
	struct fuse_rename_in ri = {.newdir = FUSE_ROOT_ID};
	assert_int_equal(
		tc_call(c, FUSE_RENAME, FUSE_ROOT_ID, &ri, sizeof(ri), "hard\0b", 7, NULL, 0), 0);
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "hard", &b), -ENOENT);
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "b", &b), 0);
	assert_int_equal(b.nodeid, a.nodeid);
	/* RENAME2 NOREPLACE onto an existing name */
	assert_int_equal(tc_rename2(c, FUSE_ROOT_ID, "b", FUSE_ROOT_ID, "a", RENAME_NOREPLACE),
			 -EEXIST);
	/* EXCHANGE a file and a symlink */
	assert_int_equal(tc_rename2(c, FUSE_ROOT_ID, "b", FUSE_ROOT_ID, "s", RENAME_EXCHANGE), 0);
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "b", &b), 0);
	assert_true(S_ISLNK(b.attr.mode));
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "s", &b), 0);
	assert_true(S_ISREG(b.attr.mode));
	assert_int_equal(tc_rename2(c, FUSE_ROOT_ID, "b", FUSE_ROOT_ID, "x", 0x80), -EINVAL);
	/* Rename across directories, then unlink; nlink drops. */
	struct fuse_entry_out d;
	assert_int_equal(tc_mkdir(c, FUSE_ROOT_ID, "dir", 0700, &d), 0);
	assert_int_equal(tc_rename2(c, FUSE_ROOT_ID, "s", d.nodeid, "moved", 0), 0);
	assert_int_equal(tc_lookup(c, d.nodeid, "moved", &b), 0);
	assert_int_equal(b.nodeid, a.nodeid);
	assert_int_equal(tc_remove(c, d.nodeid, "moved", 0), 0);
	struct fuse_attr at;
	assert_int_equal(tc_getattr(c, a.nodeid, &at), 0);
	assert_int_equal(at.nlink, 1);
	/* A directory cannot move below itself. */
	assert_int_equal(tc_rename2(c, FUSE_ROOT_ID, "dir", d.nodeid, "inner", 0), -EINVAL);
}

static void test_setattr_and_misc(void **state)
{
	struct env *e = *state;
	struct tc *c = &e->c;
	tc_init(c);
	struct fuse_entry_out f;
	uint64_t fh = 0;
	assert_int_equal(tc_create(c, FUSE_ROOT_ID, "f", 0644, O_RDWR, &f, &fh), 0);
	assert_int_equal(tc_write(c, f.nodeid, fh, 0, "0123456789", 10), 10);
	struct fuse_setattr_in sa = {.valid = FATTR_SIZE | FATTR_MODE | FATTR_MTIME,
				     .size = 4,
				     .mode = 0600,
				     .mtime = 1000000,
				     .mtimensec = 5};
	assert_int_equal(tc_call(c, FUSE_SETATTR, f.nodeid, &sa, sizeof(sa), NULL, 0, NULL, 0), 0);
	struct fuse_attr_out ao;
	memcpy(&ao, tc_payload(c), sizeof(ao));
	assert_int_equal(ao.attr.size, 4);
	assert_int_equal(ao.attr.mode & 07777, 0600);
	assert_int_equal(ao.attr.mtime, 1000000);
	assert_int_equal(ao.attr.mtimensec, 5);
	sa = (struct fuse_setattr_in){.valid = FATTR_SIZE | FATTR_FH, .fh = fh, .size = 2};
	assert_int_equal(tc_call(c, FUSE_SETATTR, f.nodeid, &sa, sizeof(sa), NULL, 0, NULL, 0), 0);
	memcpy(&ao, tc_payload(c), sizeof(ao));
	assert_int_equal(ao.attr.size, 2);
	sa.mtimensec = 1000000000u; /* invalid nanoseconds */
	sa.valid = FATTR_MTIME;
	assert_int_equal(tc_call(c, FUSE_SETATTR, f.nodeid, &sa, sizeof(sa), NULL, 0, NULL, 0),
			 -EINVAL);
	/* STATFS, ACCESS */
	assert_int_equal(tc_call(c, FUSE_STATFS, FUSE_ROOT_ID, NULL, 0, NULL, 0, NULL, 0), 0);
	struct fuse_statfs_out so;
	memcpy(&so, tc_payload(c), sizeof(so));
	assert_true(so.st.bsize > 0);
	assert_true(so.st.namelen >= 255);
	struct fuse_access_in ac = {.mask = R_OK};
	assert_int_equal(tc_call(c, FUSE_ACCESS, f.nodeid, &ac, sizeof(ac), NULL, 0, NULL, 0), 0);
	ac.mask = 0x100;
	assert_int_equal(tc_call(c, FUSE_ACCESS, f.nodeid, &ac, sizeof(ac), NULL, 0, NULL, 0),
			 -EINVAL);
	/* FALLOCATE grows; LSEEK finds data and the hole at the end. */
	struct fuse_fallocate_in fa = {.fh = fh, .offset = 0, .length = 8192};
	assert_int_equal(tc_call(c, FUSE_FALLOCATE, f.nodeid, &fa, sizeof(fa), NULL, 0, NULL, 0),
			 0);
	struct fuse_attr a;
	assert_int_equal(tc_getattr(c, f.nodeid, &a), 0);
	assert_int_equal(a.size, 8192);
	fa.offset = UINT64_MAX - 10;
	assert_int_equal(tc_call(c, FUSE_FALLOCATE, f.nodeid, &fa, sizeof(fa), NULL, 0, NULL, 0),
			 -EINVAL);
	struct fuse_lseek_in ls = {.fh = fh, .offset = 0, .whence = SEEK_DATA};
	assert_int_equal(tc_call(c, FUSE_LSEEK, f.nodeid, &ls, sizeof(ls), NULL, 0, NULL, 0), 0);
	struct fuse_lseek_out lo;
	memcpy(&lo, tc_payload(c), sizeof(lo));
	assert_int_equal(lo.offset, 0);
	ls.offset = 9000;
	assert_int_equal(tc_call(c, FUSE_LSEEK, f.nodeid, &ls, sizeof(ls), NULL, 0, NULL, 0),
			 -ENXIO);
	ls.whence = 7;
	assert_int_equal(tc_call(c, FUSE_LSEEK, f.nodeid, &ls, sizeof(ls), NULL, 0, NULL, 0),
			 -EINVAL);
	assert_int_equal(tc_release(c, f.nodeid, fh, 0), 0);
	/* MKNOD: a FIFO is fine everywhere. */
	struct fuse_mknod_in mk = {.mode = S_IFIFO | 0644};
	struct fuse_entry_out n;
	assert_int_equal(tc_name_op(c, FUSE_MKNOD, FUSE_ROOT_ID, &mk, sizeof(mk), "fifo", &n), 0);
	assert_true(S_ISFIFO(n.attr.mode));
	/* FIFOs are never opened on the host. */
	assert_int_equal(tc_open(c, n.nodeid, O_RDONLY, 0, &fh), -ENXIO);
	/* FORGET / BATCH_FORGET have no reply. */
	struct fuse_forget_in fg = {.nlookup = 1};
	assert_int_equal(tc_call(c, FUSE_FORGET, n.nodeid, &fg, sizeof(fg), NULL, 0, NULL, 0), 0);
	struct {
		struct fuse_batch_forget_in h;
		struct fuse_forget_one one[2];
	} bf = {{.count = 2}, {{f.nodeid, 1}, {12345678, 3}}};
	assert_int_equal(tc_call(c, FUSE_BATCH_FORGET, 0, &bf, sizeof(bf), NULL, 0, NULL, 0), 0);
	/* Unknown node ids. */
	struct fuse_attr a2;
	assert_int_equal(tc_getattr(c, 987654321, &a2), -ESTALE);
	/* Not implemented: ENOSYS. */
	uint8_t zero[64] = {0};
	assert_int_equal(tc_call(c, FUSE_GETLK, f.nodeid, zero, 64, NULL, 0, NULL, 0), -ENOSYS);
	assert_int_equal(tc_call(c, FUSE_IOCTL, f.nodeid, zero, 32, NULL, 0, NULL, 0), -ENOSYS);
	assert_int_equal(tc_call(c, 4242, f.nodeid, NULL, 0, NULL, 0, NULL, 0), -ENOSYS);
	assert_int_equal(tc_call(c, FUSE_SETUPMAPPING, f.nodeid, zero, 40, NULL, 0, NULL, 0),
			 -ENOSYS);
}

static void test_xattrs(void **state)
{
	struct env *e = *state;
	struct tc *c = &e->c;
	tc_init(c);
	struct fuse_entry_out f;
	uint64_t fh = 0;
	assert_int_equal(tc_create(c, FUSE_ROOT_ID, "x", 0644, O_RDWR, &f, &fh), 0);
	struct fuse_setxattr_in si = {.size = 3};
	int r = tc_call(c, FUSE_SETXATTR, f.nodeid, &si, FUSE_COMPAT_SETXATTR_IN_SIZE, "user.k", 7,
			"v12", 3);
	if (e->passthrough && r == -EOPNOTSUPP) {
		skip(); /* the temp directory's file system has no user xattrs */
		return;
	}
	assert_int_equal(r, 0);
	si.flags = XATTR_CREATE;
	assert_int_equal(tc_call(c, FUSE_SETXATTR, f.nodeid, &si, FUSE_COMPAT_SETXATTR_IN_SIZE,
				 "user.k", 7, "v12", 3),
			 -EEXIST);
	/* size mismatch between header and value bytes */
	si = (struct fuse_setxattr_in){.size = 5};
	assert_int_equal(tc_call(c, FUSE_SETXATTR, f.nodeid, &si, FUSE_COMPAT_SETXATTR_IN_SIZE,
				 "user.k", 7, "v12", 3),
			 -EINVAL);
	struct fuse_getxattr_in gi = {.size = 0};
	assert_int_equal(tc_call(c, FUSE_GETXATTR, f.nodeid, &gi, sizeof(gi), "user.k", 7, NULL, 0),
			 0);
	struct fuse_getxattr_out go;
	memcpy(&go, tc_payload(c), sizeof(go));
	assert_int_equal(go.size, 3);
	gi.size = 64;
	assert_int_equal(tc_call(c, FUSE_GETXATTR, f.nodeid, &gi, sizeof(gi), "user.k", 7, NULL, 0),
			 0);
	assert_int_equal(tc_payload_len(c), 3);
	assert_memory_equal(tc_payload(c), "v12", 3);
	gi.size = 2;
	assert_int_equal(tc_call(c, FUSE_GETXATTR, f.nodeid, &gi, sizeof(gi), "user.k", 7, NULL, 0),
			 -ERANGE);
	gi.size = 256;
	assert_int_equal(tc_call(c, FUSE_LISTXATTR, f.nodeid, &gi, sizeof(gi), NULL, 0, NULL, 0),
			 0);
	assert_non_null(memmem(tc_payload(c), tc_payload_len(c), "user.k\0", 7));
	assert_int_equal(tc_call(c, FUSE_REMOVEXATTR, f.nodeid, "user.k", 7, NULL, 0, NULL, 0), 0);
	assert_int_equal(tc_call(c, FUSE_REMOVEXATTR, f.nodeid, "user.k", 7, NULL, 0, NULL, 0),
			 -ENODATA);
	gi.size = 64;
	assert_int_equal(tc_call(c, FUSE_GETXATTR, f.nodeid, &gi, sizeof(gi), "user.k", 7, NULL, 0),
			 -ENODATA);
	assert_int_equal(tc_release(c, f.nodeid, fh, 0), 0);
}

/* Framing mistakes: every one gets EINVAL (or no reply for FORGET). */
static void test_malformed(void **state)
{
	struct env *e = *state;
	struct tc *c = &e->c;
	tc_init(c);
	struct fuse_entry_out eo;
	/* Unterminated name. */
	assert_int_equal(tc_call(c, FUSE_LOOKUP, FUSE_ROOT_ID, "abc", 3, NULL, 0, NULL, 0),
			 -EINVAL);
	/* Bad names. */
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "", &eo), -EINVAL);
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "a/b", &eo), -EINVAL);
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, ".", &eo), -EINVAL);
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "..", &eo), -EINVAL);
	char longname[300];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[299] = '\0';
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, longname, &eo), -ENAMETOOLONG);
	/* Trailing junk after a name. */
	assert_int_equal(tc_call(c, FUSE_LOOKUP, FUSE_ROOT_ID, "a\0zz", 4, NULL, 0, NULL, 0),
			 -EINVAL);
	/* Short fixed-size argument. */
	assert_int_equal(tc_call(c, FUSE_GETATTR, FUSE_ROOT_ID, "1234", 4, NULL, 0, NULL, 0),
			 -EINVAL);
	/* WRITE whose size field disagrees with the bytes present. */
	struct fuse_write_in wi = {.size = 100};
	assert_int_equal(tc_call(c, FUSE_WRITE, FUSE_ROOT_ID, &wi, sizeof(wi), "abc", 3, NULL, 0),
			 -EINVAL);
	wi.size = 0xffffffffu;
	assert_int_equal(tc_call(c, FUSE_WRITE, FUSE_ROOT_ID, &wi, sizeof(wi), NULL, 0, NULL, 0),
			 -EINVAL);
	/* RENAME with one name only. */
	struct fuse_rename_in ri = {.newdir = 1};
	assert_int_equal(tc_call(c, FUSE_RENAME, 1, &ri, sizeof(ri), "a", 2, NULL, 0), -EINVAL);
	/* BATCH_FORGET whose count overflows: no reply, no crash. */
	struct fuse_batch_forget_in bf = {.count = 0xffffffffu};
	assert_int_equal(tc_call(c, FUSE_BATCH_FORGET, 0, &bf, sizeof(bf), NULL, 0, NULL, 0), 0);
	/* Header len that disagrees with the bytes given. */
	struct fuse_in_header h = {.len = 1000, .opcode = FUSE_GETATTR, .unique = 9, .nodeid = 1};
	struct fuse_getattr_in gi = {0};
	uint8_t req[sizeof(h) + sizeof(gi)];
	memcpy(req, &h, sizeof(h));
	memcpy(req + sizeof(h), &gi, sizeof(gi));
	uint8_t out[256];
	struct iovec iv = {req, sizeof(req)}, ov = {out, sizeof(out)};
	size_t n = fuse_server_handle(c->s, &iv, 1, &ov, 1);
	assert_int_equal(n, 16);
	struct fuse_out_header oh;
	memcpy(&oh, out, sizeof(oh));
	assert_int_equal(oh.error, -EINVAL);
	assert_int_equal(oh.unique, 9);
	/* Shorter than a header. */
	iv.iov_len = 10;
	assert_int_equal(fuse_server_handle(c->s, &iv, 1, &ov, 1), 16);
	/* No room for even a reply header: nothing written. */
	ov.iov_len = 15;
	assert_int_equal(fuse_server_handle(c->s, &iv, 1, &ov, 1), 0);
	/* Reply room too small for GETATTR's answer. */
	h.len = sizeof(req);
	memcpy(req, &h, sizeof(h));
	iv.iov_len = sizeof(req);
	ov.iov_len = 40;
	assert_int_equal(fuse_server_handle(c->s, &iv, 1, &ov, 1), 16);
	memcpy(&oh, out, sizeof(oh));
	assert_int_equal(oh.error, -EINVAL);
	/* Negative or absurd iovec counts. */
	assert_int_equal(fuse_server_handle(c->s, &iv, -1, &ov, 1), 16);
	struct iovec huge[2] = {{req, SIZE_MAX}, {req, 8}};
	ov.iov_len = sizeof(out);
	assert_int_equal(fuse_server_handle(c->s, huge, 2, &ov, 1), 16);
	/* REMOVEMAPPING count disagreeing with the entries. */
	struct fuse_removemapping_in rm = {.count = 3};
	assert_int_equal(tc_call(c, FUSE_REMOVEMAPPING, 1, &rm, sizeof(rm), NULL, 0, NULL, 0),
			 -EINVAL);
}

static void test_trace_file(void **state)
{
	struct env *e = *state;
	struct tc *c = &e->c;
	tc_init(c);
	struct fuse_entry_out eo;
	assert_int_equal(tc_lookup(c, FUSE_ROOT_ID, "missing", &eo), -ENOENT);
	FILE *f = fopen(e->trace, "r");
	assert_non_null(f);
	char buf[4096] = {0};
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	assert_true(n > 0);
	assert_non_null(strstr(buf, "op=INIT(26)"));
	assert_non_null(strstr(buf, "op=LOOKUP(1) nodeid=1"));
	assert_non_null(strstr(buf, "error=-2"));
}

/* SM_FUSE_TRACE names the trace file when the config does not. */
static void test_trace_env_and_config_errors(void **state)
{
	(void)state;
	char path[64];
	snprintf(path, sizeof(path), "/tmp/sm-fuse-envtrace-%d", getpid());
	unlink(path);
	setenv("SM_FUSE_TRACE", path, 1);
	struct sm_error err = {0};
	struct fuse_backend *be;
	struct fuse_server *s;
	struct fuse_server_config cfg;
	fuse_server_config_init(&cfg);
	assert_int_equal(fuse_memfs_new(&be, &err), 0);
	assert_int_equal(fuse_server_new(&cfg, be, &s, &err), 0);
	unsetenv("SM_FUSE_TRACE");
	struct tc c;
	tc_open_client(&c, s);
	tc_init(&c);
	tc_close_client(&c);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[256] = {0};
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	unlink(path);
	assert_non_null(strstr(line, "op=INIT(26)"));
	/* Bad configurations are refused with a message; the backend is freed. */
	cfg.max_write = 1000;
	assert_int_equal(fuse_memfs_new(&be, &err), 0);
	assert_int_equal(fuse_server_new(&cfg, be, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "max_write"));
	fuse_server_config_init(&cfg);
	cfg.trace_path = "/nonexistent-dir/trace";
	assert_int_equal(fuse_memfs_new(&be, &err), 0);
	assert_true(fuse_server_new(&cfg, be, &s, &err) < 0);
	assert_non_null(strstr(err.msg, "trace"));
	/* A NULL config means the defaults. */
	assert_int_equal(fuse_memfs_new(&be, &err), 0);
	assert_int_equal(fuse_server_new(NULL, be, &s, &err), 0);
	fuse_server_free(s);
}

struct worker {
	struct fuse_server *s;
	int id;
	int ok;
};

/* Each thread: its own client state, its own names, a shared directory. */
static void *worker(void *arg)
{
	struct worker *w = arg;
	struct tc c;
	memset(&c, 0, sizeof(c));
	c.s = w->s;
	c.unique = (uint64_t)w->id << 40;
	c.out = malloc(TC_OUT_CAP);
	c.req = malloc(TC_OUT_CAP);
	char name[32], buf[64];
	for (int i = 0; i < 200; i++) {
		struct fuse_entry_out eo, d;
		uint64_t fh = 0, dfh = 0;
		snprintf(name, sizeof(name), "t%d-%d", w->id, i);
		if (tc_create(&c, FUSE_ROOT_ID, name, 0644, O_RDWR, &eo, &fh) != 0)
			continue;
		if (tc_write(&c, eo.nodeid, fh, 0, name, strlen(name)) == (long)strlen(name) &&
		    tc_read(&c, eo.nodeid, fh, 0, sizeof(buf), buf) == (long)strlen(name) &&
		    memcmp(buf, name, strlen(name)) == 0)
			w->ok++;
		tc_release(&c, eo.nodeid, fh, 0);
		if (tc_lookup(&c, FUSE_ROOT_ID, ".", &d) == -EINVAL &&
		    tc_open(&c, FUSE_ROOT_ID, O_RDONLY, 1, &dfh) == 0) {
			char list[8192];
			tc_readdir_all(&c, FUSE_ROOT_ID, dfh, i & 1, list, sizeof(list));
			tc_release(&c, FUSE_ROOT_ID, dfh, 1);
		}
		tc_remove(&c, FUSE_ROOT_ID, name, 0);
		struct fuse_forget_in fg = {.nlookup = 1};
		tc_call(&c, FUSE_FORGET, eo.nodeid, &fg, sizeof(fg), NULL, 0, NULL, 0);
	}
	free(c.out);
	free(c.req);
	return NULL;
}

/* Requests from several threads at once (one per virtqueue in the VMM). */
static void test_threads(void **state)
{
	struct env *e = *state;
	tc_init(&e->c);
	pthread_t t[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.s = e->c.s, .id = i + 1};
		assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, 200);
	}
	uint64_t fh = 0;
	char list[256];
	assert_int_equal(tc_open(&e->c, FUSE_ROOT_ID, O_RDONLY, 1, &fh), 0);
	assert_int_equal(tc_readdir_all(&e->c, FUSE_ROOT_ID, fh, 0, list, sizeof(list)), 0);
	assert_string_equal(list, "");
}

#define BOTH(t)                                                                                    \
	cmocka_unit_test_setup_teardown(t, setup_memfs, teardown),                                 \
		cmocka_unit_test_setup_teardown(t, setup_pt, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_init_negotiation),  BOTH(test_file_roundtrip),   BOTH(test_dirs),
		BOTH(test_links_and_renames), BOTH(test_setattr_and_misc), BOTH(test_xattrs),
		BOTH(test_malformed),	      BOTH(test_trace_file),	   BOTH(test_threads),
	};
	const struct CMUnitTest single[] = {
		cmocka_unit_test(test_trace_env_and_config_errors),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	return r + cmocka_run_group_tests(single, NULL, NULL);
}
