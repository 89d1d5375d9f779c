/* SPDX-License-Identifier: Apache-2.0 */
/* The guest agent wire codec (docs/agent-protocol.md). Compiled into the
 * library and into the static agent, so it depends on libc only. Every
 * length and count in a frame is validated before use. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sm/vm.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

void vm_agent_hdr_encode(uint8_t out[VM_AGENT_HDR_LEN], uint16_t type, uint32_t id, uint32_t len)
{
	put32(out, len);
	put16(out + 4, type);
	put16(out + 6, 0);
	put32(out + 8, id);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

int vm_agent_hdr_decode(const uint8_t in[VM_AGENT_HDR_LEN], struct vm_agent_hdr *h)
{
	h->len = get32(in);
	h->type = get16(in + 4);
	h->flags = get16(in + 6);
	h->id = get32(in + 8);
	if (h->len > VM_AGENT_MAX_PAYLOAD || h->flags != 0 || h->type < VM_AGENT_READY ||
	    h->type > VM_AGENT_SYNC_ACK)
		return -EPROTO;
	return 0;
}

#define EXEC_FIXED 20 /* uid, gid, flags, argc, envc */

int vm_agent_exec_encode(const struct vm_agent_exec *x, uint8_t **out, size_t *len)
{
	if (x->argc == 0 || !x->argv || x->argc > VM_AGENT_MAX_ARGS || x->envc > VM_AGENT_MAX_ARGS)
		return -EINVAL;
	const char *cwd = x->cwd ? x->cwd : "";
	size_t total = EXEC_FIXED + strlen(cwd) + 1;
	for (uint32_t i = 0; i < x->argc; i++)
		total += strlen(x->argv[i]) + 1;
	for (uint32_t i = 0; i < x->envc; i++)
		total += strlen(x->env[i]) + 1;
	if (total > VM_AGENT_MAX_PAYLOAD)
		return -E2BIG;
	uint8_t *p = malloc(total);
	if (!p)
		return -ENOMEM;
	put32(p, x->uid);
	put32(p + 4, x->gid);
	put32(p + 8, x->flags);
	put32(p + 12, x->argc);
	put32(p + 16, x->envc);
	size_t off = EXEC_FIXED;
	size_t l = strlen(cwd) + 1;
	memcpy(p + off, cwd, l);
	off += l;
	for (uint32_t i = 0; i < x->argc; i++) {
		l = strlen(x->argv[i]) + 1;
		memcpy(p + off, x->argv[i], l);
		off += l;
	}
	for (uint32_t i = 0; i < x->envc; i++) {
		l = strlen(x->env[i]) + 1;
		memcpy(p + off, x->env[i], l);
		off += l;
	}
	*out = p;
	*len = total;
	return 0;
}

/* Next NUL-terminated string at *off inside [0, len), or NULL. */
static const char *take_str(const uint8_t *p, size_t len, size_t *off)
{
	if (*off >= len)
		return NULL;
	const uint8_t *nul = memchr(p + *off, 0, len - *off);
	if (!nul)
		return NULL;
	const char *s = (const char *)p + *off;
	*off = (size_t)(nul - p) + 1;
	return s;
}

int vm_agent_exec_decode(const uint8_t *p, size_t len, struct vm_agent_exec *x)
{
	memset(x, 0, sizeof(*x));
	if (len < EXEC_FIXED || len > VM_AGENT_MAX_PAYLOAD)
		return -EPROTO;
	x->uid = get32(p);
	x->gid = get32(p + 4);
	x->flags = get32(p + 8);
	uint32_t argc = get32(p + 12), envc = get32(p + 16);
	if (argc == 0 || argc > VM_AGENT_MAX_ARGS || envc > VM_AGENT_MAX_ARGS ||
	    (x->flags & ~(uint32_t)VM_AGENT_EXEC_STDIN))
		return -EPROTO;
	/* Each string needs at least its NUL: cheap sanity check first. */
	if ((size_t)argc + envc + 1 > len - EXEC_FIXED)
		return -EPROTO;
	const char **argv = calloc((size_t)argc + 1, sizeof(char *));
	const char **env = calloc((size_t)envc + 1, sizeof(char *));
	if (!argv || !env) {
		free(argv);
		free(env);
		return -ENOMEM;
	}
	size_t off = EXEC_FIXED;
	const char *cwd = take_str(p, len, &off);
	int ok = cwd != NULL;
	for (uint32_t i = 0; ok && i < argc; i++)
		ok = (argv[i] = take_str(p, len, &off)) != NULL;
	for (uint32_t i = 0; ok && i < envc; i++)
		ok = (env[i] = take_str(p, len, &off)) != NULL;
	if (!ok || off != len || argv[0][0] == 0) {
		free(argv);
		free(env);
		return -EPROTO;
	}
	x->cwd = cwd;
	x->argv = argv;
	x->argc = argc;
	x->env = env;
	x->envc = envc;
	return 0;
}

void vm_agent_exec_free(struct vm_agent_exec *x)
{
	free((void *)x->argv);
	free((void *)x->env);
	x->argv = x->env = NULL;
}

void vm_agent_exit_encode(uint8_t out[8], int signaled, int code)
{
	put32(out, (uint32_t)signaled);
	put32(out + 4, (uint32_t)code);
}

int vm_agent_exit_decode(const uint8_t *p, size_t len, int *signaled, int *code)
{
	if (len != 8)
		return -EPROTO;
	uint32_t s = get32(p), c = get32(p + 4);
	if (s > 1 || c > 255)
		return -EPROTO;
	*signaled = (int)s;
	*code = (int)c;
	return 0;
}

/* ---- SYNC ---------------------------------------------------------------- */

/* Wall-clock seconds accepted in SYNC: 0 .. year 10000 or so. Keeps any
 * later arithmetic on the value (ns conversions in the guest) far from
 * overflow. */
#define SYNC_MAX_SEC (INT64_C(253402300799))

static int sync_valid(int64_t sec, uint32_t nsec, uint32_t elen)
{
	return sec >= 0 && sec <= SYNC_MAX_SEC && nsec < 1000000000u &&
	       elen >= VM_AGENT_SYNC_ENTROPY_MIN && elen <= VM_AGENT_SYNC_ENTROPY_MAX;
}

int vm_agent_sync_encode(const struct vm_agent_sync *s, uint8_t *out, size_t cap, size_t *len)
{
	if (!sync_valid(s->sec, s->nsec, s->entropy_len) || !s->entropy)
		return -EINVAL;
	size_t total = VM_AGENT_SYNC_FIXED + s->entropy_len;
	if (cap < total)
		return -ENOSPC;
	put32(out, VM_AGENT_SYNC_VERSION);
	put32(out + 4, 0);
	put64(out + 8, (uint64_t)s->sec);
	put32(out + 16, s->nsec);
	put32(out + 20, s->entropy_len);
	memcpy(out + VM_AGENT_SYNC_FIXED, s->entropy, s->entropy_len);
	*len = total;
	return 0;
}

int vm_agent_sync_decode(const uint8_t *p, size_t len, struct vm_agent_sync *s)
{
	memset(s, 0, sizeof(*s));
	if (len < VM_AGENT_SYNC_FIXED || len > VM_AGENT_SYNC_FIXED + VM_AGENT_SYNC_ENTROPY_MAX)
		return -EPROTO;
	uint64_t sec = get64(p + 8);
	uint32_t nsec = get32(p + 16), elen = get32(p + 20);
	if (get32(p) != VM_AGENT_SYNC_VERSION || get32(p + 4) != 0 ||
	    sec > (uint64_t)SYNC_MAX_SEC || !sync_valid((int64_t)sec, nsec, elen) ||
	    len - VM_AGENT_SYNC_FIXED != elen)
		return -EPROTO;
	s->sec = (int64_t)sec;
	s->nsec = nsec;
	s->entropy = p + VM_AGENT_SYNC_FIXED;
	s->entropy_len = elen;
	return 0;
}

void vm_agent_sync_ack_encode(uint8_t out[VM_AGENT_SYNC_ACK_LEN], int clock_errno,
			      int entropy_errno, int reseed_errno)
{
	put32(out, (uint32_t)clock_errno);
	put32(out + 4, (uint32_t)entropy_errno);
	put32(out + 8, (uint32_t)reseed_errno);
}

int vm_agent_sync_ack_decode(const uint8_t *p, size_t len, int *clock_errno, int *entropy_errno,
			     int *reseed_errno)
{
	if (len != VM_AGENT_SYNC_ACK_LEN)
		return -EPROTO;
	uint32_t e[3];
	for (int i = 0; i < 3; i++) {
		e[i] = get32(p + 4 * i);
		if (e[i] > 4095) /* errno values are small and positive */
			return -EPROTO;
	}
	*clock_errno = (int)e[0];
	*entropy_errno = (int)e[1];
	*reseed_errno = (int)e[2];
	return 0;
}
