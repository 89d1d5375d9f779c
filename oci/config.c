/* SPDX-License-Identifier: Apache-2.0 */
/* Image config blob → run config; chain IDs; platforms. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include <jansson.h>

#include "sm/oci.h"

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

void oci_config_free(struct oci_image_config *cfg)
{
	if (!cfg)
		return;
	strv_free(cfg->entrypoint);
	strv_free(cfg->cmd);
	strv_free(cfg->env);
	strv_free(cfg->exposed_ports);
	strv_free(cfg->diff_ids);
	free(cfg->working_dir);
	free(cfg->user);
	free(cfg->stop_signal);
	free(cfg->os);
	free(cfg->arch);
	free(cfg->variant);
	memset(cfg, 0, sizeof(*cfg));
}

/* An array of strings → NULL-terminated vector. null/absent → *out NULL. */
static int strv_from_json(json_t *a, const char *what, char ***out, size_t *count,
			  struct sm_error *err)
{
	*out = NULL;
	if (count)
		*count = 0;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return sm_error_set(err, EINVAL, "image config: %s is not an array", what);
	size_t n = json_array_size(a);
	if (n > 1u << 20)
		return sm_error_set(err, E2BIG, "image config: %s is too long", what);
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return sm_error_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(a, i));
		if (!s || !(v[i] = strdup(s))) {
			strv_free(v);
			return s ? sm_error_set(err, ENOMEM, "out of memory")
				 : sm_error_set(err, EINVAL,
						"image config: %s[%zu] is not a string", what, i);
		}
	}
	*out = v;
	if (count)
		*count = n;
	return 0;
}

static int str_from_json(json_t *o, const char *key, char **out, struct sm_error *err)
{
	json_t *v = json_object_get(o, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return sm_error_set(err, EINVAL, "image config: %s is not a string", key);
	if (!(*out = strdup(json_string_value(v))))
		return sm_error_set(err, ENOMEM, "out of memory");
	return 0;
}

static int ports_from_json(json_t *o, char ***out, struct sm_error *err)
{
	*out = NULL;
	if (!o || json_is_null(o))
		return 0;
	if (json_is_array(o)) /* our own run-config form */
		return strv_from_json(o, "ExposedPorts", out, NULL, err);
	if (!json_is_object(o))
		return sm_error_set(err, EINVAL, "image config: ExposedPorts is not an object");
	size_t n = json_object_size(o), i = 0;
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return sm_error_set(err, ENOMEM, "out of memory");
	const char *k;
	json_t *val;
	json_object_foreach(o, k, val)
	{
		(void)val;
		if (!(v[i++] = strdup(k))) {
			strv_free(v);
			return sm_error_set(err, ENOMEM, "out of memory");
		}
	}
	*out = v;
	return 0;
}

/* Fields shared by the image config's "config" object and our run config. */
static int runcfg_fields(json_t *c, struct oci_image_config *cfg, struct sm_error *err)
{
	int r;
	if ((r = strv_from_json(json_object_get(c, "Entrypoint"), "Entrypoint", &cfg->entrypoint,
				NULL, err)) < 0 ||
	    (r = strv_from_json(json_object_get(c, "Cmd"), "Cmd", &cfg->cmd, NULL, err)) < 0 ||
	    (r = strv_from_json(json_object_get(c, "Env"), "Env", &cfg->env, NULL, err)) < 0 ||
	    (r = str_from_json(c, "WorkingDir", &cfg->working_dir, err)) < 0 ||
	    (r = str_from_json(c, "User", &cfg->user, err)) < 0 ||
	    (r = str_from_json(c, "StopSignal", &cfg->stop_signal, err)) < 0 ||
	    (r = ports_from_json(json_object_get(c, "ExposedPorts"), &cfg->exposed_ports, err)) < 0)
		return r;
	return 0;
}

int oci_config_parse(const char *json, size_t len, struct oci_image_config *cfg,
		     struct sm_error *err)
{
	json_error_t je;
	int r;
	memset(cfg, 0, sizeof(*cfg));
	json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return sm_error_set(err, EINVAL, "image config is not valid JSON: %s (line %d)",
				    je.text, je.line);
	if (!json_is_object(j)) {
		r = sm_error_set(err, EINVAL, "image config is not a JSON object");
		goto out;
	}
	json_t *c = json_object_get(j, "config");
	if (c && !json_is_null(c)) {
		if (!json_is_object(c)) {
			r = sm_error_set(err, EINVAL, "image config: config is not an object");
			goto out;
		}
		if ((r = runcfg_fields(c, cfg, err)) < 0)
			goto out;
	}
	if ((r = str_from_json(j, "os", &cfg->os, err)) < 0 ||
	    (r = str_from_json(j, "architecture", &cfg->arch, err)) < 0 ||
	    (r = str_from_json(j, "variant", &cfg->variant, err)) < 0)
		goto out;
	json_t *rootfs = json_object_get(j, "rootfs");
	if (!json_is_object(rootfs)) {
		r = sm_error_set(err, EINVAL, "image config has no rootfs object");
		goto out;
	}
	const char *type = json_string_value(json_object_get(rootfs, "type"));
	if (!type || strcmp(type, "layers") != 0) {
		r = sm_error_set(err, EINVAL, "image config: rootfs.type must be \"layers\"");
		goto out;
	}
	r = strv_from_json(json_object_get(rootfs, "diff_ids"), "rootfs.diff_ids", &cfg->diff_ids,
			   &cfg->n_diff_ids, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < cfg->n_diff_ids; i++) {
		r = cache_digest_parse(cfg->diff_ids[i], NULL, NULL, err);
		if (r < 0) {
			sm_error_wrap(err, "image config: diff_ids[%zu]", i);
			goto out;
		}
	}
	r = 0;
out:
	json_decref(j);
	if (r < 0)
		oci_config_free(cfg);
	return r;
}

static json_t *strv_json(char **v)
{
	if (!v)
		return json_null();
	json_t *a = json_array();
	for (char **p = v; *p; p++)
		json_array_append_new(a, json_string(*p));
	return a;
}

static json_t *str_json(const char *s)
{
	return s ? json_string(s) : json_null();
}

char *oci_config_to_json(const struct oci_image_config *cfg)
{
	json_t *o = json_object();
	json_object_set_new(o, "Entrypoint", strv_json(cfg->entrypoint));
	json_object_set_new(o, "Cmd", strv_json(cfg->cmd));
	json_object_set_new(o, "Env", strv_json(cfg->env));
	json_object_set_new(o, "WorkingDir", str_json(cfg->working_dir));
	json_object_set_new(o, "User", str_json(cfg->user));
	json_object_set_new(o, "ExposedPorts", strv_json(cfg->exposed_ports));
	json_object_set_new(o, "StopSignal", str_json(cfg->stop_signal));
	json_object_set_new(o, "os", str_json(cfg->os));
	json_object_set_new(o, "architecture", str_json(cfg->arch));
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

int oci_config_from_json(const char *json, struct oci_image_config *cfg, struct sm_error *err)
{
	json_error_t je;
	memset(cfg, 0, sizeof(*cfg));
	json_t *j = json_loads(json, 0, &je);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return sm_error_set(err, EINVAL, "run config is not a JSON object");
	}
	int r = runcfg_fields(j, cfg, err);
	if (r == 0 && (r = str_from_json(j, "os", &cfg->os, err)) == 0)
		r = str_from_json(j, "architecture", &cfg->arch, err);
	json_decref(j);
	if (r < 0)
		oci_config_free(cfg);
	return r;
}

int oci_chain_id(char *const *diff_ids, size_t n, char out[CACHE_DIGEST_MAX], struct sm_error *err)
{
	if (n == 0) {
		/* an image with no layers: the digest of nothing */
		return cache_digest_buf(CACHE_DIGEST_SHA256, "", 0, out, err);
	}
	snprintf(out, CACHE_DIGEST_MAX, "%s", diff_ids[0]);
	for (size_t i = 1; i < n; i++) {
		char buf[2 * CACHE_DIGEST_MAX + 2];
		int l = snprintf(buf, sizeof(buf), "%s %s", out, diff_ids[i]);
		int r = cache_digest_buf(CACHE_DIGEST_SHA256, buf, (size_t)l, out, err);
		if (r < 0)
			return r;
	}
	return 0;
}

void oci_platform_host(struct oci_platform *p)
{
	struct utsname u;
	memset(p, 0, sizeof(*p));
	snprintf(p->os, sizeof(p->os), "linux");
	char m[32];
	snprintf(m, sizeof(m), "%.31s", uname(&u) == 0 ? u.machine : "x86_64");
	if (!strcmp(m, "x86_64"))
		snprintf(p->arch, sizeof(p->arch), "amd64");
	else if (!strcmp(m, "aarch64")) {
		snprintf(p->arch, sizeof(p->arch), "arm64");
		snprintf(p->variant, sizeof(p->variant), "v8");
	} else if (m[0] == 'i' && !strcmp(m + 2, "86"))
		snprintf(p->arch, sizeof(p->arch), "386");
	else
		memcpy(p->arch, m, sizeof(p->arch) - 1);
}

int oci_platform_parse(const char *s, struct oci_platform *p, struct sm_error *err)
{
	memset(p, 0, sizeof(*p));
	const char *a = strchr(s, '/');
	if (!a || a == s || !a[1])
		return sm_error_set(err, EINVAL, "bad platform '%.60s' (want os/arch[/variant])",
				    s);
	const char *v = strchr(a + 1, '/');
	size_t ol = (size_t)(a - s), al = v ? (size_t)(v - a - 1) : strlen(a + 1);
	if (ol >= sizeof(p->os) || al >= sizeof(p->arch) || al == 0 ||
	    (v && (!v[1] || strlen(v + 1) >= sizeof(p->variant) || strchr(v + 1, '/'))))
		return sm_error_set(err, EINVAL, "bad platform '%.60s' (want os/arch[/variant])",
				    s);
	memcpy(p->os, s, ol);
	memcpy(p->arch, a + 1, al);
	if (v)
		snprintf(p->variant, sizeof(p->variant), "%s", v + 1);
	return 0;
}
