/* SPDX-License-Identifier: Apache-2.0 */
/* Guest RAM filled on first touch from the snapshot's compressed memory
 * section through userfaultfd (see restore/uffd.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "sm/format.h"
#include "sm/vm.h"
#include "uffd.h"

#define PAGE	    ((uint64_t)FMT_PAGE_SIZE)
#define BLOCK_BYTES (RESTORE_UFFD_BLOCK_PAGES * PAGE)

struct restore_uffd {
	struct fmt_reader *r;
	int uffd, stop_fd;
	uint8_t *ram;
	uint64_t size, nblocks;
	uint8_t *filled; /* one byte per block; handler thread only */
	uint8_t *buf;	 /* one block of staging for UFFDIO_COPY */
	pthread_t thread;
	int started;
	pthread_mutex_t lock; /* vm, failed, err, st */
	struct vm *vm;
	int detached; /* restore_uffd_attach(NULL): the VM and its RAM are going away */
	int failed;
	struct sm_error err;
	struct restore_uffd_stats st;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* UFFDIO_COPY of LEN bytes from SRC to DST (inside the registered range),
 * waking the faulting threads. Retries on EAGAIN and continues after a
 * partial copy. -errno on failure; EEXIST (already there) counts as done. */
static int uffd_copy(int fd, uint8_t *dst, const uint8_t *src, uint64_t len)
{
	uint64_t done = 0;
	while (done < len) {
		struct uffdio_copy c = {.dst = (uint64_t)(uintptr_t)(dst + done),
					.src = (uint64_t)(uintptr_t)(src + done),
					.len = len - done};
		if (ioctl(fd, UFFDIO_COPY, &c) == 0)
			return 0;
		int e = errno;
		if (c.copy > 0) {
			done += (uint64_t)c.copy;
			continue;
		}
		if (e == EAGAIN || e == EINTR)
			continue;
		if (e == EEXIST) /* a page of the run is already mapped: skip it */
			done += PAGE;
		else
			return -e;
	}
	return 0;
}

static int uffd_zero(int fd, uint8_t *dst, uint64_t len)
{
	uint64_t done = 0;
	while (done < len) {
		struct uffdio_zeropage z = {
			.range = {.start = (uint64_t)(uintptr_t)(dst + done), .len = len - done}};
		if (ioctl(fd, UFFDIO_ZEROPAGE, &z) == 0)
			return 0;
		int e = errno;
		if (z.zeropage > 0) {
			done += (uint64_t)z.zeropage;
			continue;
		}
		if (e == EAGAIN || e == EINTR)
			continue;
		if (e == EEXIST)
			done += PAGE;
		else
			return -e;
	}
	return 0;
}

static void uffd_wake(int fd, uint8_t *start, uint64_t len)
{
	struct uffdio_range w = {.start = (uint64_t)(uintptr_t)start, .len = len};
	ioctl(fd, UFFDIO_WAKE, &w);
}

static void record_failure(struct restore_uffd *u, const struct sm_error *e)
{
	pthread_mutex_lock(&u->lock);
	/* Once the VM is being torn down its RAM is unmapped under a fill in
	 * flight: UFFDIO_COPY/ZEROPAGE then fail with ENOENT (no mapping) or
	 * ESRCH (no mm). Nobody reads that memory any more: not a failure of
	 * the restore, whose command has already finished. */
	int gone = u->detached && (e->errnum == ENOENT || e->errnum == ESRCH);
	if (!u->failed && !gone) {
		u->failed = 1;
		u->err = *e;
	}
	if (u->vm) /* under the lock: attach(NULL) waits for this */
		vm_stop(u->vm);
	pthread_mutex_unlock(&u->lock);
}

/* Fill block B: runs of stored pages by UFFDIO_COPY, runs of pages the
 * snapshot does not store by UFFDIO_ZEROPAGE. */
static int fill_block(struct restore_uffd *u, uint64_t b, uint64_t *copied, uint64_t *zeroed,
		      struct sm_error *err)
{
	uint64_t base = b * BLOCK_BYTES;
	uint64_t n = (u->size - base) / PAGE;
	if (n > RESTORE_UFFD_BLOCK_PAGES)
		n = RESTORE_UFFD_BLOCK_PAGES;
	uint8_t present[RESTORE_UFFD_BLOCK_PAGES];
	for (uint64_t i = 0; i < n; i++) {
		int p = fmt_reader_mem_present(u->r, base + i * PAGE, err);
		if (p < 0)
			return p;
		present[i] = (uint8_t)p;
	}
	for (uint64_t i = 0; i < n;) {
		uint64_t j = i + 1;
		while (j < n && present[j] == present[i])
			j++;
		uint8_t *dst = u->ram + base + i * PAGE;
		uint64_t len = (j - i) * PAGE;
		int r;
		if (present[i]) {
			for (uint64_t k = i; k < j; k++) {
				r = fmt_reader_mem_page(u->r, base + k * PAGE, u->buf + k * PAGE,
							err);
				if (r < 0)
					return r;
			}
			r = uffd_copy(u->uffd, dst, u->buf + i * PAGE, len);
			if (r < 0)
				return sm_error_errno(err, -r, "UFFDIO_COPY at guest 0x%llx",
						      (unsigned long long)(base + i * PAGE));
			*copied += j - i;
		} else {
			r = uffd_zero(u->uffd, dst, len);
			if (r < 0)
				return sm_error_errno(err, -r, "UFFDIO_ZEROPAGE at guest 0x%llx",
						      (unsigned long long)(base + i * PAGE));
			*zeroed += j - i;
		}
		i = j;
	}
	return 0;
}

static void on_fault(struct restore_uffd *u, uint64_t addr)
{
	uint64_t start = (uint64_t)(uintptr_t)u->ram;
	if (addr < start || addr - start >= u->size)
		return; /* not ours: cannot happen with one registered range */
	uint64_t b = (addr - start) / BLOCK_BYTES;
	if (u->filled[b]) {
		/* Raced with the fill of its block: just let it go on. */
		uffd_wake(u->uffd, u->ram + (addr - start) / PAGE * PAGE, PAGE);
		return;
	}
	double t0 = now_ms();
	uint64_t copied = 0, zeroed = 0;
	struct sm_error e = {0};
	int r = fill_block(u, b, &copied, &zeroed, &e);
	if (r < 0) {
		sm_error_wrap(&e, "lazy guest memory (block at guest 0x%llx)",
			      (unsigned long long)(b * BLOCK_BYTES));
		record_failure(u, &e);
		/* Never leave a thread waiting: zeroes for the rest, then wake. */
		uint64_t base = b * BLOCK_BYTES;
		uint64_t len = u->size - base < BLOCK_BYTES ? u->size - base : BLOCK_BYTES;
		uffd_zero(u->uffd, u->ram + base, len);
		uffd_wake(u->uffd, u->ram + base, len);
	}
	u->filled[b] = 1;
	pthread_mutex_lock(&u->lock);
	u->st.blocks++;
	u->st.copied_pages += copied;
	u->st.zero_pages += zeroed;
	u->st.fill_ms += now_ms() - t0;
	pthread_mutex_unlock(&u->lock);
}

static void *handler(void *arg)
{
	struct restore_uffd *u = arg;
	struct uffd_msg msgs[16];
	for (;;) {
		struct pollfd p[2] = {{.fd = u->uffd, .events = POLLIN},
				      {.fd = u->stop_fd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			struct sm_error e = {0};
			sm_error_errno(&e, errno, "lazy guest memory: poll");
			record_failure(u, &e);
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		if (!(p[0].revents & POLLIN))
			continue;
		ssize_t n = read(u->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			struct sm_error e = {0};
			sm_error_errno(&e, errno, "lazy guest memory: read userfaultfd");
			record_failure(u, &e);
			return NULL;
		}
		size_t count = (size_t)n / sizeof(msgs[0]);
		pthread_mutex_lock(&u->lock);
		u->st.faults += count;
		pthread_mutex_unlock(&u->lock);
		for (size_t i = 0; i < count; i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				on_fault(u, msgs[i].arg.pagefault.address);
	}
}

static void uffd_free(struct restore_uffd *u)
{
	if (u->uffd >= 0)
		close(u->uffd);
	if (u->stop_fd >= 0)
		close(u->stop_fd);
	free(u->filled);
	free(u->buf);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

int restore_uffd_start(struct fmt_reader *r, uint64_t mem_size, struct restore_uffd **out,
		       void **ram, struct sm_error *err)
{
	*out = NULL;
	*ram = NULL;
	struct fmt_mem_info mi;
	int ret = fmt_reader_mem_info(r, &mi, err);
	if (ret < 0)
		return ret;
	if (mi.mem_size != mem_size || mem_size == 0 || mem_size % PAGE)
		return sm_error_set(err, EINVAL,
				    "memory section holds %llu bytes, the VM state says %llu",
				    (unsigned long long)mi.mem_size, (unsigned long long)mem_size);
	struct restore_uffd *u = calloc(1, sizeof(*u));
	if (!u)
		return sm_error_set(err, ENOMEM, "out of memory");
	pthread_mutex_init(&u->lock, NULL);
	u->r = r;
	u->size = mem_size;
	u->uffd = u->stop_fd = -1;
	u->nblocks = (mem_size + BLOCK_BYTES - 1) / BLOCK_BYTES;
	u->filled = calloc(u->nblocks, 1);
	u->buf = aligned_alloc(PAGE, BLOCK_BYTES);
	if (!u->filled || !u->buf) {
		uffd_free(u);
		return sm_error_set(err, ENOMEM, "out of memory");
	}
	u->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (u->uffd < 0) {
		int e = errno;
		uffd_free(u);
		if (e == EPERM)
			return sm_error_errno(err, e,
					      "userfaultfd (needs CAP_SYS_PTRACE, or the sysctl "
					      "vm.unprivileged_userfaultfd=1)");
		return sm_error_errno(err, e, "userfaultfd");
	}
	struct uffdio_api api = {.api = UFFD_API};
	if (ioctl(u->uffd, UFFDIO_API, &api) < 0) {
		int e = errno;
		uffd_free(u);
		return sm_error_errno(err, e, "UFFDIO_API");
	}
	u->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->stop_fd < 0) {
		int e = errno;
		uffd_free(u);
		return sm_error_errno(err, e, "eventfd");
	}
	void *m = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) {
		int e = errno;
		uffd_free(u);
		return sm_error_errno(err, e, "cannot map %llu MiB of guest memory",
				      (unsigned long long)(mem_size >> 20));
	}
	u->ram = m;
	struct uffdio_register reg = {
		.range = {.start = (uint64_t)(uintptr_t)m, .len = mem_size},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	const uint64_t need =
		(1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);
	int reg_ok = ioctl(u->uffd, UFFDIO_REGISTER, &reg) == 0;
	if (!reg_ok || (reg.ioctls & need) != need) {
		int e = reg_ok ? ENOTSUP : errno;
		munmap(m, mem_size);
		uffd_free(u);
		return sm_error_errno(err, e, "UFFDIO_REGISTER of guest memory");
	}
	ret = pthread_create(&u->thread, NULL, handler, u);
	if (ret != 0) {
		munmap(m, mem_size);
		uffd_free(u);
		return sm_error_errno(err, ret, "cannot start the userfaultfd handler");
	}
	u->started = 1;
	*out = u;
	*ram = m;
	return 0;
}

void restore_uffd_attach(struct restore_uffd *u, struct vm *vm)
{
	pthread_mutex_lock(&u->lock);
	u->vm = vm;
	if (!vm)
		u->detached = 1;
	if (u->failed && vm)
		vm_stop(vm);
	pthread_mutex_unlock(&u->lock);
}

int restore_uffd_stop(struct restore_uffd *u, struct restore_uffd_stats *st, struct sm_error *err)
{
	if (!u)
		return 0;
	restore_uffd_attach(u, NULL);
	if (u->started) {
		uint64_t one = 1;
		if (write(u->stop_fd, &one, sizeof(one)) < 0) {
			/* an eventfd write of 1 cannot fail here */
		}
		pthread_join(u->thread, NULL);
	}
	int ret = 0;
	if (u->failed) {
		if (err)
			*err = u->err;
		ret = -(u->err.errnum ? u->err.errnum : EIO);
	}
	if (st)
		*st = u->st;
	uffd_free(u);
	return ret;
}
