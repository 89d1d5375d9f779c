/* SPDX-License-Identifier: Apache-2.0 */
/* sha256/sha512 digests in the OCI "alg:hex" form. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sm/cache.h"

int cache_digest_parse(const char *digest, enum cache_digest_alg *alg, const char **hex,
		       struct sm_error *err)
{
	enum cache_digest_alg a;
	size_t want;
	const char *h;
	if (!digest)
		return sm_error_set(err, EINVAL, "missing digest");
	if (!strncmp(digest, "sha256:", 7)) {
		a = CACHE_DIGEST_SHA256;
		want = 64;
		h = digest + 7;
	} else if (!strncmp(digest, "sha512:", 7)) {
		a = CACHE_DIGEST_SHA512;
		want = 128;
		h = digest + 7;
	} else {
		return sm_error_set(
			err, EINVAL,
			"unsupported digest '%.80s' (only sha256 and sha512 are accepted)", digest);
	}
	size_t n = 0;
	for (; h[n]; n++) {
		char ch = h[n];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) || n > want)
			return sm_error_set(err, EINVAL, "malformed digest '%.150s'", digest);
	}
	if (n != want)
		return sm_error_set(err, EINVAL, "malformed digest '%.150s' (wrong length)",
				    digest);
	if (alg)
		*alg = a;
	if (hex)
		*hex = h;
	return 0;
}

int cache_hash_init(struct cache_hash *h, enum cache_digest_alg alg, struct sm_error *err)
{
	const EVP_MD *md = alg == CACHE_DIGEST_SHA512 ? EVP_sha512() : EVP_sha256();
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	h->ctx = NULL;
	h->alg = alg;
	if (!ctx || EVP_DigestInit_ex(ctx, md, NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return sm_error_set(err, ENOMEM, "cannot initialise digest");
	}
	h->ctx = ctx;
	return 0;
}

void cache_hash_update(struct cache_hash *h, const void *buf, size_t len)
{
	if (h->ctx && len)
		EVP_DigestUpdate(h->ctx, buf, len);
}

void cache_hash_final(struct cache_hash *h, char out[CACHE_DIGEST_MAX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	static const char xd[] = "0123456789abcdef";
	out[0] = '\0';
	if (!h->ctx)
		return;
	EVP_DigestFinal_ex(h->ctx, md, &n);
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
	size_t p = (size_t)snprintf(out, CACHE_DIGEST_MAX,
				    "%s:", h->alg == CACHE_DIGEST_SHA512 ? "sha512" : "sha256");
	for (unsigned i = 0; i < n && p + 2 < CACHE_DIGEST_MAX; i++) {
		out[p++] = xd[md[i] >> 4];
		out[p++] = xd[md[i] & 15];
	}
	out[p] = '\0';
}

void cache_hash_abort(struct cache_hash *h)
{
	if (h->ctx)
		EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

int cache_digest_buf(enum cache_digest_alg alg, const void *buf, size_t len,
		     char out[CACHE_DIGEST_MAX], struct sm_error *err)
{
	struct cache_hash h;
	int r = cache_hash_init(&h, alg, err);
	if (r < 0)
		return r;
	cache_hash_update(&h, buf, len);
	cache_hash_final(&h, out);
	return 0;
}

int cache_digest_file(enum cache_digest_alg alg, const char *path, char out[CACHE_DIGEST_MAX],
		      uint64_t *size, struct sm_error *err)
{
	sm_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot open %s", path);
	struct cache_hash h;
	int r = cache_hash_init(&h, alg, err);
	if (r < 0)
		return r;
	static __thread char buf[1 << 16];
	uint64_t total = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cache_hash_abort(&h);
			return sm_error_errno(err, errno, "cannot read %s", path);
		}
		if (n == 0)
			break;
		cache_hash_update(&h, buf, (size_t)n);
		total += (uint64_t)n;
	}
	cache_hash_final(&h, out);
	if (size)
		*size = total;
	return 0;
}
