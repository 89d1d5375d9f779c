/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vm: the KVM monitor.
 *
 * This header is the public face of vm/. Functions return 0 (or a
 * non-negative value) on success and a negative errno on failure, with
 * details in the struct sm_error out-parameter.
 */
#pragma once

#include "sm/error.h"

/* ---- KVM flavour detection (vm/kvm_detect.c) ---------------------------- */

enum vm_kvm_kind {
	VM_KVM_NONE = 0,     /* no /dev/kvm */
	VM_KVM_HARDWARE = 1, /* /dev/kvm backed by VMX or SVM: runs Linux guests */
	VM_KVM_PVM = 2,	     /* kvm-pvm: needs PVM-patched guests, cannot run ours */
	VM_KVM_UNKNOWN = 3,  /* /dev/kvm present, no vmx/svm flag, no kvm-pvm */
};

/* Decide which KVM this host offers by looking at ROOT/dev/kvm,
 * ROOT/sys/module/kvm_pvm and the vmx/svm flags in ROOT/proc/cpuinfo.
 * ROOT is "" (or NULL) for the running system; tests pass a fake tree.
 * Never opens /dev/kvm. Returns 0 and sets *kind, or -errno when cpuinfo
 * cannot be read. */
int vm_kvm_probe(const char *root, enum vm_kvm_kind *kind, struct sm_error *err);

/* Short name of a kind: "none", "hardware", "kvm-pvm", "unknown". */
const char *vm_kvm_kind_name(enum vm_kvm_kind kind);

/* Probe the running system and fail with a message that says what to do
 * unless it has KVM that can run an unmodified Linux guest. kvm-pvm yields
 * "this host's /dev/kvm is kvm-pvm, which cannot run unmodified Linux
 * guests ...". VM_KVM_UNKNOWN is accepted (nested setups may hide flags). */
int vm_kvm_require_usable(struct sm_error *err);
