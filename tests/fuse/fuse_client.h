/* SPDX-License-Identifier: Apache-2.0 */
/* A tiny FUSE "kernel" for tests: builds requests, checks reply framing. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fuse/fuse_abi.h"
#include "sm/fuse.h"

#define TC_OUT_CAP (2u << 20)

struct tc {
	struct fuse_server *s;
	uint64_t unique;
	uint8_t *out;
	size_t outlen;
	uint8_t *req;
};

static inline void tc_open_client(struct tc *c, struct fuse_server *s)
{
	memset(c, 0, sizeof(*c));
	c->s = s;
	c->unique = 100;
	c->out = calloc(1, TC_OUT_CAP);
	c->req = calloc(1, TC_OUT_CAP);
	assert_non_null(c->out);
	assert_non_null(c->req);
}

static inline void tc_close_client(struct tc *c)
{
	fuse_server_free(c->s);
	free(c->out);
	free(c->req);
}

/* Send op with up to three argument parts; outsize bytes of reply room.
 * Returns the reply's error (0 or -errno); the payload is c->out + 16. */
static inline int tc_call_sized(struct tc *c, uint32_t op, uint64_t nodeid, const void *a1,
				size_t l1, const void *a2, size_t l2, const void *a3, size_t l3,
				size_t outsize)
{
	struct fuse_in_header h = {0};
	size_t total = sizeof(h) + l1 + l2 + l3;
	assert_true(total <= TC_OUT_CAP);
	h.len = (uint32_t)total;
	h.opcode = op;
	h.unique = ++c->unique;
	h.nodeid = nodeid;
	h.uid = 1000;
	h.gid = 1000;
	h.pid = 42;
	memcpy(c->req, &h, sizeof(h));
	size_t pos = sizeof(h);
	if (l1)
		memcpy(c->req + pos, a1, l1);
	pos += l1;
	if (l2)
		memcpy(c->req + pos, a2, l2);
	pos += l2;
	if (l3)
		memcpy(c->req + pos, a3, l3);
	/* Split both sides at odd places to exercise gather and scatter. */
	size_t s1 = total > 7 ? 7 : total, s2 = total > 45 ? 45 : total;
	struct iovec in[3] = {{c->req, s1}, {c->req + s1, s2 - s1}, {c->req + s2, total - s2}};
	if (outsize > TC_OUT_CAP)
		outsize = TC_OUT_CAP;
	size_t o1 = outsize > 21 ? 21 : outsize;
	struct iovec out[2] = {{c->out, o1}, {c->out + o1, outsize - o1}};
	memset(c->out, 0xa5, outsize);
	size_t n = fuse_server_handle(c->s, in, 3, out, 2);
	c->outlen = n;
	if (op == FUSE_FORGET || op == FUSE_BATCH_FORGET) {
		assert_int_equal(n, 0);
		return 0;
	}
	assert_true(n >= sizeof(struct fuse_out_header));
	assert_true(n <= outsize);
	struct fuse_out_header oh;
	memcpy(&oh, c->out, sizeof(oh));
	assert_int_equal(oh.len, n);
	assert_int_equal(oh.unique, h.unique);
	assert_true(oh.error <= 0);
	if (oh.error)
		assert_int_equal(n, sizeof(oh));
	return oh.error;
}

static inline int tc_call(struct tc *c, uint32_t op, uint64_t nodeid, const void *a1, size_t l1,
			  const void *a2, size_t l2, const void *a3, size_t l3)
{
	return tc_call_sized(c, op, nodeid, a1, l1, a2, l2, a3, l3, TC_OUT_CAP);
}

static inline void *tc_payload(struct tc *c)
{
	return c->out + sizeof(struct fuse_out_header);
}

static inline size_t tc_payload_len(struct tc *c)
{
	return c->outlen - sizeof(struct fuse_out_header);
}

static inline struct fuse_init_out tc_init(struct tc *c)
{
	struct fuse_init_in in = {.major = 7,
				  .minor = 37,
				  .max_readahead = 128 * 1024,
				  .flags = 0xffffffffu,
				  .flags2 = 0};
	assert_int_equal(tc_call(c, FUSE_INIT, 0, &in, sizeof(in), NULL, 0, NULL, 0), 0);
	assert_int_equal(tc_payload_len(c), sizeof(struct fuse_init_out));
	struct fuse_init_out o;
	memcpy(&o, tc_payload(c), sizeof(o));
	return o;
}

static inline int tc_name_op(struct tc *c, uint32_t op, uint64_t nodeid, const void *arg,
			     size_t argl, const char *name, struct fuse_entry_out *eo)
{
	int e = tc_call(c, op, nodeid, arg, argl, name, strlen(name) + 1, NULL, 0);
	if (e == 0 && eo) {
		assert_int_equal(tc_payload_len(c), sizeof(*eo));
		memcpy(eo, tc_payload(c), sizeof(*eo));
	}
	return e;
}

static inline int tc_lookup(struct tc *c, uint64_t parent, const char *name,
			    struct fuse_entry_out *eo)
{
	return tc_name_op(c, FUSE_LOOKUP, parent, NULL, 0, name, eo);
}

static inline int tc_mkdir(struct tc *c, uint64_t parent, const char *name, uint32_t mode,
			   struct fuse_entry_out *eo)
{
	struct fuse_mkdir_in in = {.mode = mode, .umask = 022};
	return tc_name_op(c, FUSE_MKDIR, parent, &in, sizeof(in), name, eo);
}

static inline int tc_create(struct tc *c, uint64_t parent, const char *name, uint32_t mode,
			    uint32_t flags, struct fuse_entry_out *eo, uint64_t *fh)
{
	struct fuse_create_in in = {.flags = flags, .mode = mode, .umask = 022};
	int e = tc_call(c, FUSE_CREATE, parent, &in, sizeof(in), name, strlen(name) + 1, NULL, 0);
	if (e == 0) {
		assert_int_equal(tc_payload_len(c),
				 sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out));
		struct fuse_open_out oo;
		if (eo)
			memcpy(eo, tc_payload(c), sizeof(*eo));
		memcpy(&oo, (uint8_t *)tc_payload(c) + sizeof(struct fuse_entry_out), sizeof(oo));
		*fh = oo.fh;
	}
	return e;
}

static inline int tc_open(struct tc *c, uint64_t nodeid, uint32_t flags, int dir, uint64_t *fh)
{
	struct fuse_open_in in = {.flags = flags};
	int e = tc_call(c, dir ? FUSE_OPENDIR : FUSE_OPEN, nodeid, &in, sizeof(in), NULL, 0, NULL,
			0);
	if (e == 0) {
		struct fuse_open_out oo;
		assert_int_equal(tc_payload_len(c), sizeof(oo));
		memcpy(&oo, tc_payload(c), sizeof(oo));
		*fh = oo.fh;
	}
	return e;
}

static inline int tc_release(struct tc *c, uint64_t nodeid, uint64_t fh, int dir)
{
	struct fuse_release_in in = {.fh = fh};
	return tc_call(c, dir ? FUSE_RELEASEDIR : FUSE_RELEASE, nodeid, &in, sizeof(in), NULL, 0,
		       NULL, 0);
}

static inline long tc_write(struct tc *c, uint64_t nodeid, uint64_t fh, uint64_t off,
			    const void *data, size_t len)
{
	struct fuse_write_in in = {.fh = fh, .offset = off, .size = (uint32_t)len};
	int e = tc_call(c, FUSE_WRITE, nodeid, &in, sizeof(in), data, len, NULL, 0);
	if (e)
		return e;
	struct fuse_write_out wo;
	assert_int_equal(tc_payload_len(c), sizeof(wo));
	memcpy(&wo, tc_payload(c), sizeof(wo));
	return wo.size;
}

static inline long tc_read(struct tc *c, uint64_t nodeid, uint64_t fh, uint64_t off, size_t size,
			   void *buf)
{
	struct fuse_read_in in = {.fh = fh, .offset = off, .size = (uint32_t)size};
	int e = tc_call(c, FUSE_READ, nodeid, &in, sizeof(in), NULL, 0, NULL, 0);
	if (e)
		return e;
	memcpy(buf, tc_payload(c), tc_payload_len(c));
	return (long)tc_payload_len(c);
}

static inline int tc_getattr(struct tc *c, uint64_t nodeid, struct fuse_attr *a)
{
	struct fuse_getattr_in in = {0};
	int e = tc_call(c, FUSE_GETATTR, nodeid, &in, sizeof(in), NULL, 0, NULL, 0);
	if (e == 0) {
		struct fuse_attr_out ao;
		assert_int_equal(tc_payload_len(c), sizeof(ao));
		memcpy(&ao, tc_payload(c), sizeof(ao));
		*a = ao.attr;
	}
	return e;
}

static inline int tc_remove(struct tc *c, uint64_t parent, const char *name, int dir)
{
	return tc_call(c, dir ? FUSE_RMDIR : FUSE_UNLINK, parent, name, strlen(name) + 1, NULL, 0,
		       NULL, 0);
}

static inline int tc_rename2(struct tc *c, uint64_t olddir, const char *oldname, uint64_t newdir,
			     const char *newname, uint32_t flags)
{
	struct fuse_rename2_in in = {.newdir = newdir, .flags = flags};
	size_t l1 = strlen(oldname) + 1, l2 = strlen(newname) + 1;
	char names[600];
	memcpy(names, oldname, l1);
	memcpy(names + l1, newname, l2);
	return tc_call(c, FUSE_RENAME2, olddir, &in, sizeof(in), names, l1 + l2, NULL, 0);
}

static inline int tc_symlink(struct tc *c, uint64_t parent, const char *name, const char *target,
			     struct fuse_entry_out *eo)
{
	int e = tc_call(c, FUSE_SYMLINK, parent, name, strlen(name) + 1, target, strlen(target) + 1,
			NULL, 0);
	if (e == 0 && eo)
		memcpy(eo, tc_payload(c), sizeof(*eo));
	return e;
}

/* READDIR(PLUS) from offset 0 to the end in small chunks; names are
 * appended to out as "name," in server order (without "." and ".."). */
static inline int tc_readdir_all(struct tc *c, uint64_t nodeid, uint64_t fh, int plus, char *out,
				 size_t outsz)
{
	uint64_t off = 0;
	out[0] = '\0';
	for (int rounds = 0; rounds < 10000; rounds++) {
		struct fuse_read_in in = {.fh = fh, .offset = off, .size = 200};
		int e = tc_call(c, plus ? FUSE_READDIRPLUS : FUSE_READDIR, nodeid, &in, sizeof(in),
				NULL, 0, NULL, 0);
		if (e)
			return e;
		size_t len = tc_payload_len(c), pos = 0;
		if (len == 0)
			return 0;
		const uint8_t *p = tc_payload(c);
		while (pos < len) {
			struct fuse_dirent de;
			size_t hdr = plus ? sizeof(struct fuse_direntplus) : sizeof(de);
			assert_true(pos + hdr <= len);
			memcpy(&de, p + pos + hdr - sizeof(de), sizeof(de));
			char name[256];
			assert_true(de.namelen > 0 && de.namelen < 256);
			memcpy(name, p + pos + hdr, de.namelen);
			name[de.namelen] = '\0';
			if (plus && strcmp(name, ".") && strcmp(name, "..")) {
				struct fuse_entry_out eo;
				memcpy(&eo, p + pos, sizeof(eo));
				assert_true(eo.nodeid != 0);
				assert_int_equal(eo.attr.ino, de.ino);
			}
			if (strcmp(name, ".") && strcmp(name, "..")) {
				strncat(out, name, outsz - strlen(out) - 1);
				strncat(out, ",", outsz - strlen(out) - 1);
			}
			off = de.off;
			pos += FUSE_DIRENT_ALIGN(hdr + de.namelen);
		}
	}
	return -ELOOP;
}
