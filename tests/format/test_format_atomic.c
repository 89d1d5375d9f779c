/* SPDX-License-Identifier: Apache-2.0 */
/* A writer killed with SIGKILL mid-write leaves nothing under the final name
 * (and an older snapshot there stays intact). */
#include "helpers.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

/* Child: write an endless (64 GiB) random memory image until killed. */
static void writer_child(const char *path)
{
	struct sm_error err = {0};
	struct fmt_writer *w;
	if (fmt_writer_create(&w, path, NULL, &err) < 0 || fmt_writer_add_meta(w, "{}", &err) < 0 ||
	    fmt_writer_mem_begin(w, 64ull << 30, &err) < 0)
		_exit(3);
	static unsigned char buf[1 << 20];
	for (uint64_t i = 0; i < (64ull << 30) / sizeof(buf); i++) {
		rnd_fill(buf, sizeof(buf), i + 1);
		if (fmt_writer_mem_write(w, buf, sizeof(buf), &err) < 0)
			_exit(4);
	}
	_exit(5); /* never gets here in time */
}

/* Size of the writer's temporary file in DIR, -1 when there is none. */
static long long temp_size(const char *dir, char *name, size_t n)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	long long size = -1;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, ".snap.tmp-", 10))
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		struct stat st;
		if (stat(p, &st) == 0) {
			size = st.st_size;
			snprintf(name, n, "%s", p);
		}
	}
	closedir(d);
	return size;
}

static void kill_mid_write(const char *dir, const char *path)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		writer_child(path);
	char tmp[512] = "";
	long long size = -1;
	for (int i = 0; i < 3000 && size < (4 << 20); i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
		size = temp_size(dir, tmp, sizeof(tmp));
		int status;
		assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* still writing */
	}
	assert_true(size >= (4 << 20)); /* it really was mid-write */
	assert_int_equal(kill(pid, SIGKILL), 0);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* the half-written temporary file is there, under its own name only */
	assert_true(temp_size(dir, tmp, sizeof(tmp)) >= (4 << 20));
	unlink(tmp);
}

static void test_kill_leaves_nothing(void **state)
{
	(void)state;
	char dir[64], path[128];
	make_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/snap", dir);
	kill_mid_write(dir, path);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	rm_rf(dir);
}

static void test_kill_keeps_old_snapshot(void **state)
{
	(void)state;
	char dir[64], path[128];
	make_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/snap", dir);
	struct sm_error err = {0};
	struct fmt_writer *w;
	assert_int_equal(fmt_writer_create(&w, path, NULL, &err), 0);
	assert_int_equal(fmt_writer_add_meta(w, "{\"old\":true}", &err), 0);
	assert_int_equal(fmt_writer_commit(w, &err), 0);
	fmt_writer_free(w);
	kill_mid_write(dir, path);
	struct fmt_reader *r;
	assert_int_equal(fmt_reader_open(&r, path, &err), 0);
	assert_int_equal(fmt_reader_verify(r, NULL, &err), 0);
	char *json;
	assert_int_equal(fmt_reader_meta(r, &json, &err), 0);
	assert_string_equal(json, "{\"old\":true}");
	free(json);
	fmt_reader_close(r);
	rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill_leaves_nothing),
		cmocka_unit_test(test_kill_keeps_old_snapshot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
