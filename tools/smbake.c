/* SPDX-License-Identifier: Apache-2.0 */
#include "stub.h"

static const char usage[] =
	"Usage: smbake IMAGE -o SNAP [options]\n\n"
	"Pull IMAGE (registry ref, oci:DIR[:tag], docker-archive:FILE), boot it once in a\n"
	"microVM and write a snapshot to SNAP.\n\n"
	"  -o SNAP          output snapshot file\n"
	"  -h, --help       show this help\n"
	"      --version    print the version\n\n"
	"Exit status: 0 on success, 125 on a supermachine error.\n";

int main(int argc, char **argv)
{
	return sm_stub_main(argc, argv, "smbake", usage);
}
