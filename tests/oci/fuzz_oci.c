/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the hostile inputs of oci/: the first byte picks
 * references, image configs, image indexes or a layer tarball. Layers are
 * applied into a scratch root next to an "outside" directory; anything
 * written outside the root aborts.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sm/oci.h"

static char base[256], rootp[300], outside[300], layer[300], sentinel[320];

static void cleanup(void)
{
	if (base[0])
		cache_rm_rf_at(AT_FDCWD, base, NULL);
}

static void init(void)
{
	if (base[0])
		return;
	snprintf(base, sizeof(base), "/tmp/sm-fuzz-oci-%d", (int)getpid());
	mkdir(base, 0755);
	atexit(cleanup);
	snprintf(rootp, sizeof(rootp), "%s/root", base);
	snprintf(outside, sizeof(outside), "%s/outside", base);
	snprintf(layer, sizeof(layer), "%s/layer", base);
	snprintf(sentinel, sizeof(sentinel), "%s/sentinel", outside);
	mkdir(outside, 0755);
	FILE *f = fopen(sentinel, "w");
	fputs("untouched", f);
	fclose(f);
}

static int count(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	if (!d)
		abort();
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void check_contained(void)
{
	char buf[32] = {0};
	FILE *f = fopen(sentinel, "r");
	if (!f || fread(buf, 1, sizeof(buf) - 1, f) != 9 || strcmp(buf, "untouched"))
		abort();
	fclose(f);
	if (count(outside) != 1 || count(base) != 3) /* layer, root, outside */
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sm_error err;
	if (size < 1)
		return 0;
	const char *s = (const char *)data + 1;
	size_t n = size - 1;
	char *z = malloc(n + 1);
	memcpy(z, s, n);
	z[n] = '\0';
	switch (data[0] % 4) {
	case 0: {
		struct oci_ref r;
		if (oci_ref_parse(z, &r, &err) == 0) {
			free(oci_ref_string(&r));
			oci_ref_free(&r);
		}
		break;
	}
	case 1: {
		struct oci_image_config c;
		if (oci_config_parse(z, n, &c, &err) == 0) {
			char *j = oci_config_to_json(&c);
			struct oci_image_config c2;
			if (!j || oci_config_from_json(j, &c2, &err) < 0)
				abort(); /* our own output must read back */
			oci_config_free(&c2);
			free(j);
			char out[CACHE_DIGEST_MAX];
			oci_chain_id(c.diff_ids, c.n_diff_ids, out, &err);
			oci_config_free(&c);
		}
		break;
	}
	case 2: {
		struct oci_platform p;
		char *d = NULL;
		int64_t sz;
		oci_platform_host(&p);
		if (oci_index_select(z, n, &p, &d, &sz, &err) == 0)
			free(d);
		break;
	}
	case 3: {
		init();
		FILE *f = fopen(layer, "w");
		fwrite(s, 1, n, f);
		fclose(f);
		mkdir(rootp, 0755);
		int fd = open(rootp, O_RDONLY | O_DIRECTORY);
		struct oci_unpack_opts o = {.max_file_size = 1 << 20, .no_chown = 1};
		oci_layer_apply(fd, layer, NULL, &o, &err);
		close(fd);
		check_contained();
		cache_rm_rf_at(AT_FDCWD, rootp, NULL);
		break;
	}
	}
	free(z);
	return 0;
}
