/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client (distribution spec v2): ping, Bearer/Basic auth with
 * Docker credentials, manifests/indexes with platform selection, blobs
 * verified by digest and size, retries with backoff (connection errors,
 * 5xx, 429 with Retry-After), resume with Range, bounded parallel layer
 * downloads. Redirects are followed by hand so that Authorization never
 * goes to another host.
 */
#include <ctype.h>
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "sm/oci.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

extern char **environ;

#define MANIFEST_MAX	(4u << 20)
#define TOKEN_MAX	(1u << 20)
#define ERRBODY_MAX	(64u << 10)
#define MAX_REDIRECTS	5
#define RETRY_AFTER_MAX 60

static const char accept_manifests[] =
	"Accept: application/vnd.oci.image.manifest.v1+json, "
	"application/vnd.oci.image.index.v1+json, "
	"application/vnd.docker.distribution.manifest.v2+json, "
	"application/vnd.docker.distribution.manifest.list.v2+json, "
	"application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1, "
	"application/vnd.docker.distribution.manifest.v1+json;q=0.1";

struct reg {
	struct cache *c;
	const struct oci_ref *ref;
	const struct oci_pull_opts *o;
	char base[600]; /* scheme://host[:port] of the registry API */
	char scope[600];
	pthread_mutex_t mu; /* auth state below */
	char *user, *pass;  /* credentials, NULL when none */
	char *auth_header;  /* "Authorization: ..." currently in use, NULL when none */
	int max_retries;
	unsigned base_ms;
	/* progress */
	unsigned layers_done, layers_total;
	uint64_t bytes_done;
	struct timespec last_draw;
};

static void progress(struct reg *r);

/* Redraw the progress line at most ten times a second. */
static void progress_tick(struct reg *r)
{
	struct timespec now;
	if (!r->o->progress)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&r->mu);
	long ms = (now.tv_sec - r->last_draw.tv_sec) * 1000 +
		  (now.tv_nsec - r->last_draw.tv_nsec) / 1000000;
	int draw = ms >= 100;
	if (draw)
		r->last_draw = now;
	pthread_mutex_unlock(&r->mu);
	if (draw)
		progress(r);
}

/* ---- small helpers ---------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static unsigned backoff_ms(const struct reg *r, int attempt)
{
	unsigned ms = r->base_ms;
	for (int i = 0; i < attempt && ms < 10000; i++)
		ms *= 2;
	return ms > 10000 ? 10000 : ms;
}

static int is_local_host(const char *host)
{
	char h[300];
	snprintf(h, sizeof(h), "%s", host);
	if (h[0] == '[') { /* [::1]:port */
		char *e = strchr(h, ']');
		if (e)
			*e = '\0';
		return !strcmp(h + 1, "::1");
	}
	char *colon = strchr(h, ':');
	if (colon)
		*colon = '\0';
	return !strcmp(h, "localhost") || !strncmp(h, "127.", 4);
}

static char *b64(const char *in)
{
	size_t n = strlen(in);
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
	return out;
}

static char *unb64(const char *in)
{
	size_t n = strlen(in);
	unsigned char *out = malloc(n + 1);
	if (!out)
		return NULL;
	int l = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
	if (l < 0) {
		free(out);
		return NULL;
	}
	while (l > 0 && n > 0 && in[n - 1] == '=') { /* DecodeBlock counts padding */
		l--;
		n--;
	}
	out[l] = '\0';
	return (char *)out;
}

/* ---- credentials --------------------------------------------------------------- */

/* Run docker-credential-HELPER get with SERVER on stdin. */
static int cred_helper(const char *helper, const char *server, char **user, char **pass)
{
	char prog[300];
	snprintf(prog, sizeof(prog), "docker-credential-%s", helper);
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return -errno;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	char *argv[] = {prog, (char *)"get", NULL};
	pid_t pid;
	int r = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (r != 0) {
		close(in[1]);
		close(out[0]);
		return -r;
	}
	ssize_t wn = write(in[1], server, strlen(server));
	(void)wn;
	close(in[1]);
	char buf[16384];
	size_t got = 0;
	for (;;) {
		ssize_t n = read(out[0], buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got >= sizeof(buf) - 1)
			break;
	}
	close(out[0]);
	int st;
	waitpid(pid, &st, 0);
	buf[got] = '\0';
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -ENOENT;
	json_t *j = json_loads(buf, 0, NULL);
	const char *u = json_string_value(json_object_get(j, "Username"));
	const char *s = json_string_value(json_object_get(j, "Secret"));
	r = -ENOENT;
	if (u && s) {
		*user = strdup(u);
		*pass = strdup(s);
		r = 0;
	}
	json_decref(j);
	return r;
}

static void load_credentials(struct reg *r)
{
	char path[4096];
	const char *dir = r->o->docker_config ? r->o->docker_config : getenv("DOCKER_CONFIG");
	if (dir && *dir)
		snprintf(path, sizeof(path), "%s/config.json", dir);
	else if (getenv("HOME"))
		snprintf(path, sizeof(path), "%s/.docker/config.json", getenv("HOME"));
	else
		return;
	json_t *j = json_load_file(path, 0, NULL);
	if (!j)
		return;
	const char *host = r->ref->registry;
	const int hub = !strcmp(host, "docker.io");
	char keys[4][320];
	int nk = 0;
	if (hub) {
		snprintf(keys[nk++], sizeof(keys[0]), "https://index.docker.io/v1/");
		snprintf(keys[nk++], sizeof(keys[0]), "index.docker.io");
		snprintf(keys[nk++], sizeof(keys[0]), "registry-1.docker.io");
	} else {
		snprintf(keys[nk++], sizeof(keys[0]), "%s", host);
		snprintf(keys[nk++], sizeof(keys[0]), "https://%s", host);
		snprintf(keys[nk++], sizeof(keys[0]), "http://%s", host);
	}
	snprintf(keys[nk++], sizeof(keys[0]), "%s", host);
	json_t *helpers = json_object_get(j, "credHelpers");
	for (int i = 0; i < nk && !r->user; i++) {
		const char *h = json_string_value(json_object_get(helpers, keys[i]));
		if (h)
			cred_helper(h, keys[i], &r->user, &r->pass);
	}
	json_t *auths = json_object_get(j, "auths");
	for (int i = 0; i < nk && !r->user; i++) {
		json_t *a = json_object_get(auths, keys[i]);
		const char *enc = json_string_value(json_object_get(a, "auth"));
		const char *u = json_string_value(json_object_get(a, "username"));
		const char *p = json_string_value(json_object_get(a, "password"));
		if (enc && *enc) {
			char *dec = unb64(enc);
			char *colon = dec ? strchr(dec, ':') : NULL;
			if (colon) {
				*colon = '\0';
				r->user = strdup(dec);
				r->pass = strdup(colon + 1);
			}
			free(dec);
		} else if (u && p) {
			r->user = strdup(u);
			r->pass = strdup(p);
		}
	}
	const char *store = json_string_value(json_object_get(j, "credsStore"));
	for (int i = 0; store && i < nk && !r->user; i++)
		cred_helper(store, keys[i], &r->user, &r->pass);
	json_decref(j);
}

/* ---- HTTP ----------------------------------------------------------------------- */

struct resp {
	CURL *h;
	long status;
	char *body;
	size_t len, cap, max;
	char www_auth[1024];
	char retry_after[64];
	char location[2048];
	char content_type[256];
	char docker_digest[CACHE_DIGEST_MAX];
	char content_range[128];
	/* blob streaming */
	struct cache_blob_writer *w;
	int64_t expect_size;
	int stream_mode; /* 0 undecided, 1 to writer, 2 to body */
	uint64_t resume_from;
	int too_big;
	struct sm_error *werr;
	struct reg *reg;
};

static void resp_reset(struct resp *p)
{
	free(p->body);
	p->body = NULL;
	p->len = p->cap = 0;
	p->status = 0;
	p->www_auth[0] = p->retry_after[0] = p->location[0] = p->content_type[0] = '\0';
	p->docker_digest[0] = p->content_range[0] = '\0';
	p->stream_mode = 0;
	p->too_big = 0;
}

static size_t on_header(char *b, size_t sz, size_t n, void *ud)
{
	struct resp *p = ud;
	size_t len = sz * n;
	struct {
		const char *name;
		char *dst;
		size_t cap;
	} hs[] = {
		{"www-authenticate:", p->www_auth, sizeof(p->www_auth)},
		{"retry-after:", p->retry_after, sizeof(p->retry_after)},
		{"location:", p->location, sizeof(p->location)},
		{"content-type:", p->content_type, sizeof(p->content_type)},
		{"docker-content-digest:", p->docker_digest, sizeof(p->docker_digest)},
		{"content-range:", p->content_range, sizeof(p->content_range)},
	};
	if (len >= 5 && !strncmp(b, "HTTP/", 5)) { /* a new response (e.g. after 100) */
		p->www_auth[0] = p->retry_after[0] = p->location[0] = '\0';
		return len;
	}
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
		size_t nl = strlen(hs[i].name);
		if (len > nl && !strncasecmp(b, hs[i].name, nl)) {
			const char *v = b + nl;
			size_t vl = len - nl;
			while (vl && (*v == ' ' || *v == '\t'))
				v++, vl--;
			while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
				vl--;
			if (vl >= hs[i].cap)
				vl = hs[i].cap - 1;
			memcpy(hs[i].dst, v, vl);
			hs[i].dst[vl] = '\0';
		}
	}
	return len;
}

static int body_append(struct resp *p, const char *b, size_t len)
{
	if (p->len + len > p->max) {
		p->too_big = 1;
		return -1;
	}
	if (p->len + len + 1 > p->cap) {
		size_t nc = p->cap ? p->cap : 4096;
		while (nc < p->len + len + 1)
			nc *= 2;
		char *nb = realloc(p->body, nc);
		if (!nb)
			return -1;
		p->body = nb;
		p->cap = nc;
	}
	memcpy(p->body + p->len, b, len);
	p->len += len;
	p->body[p->len] = '\0';
	return 0;
}

static size_t on_body(char *b, size_t sz, size_t n, void *ud)
{
	struct resp *p = ud;
	size_t len = sz * n;
	if (p->w && p->stream_mode == 0) {
		long st = 0;
		curl_easy_getinfo(p->h, CURLINFO_RESPONSE_CODE, &st);
		if (st == 206 && p->resume_from > 0) {
			unsigned long long start = 0;
			if (sscanf(p->content_range, "bytes %llu-", &start) != 1 ||
			    start != p->w->written) {
				if (cache_blob_restart(p->w, p->werr) < 0)
					return 0;
				/* a range we did not ask for: take it only from 0 */
				if (start != 0)
					return 0;
			}
			p->stream_mode = 1;
		} else if (st == 200) {
			if (p->w->written > 0 && cache_blob_restart(p->w, p->werr) < 0)
				return 0;
			p->stream_mode = 1;
		} else {
			p->stream_mode = 2;
		}
	}
	if (p->w && p->stream_mode == 1) {
		if (p->expect_size >= 0 && p->w->written + len > (uint64_t)p->expect_size) {
			p->too_big = 1;
			return 0;
		}
		if (cache_blob_write(p->w, b, len, p->werr) < 0)
			return 0;
		if (p->reg) {
			pthread_mutex_lock(&p->reg->mu);
			p->reg->bytes_done += len;
			pthread_mutex_unlock(&p->reg->mu);
			progress_tick(p->reg);
		}
		return len;
	}
	return body_append(p, b, len) < 0 ? 0 : len;
}

/* One HTTP GET without retries. Returns 0 with p->status, or a curl error
 * (>0) for transport failures. */
static int http_once(struct reg *r, const char *url, const char *accept, const char *auth,
		     struct resp *p, char *curlerr)
{
	CURL *h = curl_easy_init();
	if (!h)
		return CURLE_OUT_OF_MEMORY;
	struct curl_slist *hdr = NULL;
	char range[64];
	if (accept)
		hdr = curl_slist_append(hdr, accept);
	if (auth)
		hdr = curl_slist_append(hdr, auth);
	if (p->w && p->w->written > 0) {
		snprintf(range, sizeof(range), "Range: bytes=%llu-",
			 (unsigned long long)p->w->written);
		hdr = curl_slist_append(hdr, range);
	}
	p->resume_from = p->w ? p->w->written : 0;
	p->h = h;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "supermachine/0.1");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, p);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, p);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curlerr);
	if (r->o->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	curlerr[0] = '\0';
	CURLcode cr = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &p->status);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	p->h = NULL;
	if (cr != CURLE_OK && !curlerr[0])
		snprintf(curlerr, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cr));
	return (int)cr;
}

/* key="value" from a challenge. */
static int challenge_param(const char *ch, const char *key, char *out, size_t outsz)
{
	size_t kl = strlen(key);
	for (const char *p = ch; (p = strcasestr(p, key)) != NULL; p += kl) {
		if (p > ch && p[-1] != ' ' && p[-1] != ',')
			continue;
		const char *v = p + kl;
		if (*v != '=')
			continue;
		v++;
		size_t o = 0;
		if (*v == '"') {
			v++;
			while (*v && *v != '"' && o + 1 < outsz)
				out[o++] = *v++;
		} else {
			while (*v && *v != ',' && *v != ' ' && o + 1 < outsz)
				out[o++] = *v++;
		}
		out[o] = '\0';
		return 1;
	}
	return 0;
}

static char *url_escape(const char *s)
{
	return curl_easy_escape(NULL, s, 0);
}

/* Answer a 401 challenge: fetch a token, or set Basic credentials. */
static int authenticate(struct reg *r, const char *challenge, const char *failed_auth,
			struct sm_error *err)
{
	sm_autofree char *es = NULL;
	sm_autofree char *esc = NULL;
	sm_autofree char *enc = NULL;
	pthread_mutex_lock(&r->mu);
	if (r->auth_header && failed_auth && strcmp(r->auth_header, failed_auth)) {
		/* another thread already refreshed it */
		pthread_mutex_unlock(&r->mu);
		return 0;
	}
	int rc = 0;
	if (!strncasecmp(challenge, "Basic", 5)) {
		if (!r->user) {
			rc = sm_error_set(err, EACCES,
					  "registry %s requires authentication; log in (docker "
					  "login) or add credentials to the docker config",
					  r->ref->registry);
			goto out;
		}
		if (failed_auth && !strncmp(failed_auth, "Authorization: Basic", 20)) {
			rc = sm_error_set(err, EACCES,
					  "registry %s rejected the credentials for %s",
					  r->ref->registry, r->user);
			goto out;
		}
		char up[1024];
		snprintf(up, sizeof(up), "%s:%s", r->user, r->pass);
		enc = b64(up);
		free(r->auth_header);
		r->auth_header = NULL;
		if (!enc || asprintf(&r->auth_header, "Authorization: Basic %s", enc) < 0) {
			r->auth_header = NULL;
			rc = sm_error_set(err, ENOMEM, "out of memory");
		}
		goto out;
	}
	if (strncasecmp(challenge, "Bearer", 6) != 0) {
		rc = sm_error_set(err, EACCES, "registry %s: unsupported authentication '%.80s'",
				  r->ref->registry, challenge);
		goto out;
	}
	char realm[1024] = "", service[512] = "", scope[700] = "";
	if (!challenge_param(challenge, "realm", realm, sizeof(realm)) || !realm[0]) {
		rc = sm_error_set(err, EACCES, "registry %s: Bearer challenge without realm",
				  r->ref->registry);
		goto out;
	}
	if (strncmp(realm, "https://", 8) && strncmp(realm, "http://", 7)) {
		rc = sm_error_set(err, EACCES, "registry %s: bad token realm '%.100s'",
				  r->ref->registry, realm);
		goto out;
	}
	challenge_param(challenge, "service", service, sizeof(service));
	if (!challenge_param(challenge, "scope", scope, sizeof(scope)) || !scope[0])
		snprintf(scope, sizeof(scope), "%s", r->scope);
	es = url_escape(service);
	esc = url_escape(scope);
	char url[3000];
	snprintf(url, sizeof(url), "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?",
		 es ? es : "", esc ? esc : "");
	char basic[1200] = "";
	if (r->user) {
		char up[1024];
		snprintf(up, sizeof(up), "%s:%s", r->user, r->pass);
		enc = b64(up);
		snprintf(basic, sizeof(basic), "Authorization: Basic %s", enc ? enc : "");
	}
	struct resp p = {.max = TOKEN_MAX};
	char cerr[CURL_ERROR_SIZE];
	int attempt = 0;
	for (;; attempt++) {
		resp_reset(&p);
		int cr = http_once(r, url, "Accept: application/json", basic[0] ? basic : NULL, &p,
				   cerr);
		if ((cr == 0 && p.status < 500 && p.status != 429) || attempt >= r->max_retries) {
			if (cr != 0) {
				rc = sm_error_set(err, EIO, "token server %s: %s", realm, cerr);
				goto out_p;
			}
			break;
		}
		sleep_ms(backoff_ms(r, attempt));
	}
	if (p.status != 200) {
		rc = sm_error_set(err, EACCES, "token server %s refused (HTTP %ld)%s", realm,
				  p.status,
				  r->user ? "" : "; anonymous access denied, log in first");
		goto out_p;
	}
	json_t *j = json_loadb(p.body ? p.body : "", p.len, 0, NULL);
	const char *tok = json_string_value(json_object_get(j, "token"));
	if (!tok)
		tok = json_string_value(json_object_get(j, "access_token"));
	if (!tok || !*tok || strpbrk(tok, "\r\n")) {
		rc = sm_error_set(err, EACCES, "token server %s returned no token", realm);
	} else {
		free(r->auth_header);
		if (asprintf(&r->auth_header, "Authorization: Bearer %s", tok) < 0) {
			r->auth_header = NULL;
			rc = sm_error_set(err, ENOMEM, "out of memory");
		}
	}
	json_decref(j);
out_p:
	resp_reset(&p);
out:
	pthread_mutex_unlock(&r->mu);
	return rc;
}

static const char *registry_error(struct resp *p, char *buf, size_t sz)
{
	buf[0] = '\0';
	json_t *j = p->body ? json_loadb(p->body, p->len, 0, NULL) : NULL;
	json_t *e = json_array_get(json_object_get(j, "errors"), 0);
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	if (code || msg)
		snprintf(buf, sz, ": %s%s%s", code ? code : "", code && msg ? " " : "",
			 msg ? msg : "");
	json_decref(j);
	return buf;
}

static int same_origin(const char *base, const char *url)
{
	size_t bl = strlen(base);
	return !strncmp(url, base, bl) && (url[bl] == '/' || url[bl] == '\0');
}

/* GET PATH (relative to the registry's /v2/) with auth, redirects and
 * retries. Into p->body, or into p->w for blobs. */
static int reg_get(struct reg *r, const char *path, const char *accept, struct resp *p,
		   struct sm_error *err)
{
	char url[4096];
	snprintf(url, sizeof(url), "%s/v2/%s", r->base, path);
	int redirects = 0, auth_tries = 0;
	char cerr[CURL_ERROR_SIZE];
	for (int attempt = 0;;) {
		int origin = same_origin(r->base, url);
		char auth[4096] = "";
		pthread_mutex_lock(&r->mu);
		if (origin && r->auth_header)
			snprintf(auth, sizeof(auth), "%s", r->auth_header);
		pthread_mutex_unlock(&r->mu);
		resp_reset(p);
		int cr = http_once(r, url, accept, auth[0] ? auth : NULL, p, cerr);
		if (p->too_big)
			return sm_error_set(err, EFBIG, "%s: response larger than %s", path,
					    p->w ? "the declared size" : "allowed");
		if (cr == CURLE_WRITE_ERROR && p->werr && p->werr->errnum)
			return -p->werr->errnum;
		if (cr != 0) {
			if (attempt++ >= r->max_retries)
				return sm_error_set(err, EIO, "%s: %s (gave up after %d attempts)",
						    url, cerr, attempt);
			sleep_ms(backoff_ms(r, attempt - 1));
			continue;
		}
		long st = p->status;
		if (st == 200 || (st == 206 && p->w))
			return 0;
		if (st == 401 && origin && auth_tries < 2) {
			auth_tries++;
			if (!p->www_auth[0])
				return sm_error_set(err, EACCES, "%s: HTTP 401 without a challenge",
						    url);
			int rc = authenticate(r, p->www_auth, auth[0] ? auth : NULL, err);
			if (rc < 0)
				return rc;
			continue;
		}
		if (st >= 300 && st < 400 && st != 304 && p->location[0]) {
			if (++redirects > MAX_REDIRECTS)
				return sm_error_set(err, ELOOP, "%s: too many redirects", path);
			char next[4096];
			if (!strncmp(p->location, "http://", 7) ||
			    !strncmp(p->location, "https://", 8))
				snprintf(next, sizeof(next), "%s", p->location);
			else if (p->location[0] == '/') {
				/* path-absolute: same scheme://host as the current URL */
				const char *hs = strstr(url, "://");
				const char *pe = hs ? strchr(hs + 3, '/') : NULL;
				int hl = pe ? (int)(pe - url) : (int)strlen(url);
				snprintf(next, sizeof(next), "%.*s%s", hl, url, p->location);
			} else {
				return sm_error_set(err, EPROTO,
						    "%s: unsupported redirect '%.100s'", path,
						    p->location);
			}
			if (!strncmp(url, "https://", 8) && strncmp(next, "https://", 8) &&
			    !r->o->insecure)
				return sm_error_set(err, EPERM,
						    "%s: refusing redirect from https to "
						    "%.100s",
						    path, next);
			snprintf(url, sizeof(url), "%s", next);
			continue;
		}
		if (st == 429 || st >= 500) {
			if (attempt++ >= r->max_retries) {
				char eb[300];
				return sm_error_set(
					err, EIO, "%s: HTTP %ld%s (gave up after %d attempts)", url,
					st, registry_error(p, eb, sizeof(eb)), attempt);
			}
			unsigned ms = backoff_ms(r, attempt - 1);
			if (p->retry_after[0] && isdigit((unsigned char)p->retry_after[0])) {
				long s = strtol(p->retry_after, NULL, 10);
				if (s > RETRY_AFTER_MAX)
					s = RETRY_AFTER_MAX;
				ms = (unsigned)s * 1000u;
			}
			sleep_ms(ms);
			continue;
		}
		char eb[300];
		registry_error(p, eb, sizeof(eb));
		if (st == 401 || st == 403)
			return sm_error_set(err, EACCES, "%s: access denied (HTTP %ld)%s", url, st,
					    eb);
		if (st == 404)
			return sm_error_set(err, ENOENT, "%s: not found (HTTP 404)%s", url, eb);
		return sm_error_set(err, EPROTO, "%s: unexpected HTTP %ld%s", url, st, eb);
	}
}

/* ---- blobs and manifests ------------------------------------------------------- */

static int fetch_blob(void *ctx, const char *digest, int64_t size, struct sm_error *err)
{
	struct reg *r = ctx;
	if (cache_blob_has(r->c, digest, size))
		return 0;
	struct cache_blob_writer w;
	struct sm_error werr = {0};
	int rc = cache_blob_begin(r->c, digest, &w, err);
	if (rc < 0)
		return rc;
	struct resp p = {.max = ERRBODY_MAX, .w = &w, .expect_size = size, .werr = &werr, .reg = r};
	char path[1200];
	snprintf(path, sizeof(path), "%s/blobs/%s", r->ref->repository, digest);
	rc = reg_get(r, path, NULL, &p, err);
	resp_reset(&p);
	if (rc < 0) {
		if (werr.errnum && err)
			*err = werr;
		cache_blob_abort(&w);
		return sm_error_wrap(err, "blob %s", digest);
	}
	rc = cache_blob_commit(&w, digest, size, err);
	if (rc < 0)
		return sm_error_wrap(err, "%s/%s", r->ref->registry, r->ref->repository);
	return 0;
}

/* Fetch manifest REFERENCE (tag or digest), verify, store; *digest out. */
/* Is the manifest BODY an index (*is_index)? Schema 1 and non-objects are refused. */
static int manifest_kind(struct reg *r, const char *reference, const char *body, size_t len,
			 int *is_index, struct sm_error *err)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return sm_error_set(err, EINVAL, "manifest %s is not a JSON object", reference);
	}
	json_t *sv = json_object_get(j, "schemaVersion");
	int schema1 = json_is_integer(sv) && json_integer_value(sv) == 1;
	*is_index = json_is_array(json_object_get(j, "manifests"));
	json_decref(j);
	if (schema1)
		return sm_error_set(
			err, ENOTSUP,
			"%s/%s:%s is a Docker schema 1 manifest, which is deprecated and "
			"not supported; push the image again with a current tool",
			r->ref->registry, r->ref->repository, reference);
	return 0;
}

/* The manifest REFERENCE (a tag or a digest) into the cache; *digest gets its
 * digest. SIZE: its size when an index named it, else -1. */
static int fetch_manifest(struct reg *r, const char *reference, int64_t size, char **digest,
			  int *is_index, struct sm_error *err)
{
	enum cache_digest_alg alg = CACHE_DIGEST_SHA256;
	int by_digest = cache_digest_parse(reference, &alg, NULL, NULL) == 0;
	if (by_digest && cache_blob_has(r->c, reference, size)) {
		/* Content-addressed and already here (cache_blob_read checks the
		 * digest again): no request. A tag always asks the registry. */
		sm_autofree char *buf = NULL;
		size_t len;
		int rc = cache_blob_read(r->c, reference, MANIFEST_MAX, &buf, &len, err);
		if (rc == 0)
			rc = manifest_kind(r, reference, buf, len, is_index, err);
		if (rc == 0 && !(*digest = strdup(reference)))
			rc = sm_error_set(err, ENOMEM, "out of memory");
		return rc;
	}
	struct resp p = {.max = MANIFEST_MAX};
	char path[1200];
	snprintf(path, sizeof(path), "%s/manifests/%s", r->ref->repository, reference);
	int rc = reg_get(r, path, accept_manifests, &p, err);
	if (rc < 0)
		goto out;
	if (strstr(p.content_type, "distribution.manifest.v1")) {
		rc = sm_error_set(err, ENOTSUP,
				  "%s/%s:%s is a Docker schema 1 manifest, which is deprecated and "
				  "not supported; push the image again with a current tool",
				  r->ref->registry, r->ref->repository, reference);
		goto out;
	}
	char d[CACHE_DIGEST_MAX];
	cache_digest_buf(alg, p.body ? p.body : "", p.len, d, NULL);
	if (by_digest && strcmp(d, reference)) {
		rc = sm_error_set(err, EBADMSG, "manifest %s: content hashes to %s", reference, d);
		goto out;
	}
	if (!by_digest && p.docker_digest[0] && !strncmp(p.docker_digest, "sha256:", 7) &&
	    strcmp(p.docker_digest, d)) {
		rc = sm_error_set(err, EBADMSG,
				  "manifest %s: content hashes to %s but the registry says %s",
				  reference, d, p.docker_digest);
		goto out;
	}
	rc = manifest_kind(r, reference, p.body ? p.body : "", p.len, is_index, err);
	if (rc < 0)
		goto out;
	if (!cache_blob_has(r->c, d, (int64_t)p.len)) {
		struct cache_blob_writer w;
		if ((rc = cache_blob_begin(r->c, d, &w, err)) < 0)
			goto out;
		if ((rc = cache_blob_write(&w, p.body ? p.body : "", p.len, err)) < 0) {
			cache_blob_abort(&w);
			goto out;
		}
		if ((rc = cache_blob_commit(&w, d, (int64_t)p.len, err)) < 0)
			goto out;
	}
	if (!(*digest = strdup(d)))
		rc = sm_error_set(err, ENOMEM, "out of memory");
out:
	resp_reset(&p);
	return rc;
}

/* ---- parallel layer downloads ----------------------------------------------------- */

struct pool {
	struct reg *r;
	const struct oci_image *img;
	pthread_mutex_t mu;
	size_t next;
	int failed;
	struct sm_error err;
};

static void progress(struct reg *r)
{
	if (!r->o->progress)
		return;
	pthread_mutex_lock(&r->mu);
	fprintf(stderr, "\r%s/%s: %u/%u layers, %.1f MiB", r->ref->registry, r->ref->repository,
		r->layers_done, r->layers_total, (double)r->bytes_done / (1024.0 * 1024.0));
	if (r->layers_done == r->layers_total)
		fputc('\n', stderr);
	fflush(stderr);
	pthread_mutex_unlock(&r->mu);
}

static void *worker(void *arg)
{
	struct pool *pl = arg;
	for (;;) {
		pthread_mutex_lock(&pl->mu);
		size_t i = pl->next++;
		int stop = pl->failed || i >= pl->img->n_layers;
		pthread_mutex_unlock(&pl->mu);
		if (stop)
			return NULL;
		struct sm_error e = {0};
		const struct oci_layer *l = &pl->img->layers[i];
		if (fetch_blob(pl->r, l->digest, l->size, &e) < 0) {
			pthread_mutex_lock(&pl->mu);
			if (!pl->failed) {
				pl->failed = 1;
				pl->err = e;
			}
			pthread_mutex_unlock(&pl->mu);
			return NULL;
		}
		pthread_mutex_lock(&pl->r->mu);
		pl->r->layers_done++;
		pthread_mutex_unlock(&pl->r->mu);
		progress(pl->r);
	}
}

static int fetch_layers(struct reg *r, const struct oci_image *img, struct sm_error *err)
{
	struct pool pl = {.r = r, .img = img};
	pthread_mutex_init(&pl.mu, NULL);
	int n = r->o->parallel > 0 ? r->o->parallel : 3;
	if ((size_t)n > img->n_layers)
		n = (int)img->n_layers;
	r->layers_total = (unsigned)img->n_layers;
	pthread_t th[32];
	int started = 0;
	for (int i = 0; i < n && i < 32; i++) {
		if (pthread_create(&th[i], NULL, worker, &pl) != 0)
			break;
		started++;
	}
	if (started == 0 && img->n_layers > 0)
		worker(&pl);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&pl.mu);
	if (pl.failed) {
		if (err)
			*err = pl.err;
		return -(pl.err.errnum ? pl.err.errnum : EIO);
	}
	return 0;
}

/* ---- entry point ------------------------------------------------------------------ */

static void curl_global_init_void(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int oci_registry_pull(struct cache *c, const struct oci_ref *ref, const struct oci_pull_opts *opts,
		      struct oci_image *img, struct sm_error *err)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	static struct oci_pull_opts defopts;
	struct reg r = {.c = c, .ref = ref, .o = opts ? opts : &defopts};
	struct oci_platform plat;
	sm_autofree char *md = NULL;
	int rc;
	memset(img, 0, sizeof(*img));
	pthread_once(&once, curl_global_init_void);
	pthread_mutex_init(&r.mu, NULL);
	r.max_retries = r.o->max_retries < 0 ? 0 : r.o->max_retries ? r.o->max_retries : 5;
	r.base_ms = r.o->retry_base_ms ? r.o->retry_base_ms : 200;
	const char *host =
		!strcmp(ref->registry, "docker.io") ? "registry-1.docker.io" : ref->registry;
	int plain = r.o->insecure || is_local_host(host);
	snprintf(r.base, sizeof(r.base), "%s://%s", plain ? "http" : "https", host);
	snprintf(r.scope, sizeof(r.scope), "repository:%s:pull", ref->repository);
	if (r.o->platform.os[0])
		plat = r.o->platform;
	else
		oci_platform_host(&plat);
	load_credentials(&r);

	/* No /v2/ ping first (containerd does without one too): the first
	 * request's 401 carries the same challenge and reg_get() answers it.
	 * One round trip less per pull; a cache hit of a tag makes just one. */
	int is_index = 0;
	rc = fetch_manifest(&r, ref->digest ? ref->digest : ref->tag, -1, &md, &is_index, err);
	for (int depth = 0; rc == 0 && is_index && depth < 4; depth++) {
		sm_autofree char *buf = NULL;
		size_t len;
		char *next;
		int64_t sz;
		if ((rc = cache_blob_read(c, md, MANIFEST_MAX, &buf, &len, err)) < 0)
			break;
		if ((rc = oci_index_select(buf, len, &plat, &next, &sz, err)) < 0) {
			sm_error_wrap(err, "%s/%s", ref->registry, ref->repository);
			break;
		}
		free(md);
		md = NULL;
		rc = fetch_manifest(&r, next, sz, &md, &is_index, err);
		free(next);
	}
	if (rc < 0)
		goto out;
	if (is_index) {
		rc = sm_error_set(err, ELOOP, "image indexes nested too deeply");
		goto out;
	}
	rc = oci_image_from_manifest(c, md, fetch_blob, &r, img, err);
	if (rc < 0)
		goto out;
	rc = fetch_layers(&r, img, err);
	if (rc < 0)
		oci_image_free(img);
out:
	pthread_mutex_destroy(&r.mu);
	free(r.user);
	free(r.pass);
	free(r.auth_header);
	if (rc < 0 && err && !strstr(err->msg, ref->repository))
		sm_error_wrap(err, "pulling %s/%s", ref->registry, ref->repository);
	return rc;
}
