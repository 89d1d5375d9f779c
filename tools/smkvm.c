/* SPDX-License-Identifier: Apache-2.0 */
/* smkvm: report which KVM this host has (hardware, kvm-pvm, none). Used by
 * the test harness and by users wondering why a guest will not boot. */
#include <stdio.h>
#include <string.h>

#include "sm/vm.h"

static const char usage[] =
	"Usage: smkvm [--json] [--require]\n\n"
	"Report whether /dev/kvm on this host can run unmodified Linux guests.\n\n"
	"  --json       machine-readable output\n"
	"  --require    exit 125 with an explanation unless KVM is usable\n"
	"  -h, --help   show this help\n\n"
	"Exit status: 0, or 125 when --require fails or the probe itself fails.\n";

int main(int argc, char **argv)
{
	int json = 0, require = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--require")) {
			require = 1;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "smkvm: unknown argument '%s' (see smkvm --help)\n",
				argv[i]);
			return 125;
		}
	}
	struct sm_error err = {0};
	enum vm_kvm_kind kind;
	if (vm_kvm_probe("", &kind, &err) < 0) {
		fprintf(stderr, "smkvm: %s\n", err.msg);
		return 125;
	}
	if (json)
		printf("{\"kvm\":\"%s\"}\n", vm_kvm_kind_name(kind));
	else
		printf("%s\n", vm_kvm_kind_name(kind));
	if (require && vm_kvm_require_usable(&err) < 0) {
		fprintf(stderr, "smkvm: %s\n", err.msg);
		return 125;
	}
	return 0;
}
