/* SPDX-License-Identifier: Apache-2.0 */
/* smbake: argument parsing and exit codes only; the work is in the library. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm/cache.h"
#include "sm/oci.h"
#include "sm/version.h"

static const char usage[] =
	"Usage: smbake IMAGE -o SNAP [options]\n"
	"       smbake --unpack-only IMAGE -o DIR [options]\n\n"
	"Pull IMAGE, boot it once in a microVM and write a snapshot to SNAP.\n"
	"With --unpack-only, pull and unpack IMAGE into the root filesystem DIR and\n"
	"write its run configuration to DIR.config.json (no VM is started).\n\n"
	"IMAGE is one of:\n"
	"  [REGISTRY/]REPO[:TAG][@DIGEST]  a registry image (Docker defaults: docker.io,\n"
	"                                  library/, latest); localhost and 127.0.0.1\n"
	"                                  registries are reached over plain http\n"
	"  oci:DIR[:TAG]                   an OCI image layout directory\n"
	"  docker-archive:FILE             a `docker save` tarball\n\n"
	"Options:\n"
	"  -o PATH             output snapshot file (or directory with --unpack-only)\n"
	"      --unpack-only   pull and unpack only; PATH must not exist or be empty\n"
	"      --platform P    os/arch[/variant] to pick from a multi-platform image\n"
	"                      (default: this host's)\n"
	"      --insecure      allow plain http and unverified TLS for any registry\n"
	"      --parallel N    concurrent layer downloads (default 3)\n"
	"      --cache DIR     cache directory (default $SM_CACHE, else\n"
	"                      $XDG_CACHE_HOME/supermachine, else ~/.cache/supermachine)\n"
	"  -q, --quiet         no progress display\n"
	"  -h, --help          show this help\n"
	"      --version       print the version\n\n"
	"Credentials come from $DOCKER_CONFIG/config.json or ~/.docker/config.json.\n"
	"Exit status: 0 on success, 125 on a supermachine error.\n";

enum { OPT_UNPACK = 256, OPT_PLATFORM, OPT_INSECURE, OPT_PARALLEL, OPT_CACHE, OPT_VERSION };

static int fail(const char *msg)
{
	fprintf(stderr, "smbake: %s\n", msg);
	return 125;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"unpack-only", no_argument, NULL, OPT_UNPACK},
		{"platform", required_argument, NULL, OPT_PLATFORM},
		{"insecure", no_argument, NULL, OPT_INSECURE},
		{"parallel", required_argument, NULL, OPT_PARALLEL},
		{"cache", required_argument, NULL, OPT_CACHE},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		{"output", required_argument, NULL, 'o'},
		{NULL, 0, NULL, 0},
	};
	struct oci_pull_opts po = {0};
	const char *out = NULL, *cache_dir = NULL;
	int unpack_only = 0, quiet = 0, c;
	struct sm_error err = {0};
	char msg[SM_ERROR_MSG_MAX + 64];

	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case OPT_UNPACK:
			unpack_only = 1;
			break;
		case OPT_PLATFORM:
			if (oci_platform_parse(optarg, &po.platform, &err) < 0)
				return fail(err.msg);
			break;
		case OPT_INSECURE:
			po.insecure = 1;
			break;
		case OPT_PARALLEL: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 32)
				return fail("--parallel wants a number from 1 to 32");
			po.parallel = (int)n;
			break;
		}
		case OPT_CACHE:
			cache_dir = optarg;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case OPT_VERSION:
			printf("smbake %s\n", SM_VERSION);
			return 0;
		default:
			snprintf(msg, sizeof(msg),
				 "unknown or incomplete option '%s' (see smbake --help)",
				 argv[optind - 1]);
			return fail(msg);
		}
	}
	if (optind >= argc)
		return fail("missing IMAGE (see smbake --help)");
	if (optind + 1 < argc)
		return fail("too many arguments (see smbake --help)");
	if (!out)
		return fail("missing -o PATH (see smbake --help)");
	const char *image = argv[optind];
	if (!unpack_only)
		return fail("baking a snapshot is not implemented yet; only --unpack-only works");

	po.progress = !quiet && isatty(STDERR_FILENO);
	struct cache *cache;
	if (cache_open(cache_dir, &cache, &err) < 0)
		return fail(err.msg);
	int r = oci_unpack_to(cache, image, out, &po, &err);
	cache_close(cache);
	if (r < 0)
		return fail(err.msg);
	return 0;
}
