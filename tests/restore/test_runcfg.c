/* SPDX-License-Identifier: Apache-2.0 */
/* What smrestore runs (restore/runcfg.c): Docker's ENTRYPOINT/CMD merge,
 * Env override by key, workdir and user defaults; /etc/passwd and /etc/group
 * parsed as hostile text (missing fields, bad numbers, NUL bytes, huge
 * lines); the files read beneath the image root (symlinks cannot escape, a
 * FIFO does not block); snapshot metadata errors (missing rootfs, no
 * command, bad JSON, another format major version). No KVM needed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "sm/format.h"
#include "sm/restore.h"

/* a string literal as a mutable-typed array element (never written) */
#define S(x) ((char *)(x))

static char dir[] = "/tmp/sm-test-runcfg-XXXXXX";

static void write_file(const char *rel, const void *data, size_t len)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	char d[512];
	snprintf(d, sizeof(d), "%s", p);
	for (char *s = d + strlen(dir) + 1; *s; s++) {
		if (*s == '/') {
			*s = 0;
			mkdir(d, 0755);
			*s = '/';
		}
	}
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void write_str(const char *rel, const char *s)
{
	write_file(rel, s, strlen(s));
}

static char *path_of(const char *rel)
{
	static char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return p;
}

/* argv as one space-joined string, for compact assertions. */
static const char *joined(char **v, uint32_t n)
{
	static char buf[1024];
	buf[0] = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (i)
			strcat(buf, " ");
		strcat(buf, v[i]);
	}
	assert_null(v ? v[n] : NULL);
	return buf;
}

static void free_v(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

/* ---- ENTRYPOINT / CMD ---------------------------------------------------- */

static const char *merge(char **ep, char **cmd, const char *entrypoint, int argc, ...)
{
	const char *args[8];
	va_list ap;
	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		args[i] = va_arg(ap, const char *);
	va_end(ap);
	struct restore_cmd_opts c = {
		.argv = args, .argc = (uint32_t)argc, .entrypoint = entrypoint};
	struct sm_error err = {0};
	char **v = NULL;
	uint32_t n = 99;
	assert_int_equal(restore_runcfg_argv(ep, cmd, &c, &v, &n, &err), 0);
	const char *s = n ? joined(v, n) : "";
	static char out[1024];
	snprintf(out, sizeof(out), "%s", s);
	free_v(v);
	return out;
}

static void test_argv_merge(void **state)
{
	(void)state;
	char *ep[] = {S("/bin/sh"), S("-c"), NULL};
	char *cmd[] = {S("echo hi"), NULL};
	/* image defaults */
	assert_string_equal(merge(ep, cmd, NULL, 0), "/bin/sh -c echo hi");
	/* CMD replaces Cmd, follows Entrypoint */
	assert_string_equal(merge(ep, cmd, NULL, 1, "echo bye"), "/bin/sh -c echo bye");
	/* --entrypoint drops the image's Entrypoint and Cmd */
	assert_string_equal(merge(ep, cmd, "/bin/env", 0), "/bin/env");
	assert_string_equal(merge(ep, cmd, "/bin/env", 2, "-i", "true"), "/bin/env -i true");
	/* --entrypoint "" clears the Entrypoint but keeps the image's Cmd */
	assert_string_equal(merge(ep, cmd, "", 0), "echo hi");
	assert_string_equal(merge(ep, cmd, "", 2, "/bin/echo", "x"), "/bin/echo x");
	/* Cmd only, Entrypoint only, nothing */
	assert_string_equal(merge(NULL, cmd, NULL, 0), "echo hi");
	assert_string_equal(merge(NULL, cmd, NULL, 1, "ls"), "ls");
	assert_string_equal(merge(ep, NULL, NULL, 0), "/bin/sh -c");
	assert_string_equal(merge(NULL, NULL, NULL, 0), "");
	assert_string_equal(merge(NULL, NULL, "", 0), "");
}

static void test_argv_too_many(void **state)
{
	(void)state;
	static const char *many[5000];
	for (int i = 0; i < 5000; i++)
		many[i] = "x";
	struct restore_cmd_opts c = {.argv = many, .argc = 5000};
	struct sm_error err = {0};
	char **v = (char **)1;
	uint32_t n = 7;
	assert_int_equal(restore_runcfg_argv(NULL, NULL, &c, &v, &n, &err), -E2BIG);
	assert_null(v);
	assert_int_equal(n, 0);
	assert_non_null(strstr(err.msg, "too many"));
}

/* ---- Env ---------------------------------------------------------------- */

static void test_env_override(void **state)
{
	(void)state;
	char *img[] = {S("PATH=/bin"), S("A=1"),   S("NOEQUALS"), S("=nokey"),
		       S("B=2"),       S("A=dup"), S("C="),	  NULL};
	const char *over[] = {"A=x", "D=4", "B=", "D=5", "E=a=b"};
	struct sm_error err = {0};
	char **env = NULL;
	uint32_t n = 0;
	assert_int_equal(restore_runcfg_env(img, over, 5, &env, &n, &err), 0);
	/* A replaced in place (its duplicate removed), B emptied, C kept, D
	 * appended once with its last value, E's value may hold '='. */
	assert_string_equal(joined(env, n), "PATH=/bin A=x B= C= D=5 E=a=b");
	free_v(env);

	/* no image env at all */
	assert_int_equal(restore_runcfg_env(NULL, over, 2, &env, &n, &err), 0);
	assert_string_equal(joined(env, n), "A=x D=4");
	free_v(env);
	assert_int_equal(restore_runcfg_env(NULL, NULL, 0, &env, &n, &err), 0);
	assert_int_equal(n, 0);
	free_v(env);

	/* a key that is a prefix of another is a different key */
	char *img2[] = {S("AB=1"), S("A=2"), NULL};
	const char *over2[] = {"A=3"};
	assert_int_equal(restore_runcfg_env(img2, over2, 1, &env, &n, &err), 0);
	assert_string_equal(joined(env, n), "AB=1 A=3");
	free_v(env);

	const char *bad[] = {"NOVALUE"};
	assert_int_equal(restore_runcfg_env(img, bad, 1, &env, &n, &err), -EINVAL);
	assert_null(env);
	assert_non_null(strstr(err.msg, "NOVALUE"));
	const char *bad2[] = {"=v"};
	assert_int_equal(restore_runcfg_env(img, bad2, 1, &env, &n, &err), -EINVAL);
}

/* ---- passwd / group parsing ---------------------------------------------- */

static int pw(const char *text, size_t len, const char *name, uint32_t uid, struct restore_pwent *e)
{
	memset(e, 0x5a, sizeof(*e));
	return restore_passwd_find(text, len, name, uid, e);
}

static void test_passwd_parse(void **state)
{
	(void)state;
	const char t[] = "# comment:x:5:5::/c:/bin/sh\n"
			 "+nis:x:6:6::/n:/bin/sh\n"
			 "\n"
			 "root:x:0:0:root:/root:/bin/sh\r\n"
			 "short:x:7\n"			 /* missing gid */
			 "neg:x:-1:0::/n:/bin/sh\n"	 /* bad uid */
			 "big:x:4294967295:0::/b:/x\n"	 /* (uid_t)-1 */
			 "huge:x:99999999999:0::/h:/x\n" /* overflow */
			 "sp:x: 8:8::/s:/x\n"		 /* space */
			 "hex:x:0x10:1::/h:/x\n"
			 ":x:9:9::/e:/x\n" /* empty name */
			 "app:x:1000:1001:App:/home/app:/bin/sh\n"
			 "nohome:x:1002:1003\n"
			 "app:x:2000:2000::/dup:/x\n" /* first match wins */
			 "last:x:3000:3001::/l";      /* no final newline */
	size_t len = sizeof(t) - 1;
	struct restore_pwent e;
	assert_int_equal(pw(t, len, "root", 0, &e), 1);
	assert_int_equal(e.uid, 0);
	assert_int_equal(e.gid, 0);
	assert_string_equal(e.home, "/root"); /* \r stripped */
	assert_int_equal(pw(t, len, "app", 0, &e), 1);
	assert_int_equal(e.uid, 1000);
	assert_int_equal(e.gid, 1001);
	assert_string_equal(e.home, "/home/app");
	assert_int_equal(pw(t, len, "nohome", 0, &e), 1);
	assert_int_equal(e.gid, 1003);
	assert_string_equal(e.home, "");
	assert_int_equal(pw(t, len, "last", 0, &e), 1);
	assert_int_equal(e.gid, 3001);
	assert_string_equal(e.home, "/l");
	/* by uid */
	assert_int_equal(pw(t, len, NULL, 1000, &e), 1);
	assert_int_equal(e.gid, 1001);
	assert_int_equal(pw(t, len, NULL, 3000, &e), 1);
	assert_int_equal(pw(t, len, NULL, 4242, &e), 0);
	/* malformed lines never match, by name or by id */
	static const char *const malformed[] = {"# comment", "+nis", "short", "neg", "big",  "huge",
						"sp",	     "hex",  "",      "ap",  "apps", "roo"};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
		assert_int_equal(pw(t, len, malformed[i], 0, &e), 0);
	assert_int_equal(pw(t, len, "short", 0, &e), 0);
	assert_int_equal(pw(t, len, "big", 0, &e), 0);
	assert_int_equal(pw(t, len, "huge", 0, &e), 0);
	assert_int_equal(pw(t, len, "sp", 0, &e), 0);
	assert_int_equal(pw(t, len, "hex", 0, &e), 0);
	assert_int_equal(pw(t, len, NULL, 5, &e), 0);
	assert_int_equal(pw(t, len, NULL, 7, &e), 0);
	assert_int_equal(pw(t, len, NULL, 8, &e), 0);
	assert_int_equal(pw(t, len, NULL, 9, &e), 0);
	/* the length bounds the text: "last" cut off is not found whole */
	assert_int_equal(pw(t, len - 10, "last", 0, &e), 0);
	assert_int_equal(pw(t, 0, "root", 0, &e), 0);
}

static void test_passwd_hostile(void **state)
{
	(void)state;
	/* a 1 MiB line, a line with a NUL byte, a home longer than the field,
	 * then the entry we want */
	size_t big = 1 << 20;
	char *t = malloc(big + 512);
	assert_non_null(t);
	memset(t, 'a', big);
	memcpy(t, "a:x:1:1::", 9);
	size_t o = big;
	t[o++] = '\n';
	const char nul[] = "evil\0:x:66:66::/e:/x\n";
	memcpy(t + o, nul, sizeof(nul) - 1);
	o += sizeof(nul) - 1;
	o += (size_t)sprintf(t + o, "long:x:5:6::/%0300d:/x\n", 0);
	o += (size_t)sprintf(t + o, "svc:x:77:78::/srv:/x\n");
	struct restore_pwent e;
	assert_int_equal(pw(t, o, "svc", 0, &e), 1);
	assert_int_equal(e.uid, 77);
	assert_int_equal(e.gid, 78);
	assert_string_equal(e.home, "/srv");
	assert_int_equal(pw(t, o, "evil", 0, &e), 0);
	assert_int_equal(pw(t, o, NULL, 66, &e), 0);
	assert_int_equal(pw(t, o, "long", 0, &e), 1); /* found, home dropped */
	assert_int_equal(e.gid, 6);
	assert_string_equal(e.home, "");
	/* the huge line's uid field is "1" but the line is well formed: by id */
	assert_int_equal(pw(t, o, NULL, 1, &e), 1);
	/* not NUL-terminated: only LEN bytes are looked at */
	char cut[] = {'x', ':', 'x', ':', '4', ':', '4'};
	assert_int_equal(pw(cut, sizeof(cut), "x", 0, &e), 1);
	assert_int_equal(e.gid, 4);
	assert_int_equal(pw(cut, 5, "x", 0, &e), 0);
	free(t);
}

static void test_group_parse(void **state)
{
	(void)state;
	const char t[] = "root:x:0:\n"
			 "bad:x:zz:\n"
			 "nogid:x\n"
			 "staff:x:50:app,other\n"
			 "nomem:x:60\n";
	struct restore_pwent e;
	assert_int_equal(restore_group_find(t, sizeof(t) - 1, "staff", &e), 1);
	assert_int_equal(e.gid, 50);
	assert_int_equal(restore_group_find(t, sizeof(t) - 1, "nomem", &e), 1);
	assert_int_equal(e.gid, 60);
	assert_int_equal(restore_group_find(t, sizeof(t) - 1, "bad", &e), 0);
	assert_int_equal(restore_group_find(t, sizeof(t) - 1, "nogid", &e), 0);
	assert_int_equal(restore_group_find(t, sizeof(t) - 1, "sta", &e), 0);
	assert_int_equal(restore_group_find(t, sizeof(t) - 1, "app", &e), 0);
}

/* ---- user resolution against a root filesystem ------------------------- */

static const char *root1(void)
{
	return path_of("root1");
}

static int resolve(const char *rootfs, const char *spec, uint32_t *uid, uint32_t *gid, char *home,
		   struct sm_error *err)
{
	*uid = *gid = 12345;
	return restore_user_resolve(rootfs, spec, uid, gid, home, 64, err);
}

static void test_user_resolve(void **state)
{
	(void)state;
	write_str("root1/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
				      "app:x:1000:1001::/home/app:/bin/sh\n"
				      "nobody:x:65534:65534::/nonexistent:/bin/false\n");
	write_str("root1/etc/group", "root:x:0:\nstaff:x:50:app\nnogroup:x:65534:\n");
	struct sm_error err = {0};
	uint32_t u, g;
	char home[64];
	assert_int_equal(resolve(root1(), "app", &u, &g, home, &err), 0);
	assert_true(u == 1000 && g == 1001);
	assert_string_equal(home, "/home/app");
	assert_int_equal(resolve(root1(), "1000", &u, &g, home, &err), 0);
	assert_true(u == 1000 && g == 1001);
	/* a uid without an entry: gid 0, no home */
	assert_int_equal(resolve(root1(), "4242", &u, &g, home, &err), 0);
	assert_true(u == 4242 && g == 0);
	assert_string_equal(home, "");
	assert_int_equal(resolve(root1(), "", &u, &g, home, &err), 0);
	assert_true(u == 0 && g == 0);
	assert_string_equal(home, "/root");
	assert_int_equal(resolve(root1(), "app:staff", &u, &g, home, &err), 0);
	assert_true(u == 1000 && g == 50);
	assert_int_equal(resolve(root1(), "app:77", &u, &g, home, &err), 0);
	assert_true(u == 1000 && g == 77);
	assert_int_equal(resolve(root1(), "nobody:nogroup", &u, &g, home, &err), 0);
	assert_true(u == 65534 && g == 65534);
	assert_int_equal(resolve(root1(), "4242:staff", &u, &g, home, &err), 0);
	assert_true(u == 4242 && g == 50);
	assert_int_equal(resolve(root1(), "0:0", &u, &g, home, &err), 0);
	assert_true(u == 0 && g == 0);

	assert_int_equal(resolve(root1(), "ghost", &u, &g, home, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "user 'ghost' not found"));
	assert_int_equal(resolve(root1(), "app:ghosts", &u, &g, home, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "group 'ghosts' not found"));
	/* names are whole fields: a prefix or a longer name does not match */
	assert_int_equal(resolve(root1(), "ap", &u, &g, home, &err), -ENOENT);
	assert_int_equal(resolve(root1(), "apps", &u, &g, home, &err), -ENOENT);
	const char *bad[] = {":",	    "app:",	  ":staff",	  "a:b:c",
			     "99999999999", "4294967295", "1:99999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sm_error_clear(&err);
		assert_int_equal(resolve(root1(), bad[i], &u, &g, home, &err), -EINVAL);
		assert_true(err.msg[0] != 0);
	}
	/* no root filesystem (initramfs snapshot): numbers only */
	assert_int_equal(resolve(NULL, "1000", &u, &g, home, &err), 0);
	assert_true(u == 1000 && g == 0);
	assert_int_equal(resolve(NULL, "1000:7", &u, &g, home, &err), 0);
	assert_true(u == 1000 && g == 7);
	assert_int_equal(resolve(NULL, "app", &u, &g, home, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "numeric"));
	assert_int_equal(resolve(NULL, "1:staff", &u, &g, home, &err), -ENOENT);
}

static void test_user_resolve_hostile_files(void **state)
{
	(void)state;
	struct sm_error err = {0};
	uint32_t u, g;
	char home[64];
	/* an image without /etc/passwd: numbers work, names do not */
	mkdir(path_of("root2"), 0755);
	assert_int_equal(resolve(path_of("root2"), "5:6", &u, &g, home, &err), 0);
	assert_true(u == 5 && g == 6);
	assert_int_equal(resolve(path_of("root2"), "app", &u, &g, home, &err), -ENOENT);

	/* /etc/passwd a symlink pointing out of the root: it resolves inside
	 * the root (where there is nothing), never to the host's file */
	write_str("outside-passwd", "evil:x:666:666::/:/bin/sh\n");
	mkdir(path_of("root3"), 0755);
	mkdir(path_of("root3/etc"), 0755);
	char target[600];
	snprintf(target, sizeof(target), "../../../../../../../..%s", path_of("outside-passwd"));
	assert_int_equal(symlink(target, path_of("root3/etc/passwd")), 0);
	/* -ENOENT with openat2 (resolved in the root, nothing there); -ELOOP
	 * from the fallback without openat2 (e.g. under valgrind), which
	 * refuses every symlink */
	int r = resolve(path_of("root3"), "evil", &u, &g, home, &err);
	assert_true(r == -ENOENT || r == -ELOOP);
	unlink(path_of("root3/etc/passwd"));
	snprintf(target, sizeof(target), "%s", path_of("outside-passwd"));
	assert_int_equal(symlink(target, path_of("root3/etc/passwd")), 0);
	r = resolve(path_of("root3"), "evil", &u, &g, home, &err);
	assert_true(r == -ENOENT || r == -ELOOP);
	/* ... while a symlink inside the root is followed there */
	unlink(path_of("root3/etc/passwd"));
	write_str("root3/etc/real", "inside:x:9:9::/in:/bin/sh\n");
	assert_int_equal(symlink("/etc/real", path_of("root3/etc/passwd")), 0);
	r = resolve(path_of("root3"), "inside", &u, &g, home, &err);
	assert_true(r == 0 || r == -ELOOP);
	if (r == 0)
		assert_true(u == 9 && g == 9);

	/* a FIFO must not block, a directory is refused */
	mkdir(path_of("root4"), 0755);
	mkdir(path_of("root4/etc"), 0755);
	assert_int_equal(mkfifo(path_of("root4/etc/passwd"), 0644), 0);
	assert_int_equal(resolve(path_of("root4"), "app", &u, &g, home, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a regular file"));
	mkdir(path_of("root4/etc/group"), 0755);
	assert_int_equal(resolve(path_of("root4"), "0:staff", &u, &g, home, &err), -EINVAL);

	/* too large */
	mkdir(path_of("root5"), 0755);
	write_str("root5/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
	assert_int_equal(truncate(path_of("root5/etc/passwd"), (5 << 20)), 0);
	assert_int_equal(resolve(path_of("root5"), "root", &u, &g, home, &err), -EFBIG);

	/* the root itself missing */
	assert_true(resolve(path_of("nonexistent"), "root", &u, &g, home, &err) < 0);
}

/* ---- snapshot metadata -------------------------------------------------- */

static char *meta_with(const char *config, const char *rootfs)
{
	char *m = NULL;
	assert_true(
		asprintf(&m,
			 "{\"kind\":\"supermachine-snapshot\",\"format_version\":\"1.0\"%s%s%s%s"
			 "%s}",
			 config ? ",\"config\":" : "", config ? config : "",
			 rootfs ? ",\"rootfs\":\"" : "", rootfs ? rootfs : "",
			 rootfs ? "\"" : "") > 0);
	return m;
}

static const char img_config[] =
	"{\"Entrypoint\":[\"/bin/sh\",\"-c\"],\"Cmd\":[\"echo hi\"],"
	"\"Env\":[\"PATH=/usr/bin:/bin\",\"GREETING=hello\"],\"WorkingDir\":\"/srv\","
	"\"User\":\"app\",\"ExposedPorts\":null,\"StopSignal\":null,\"os\":\"linux\","
	"\"architecture\":\"amd64\"}";

static void test_meta_image_defaults(void **state)
{
	(void)state;
	write_str("root1/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
				      "app:x:1000:1001::/home/app:/bin/sh\n");
	write_str("root1/etc/group", "root:x:0:\nstaff:x:50:app\n");
	char *m = meta_with(img_config, root1());
	struct restore_cmd_opts c = {0};
	struct restore_runcfg rc;
	struct sm_error err = {0};
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), 0);
	assert_int_equal(rc.image_config, 1);
	assert_string_equal(rc.rootfs, root1());
	assert_string_equal(joined(rc.argv, rc.argc), "/bin/sh -c echo hi");
	assert_string_equal(joined(rc.env, rc.envc),
			    "PATH=/usr/bin:/bin GREETING=hello HOME=/home/app");
	assert_string_equal(rc.workdir, "/srv");
	assert_true(rc.uid == 1000 && rc.gid == 1001);
	restore_runcfg_free(&rc);

	/* every override */
	const char *args[] = {"env"};
	const char *env[] = {"GREETING=bye", "HOME=/h", "X=1"};
	c = (struct restore_cmd_opts){.argv = args,
				      .argc = 1,
				      .entrypoint = "/usr/bin/env",
				      .env = env,
				      .envc = 3,
				      .workdir = "/tmp",
				      .user = "0:staff"};
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), 0);
	assert_string_equal(joined(rc.argv, rc.argc), "/usr/bin/env env");
	assert_string_equal(joined(rc.env, rc.envc), "PATH=/usr/bin:/bin GREETING=bye HOME=/h X=1");
	assert_string_equal(rc.workdir, "/tmp");
	assert_true(rc.uid == 0 && rc.gid == 50);
	restore_runcfg_free(&rc);

	/* a CMD after -- follows the image's Entrypoint; root's HOME */
	const char *args2[] = {"exit 7"};
	c = (struct restore_cmd_opts){.argv = args2, .argc = 1, .user = "root"};
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), 0);
	assert_string_equal(joined(rc.argv, rc.argc), "/bin/sh -c exit 7");
	assert_string_equal(joined(rc.env, rc.envc),
			    "PATH=/usr/bin:/bin GREETING=hello HOME=/root");
	restore_runcfg_free(&rc);

	/* relative --workdir is refused; an unknown --user names itself */
	c = (struct restore_cmd_opts){.workdir = "tmp"};
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "absolute"));
	c = (struct restore_cmd_opts){.user = "ghost"};
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "ghost"));
	assert_null(rc.argv);
	free(m);

	/* the image's own User unknown: the message says it is the image's */
	m = meta_with("{\"Cmd\":[\"true\"],\"User\":\"daemon\"}", root1());
	c = (struct restore_cmd_opts){0};
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "image's User"));
	c.user = "1000";
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), 0);
	assert_true(rc.uid == 1000 && rc.gid == 1001);
	/* no Env, no WorkingDir in the image: defaults */
	assert_string_equal(joined(rc.env, rc.envc),
			    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
			    "HOME=/home/app");
	assert_string_equal(rc.workdir, "/");
	restore_runcfg_free(&rc);
	free(m);

	/* a relative image WorkingDir is taken from / */
	m = meta_with("{\"Cmd\":[\"true\"],\"WorkingDir\":\"work\"}", root1());
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), 0);
	assert_string_equal(rc.workdir, "/work");
	restore_runcfg_free(&rc);
	free(m);
}

static void test_meta_initramfs_and_errors(void **state)
{
	(void)state;
	struct restore_cmd_opts c = {0};
	struct restore_runcfg rc;
	struct sm_error err = {0};
	/* an initramfs snapshot (smrun --snapshot-out): no config, no rootfs */
	char *m = meta_with(NULL, NULL);
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "snapshot has no default command; give one after --"));
	const char *args[] = {"/bin/echo", "hi"};
	const char *env[] = {"FOO=bar"};
	c = (struct restore_cmd_opts){.argv = args, .argc = 2, .env = env, .envc = 1};
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), 0);
	assert_int_equal(rc.image_config, 0);
	assert_null(rc.rootfs);
	assert_string_equal(joined(rc.argv, rc.argc), "/bin/echo hi");
	assert_string_equal(
		joined(rc.env, rc.envc),
		"FOO=bar PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
		"HOME=/root");
	assert_string_equal(rc.workdir, "/");
	assert_true(rc.uid == 0 && rc.gid == 0);
	restore_runcfg_free(&rc);
	c.user = "1000:1000";
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), 0);
	assert_true(rc.uid == 1000 && rc.gid == 1000);
	assert_string_equal(
		joined(rc.env, rc.envc),
		"FOO=bar PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
		"HOME=/");
	restore_runcfg_free(&rc);
	c.user = "app";
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), -ENOENT);
	free(m);

	/* an image with neither Entrypoint nor Cmd */
	c = (struct restore_cmd_opts){0};
	m = meta_with("{\"Entrypoint\":null,\"Cmd\":null}", root1());
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "no default command"));
	free(m);

	/* the rootfs gone from the cache */
	m = meta_with(img_config, path_of("gone"));
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing"));
	assert_non_null(strstr(err.msg, path_of("gone")));
	/* ... unless overridden */
	c.rootfs = root1();
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), 0);
	assert_string_equal(rc.rootfs, root1());
	restore_runcfg_free(&rc);
	c.rootfs = NULL;
	free(m);
	/* rootfs a file, relative, not a string */
	write_str("afile", "x");
	m = meta_with(img_config, path_of("afile"));
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), -ENOENT);
	free(m);
	m = meta_with(img_config, "relative/dir");
	assert_int_equal(restore_runcfg_from_meta(m, &c, &rc, &err), -EINVAL);
	free(m);
	assert_int_equal(restore_runcfg_from_meta("{\"rootfs\":7}", &c, &rc, &err), -EINVAL);
	/* bad JSON, wrong types */
	assert_int_equal(restore_runcfg_from_meta("not json", &c, &rc, &err), -EINVAL);
	assert_int_equal(restore_runcfg_from_meta("[1,2]", &c, &rc, &err), -EINVAL);
	assert_int_equal(restore_runcfg_from_meta("{\"config\":\"x\"}", &c, &rc, &err), -EINVAL);
	assert_int_equal(restore_runcfg_from_meta("{\"config\":{\"Cmd\":\"x\"}}", &c, &rc, &err),
			 -EINVAL);
	assert_int_equal(restore_runcfg_from_meta("{\"config\":{\"Cmd\":[1]}}", &c, &rc, &err),
			 -EINVAL);
	assert_null(rc.argv);
}

/* ---- from a snapshot file ----------------------------------------------- */

static void write_snapshot(const char *path, const char *meta)
{
	struct fmt_writer *w = NULL;
	struct sm_error err = {0};
	assert_int_equal(fmt_writer_create(&w, path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, meta, &err), 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
}

static void test_load_snapshot(void **state)
{
	(void)state;
	char *m = meta_with(img_config, root1());
	char snap[512];
	snprintf(snap, sizeof(snap), "%s", path_of("s.smsnap"));
	write_snapshot(snap, m);
	free(m);
	struct restore_cmd_opts c = {0};
	struct restore_runcfg rc;
	struct sm_error err = {0};
	assert_int_equal(restore_runcfg_load(snap, &c, &rc, NULL, &err), 0);
	assert_string_equal(joined(rc.argv, rc.argc), "/bin/sh -c echo hi");
	restore_runcfg_free(&rc);
	/* with READER: the open reader is handed over, still usable */
	struct fmt_reader *rd = (struct fmt_reader *)&rc; /* overwritten */
	assert_int_equal(restore_runcfg_load(snap, &c, &rc, &rd, &err), 0);
	assert_non_null(rd);
	assert_true(fmt_reader_find(rd, FMT_SEC_META, 0, &err) >= 0);
	fmt_reader_close(rd);
	restore_runcfg_free(&rc);

	/* another major version: refused with the version in the message */
	int fd = open(snap, O_RDWR);
	assert_true(fd >= 0);
	uint16_t major = FMT_VERSION_MAJOR + 1;
	assert_int_equal(pwrite(fd, &major, 2, 8), 2);
	close(fd);
	assert_true(restore_runcfg_load(snap, &c, &rc, &rd, &err) < 0);
	assert_null(rd); /* a failure leaves nothing open */
	assert_non_null(strstr(err.msg, "snapshot"));
	char want[64]; /* the major edited, the writer's minor */
	snprintf(want, sizeof(want), "version %d.%d is not supported", FMT_VERSION_MAJOR + 1,
		 FMT_VERSION_MINOR);
	assert_non_null(strstr(err.msg, want));

	/* not a snapshot, missing */
	write_str("junk", "this is not a snapshot, just some bytes that are long enough........"
			  "...............................................................");
	assert_true(restore_runcfg_load(path_of("junk"), &c, &rc, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "snapshot"));
	assert_true(restore_runcfg_load(path_of("none.smsnap"), &c, &rc, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, path_of("none.smsnap")));
	assert_null(rc.argv);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_argv_merge),
		cmocka_unit_test(test_argv_too_many),
		cmocka_unit_test(test_env_override),
		cmocka_unit_test(test_passwd_parse),
		cmocka_unit_test(test_passwd_hostile),
		cmocka_unit_test(test_group_parse),
		cmocka_unit_test(test_user_resolve),
		cmocka_unit_test(test_user_resolve_hostile_files),
		cmocka_unit_test(test_meta_image_defaults),
		cmocka_unit_test(test_meta_initramfs_and_errors),
		cmocka_unit_test(test_load_snapshot),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
