/* SPDX-License-Identifier: Apache-2.0 */
/* Restoring MSRs where this host's KVM lists fewer than the bake host's
 * (vm_snapshot_msr_filter): listed MSRs are kept in order, unlisted ones are
 * dropped only when that loses no guest state, anything else is refused
 * with the MSR named. */
#include <errno.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vm/vm_internal.h"

/* This host lists three MSRs (in another order than the snapshot). */
static const uint32_t listed[] = {0x6e0, 0x10, 0x174};

static void test_keeps_listed_in_order(void **state)
{
	(void)state;
	struct kvm_msr_entry e[] = {
		{.index = 0x10, .data = 1234},		   /* TSC: listed */
		{.index = 0x309, .data = 0},		   /* PMU fixed counter, reset value */
		{.index = 0x174, .data = 0x10},		   /* SYSENTER_CS: listed */
		{.index = 0x40000022, .data = 7},	   /* Hyper-V TSC frequency */
		{.index = 0x9e, .data = 0x30000},	   /* SMBASE at reset */
		{.index = 0xc0000104, .data = 1ull << 32}, /* AMD TSC ratio 1.0 */
		{.index = 0x6e0, .data = 99},		   /* TSC deadline: listed */
	};
	uint32_t keep = 77;
	struct sm_error err = {0};
	assert_int_equal(vm_snapshot_msr_filter(e, 7, listed, 3, &keep, &err), 0);
	assert_int_equal(keep, 3);
	assert_int_equal(e[0].index, 0x10);
	assert_int_equal(e[0].data, 1234);
	assert_int_equal(e[1].index, 0x174);
	assert_int_equal(e[1].data, 0x10);
	assert_int_equal(e[2].index, 0x6e0);
	assert_int_equal(e[2].data, 99);
}

static void refused(uint32_t index, uint64_t data, const char *name)
{
	struct kvm_msr_entry e[] = {
		{.index = 0x10, .data = 1},
		{.index = index, .data = data},
	};
	uint32_t keep = 77;
	struct sm_error err = {0};
	assert_int_equal(vm_snapshot_msr_filter(e, 2, listed, 3, &keep, &err), -ENOTSUP);
	assert_non_null(strstr(err.msg, name));
	assert_non_null(strstr(err.msg, "not supported by this host's KVM"));
	assert_int_equal(keep, 77); /* untouched on error */
}

static void test_refuses_state(void **state)
{
	(void)state;
	refused(0x309, 5, "MSR 0x309 (value 0x5)");	    /* a counter that counted */
	refused(0x9e, 0x40000, "MSR 0x9e (value 0x40000)"); /* SMBASE moved */
	refused(0xc0000104, 3ull << 31, "MSR 0xc0000104");  /* TSC scaled */
	refused(0x40000200, 1, "MSR 0x40000200");	    /* past the Hyper-V range */
	refused(0x3fffffff, 1, "MSR 0x3fffffff");
}

static void test_nothing_listed(void **state)
{
	(void)state;
	struct kvm_msr_entry e[] = {{.index = 0x309, .data = 0}, {.index = 0x40000000, .data = 1}};
	uint32_t keep = 77;
	struct sm_error err = {0};
	assert_int_equal(vm_snapshot_msr_filter(e, 2, NULL, 0, &keep, &err), 0);
	assert_int_equal(keep, 0);
	assert_int_equal(vm_snapshot_msr_filter(e, 0, listed, 3, &keep, &err), 0);
	assert_int_equal(keep, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keeps_listed_in_order),
		cmocka_unit_test(test_refuses_state),
		cmocka_unit_test(test_nothing_listed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
