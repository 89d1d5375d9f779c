/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "sm/error.h"

static void test_set_and_wrap(void **state)
{
	(void)state;
	struct sm_error err = {0};
	assert_int_equal(sm_error_set(&err, ENOENT, "no %s", "file"), -ENOENT);
	assert_string_equal(err.msg, "no file");
	assert_int_equal(sm_error_wrap(&err, "loading %d", 7), -ENOENT);
	assert_string_equal(err.msg, "loading 7: no file");
	assert_int_equal(err.errnum, ENOENT);
	sm_error_clear(&err);
	assert_int_equal(err.errnum, 0);
	assert_string_equal(err.msg, "");
}

static void test_errno_and_null(void **state)
{
	(void)state;
	struct sm_error err = {0};
	assert_int_equal(sm_error_errno(&err, EACCES, "open x"), -EACCES);
	assert_non_null(strstr(err.msg, "open x: "));
	assert_non_null(strstr(err.msg, strerror(EACCES)));
	/* errnum 0 still yields a failure value; NULL err is allowed. */
	assert_int_equal(sm_error_set(NULL, 0, "ignored"), -EIO);
	assert_int_equal(sm_error_wrap(NULL, "ctx"), -EIO);
}

static void test_range_ok(void **state)
{
	(void)state;
	assert_true(sm_range_ok(0, 10, 10));
	assert_true(sm_range_ok(10, 0, 10));
	assert_false(sm_range_ok(5, 6, 10));
	assert_false(sm_range_ok(11, 0, 10));
	assert_false(sm_range_ok(~0ULL, 2, ~0ULL));
	assert_false(sm_range_ok(1, ~0ULL, ~0ULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_and_wrap),
		cmocka_unit_test(test_errno_and_null),
		cmocka_unit_test(test_range_ok),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
