/* SPDX-License-Identifier: Apache-2.0 */
/* Tell hardware KVM from kvm-pvm without opening /dev/kvm. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "sm/vm.h"

static int path_exists(const char *root, const char *rel)
{
	char path[4096];
	struct stat st;
	if (snprintf(path, sizeof(path), "%s%s", root, rel) >= (int)sizeof(path))
		return 0;
	return stat(path, &st) == 0;
}

/* Is WORD a whole whitespace-separated token of LINE? */
static int has_token(const char *line, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = line; (p = strstr(p, word)) != NULL; p += wl) {
		int start_ok = p == line || p[-1] == ' ' || p[-1] == '\t' || p[-1] == ':';
		char e = p[wl];
		int end_ok = e == '\0' || e == ' ' || e == '\t' || e == '\n';
		if (start_ok && end_ok)
			return 1;
	}
	return 0;
}

int vm_kvm_probe(const char *root, enum vm_kvm_kind *kind, struct sm_error *err)
{
	if (!root)
		root = "";
	*kind = VM_KVM_NONE;
	if (!path_exists(root, "/dev/kvm"))
		return 0;
	if (path_exists(root, "/sys/module/kvm_pvm")) {
		*kind = VM_KVM_PVM;
		return 0;
	}

	char path[4096];
	if (snprintf(path, sizeof(path), "%s/proc/cpuinfo", root) >= (int)sizeof(path))
		return sm_error_set(err, ENAMETOOLONG, "cpuinfo path too long");
	FILE *f = fopen(path, "re");
	if (!f)
		return sm_error_errno(err, errno, "cannot read %s", path);
	char line[8192];
	int hw = 0;
	while (!hw && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		hw = has_token(line, "vmx") || has_token(line, "svm");
	}
	fclose(f);
	*kind = hw ? VM_KVM_HARDWARE : VM_KVM_UNKNOWN;
	return 0;
}

const char *vm_kvm_kind_name(enum vm_kvm_kind kind)
{
	switch (kind) {
	case VM_KVM_NONE:
		return "none";
	case VM_KVM_HARDWARE:
		return "hardware";
	case VM_KVM_PVM:
		return "kvm-pvm";
	case VM_KVM_UNKNOWN:
		return "unknown";
	}
	return "invalid";
}

int vm_kvm_require_usable(struct sm_error *err)
{
	/* Hardware and unknown are accepted alike, so the vmx/svm flags do not
	 * decide anything here: skip reading /proc/cpuinfo (the kernel formats
	 * it per CPU on every read; measured as 4-9 ms of each restore in the
	 * emulated host, where this runs twice per smrestore). */
	enum vm_kvm_kind kind = VM_KVM_NONE;
	if (path_exists("", "/dev/kvm"))
		kind = path_exists("", "/sys/module/kvm_pvm") ? VM_KVM_PVM : VM_KVM_UNKNOWN;
	switch (kind) {
	case VM_KVM_HARDWARE:
	case VM_KVM_UNKNOWN:
		return 0;
	case VM_KVM_PVM:
		return sm_error_set(err, ENOTSUP,
				    "this host's /dev/kvm is kvm-pvm, which cannot run unmodified "
				    "Linux guests; run on a host with hardware KVM (vmx/svm), or "
				    "inside the emulated KVM host: tests/kvmhost/run -- CMD");
	case VM_KVM_NONE:
		break;
	}
	return sm_error_set(err, ENODEV,
			    "no /dev/kvm on this host; load kvm-intel or kvm-amd, or run inside "
			    "the emulated KVM host: tests/kvmhost/run -- CMD");
}
