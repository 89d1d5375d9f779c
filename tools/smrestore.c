/* SPDX-License-Identifier: Apache-2.0 */
#include "stub.h"

static const char usage[] =
	"Usage: smrestore SNAP [options] -- CMD [ARGS...]\n\n"
	"Restore SNAP into a fresh microVM, run CMD inside the image and exit with its status.\n\n"
	"  -h, --help       show this help\n"
	"      --version    print the version\n\n"
	"Exit status: the status of CMD, or 125 on a supermachine error.\n";

int main(int argc, char **argv)
{
	return sm_stub_main(argc, argv, "smrestore", usage);
}
