/* SPDX-License-Identifier: Apache-2.0 */
/* vm_kvm_probe against fake /dev, /sys and /proc trees. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "sm/vm.h"

struct tree {
	char root[256];
};

static void mkfile(const char *root, const char *rel, const char *content)
{
	char path[512], cmd[1024];
	snprintf(path, sizeof(path), "%s%s", root, rel);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
	assert_int_equal(system(cmd), 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void mkdir_p(const char *root, const char *rel)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s%s'", root, rel);
	assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
	struct tree *t = calloc(1, sizeof(*t));
	snprintf(t->root, sizeof(t->root), "/tmp/sm-kvmdetect-XXXXXX");
	if (!mkdtemp(t->root))
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tree *t = *state;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->root);
	int r = system(cmd);
	free(t);
	return r == 0 ? 0 : -1;
}

static const char cpu_svm[] = "processor\t: 0\nflags\t\t: fpu vme de pse svm npt lbrv\n\n";
static const char cpu_vmx[] = "processor\t: 0\nflags\t\t: fpu vmx ept\n";
static const char cpu_none[] = "processor\t: 0\nflags\t\t: fpu vme hypervisor svm_lock_x\n";

static void test_no_dev_kvm(void **state)
{
	struct tree *t = *state;
	struct sm_error err = {0};
	enum vm_kvm_kind kind = VM_KVM_HARDWARE;
	mkfile(t->root, "/proc/cpuinfo", cpu_svm);
	assert_int_equal(vm_kvm_probe(t->root, &kind, &err), 0);
	assert_int_equal(kind, VM_KVM_NONE);
}

static void test_hardware_svm(void **state)
{
	struct tree *t = *state;
	enum vm_kvm_kind kind;
	mkfile(t->root, "/dev/kvm", "");
	mkfile(t->root, "/proc/cpuinfo", cpu_svm);
	assert_int_equal(vm_kvm_probe(t->root, &kind, NULL), 0);
	assert_int_equal(kind, VM_KVM_HARDWARE);
	assert_string_equal(vm_kvm_kind_name(kind), "hardware");
}

static void test_hardware_vmx(void **state)
{
	struct tree *t = *state;
	enum vm_kvm_kind kind;
	mkfile(t->root, "/dev/kvm", "");
	mkfile(t->root, "/proc/cpuinfo", cpu_vmx);
	assert_int_equal(vm_kvm_probe(t->root, &kind, NULL), 0);
	assert_int_equal(kind, VM_KVM_HARDWARE);
}

static void test_pvm_wins_over_flags(void **state)
{
	struct tree *t = *state;
	enum vm_kvm_kind kind;
	mkfile(t->root, "/dev/kvm", "");
	mkfile(t->root, "/proc/cpuinfo", cpu_svm);
	mkdir_p(t->root, "/sys/module/kvm_pvm");
	assert_int_equal(vm_kvm_probe(t->root, &kind, NULL), 0);
	assert_int_equal(kind, VM_KVM_PVM);
	assert_string_equal(vm_kvm_kind_name(kind), "kvm-pvm");
}

static void test_substring_is_not_a_flag(void **state)
{
	struct tree *t = *state;
	enum vm_kvm_kind kind;
	mkfile(t->root, "/dev/kvm", "");
	mkfile(t->root, "/proc/cpuinfo", cpu_none);
	assert_int_equal(vm_kvm_probe(t->root, &kind, NULL), 0);
	assert_int_equal(kind, VM_KVM_UNKNOWN);
}

static void test_missing_cpuinfo_is_error(void **state)
{
	struct tree *t = *state;
	struct sm_error err = {0};
	enum vm_kvm_kind kind;
	mkfile(t->root, "/dev/kvm", "");
	assert_true(vm_kvm_probe(t->root, &kind, &err) < 0);
	assert_non_null(strstr(err.msg, "cpuinfo"));
}

/* On this very machine: the probe must agree with what the system shows. */
static void test_running_system_consistent(void **state)
{
	(void)state;
	enum vm_kvm_kind kind;
	struct sm_error err = {0};
	assert_int_equal(vm_kvm_probe("", &kind, &err), 0);
	struct stat st;
	int have_kvm = stat("/dev/kvm", &st) == 0;
	int have_pvm = stat("/sys/module/kvm_pvm", &st) == 0;
	if (!have_kvm)
		assert_int_equal(kind, VM_KVM_NONE);
	else if (have_pvm)
		assert_int_equal(kind, VM_KVM_PVM);
	int r = vm_kvm_require_usable(&err);
	if (kind == VM_KVM_PVM) {
		assert_true(r < 0);
		assert_non_null(strstr(err.msg, "this host's /dev/kvm is kvm-pvm, which cannot "
						"run unmodified Linux guests"));
	} else if (kind == VM_KVM_NONE) {
		assert_true(r < 0);
		assert_non_null(strstr(err.msg, "no /dev/kvm"));
	} else {
		assert_int_equal(r, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_dev_kvm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hardware_svm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hardware_vmx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvm_wins_over_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_substring_is_not_a_flag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_cpuinfo_is_error, setup, teardown),
		cmocka_unit_test(test_running_system_consistent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
