/* SPDX-License-Identifier: Apache-2.0 */
/* Shared main for tools whose pipeline has not landed yet: prints --help and
 * --version, and otherwise fails with exit 125 and "not implemented yet". */
#pragma once
#include <stdio.h>
#include <string.h>

#include "sm/version.h"

static inline int sm_stub_main(int argc, char **argv, const char *name, const char *usage)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--version")) {
			printf("%s %s\n", name, SM_VERSION);
			return 0;
		}
	}
	fprintf(stderr, "%s: not implemented yet (see `%s --help`)\n", name, name);
	return 125;
}
