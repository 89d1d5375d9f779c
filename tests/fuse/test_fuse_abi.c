/* SPDX-License-Identifier: Apache-2.0 */
/* Our wire structs against the system's <linux/fuse.h>: every size, the
 * offsets that moved across ABI minors, and the opcodes/flags we rely on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "abi_facts.h"

static void test_layouts_match_kernel(void **state)
{
	(void)state;
	int n = 0;
	for (const struct abi_fact *k = abi_kernel_facts, *o = abi_ours_facts; k->name; k++, o++) {
		assert_non_null(o->name);
		assert_string_equal(k->name, o->name);
		if (k->value != o->value)
			fail_msg("%s: kernel %zu, ours %zu", k->name, k->value, o->value);
		n++;
	}
	assert_true(n > 60);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layouts_match_kernel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
