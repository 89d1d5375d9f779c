/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: write a small valid snapshot whose metadata has bake_key KEY
 * (a stand-in for a baked snapshot in the cache; no KVM needed).
 * Usage: bake_mksnap PATH KEY */
#include <stdio.h>
#include <string.h>

#include "sm/format.h"

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bake_mksnap PATH KEY\n");
		return 2;
	}
	struct sm_error err = {0};
	struct fmt_writer *w = NULL;
	char meta[400];
	snprintf(meta, sizeof(meta), "{\"kind\":\"supermachine-snapshot\",\"bake_key\":\"%s\"}",
		 argv[2]);
	static unsigned char page[FMT_PAGE_SIZE];
	memset(page, 0x5a, sizeof(page));
	if (fmt_writer_create(&w, argv[1], NULL, &err) < 0 ||
	    fmt_writer_add_meta(w, meta, &err) < 0 ||
	    fmt_writer_mem_begin(w, 16u << 20, &err) < 0 ||
	    fmt_writer_mem_write(w, page, sizeof(page), &err) < 0 ||
	    fmt_writer_mem_skip(w, (16u << 20) - FMT_PAGE_SIZE, &err) < 0 ||
	    fmt_writer_mem_end(w, &err) < 0 || fmt_writer_commit(w, &err) < 0) {
		fprintf(stderr, "bake_mksnap: %s\n", err.msg);
		fmt_writer_free(w);
		return 1;
	}
	fmt_writer_free(w);
	return 0;
}
