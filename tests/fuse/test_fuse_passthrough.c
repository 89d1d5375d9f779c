/* SPDX-License-Identifier: Apache-2.0 */
/* Passthrough: containment, read-only mode, node table snapshot/restore. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse_client.h"

struct env {
	char dir[128];
	struct tc c;
};

static void put(const char *dir, const char *rel, const char *content)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void sym(const char *dir, const char *rel, const char *target)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	assert_int_equal(symlink(target, path), 0);
}

static void mk(const char *dir, const char *rel)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	assert_int_equal(mkdir(path, 0755), 0);
}

static struct fuse_server *server_on(const char *dir, int read_only)
{
	struct sm_error err = {0};
	struct fuse_backend *be;
	struct fuse_server *s;
	assert_int_equal(fuse_passthrough_new(dir, &be, &err), 0);
	struct fuse_server_config cfg;
	fuse_server_config_init(&cfg);
	cfg.read_only = read_only;
	assert_int_equal(fuse_server_new(&cfg, be, &s, &err), 0);
	return s;
}

/* Tree: root/{hello, sub/{inner, up -> ..}, etc -> /etc, rel -> ../../../etc,
 * abs -> /etc/passwd}, next to root a "secret" file that must stay unseen. */
static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	char outer[64];
	snprintf(outer, sizeof(outer), "/tmp/sm-fuse-pt-XXXXXX");
	if (!mkdtemp(outer))
		return -1;
	put(outer, "secret", "TOPSECRET");
	snprintf(e->dir, sizeof(e->dir), "%s/root", outer);
	if (mkdir(e->dir, 0755) < 0)
		return -1;
	put(e->dir, "hello", "hello from the image\n");
	mk(e->dir, "sub");
	put(e->dir, "sub/inner", "inner");
	sym(e->dir, "sub/up", "..");
	sym(e->dir, "etc", "/etc");
	sym(e->dir, "rel", "../../../etc");
	sym(e->dir, "abs", "/etc/passwd");
	sym(e->dir, "sec", "../secret");
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strlen(e->dir) - 5), e->dir);
	int r = system(cmd);
	free(e);
	return r == 0 ? 0 : -1;
}

static void test_escapes_contained(void **state)
{
	struct env *e = *state;
	struct tc c;
	tc_open_client(&c, server_on(e->dir, 0));
	tc_init(&c);
	struct fuse_entry_out eo, x;
	uint64_t fh = 0;
	char buf[256];
	/* ".." and slashes are never accepted as names. */
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "..", &x), -EINVAL);
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "../secret", &x), -EINVAL);
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "/etc", &x), -EINVAL);
	/* A symlink to /etc is a symlink node: its target goes to the guest. */
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "etc", &eo), 0);
	assert_true(S_ISLNK(eo.attr.mode));
	assert_int_equal(tc_call(&c, FUSE_READLINK, eo.nodeid, NULL, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(tc_payload_len(&c), 4);
	assert_memory_equal(tc_payload(&c), "/etc", 4);
	/* LOOKUP through it does not reach the host's /etc. */
	assert_true(tc_lookup(&c, eo.nodeid, "passwd", &x) < 0);
	assert_true(tc_lookup(&c, eo.nodeid, "hostname", &x) < 0);
	/* Opening it (as file or dir) never follows it either. */
	assert_true(tc_open(&c, eo.nodeid, O_RDONLY, 0, &fh) < 0);
	assert_true(tc_open(&c, eo.nodeid, O_RDONLY, 1, &fh) < 0);
	/* Absolute symlink to a file: attributes are the link's, open fails. */
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "abs", &eo), 0);
	assert_true(S_ISLNK(eo.attr.mode));
	assert_int_equal(eo.attr.size, strlen("/etc/passwd"));
	assert_true(tc_open(&c, eo.nodeid, O_RDONLY, 0, &fh) < 0);
	struct fuse_attr a;
	assert_int_equal(tc_getattr(&c, eo.nodeid, &a), 0);
	assert_true(S_ISLNK(a.mode));
	/* Relative symlinks out of the tree: same. */
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "rel", &eo), 0);
	assert_true(tc_lookup(&c, eo.nodeid, "passwd", &x) < 0);
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "sec", &eo), 0);
	assert_true(tc_open(&c, eo.nodeid, O_RDONLY, 0, &fh) < 0);
	/* sub/up -> ".." is not a way back up either. */
	struct fuse_entry_out sub, up;
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "sub", &sub), 0);
	assert_int_equal(tc_lookup(&c, sub.nodeid, "up", &up), 0);
	assert_true(S_ISLNK(up.attr.mode));
	assert_true(tc_lookup(&c, up.nodeid, "hello", &x) < 0);
	/* A symlink the guest makes to /etc/passwd: still only a link. */
	assert_int_equal(tc_symlink(&c, FUSE_ROOT_ID, "mine", "/etc/passwd", &eo), 0);
	assert_true(tc_open(&c, eo.nodeid, O_RDONLY, 0, &fh) < 0);
	/* Writing through a link by CREATE (O_CREAT without O_EXCL) is refused
	 * instead of creating or truncating the host's target. */
	assert_true(tc_create(&c, FUSE_ROOT_ID, "abs", 0644, O_RDWR | O_TRUNC, &x, &fh) < 0);
	assert_true(tc_create(&c, FUSE_ROOT_ID, "sec", 0644, O_RDWR | O_TRUNC, &x, &fh) < 0);
	char secret[64] = {0};
	snprintf(buf, sizeof(buf), "%.*s/secret", (int)(strlen(e->dir) - 5), e->dir);
	FILE *f = fopen(buf, "r");
	assert_non_null(f);
	assert_true(fread(secret, 1, sizeof(secret), f) > 0);
	fclose(f);
	assert_string_equal(secret, "TOPSECRET");
	/* LINK of a symlink node links the link, not its target. */
	struct fuse_link_in li = {.oldnodeid = eo.nodeid};
	assert_int_equal(tc_name_op(&c, FUSE_LINK, FUSE_ROOT_ID, &li, sizeof(li), "mine2", &x), 0);
	assert_true(S_ISLNK(x.attr.mode));
	/* Device nodes cannot be made. */
	struct fuse_mknod_in mk = {.mode = S_IFCHR | 0666, .rdev = (1 << 8) | 3};
	assert_int_equal(tc_name_op(&c, FUSE_MKNOD, FUSE_ROOT_ID, &mk, sizeof(mk), "null", &x),
			 -EPERM);
	mk.mode = S_IFBLK | 0600;
	assert_int_equal(tc_name_op(&c, FUSE_MKNOD, FUSE_ROOT_ID, &mk, sizeof(mk), "sda", &x),
			 -EPERM);
	/* Normal files still work. */
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "hello", &eo), 0);
	assert_int_equal(tc_open(&c, eo.nodeid, O_RDONLY, 0, &fh), 0);
	assert_int_equal(tc_read(&c, eo.nodeid, fh, 0, sizeof(buf), buf), 21);
	assert_memory_equal(buf, "hello from the image\n", 21);
	tc_close_client(&c);
}

static void test_read_only(void **state)
{
	struct env *e = *state;
	struct tc c;
	tc_open_client(&c, server_on(e->dir, 1));
	tc_init(&c);
	struct fuse_entry_out hello, sub, x;
	uint64_t fh = 0;
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "hello", &hello), 0);
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "sub", &sub), 0);
	/* Reading is fine. */
	assert_int_equal(tc_open(&c, hello.nodeid, O_RDONLY, 0, &fh), 0);
	char buf[64];
	assert_int_equal(tc_read(&c, hello.nodeid, fh, 0, 5, buf), 5);
	/* Every mutation: EROFS. */
	assert_int_equal(tc_write(&c, hello.nodeid, fh, 0, "X", 1), -EROFS);
	assert_int_equal(tc_release(&c, hello.nodeid, fh, 0), 0);
	assert_int_equal(tc_open(&c, hello.nodeid, O_WRONLY, 0, &fh), -EROFS);
	assert_int_equal(tc_open(&c, hello.nodeid, O_RDWR, 0, &fh), -EROFS);
	assert_int_equal(tc_open(&c, hello.nodeid, O_RDONLY | O_TRUNC, 0, &fh), -EROFS);
	assert_int_equal(tc_create(&c, FUSE_ROOT_ID, "new", 0644, O_RDWR, &x, &fh), -EROFS);
	assert_int_equal(tc_mkdir(&c, FUSE_ROOT_ID, "newdir", 0755, &x), -EROFS);
	assert_int_equal(tc_symlink(&c, FUSE_ROOT_ID, "l", "hello", &x), -EROFS);
	struct fuse_mknod_in mk = {.mode = S_IFIFO | 0644};
	assert_int_equal(tc_name_op(&c, FUSE_MKNOD, FUSE_ROOT_ID, &mk, sizeof(mk), "f", &x),
			 -EROFS);
	assert_int_equal(tc_remove(&c, FUSE_ROOT_ID, "hello", 0), -EROFS);
	assert_int_equal(tc_remove(&c, FUSE_ROOT_ID, "sub", 1), -EROFS);
	assert_int_equal(tc_rename2(&c, FUSE_ROOT_ID, "hello", FUSE_ROOT_ID, "h2", 0), -EROFS);
	struct fuse_rename_in ri = {.newdir = 1};
	assert_int_equal(tc_call(&c, FUSE_RENAME, 1, &ri, sizeof(ri), "hello\0h2", 9, NULL, 0),
			 -EROFS);
	struct fuse_link_in li = {.oldnodeid = hello.nodeid};
	assert_int_equal(tc_name_op(&c, FUSE_LINK, FUSE_ROOT_ID, &li, sizeof(li), "h3", &x),
			 -EROFS);
	struct fuse_setattr_in sa = {.valid = FATTR_MODE, .mode = 0777};
	assert_int_equal(tc_call(&c, FUSE_SETATTR, hello.nodeid, &sa, sizeof(sa), NULL, 0, NULL, 0),
			 -EROFS);
	struct fuse_setxattr_in si = {.size = 1};
	assert_int_equal(tc_call(&c, FUSE_SETXATTR, hello.nodeid, &si, FUSE_COMPAT_SETXATTR_IN_SIZE,
				 "user.a", 7, "v", 1),
			 -EROFS);
	assert_int_equal(tc_call(&c, FUSE_REMOVEXATTR, hello.nodeid, "user.a", 7, NULL, 0, NULL, 0),
			 -EROFS);
	struct fuse_fallocate_in fa = {.length = 4096};
	assert_int_equal(
		tc_call(&c, FUSE_FALLOCATE, hello.nodeid, &fa, sizeof(fa), NULL, 0, NULL, 0),
		-EROFS);
	struct fuse_access_in ac = {.mask = W_OK};
	assert_int_equal(tc_call(&c, FUSE_ACCESS, hello.nodeid, &ac, sizeof(ac), NULL, 0, NULL, 0),
			 -EROFS);
	ac.mask = R_OK;
	assert_int_equal(tc_call(&c, FUSE_ACCESS, hello.nodeid, &ac, sizeof(ac), NULL, 0, NULL, 0),
			 0);
	/* Not implemented stays ENOSYS even when read-only. */
	uint8_t zero[56] = {0};
	assert_int_equal(tc_call(&c, FUSE_COPY_FILE_RANGE, hello.nodeid, zero, sizeof(zero), NULL,
				 0, NULL, 0),
			 -ENOSYS);
	assert_int_equal(tc_call(&c, FUSE_TMPFILE, 1, zero, 16, "t", 2, NULL, 0), -ENOSYS);
	/* The host tree is untouched. */
	struct stat st;
	char path[256];
	snprintf(path, sizeof(path), "%s/hello", e->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 21);
	assert_int_equal(st.st_mode & 0777, 0644);
	snprintf(path, sizeof(path), "%s/new", e->dir);
	assert_int_equal(stat(path, &st), -1);
	tc_close_client(&c);
}

static void test_node_snapshot_restore(void **state)
{
	struct env *e = *state;
	struct tc c;
	tc_open_client(&c, server_on(e->dir, 0));
	tc_init(&c);
	struct fuse_entry_out hello, sub, inner, moved, x;
	uint64_t fh_file = 0, fh_dir = 0;
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "hello", &hello), 0);
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "sub", &sub), 0);
	assert_int_equal(tc_lookup(&c, sub.nodeid, "inner", &inner), 0);
	assert_int_equal(tc_lookup(&c, sub.nodeid, "inner", &inner), 0); /* nlookup 2 */
	assert_int_equal(tc_open(&c, hello.nodeid, O_RDONLY, 0, &fh_file), 0);
	assert_int_equal(tc_open(&c, sub.nodeid, O_RDONLY, 1, &fh_dir), 0);
	/* A file renamed after lookup must come back under its new name. */
	assert_int_equal(tc_create(&c, FUSE_ROOT_ID, "before", 0644, O_RDWR, &moved, &fh_file), 0);
	assert_int_equal(tc_write(&c, moved.nodeid, fh_file, 0, "MOVED", 5), 5);
	assert_int_equal(tc_rename2(&c, FUSE_ROOT_ID, "before", sub.nodeid, "after", 0), 0);
	/* A directory made after a file, the file moved into it: the parent
	 * has the larger node id. */
	struct fuse_entry_out late, older;
	uint64_t fh_older = 0;
	assert_int_equal(tc_create(&c, FUSE_ROOT_ID, "older", 0644, O_RDWR, &older, &fh_older), 0);
	assert_int_equal(tc_write(&c, older.nodeid, fh_older, 0, "OLD", 3), 3);
	assert_int_equal(tc_mkdir(&c, FUSE_ROOT_ID, "late", 0755, &late), 0);
	assert_true(late.nodeid > older.nodeid);
	assert_int_equal(tc_rename2(&c, FUSE_ROOT_ID, "older", late.nodeid, "in-late", 0), 0);
	/* Looked up before, untouched after the restore. */
	struct fuse_entry_out etc, victim;
	uint64_t fh_victim = 0;
	assert_int_equal(tc_lookup(&c, FUSE_ROOT_ID, "etc", &etc), 0);
	assert_int_equal(tc_create(&c, FUSE_ROOT_ID, "victim", 0644, O_RDWR, &victim, &fh_victim),
			 0);
	assert_int_equal(tc_release(&c, victim.nodeid, fh_victim, 0), 0);
	/* An unlinked node has no path: it is left out. */
	struct fuse_entry_out gone;
	uint64_t fh_gone = 0;
	assert_int_equal(tc_create(&c, FUSE_ROOT_ID, "gone", 0644, O_RDWR, &gone, &fh_gone), 0);
	assert_int_equal(tc_remove(&c, FUSE_ROOT_ID, "gone", 0), 0);

	void *blob;
	size_t len;
	struct sm_error err = {0};
	assert_int_equal(fuse_server_snapshot(c.s, &blob, &len, &err), 0);
	assert_memory_equal(blob, "FUSN", 4);
	tc_close_client(&c);

	/* A new server over the same directory, restored: no INIT again. */
	struct tc r;
	tc_open_client(&r, server_on(e->dir, 0));
	assert_int_equal(fuse_server_restore(r.s, blob, len, &err), 0);
	struct fuse_attr a;
	assert_int_equal(tc_getattr(&r, inner.nodeid, &a), 0);
	assert_int_equal(a.ino, inner.attr.ino);
	assert_int_equal(tc_getattr(&r, hello.nodeid, &a), 0);
	assert_int_equal(a.ino, hello.attr.ino);
	assert_int_equal(tc_getattr(&r, gone.nodeid, &a), -ESTALE);
	/* The open handles are re-opened from their nodes on first use. */
	char buf[64];
	assert_int_equal(tc_read(&r, moved.nodeid, fh_file, 0, sizeof(buf), buf), 5);
	assert_memory_equal(buf, "MOVED", 5);
	assert_int_equal(tc_read(&r, older.nodeid, fh_older, 0, sizeof(buf), buf), 3);
	assert_memory_equal(buf, "OLD", 3);
	assert_int_equal(tc_getattr(&r, late.nodeid, &a), 0);
	assert_true(S_ISDIR(a.mode));
	char list[512];
	assert_int_equal(tc_readdir_all(&r, sub.nodeid, fh_dir, 0, list, sizeof(list)), 0);
	assert_non_null(strstr(list, "inner,"));
	assert_non_null(strstr(list, "after,"));
	/* A restored node nobody touched yet: LOOKUP adopts it (same id). */
	assert_int_equal(tc_lookup(&r, FUSE_ROOT_ID, "etc", &x), 0);
	assert_int_equal(x.nodeid, etc.nodeid);
	assert_true(S_ISLNK(x.attr.mode));
	/* An untouched restored node whose name is unlinked and reused keeps
	 * following its own file, not the new one under its old name. */
	assert_int_equal(tc_remove(&r, FUSE_ROOT_ID, "victim", 0), 0);
	struct fuse_entry_out nv;
	uint64_t fh_nv = 0;
	assert_int_equal(tc_create(&r, FUSE_ROOT_ID, "victim", 0644, O_RDWR, &nv, &fh_nv), 0);
	assert_true(nv.nodeid != victim.nodeid);
	assert_int_equal(tc_getattr(&r, victim.nodeid, &a), 0);
	assert_int_equal(a.ino, victim.attr.ino);
	assert_int_equal(a.nlink, 0);
	/* Lookup of a restored node gives the same node id back. */
	assert_int_equal(tc_lookup(&r, sub.nodeid, "inner", &x), 0);
	assert_int_equal(x.nodeid, inner.nodeid);
	/* New nodes get fresh ids. */
	assert_int_equal(tc_lookup(&r, sub.nodeid, "up", &x), 0);
	assert_true(x.nodeid > gone.nodeid);
	/* Forgetting inner's three lookups frees it. */
	struct fuse_forget_in fg = {.nlookup = 3};
	tc_call(&r, FUSE_FORGET, inner.nodeid, &fg, sizeof(fg), NULL, 0, NULL, 0);
	assert_int_equal(tc_getattr(&r, inner.nodeid, &a), -ESTALE);
	/* A second restore into a used server is refused. */
	assert_true(fuse_server_restore(r.s, blob, len, &err) < 0);
	tc_close_client(&r);

	/* Malformed blobs: every one refused, the server stays usable. */
	uint8_t *bad = malloc(len + 8);
	for (size_t cut = 0; cut < len; cut += (len / 40) + 1) {
		struct fuse_server *s = server_on(e->dir, 0);
		assert_true(fuse_server_restore(s, blob, cut, &err) < 0);
		fuse_server_free(s);
	}
	struct fuse_server *s = server_on(e->dir, 0);
	memcpy(bad, blob, len);
	bad[0] = 'X';
	assert_true(fuse_server_restore(s, bad, len, &err) < 0);
	memcpy(bad, blob, len);
	memcpy(bad + len, "JUNKJUNK", 8);
	assert_true(fuse_server_restore(s, bad, len + 8, &err) < 0);
	/* Paths that leave the root or do not match their parent. */
	memcpy(bad, blob, len);
	uint8_t *ip = memmem(bad + 32, len - 32, "sub/inner", 9);
	assert_non_null(ip);
	memcpy(ip, "sub/../..", 9);
	assert_true(fuse_server_restore(s, bad, len, &err) < 0);
	memcpy(ip, "sub//nner", 9);
	assert_true(fuse_server_restore(s, bad, len, &err) < 0);
	memcpy(ip, "hello/abc", 9); /* parent says "sub" */
	assert_true(fuse_server_restore(s, bad, len, &err) < 0);
	memcpy(bad, blob, len);
	uint8_t *hp = memmem(bad + 32, len - 32, "hello", 5);
	assert_non_null(hp);
	memcpy(hp, "/e", 2); /* "/ello": an absolute path */
	assert_true(fuse_server_restore(s, bad, len, &err) < 0);
	memcpy(hp, "..", 2); /* "..llo" is a fine name: accepted */
	struct fuse_server *s2 = server_on(e->dir, 0);
	assert_int_equal(fuse_server_restore(s2, bad, len, &err), 0);
	fuse_server_free(s2);
	/* After all those refusals the server restores the good blob. */
	assert_int_equal(fuse_server_restore(s, blob, len, &err), 0);
	fuse_server_free(s);
	free(bad);
	free(blob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_escapes_contained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_snapshot_restore, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
