/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sm/error.h"

/* Messages are truncated to SM_ERROR_MSG_MAX on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static int ret_of(int errnum)
{
	return errnum > 0 ? -errnum : -EIO;
}

int sm_error_set(struct sm_error *err, int errnum, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->errnum = errnum;
	}
	return ret_of(errnum);
}

int sm_error_errno(struct sm_error *err, int errnum, const char *fmt, ...)
{
	if (err) {
		char buf[SM_ERROR_MSG_MAX];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		snprintf(err->msg, sizeof(err->msg), "%s: %s", buf, strerror(errnum));
		err->errnum = errnum;
	}
	return ret_of(errnum);
}

int sm_error_wrap(struct sm_error *err, const char *fmt, ...)
{
	if (!err)
		return -EIO;
	char ctx[SM_ERROR_MSG_MAX];
	char old[SM_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s: %s", ctx, old);
	return ret_of(err->errnum);
}

void sm_error_clear(struct sm_error *err)
{
	if (err) {
		err->errnum = 0;
		err->msg[0] = '\0';
	}
}
