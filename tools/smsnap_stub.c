/* SPDX-License-Identifier: Apache-2.0 */
#include "stub.h"

static const char usage[] = "Usage: smsnap dump SNAP [--json] | smsnap verify SNAP\n\n"
			    "Inspect and check supermachine snapshot files.\n\n"
			    "  -h, --help       show this help\n"
			    "      --version    print the version\n";

int main(int argc, char **argv)
{
	return sm_stub_main(argc, argv, "smsnap", usage);
}
