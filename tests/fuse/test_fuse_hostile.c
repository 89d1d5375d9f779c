/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hostile requests: 100k random, mutated and truncated requests (fixed
 * seed) against the dispatcher. Every reply must be well framed: never past
 * the reply room, header length equal to the bytes written, the request's
 * unique echoed, errors as bare headers. ASan/UBSan builds catch the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuse_client.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

struct shape {
	uint32_t op;
	uint16_t arg;	 /* fixed argument size */
	uint8_t strings; /* NUL-terminated strings after it */
	uint8_t data;	 /* free-form bytes after that */
};

static const struct shape shapes[] = {
	{FUSE_INIT, 64, 0, 0},
	{FUSE_DESTROY, 0, 0, 0},
	{FUSE_LOOKUP, 0, 1, 0},
	{FUSE_FORGET, 8, 0, 0},
	{FUSE_BATCH_FORGET, 8, 0, 1},
	{FUSE_GETATTR, 16, 0, 0},
	{FUSE_SETATTR, 88, 0, 0},
	{FUSE_READLINK, 0, 0, 0},
	{FUSE_SYMLINK, 0, 2, 0},
	{FUSE_MKNOD, 16, 1, 0},
	{FUSE_MKDIR, 8, 1, 0},
	{FUSE_UNLINK, 0, 1, 0},
	{FUSE_RMDIR, 0, 1, 0},
	{FUSE_RENAME, 8, 2, 0},
	{FUSE_RENAME2, 16, 2, 0},
	{FUSE_LINK, 8, 1, 0},
	{FUSE_OPEN, 8, 0, 0},
	{FUSE_READ, 40, 0, 0},
	{FUSE_WRITE, 40, 0, 1},
	{FUSE_STATFS, 0, 0, 0},
	{FUSE_RELEASE, 24, 0, 0},
	{FUSE_FSYNC, 16, 0, 0},
	{FUSE_FLUSH, 24, 0, 0},
	{FUSE_SETXATTR, 8, 1, 1},
	{FUSE_GETXATTR, 8, 1, 0},
	{FUSE_LISTXATTR, 8, 0, 0},
	{FUSE_REMOVEXATTR, 0, 1, 0},
	{FUSE_OPENDIR, 8, 0, 0},
	{FUSE_READDIR, 40, 0, 0},
	{FUSE_READDIRPLUS, 40, 0, 0},
	{FUSE_RELEASEDIR, 24, 0, 0},
	{FUSE_FSYNCDIR, 16, 0, 0},
	{FUSE_ACCESS, 8, 0, 0},
	{FUSE_CREATE, 16, 1, 0},
	{FUSE_LSEEK, 24, 0, 0},
	{FUSE_FALLOCATE, 32, 0, 0},
	{FUSE_SETUPMAPPING, 40, 0, 0},
	{FUSE_REMOVEMAPPING, 4, 0, 1},
	{FUSE_GETLK, 48, 0, 0},
	{FUSE_INTERRUPT, 8, 0, 0},
	{9999, 0, 0, 1},
};

static const char *const names[] = {"a", "b", "dir", "x.txt", "..", ".", "", "a/b", "lnk"};

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* A plausible request of the given shape into buf; returns its length. */
static size_t make_request(uint8_t *buf, const struct shape *sh)
{
	struct fuse_in_header h = {0};
	h.opcode = sh->op;
	h.unique = rnd();
	h.nodeid = below(4) ? 1 + below(24) : rnd();
	h.uid = (uint32_t)below(2000);
	size_t pos = sizeof(h);
	uint8_t *a = buf + pos;
	for (size_t i = 0; i < sh->arg; i++)
		a[i] = (uint8_t)rnd();
	int plausible = below(4) != 0;
	size_t data = sh->data ? below(4) ? below(64) : below(9000) : 0;
	if (plausible) {
		switch (sh->op) {
		case FUSE_INIT:
			put32(a, 7);
			put32(a + 4, 31 + (uint32_t)below(10));
			break;
		case FUSE_READ:
		case FUSE_READDIR:
		case FUSE_READDIRPLUS:
		case FUSE_WRITE:
			put64(a, below(12));
			put64(a + 8, below(8) ? below(70000) : rnd());
			put32(a + 16,
			      sh->op == FUSE_WRITE ? (uint32_t)data : (uint32_t)below(9000));
			break;
		case FUSE_RELEASE:
		case FUSE_RELEASEDIR:
		case FUSE_FLUSH:
		case FUSE_FSYNC:
		case FUSE_FSYNCDIR:
		case FUSE_LSEEK:
		case FUSE_GETATTR:
			put64(a + (sh->op == FUSE_GETATTR ? 8 : 0), below(12));
			if (sh->op == FUSE_LSEEK)
				put32(a + 16, (uint32_t)below(6));
			break;
		case FUSE_FALLOCATE:
			put64(a, below(12));
			put64(a + 8, below(70000));
			put64(a + 16, below(70000));
			put32(a + 24, (uint32_t)below(4));
			break;
		case FUSE_OPEN:
		case FUSE_OPENDIR:
		case FUSE_CREATE: {
			static const uint32_t fl[] = {O_RDONLY,
						      O_WRONLY,
						      O_RDWR,
						      O_RDWR | O_TRUNC,
						      O_WRONLY | O_APPEND,
						      O_RDWR | O_EXCL};
			put32(a, fl[below(6)]);
			if (sh->op == FUSE_CREATE)
				put32(a + 4, 0644);
			break;
		}
		case FUSE_MKNOD: {
			static const uint32_t md[] = {S_IFREG | 0644, S_IFIFO | 0600,
						      S_IFCHR | 0600, S_IFDIR | 0755, 0};
			put32(a, md[below(5)]);
			put32(a + 4, (uint32_t)below(3));
			break;
		}
		case FUSE_SETATTR:
			put32(a, (uint32_t)below(1 << 11));
			put64(a + 16, below(70000));
			put32(a + 64, (uint32_t)below(1000000000));
			put32(a + 68, (uint32_t)below(1000000000));
			break;
		case FUSE_GETXATTR:
		case FUSE_LISTXATTR:
			put32(a, (uint32_t)below(300));
			break;
		case FUSE_SETXATTR:
			put32(a, (uint32_t)data);
			put32(a + 4, (uint32_t)below(4));
			break;
		case FUSE_RENAME:
		case FUSE_RENAME2:
		case FUSE_LINK:
			put64(a, 1 + below(24));
			if (sh->op == FUSE_RENAME2)
				put32(a + 8, (uint32_t)below(8));
			break;
		case FUSE_BATCH_FORGET:
			data = 16 * below(5);
			put32(a, (uint32_t)(data / 16));
			break;
		case FUSE_REMOVEMAPPING:
			data = 16 * below(5);
			put32(a, (uint32_t)(data / 16));
			break;
		case FUSE_SETUPMAPPING:
			put64(a, below(2) ? UINT64_MAX : below(12));
			put64(a + 8, 4096 * below(4));
			put64(a + 16, 4096 * below(600));
			put64(a + 24, 1 + below(3));
			put64(a + 32, 4096 * below(600));
			break;
		}
	}
	pos += sh->arg;
	for (int s = 0; s < sh->strings; s++) {
		const char *n = names[below(sizeof(names) / sizeof(names[0]))];
		if (!plausible && below(2)) {
			size_t l = below(300);
			for (size_t i = 0; i < l; i++)
				buf[pos++] = (uint8_t)(1 + below(255));
		} else {
			memcpy(buf + pos, n, strlen(n));
			pos += strlen(n);
		}
		buf[pos++] = 0;
	}
	for (size_t i = 0; i < data; i++)
		buf[pos++] = (uint8_t)rnd();
	h.len = (uint32_t)pos;
	memcpy(buf, &h, sizeof(h));
	return pos;
}

static void mutate(uint8_t *buf, size_t *len, size_t cap)
{
	switch (below(6)) {
	case 0: /* flip bytes */
		for (uint64_t i = 0, n = 1 + below(8); i < n && *len; i++)
			buf[below(*len)] ^= (uint8_t)(1u << below(8));
		break;
	case 1: /* truncate, header len left as it was */
		*len = below(*len + 1);
		break;
	case 2: /* truncate and fix the header len */
		*len = below(*len + 1);
		if (*len >= 4)
			put32(buf, (uint32_t)*len);
		break;
	case 3: /* append junk */
		for (uint64_t i = 0, n = below(100); i < n && *len < cap; i++)
			buf[(*len)++] = (uint8_t)rnd();
		if (below(2) && *len >= 4)
			put32(buf, (uint32_t)*len);
		break;
	case 4: /* random header len */
		if (*len >= 4)
			put32(buf, (uint32_t)rnd());
		break;
	default: /* leave it well formed */
		break;
	}
}

static const size_t out_sizes[] = {0,	1,   15,  16,  17,  24,	  40,	      80,
				   119, 120, 144, 160, 200, 4096, 65536 + 16, (1u << 20) + 16};

static long run(struct fuse_server *s, long iterations, uint8_t *req, uint8_t *out)
{
	long replies = 0;
	for (long it = 0; it < iterations; it++) {
		const struct shape *sh = &shapes[below(sizeof(shapes) / sizeof(shapes[0]))];
		if (sh->op == FUSE_DESTROY && below(20)) /* keep sessions long */
			sh = &shapes[2];
		size_t len = make_request(req, sh);
		if (below(3) == 0)
			mutate(req, &len, 1 << 16);
		/* Split the request over 1..4 iovecs at random points. */
		struct iovec in[4];
		int icnt = 1 + (int)below(4);
		size_t cuts[5] = {0};
		for (int i = 1; i < icnt; i++)
			cuts[i] = below(len + 1);
		cuts[icnt] = len;
		for (int i = 1; i < icnt; i++) /* sort the cut points */
			for (int j = i; j > 1 && cuts[j] < cuts[j - 1]; j--) {
				size_t t = cuts[j];
				cuts[j] = cuts[j - 1];
				cuts[j - 1] = t;
			}
		for (int i = 0; i < icnt; i++) {
			in[i].iov_base = req + cuts[i];
			in[i].iov_len = cuts[i + 1] - cuts[i];
		}
		size_t osz = out_sizes[below(sizeof(out_sizes) / sizeof(out_sizes[0]))];
		size_t o1 = below(osz + 1);
		struct iovec ov[2] = {{out, o1}, {out + o1, osz - o1}};
		size_t n = fuse_server_handle(s, in, icnt, ov, 2);
		assert_true(n <= osz);
		if (n == 0)
			continue;
		replies++;
		struct fuse_out_header oh;
		assert_true(n >= sizeof(oh));
		memcpy(&oh, out, sizeof(oh));
		assert_int_equal(oh.len, n);
		assert_true(oh.error <= 0 && oh.error > -4096);
		if (oh.error)
			assert_int_equal(n, sizeof(oh));
		struct fuse_in_header h;
		if (len >= sizeof(h)) {
			memcpy(&h, req, sizeof(h));
			assert_int_equal(oh.unique, h.unique);
		}
	}
	return replies;
}

static void init_server(struct fuse_server *s, uint8_t *req, uint8_t *out)
{
	struct fuse_in_header h = {.len = 40 + 64, .opcode = FUSE_INIT, .unique = 1};
	struct fuse_init_in ii = {.major = 7, .minor = 36, .flags = 0xffffffffu};
	memcpy(req, &h, 40);
	memcpy(req + 40, &ii, 64);
	struct iovec iv = {req, 104}, ov = {out, 4096};
	assert_int_equal(fuse_server_handle(s, &iv, 1, &ov, 1), 16 + 64);
}

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

static void test_hostile_memfs(void **state)
{
	(void)state;
	rng_state = 0x5eed5eed5eedull;
	uint8_t *req = malloc(1 << 17), *out = malloc((1 << 20) + 64);
	struct sm_error err = {0};
	struct fuse_dax_mapper m = {.map = nop_map, .unmap = nop_unmap};
	struct fuse_dax *d;
	assert_int_equal(fuse_dax_new(1ull << 32, 2ull << 20, 1ull << 20, &m, &d, &err), 0);
	long replies = 0;
	for (int round = 0; round < 10; round++) {
		struct fuse_backend *be;
		struct fuse_server *s;
		struct fuse_server_config cfg;
		fuse_server_config_init(&cfg);
		assert_int_equal(fuse_memfs_new(&be, &err), 0);
		assert_int_equal(fuse_server_new(&cfg, be, &s, &err), 0);
		fuse_server_attach_dax(s, d);
		init_server(s, req, out);
		/* Some structure to hit: dirs, files, a link. */
		struct tc c;
		tc_open_client(&c, s);
		struct fuse_entry_out eo;
		uint64_t fh = 0;
		tc_mkdir(&c, 1, "dir", 0755, &eo);
		tc_create(&c, 1, "a", 0644, O_RDWR, &eo, &fh);
		tc_write(&c, eo.nodeid, fh, 0, "hello", 5);
		tc_create(&c, eo.nodeid - 1, "x.txt", 0644, O_RDWR, &eo, &fh);
		tc_symlink(&c, 1, "lnk", "a", &eo);
		replies += run(s, 10000, req, out);
		tc_close_client(&c);
	}
	fuse_dax_free(d);
	print_message("hostile memfs: 100000 requests, %ld replies\n", replies);
	assert_true(replies > 50000);
	free(req);
	free(out);
}

static void test_hostile_passthrough(void **state)
{
	(void)state;
	rng_state = 0xfeedfacecafeull;
	char dir[] = "/tmp/sm-fuse-hostile-XXXXXX";
	assert_non_null(mkdtemp(dir));
	uint8_t *req = malloc(1 << 17), *out = malloc((1 << 20) + 64);
	struct sm_error err = {0};
	long replies = 0;
	for (int ro = 1; ro >= 0; ro--) {
		struct fuse_backend *be;
		struct fuse_server *s;
		struct fuse_server_config cfg;
		fuse_server_config_init(&cfg);
		cfg.read_only = ro;
		assert_int_equal(fuse_passthrough_new(dir, &be, &err), 0);
		assert_int_equal(fuse_server_new(&cfg, be, &s, &err), 0);
		init_server(s, req, out);
		struct tc c;
		tc_open_client(&c, s);
		struct fuse_entry_out eo;
		uint64_t fh = 0;
		if (!ro) {
			tc_mkdir(&c, 1, "dir", 0755, &eo);
			tc_create(&c, 1, "a", 0644, O_RDWR, &eo, &fh);
			tc_write(&c, eo.nodeid, fh, 0, "hello", 5);
			tc_symlink(&c, 1, "lnk", "/etc/passwd", &eo);
		}
		replies += run(s, 10000, req, out);
		tc_close_client(&c);
	}
	print_message("hostile passthrough: 20000 requests, %ld replies\n", replies);
	assert_true(replies > 10000);
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(req);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_memfs),
		cmocka_unit_test(test_hostile_passthrough),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
