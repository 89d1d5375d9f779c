/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal worker pool for parallel (de)compression of memory frames, and
 * full-range pread/pwrite helpers. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

struct fmt_pool {
	unsigned nthreads; /* extra threads; the caller is worker 0 */
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t work_cv, done_cv;
	uint64_t gen;
	uint64_t n, next;
	unsigned active;
	int stop;
	void (*fn)(void *, uint64_t, unsigned);
	void *ctx;
};

struct worker_arg {
	struct fmt_pool *p;
	unsigned id;
};

static void *worker_main(void *arg)
{
	struct worker_arg *wa = arg;
	struct fmt_pool *p = wa->p;
	unsigned id = wa->id;
	free(wa);
	uint64_t seen = 0;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->gen == seen)
			pthread_cond_wait(&p->work_cv, &p->mu);
		if (p->stop)
			break;
		seen = p->gen;
		p->active++;
		while (p->next < p->n) {
			uint64_t i = p->next++;
			pthread_mutex_unlock(&p->mu);
			p->fn(p->ctx, i, id);
			pthread_mutex_lock(&p->mu);
		}
		if (--p->active == 0)
			pthread_cond_broadcast(&p->done_cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int fmt_pool_create(struct fmt_pool **out, unsigned threads, struct sm_error *err)
{
	struct fmt_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return sm_error_errno(err, ENOMEM, "cannot allocate worker pool");
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work_cv, NULL);
	pthread_cond_init(&p->done_cv, NULL);
	unsigned extra = threads > 1 ? threads - 1 : 0;
	p->th = calloc(extra ? extra : 1, sizeof(pthread_t));
	if (!p->th) {
		fmt_pool_free(p);
		return sm_error_errno(err, ENOMEM, "cannot allocate worker pool");
	}
	for (unsigned i = 0; i < extra; i++) {
		struct worker_arg *wa = malloc(sizeof(*wa));
		int r = ENOMEM;
		if (wa) {
			wa->p = p;
			wa->id = i + 1;
			r = pthread_create(&p->th[i], NULL, worker_main, wa);
		}
		if (r != 0) {
			free(wa);
			fmt_pool_free(p);
			return sm_error_errno(err, r, "cannot start compression thread");
		}
		p->nthreads++;
	}
	*out = p;
	return 0;
}

void fmt_pool_run(struct fmt_pool *p, uint64_t n, void (*fn)(void *, uint64_t, unsigned), void *ctx)
{
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->ctx = ctx;
	p->n = n;
	p->next = 0;
	p->gen++;
	pthread_cond_broadcast(&p->work_cv);
	while (p->next < p->n) {
		uint64_t i = p->next++;
		pthread_mutex_unlock(&p->mu);
		fn(ctx, i, 0);
		pthread_mutex_lock(&p->mu);
	}
	while (p->active > 0)
		pthread_cond_wait(&p->done_cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void fmt_pool_free(struct fmt_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work_cv);
	pthread_cond_destroy(&p->done_cv);
	free(p->th);
	free(p);
}

int fmt_pread_full(int fd, void *buf, size_t len, uint64_t off, const char *what,
		   struct sm_error *err)
{
	unsigned char *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return sm_error_errno(err, errno, "cannot read %s at offset %llu", what,
					      (unsigned long long)off);
		}
		if (n == 0)
			return sm_error_set(err, EBADMSG, "file truncated: %s at offset %llu", what,
					    (unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int fmt_pwrite_full(int fd, const void *buf, size_t len, uint64_t off, struct sm_error *err)
{
	const unsigned char *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return sm_error_errno(err, errno, "cannot write at offset %llu",
					      (unsigned long long)off);
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}
