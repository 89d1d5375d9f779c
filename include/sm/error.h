/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error reporting shared by every supermachine module (crun style).
 *
 * Library functions take a `struct sm_error *err` out-parameter, return a
 * negative value on failure and fill `err` with an errno value and a message.
 * Callers add context with sm_error_wrap(). Only tools/ prints errors and
 * exits; library code never does.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#define SM_ERROR_MSG_MAX 1024

struct sm_error {
	int errnum;		    /* errno-style code, 0 when none */
	char msg[SM_ERROR_MSG_MAX]; /* human-readable, no trailing newline */
};

/* Record errnum and a formatted message in err (may be NULL). Returns -errnum
 * (or -EIO when errnum is 0), so that `return sm_error_set(...)` works. */
int sm_error_set(struct sm_error *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like sm_error_set, with ": strerror(errnum)" appended to the message. */
int sm_error_errno(struct sm_error *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefix the message already in err with context ("context: old message").
 * Returns -err->errnum (or -EIO). */
int sm_error_wrap(struct sm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reset err to "no error". */
void sm_error_clear(struct sm_error *err);

/* Cleanup helpers: `sm_autofree char *p = ...;`, `sm_autoclose int fd = -1;`. */
static inline void sm_cleanup_free(void *p)
{
	free(*(void **)p);
}
static inline void sm_cleanup_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define sm_autofree  __attribute__((cleanup(sm_cleanup_free)))
#define sm_autoclose __attribute__((cleanup(sm_cleanup_close)))

/* Overflow-safe arithmetic helpers for bounds checks on hostile input. */
#define sm_add_overflow(a, b, res) __builtin_add_overflow((a), (b), (res))
#define sm_mul_overflow(a, b, res) __builtin_mul_overflow((a), (b), (res))

/* Does [off, off+len) lie inside [0, size)? Never overflows. */
static inline int sm_range_ok(unsigned long long off, unsigned long long len,
			      unsigned long long size)
{
	unsigned long long end;
	if (__builtin_add_overflow(off, len, &end))
		return 0;
	return end <= size;
}
