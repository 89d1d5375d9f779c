/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the FUSE server: request sequences against a fresh
 * in-memory backend (with a DAX window), DAX snapshot blobs, and node-table
 * snapshot blobs against a passthrough backend. Built by
 * fuzz/run_fuse_fuzz.sh with clang -fsanitize=fuzzer,address,undefined.
 *
 * Input: byte 0 picks the mode (0 requests on memfs, 1 requests on a
 * read-only passthrough tree, 2 DAX blob, 3 node table).
 * Requests: repeated [out_sel u8][flags u8][len u16 LE][len bytes]; flags
 * bit 0 rewrites the header's len to the real length, bits 1-2 split the
 * request over up to 4 iovecs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse/fuse_abi.h"
#include "sm/fuse.h"

static char tree[64];
static uint8_t *outbuf;

#define OUT_MAX ((1u << 20) + 4096)

static int nop_map(void *c, uint64_t o, int fd, uint64_t f, uint64_t l, int p)
{
	(void)c, (void)o, (void)fd, (void)f, (void)l, (void)p;
	return 0;
}

static int nop_unmap(void *c, uint64_t o, uint64_t l)
{
	(void)c, (void)o, (void)l;
	return 0;
}

static void check_reply(const uint8_t *req, size_t len, size_t n, size_t cap)
{
	if (n > cap)
		__builtin_trap();
	if (n == 0)
		return;
	struct fuse_out_header oh;
	if (n < sizeof(oh))
		__builtin_trap();
	memcpy(&oh, outbuf, sizeof(oh));
	if (oh.len != n || oh.error > 0 || oh.error <= -4096 || (oh.error && n != sizeof(oh)))
		__builtin_trap();
	if (len >= sizeof(struct fuse_in_header)) {
		struct fuse_in_header h;
		memcpy(&h, req, sizeof(h));
		if (oh.unique != h.unique)
			__builtin_trap();
	}
}

static size_t send(struct fuse_server *s, uint32_t op, uint64_t nodeid, const void *a, size_t al,
		   const void *b, size_t bl)
{
	uint8_t req[512];
	struct fuse_in_header h = {
		.len = (uint32_t)(40 + al + bl), .opcode = op, .unique = 7, .nodeid = nodeid};
	memcpy(req, &h, 40);
	if (al)
		memcpy(req + 40, a, al);
	if (bl)
		memcpy(req + 40 + al, b, bl);
	struct iovec iv = {req, h.len}, ov = {outbuf, 4096};
	return fuse_server_handle(s, &iv, 1, &ov, 1);
}

static void remove_tree(void)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/d/b", tree);
	unlink(p);
	snprintf(p, sizeof(p), "%s/d", tree);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/a", tree);
	unlink(p);
	rmdir(tree);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	outbuf = malloc(OUT_MAX);
	snprintf(tree, sizeof(tree), "/tmp/sm-fuse-fuzz-XXXXXX");
	if (!outbuf || !mkdtemp(tree))
		abort();
	char p[128];
	snprintf(p, sizeof(p), "%s/a", tree);
	FILE *f = fopen(p, "w");
	if (!f)
		abort();
	fputs("hello", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/d", tree);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/d/b", tree);
	if (symlink("/etc/passwd", p) < 0)
		abort();
	atexit(remove_tree);
	return 0;
}

/* passthrough: read-only over the fixed tree, so nothing on disk changes. */
static void fuzz_requests(const uint8_t *data, size_t size, int passthrough)
{
	struct sm_error err;
	struct fuse_backend *be;
	struct fuse_server *s;
	struct fuse_dax *d;
	struct fuse_server_config cfg;
	fuse_server_config_init(&cfg);
	cfg.read_only = passthrough;
	struct fuse_dax_mapper m = {.map = nop_map, .unmap = nop_unmap};
	int r = passthrough ? fuse_passthrough_new(tree, &be, &err) : fuse_memfs_new(&be, &err);
	if (r < 0 || fuse_server_new(&cfg, be, &s, &err) < 0)
		abort();
	if (fuse_dax_new(1ull << 32, 4ull << 20, 2ull << 20, &m, &d, &err) < 0)
		abort();
	fuse_server_attach_dax(s, d);
	struct fuse_init_in ii = {.major = 7, .minor = 36, .flags = 0xffffffffu};
	send(s, FUSE_INIT, 0, &ii, sizeof(ii), NULL, 0);
	struct fuse_mkdir_in mk = {.mode = 0755};
	send(s, FUSE_MKDIR, 1, &mk, sizeof(mk), "dir", 4); /* node 2 */
	struct fuse_create_in cr = {.flags = O_RDWR, .mode = 0644};
	send(s, FUSE_CREATE, 1, &cr, sizeof(cr), "a", 2); /* node 3, fh 0 */
	struct fuse_write_in wi = {.fh = 0, .size = 5};
	send(s, FUSE_WRITE, 3, &wi, sizeof(wi), "hello", 5);
	send(s, FUSE_SYMLINK, 2, "l", 2, "../a", 5); /* node 4 */

	static const size_t caps[8] = {0, 15, 16, 40, 144, 4096, 65536 + 16, OUT_MAX};
	size_t pos = 0;
	for (int n = 0; n < 16 && size - pos >= 4; n++) {
		size_t cap = caps[data[pos] & 7];
		uint8_t flags = data[pos + 1];
		size_t len = (size_t)data[pos + 2] | ((size_t)data[pos + 3] << 8);
		pos += 4;
		if (len > size - pos)
			len = size - pos;
		uint8_t *req = malloc(len ? len : 1);
		memcpy(req, data + pos, len);
		pos += len;
		if ((flags & 1) && len >= 4) {
			uint32_t l = (uint32_t)len;
			memcpy(req, &l, 4);
		}
		struct iovec in[4];
		int cnt = 1 + ((flags >> 1) & 3);
		size_t step = len / (size_t)cnt, off = 0;
		for (int i = 0; i < cnt; i++) {
			size_t l = i == cnt - 1 ? len - off : step;
			in[i].iov_base = req + off;
			in[i].iov_len = l;
			off += l;
		}
		size_t half = cap / 2;
		struct iovec ov[2] = {{outbuf, half}, {outbuf + half, cap - half}};
		size_t r = fuse_server_handle(s, in, cnt, ov, 2);
		check_reply(req, len, r, cap);
		free(req);
	}
	fuse_server_free(s);
	fuse_dax_free(d);
}

static void fuzz_dax_blob(const uint8_t *data, size_t size)
{
	struct sm_error err;
	struct fuse_dax *d;
	struct fuse_dax_mapper m = {.map = nop_map, .unmap = nop_unmap};
	if (fuse_dax_new(1ull << 32, 64ull << 20, 32ull << 20, &m, &d, &err) < 0)
		abort();
	if (fuse_dax_restore(d, data, size, &err) == 0) {
		void *blob;
		size_t len;
		if (fuse_dax_snapshot(d, &blob, &len, &err) < 0)
			abort();
		/* A blob we accept must round-trip exactly, except for the cap
		 * (bytes 24..31), which is this session's policy. */
		if (len != size || memcmp(blob, data, 24) != 0 ||
		    memcmp((uint8_t *)blob + 32, data + 32, len - 32) != 0)
			__builtin_trap();
		free(blob);
		fuse_dax_fault(d, (1ull << 32) + ((size_t)data[size - 1] << 16));
	}
	fuse_dax_free(d);
}

static void fuzz_node_blob(const uint8_t *data, size_t size)
{
	struct sm_error err;
	struct fuse_backend *be;
	struct fuse_server *s;
	struct fuse_server_config cfg;
	fuse_server_config_init(&cfg);
	cfg.read_only = 1;
	if (fuse_passthrough_new(tree, &be, &err) < 0 || fuse_server_new(&cfg, be, &s, &err) < 0)
		abort();
	if (fuse_server_restore(s, data, size, &err) == 0) {
		/* Touch a few node ids: resolve lazily, never outside the tree. */
		struct fuse_getattr_in gi = {0};
		for (uint64_t id = 1; id < 6; id++)
			send(s, FUSE_GETATTR, id, &gi, sizeof(gi), NULL, 0);
		struct fuse_read_in ri = {.fh = 0, .size = 64};
		send(s, FUSE_READ, 2, &ri, sizeof(ri), NULL, 0);
	}
	fuse_server_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] & 3) {
	case 0:
	case 1:
		fuzz_requests(data + 1, size - 1, data[0] & 1);
		break;
	case 2:
		fuzz_dax_blob(data + 1, size - 1);
		break;
	case 3:
		fuzz_node_blob(data + 1, size - 1);
		break;
	}
	return 0;
}
