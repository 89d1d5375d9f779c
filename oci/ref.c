/* SPDX-License-Identifier: Apache-2.0 */
/* Image references: name[:tag][@digest], oci:DIR[:tag], docker-archive:FILE. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sm/oci.h"

void oci_ref_free(struct oci_ref *ref)
{
	if (!ref)
		return;
	free(ref->registry);
	free(ref->repository);
	free(ref->tag);
	free(ref->digest);
	free(ref->path);
	memset(ref, 0, sizeof(*ref));
}

static int valid_tag(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > 128)
		return 0;
	if (!(isalnum((unsigned char)t[0]) || t[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
			return 0;
	return 1;
}

/* One path component: [a-z0-9]+ joined by ".", "_", "__" or runs of "-". */
static int valid_component(const char *s, size_t n)
{
	if (n == 0 || (!islower((unsigned char)s[0]) && !isdigit((unsigned char)s[0])))
		return 0;
	if (!(islower((unsigned char)s[n - 1]) || isdigit((unsigned char)s[n - 1])))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (islower((unsigned char)c) || isdigit((unsigned char)c))
			continue;
		if (c == '.' || c == '_') {
			if (c == '_' && i + 1 < n && s[i + 1] == '_')
				i++;
			if (i + 1 < n &&
			    !(islower((unsigned char)s[i + 1]) || isdigit((unsigned char)s[i + 1])))
				return 0;
			continue;
		}
		if (c == '-')
			continue;
		return 0;
	}
	return 1;
}

static int valid_registry(const char *s)
{
	if (!*s || strlen(s) > 255)
		return 0;
	for (const char *p = s; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == ':' ||
		      *p == '[' || *p == ']'))
			return 0;
	return 1;
}

static int dup_into(char **dst, const char *s, size_t n)
{
	*dst = strndup(s, n);
	return *dst ? 0 : -ENOMEM;
}

static int parse_registry_ref(const char *s, struct oci_ref *ref, struct sm_error *err)
{
	const char *at = strchr(s, '@');
	size_t name_len = at ? (size_t)(at - s) : strlen(s);
	if (at) {
		int r = cache_digest_parse(at + 1, NULL, NULL, err);
		if (r < 0)
			return sm_error_wrap(err, "bad reference '%.200s'", s);
		if (dup_into(&ref->digest, at + 1, strlen(at + 1)) < 0)
			return sm_error_set(err, ENOMEM, "out of memory");
	}
	/* tag: after the last ':' that follows the last '/' */
	const char *slash = NULL, *colon = NULL;
	for (const char *p = s; p < s + name_len; p++) {
		if (*p == '/')
			slash = p, colon = NULL;
		else if (*p == ':')
			colon = p;
	}
	const char *first_slash = memchr(s, '/', name_len);
	/* "host:port" with no '/' is a name with a tag, as Docker reads it. */
	if (colon) {
		size_t tl = (size_t)(s + name_len - colon - 1);
		char tag[200];
		if (tl >= sizeof(tag))
			return sm_error_set(err, EINVAL, "bad reference '%.200s': tag too long", s);
		memcpy(tag, colon + 1, tl);
		tag[tl] = '\0';
		if (!valid_tag(tag))
			return sm_error_set(err, EINVAL, "bad reference '%.200s': invalid tag '%s'",
					    s, tag);
		if (dup_into(&ref->tag, tag, tl) < 0)
			return sm_error_set(err, ENOMEM, "out of memory");
		name_len = (size_t)(colon - s);
	}
	(void)slash;
	const char *repo = s;
	size_t repo_len = name_len;
	if (first_slash && first_slash < s + name_len) {
		size_t hl = (size_t)(first_slash - s);
		int is_host = (memchr(s, '.', hl) || memchr(s, ':', hl) ||
			       (hl == 9 && !memcmp(s, "localhost", 9)));
		for (size_t i = 0; i < hl; i++)
			if (isupper((unsigned char)s[i]))
				is_host = 1;
		if (is_host) {
			if (dup_into(&ref->registry, s, hl) < 0)
				return sm_error_set(err, ENOMEM, "out of memory");
			if (!valid_registry(ref->registry))
				return sm_error_set(err, EINVAL,
						    "bad reference '%.200s': invalid registry '%s'",
						    s, ref->registry);
			repo = first_slash + 1;
			repo_len = name_len - hl - 1;
		}
	}
	if (!ref->registry && !(ref->registry = strdup("docker.io")))
		return sm_error_set(err, ENOMEM, "out of memory");
	if (!strcmp(ref->registry, "index.docker.io") ||
	    !strcmp(ref->registry, "registry-1.docker.io")) {
		free(ref->registry);
		if (!(ref->registry = strdup("docker.io")))
			return sm_error_set(err, ENOMEM, "out of memory");
	}
	if (repo_len == 0 || repo_len > 255)
		return sm_error_set(err, EINVAL, "bad reference '%.200s': empty or long name", s);
	for (size_t i = 0, start = 0; i <= repo_len; i++) {
		if (i == repo_len || repo[i] == '/') {
			if (!valid_component(repo + start, i - start))
				return sm_error_set(err, EINVAL,
						    "bad reference '%.200s': invalid repository "
						    "name '%.*s' (lowercase letters, digits and "
						    "separators only)",
						    s, (int)repo_len, repo);
			start = i + 1;
		}
	}
	int add_library = !strcmp(ref->registry, "docker.io") && !memchr(repo, '/', repo_len);
	if (asprintf(&ref->repository, "%s%.*s", add_library ? "library/" : "", (int)repo_len,
		     repo) < 0) {
		ref->repository = NULL;
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	if (!ref->tag && !ref->digest && !(ref->tag = strdup("latest")))
		return sm_error_set(err, ENOMEM, "out of memory");
	return 0;
}

int oci_ref_parse(const char *s, struct oci_ref *ref, struct sm_error *err)
{
	int r;
	memset(ref, 0, sizeof(*ref));
	if (!s || !*s)
		return sm_error_set(err, EINVAL, "empty image reference");
	if (!strncmp(s, "oci:", 4)) {
		const char *rest = s + 4;
		const char *colon = strchr(rest, ':');
		size_t dl = colon ? (size_t)(colon - rest) : strlen(rest);
		ref->kind = OCI_REF_LAYOUT;
		if (dl == 0)
			return sm_error_set(err, EINVAL, "bad reference '%.200s': oci: needs a DIR",
					    s);
		if (dup_into(&ref->path, rest, dl) < 0)
			goto nomem;
		if (colon) {
			if (!colon[1]) {
				oci_ref_free(ref);
				return sm_error_set(err, EINVAL,
						    "bad reference '%.200s': empty tag", s);
			}
			if (!(ref->tag = strdup(colon + 1)))
				goto nomem;
		}
		return 0;
	}
	if (!strncmp(s, "docker-archive:", 15)) {
		ref->kind = OCI_REF_DOCKER_ARCHIVE;
		if (!s[15])
			return sm_error_set(err, EINVAL,
					    "bad reference '%.200s': docker-archive: needs a FILE",
					    s);
		if (!(ref->path = strdup(s + 15)))
			goto nomem;
		return 0;
	}
	if (!strncmp(s, "docker://", 9))
		s += 9;
	ref->kind = OCI_REF_REGISTRY;
	r = parse_registry_ref(s, ref, err);
	if (r < 0)
		oci_ref_free(ref);
	return r;
nomem:
	oci_ref_free(ref);
	return sm_error_set(err, ENOMEM, "out of memory");
}

char *oci_ref_string(const struct oci_ref *ref)
{
	char *out = NULL;
	int n = -1;
	switch (ref->kind) {
	case OCI_REF_LAYOUT:
		n = asprintf(&out, "oci:%s%s%s", ref->path, ref->tag ? ":" : "",
			     ref->tag ? ref->tag : "");
		break;
	case OCI_REF_DOCKER_ARCHIVE:
		n = asprintf(&out, "docker-archive:%s", ref->path);
		break;
	case OCI_REF_REGISTRY:
		n = asprintf(&out, "%s/%s%s%s%s%s", ref->registry, ref->repository,
			     ref->tag ? ":" : "", ref->tag ? ref->tag : "", ref->digest ? "@" : "",
			     ref->digest ? ref->digest : "");
		break;
	}
	return n < 0 ? NULL : out;
}
