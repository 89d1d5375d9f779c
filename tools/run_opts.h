/* SPDX-License-Identifier: Apache-2.0 */
/* Options shared by the tools: how CMD runs in the guest (--env, --user,
 * the default environment) and where the guest agent is. Messages name TOOL. */
#pragma once
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The static guest agent: $SM_AGENT, else ../agent/sminit next to this
 * program (the build tree's layout). malloc'ed, NULL when unknown. */
static inline char *sm_opt_default_agent(void)
{
	const char *env = getenv("SM_AGENT");
	if (env && *env)
		return strdup(env);
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return NULL;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	char *out = NULL;
	if (asprintf(&out, "%s/../agent/sminit", self) < 0)
		return NULL;
	return out;
}

/* --env K=V: append V to env (sized for every argument). 0, or -1 after
 * printing why. */
static inline int sm_opt_env(const char *tool, const char *v, const char **env, uint32_t *envc)
{
	if (!strchr(v, '=')) {
		fprintf(stderr, "%s: --env wants K=V, got '%s'\n", tool, v);
		return -1;
	}
	env[(*envc)++] = v;
	return 0;
}

/* --user UID[:GID] (GID defaults to UID). 0, or -1 after printing why. */
static inline int sm_opt_user(const char *tool, const char *v, unsigned long *uid,
			      unsigned long *gid)
{
	char *end;
	errno = 0;
	*uid = strtoul(v, &end, 10);
	*gid = *uid;
	if (*end == ':')
		*gid = strtoul(end + 1, &end, 10);
	if (errno || *end || end == v || *uid > 0xfffffffe || *gid > 0xfffffffe) {
		fprintf(stderr, "%s: bad --user '%s' (want UID[:GID])\n", tool, v);
		return -1;
	}
	return 0;
}

/* No --env given: PATH and HOME, as a login shell would have them. */
static inline void sm_opt_default_env(const char **env, uint32_t *envc)
{
	if (*envc == 0) {
		env[(*envc)++] =
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
		env[(*envc)++] = "HOME=/root";
	}
}
