/* SPDX-License-Identifier: Apache-2.0 */
/* The DAX window of virtio-fs on the host side: the fuse_dax mapper.
 *
 * The window [base_gpa, +len) is backed by one host reservation made once
 * with PROT_NONE. Each mapping (one FUSE SETUPMAPPING) is an mmap(MAP_SHARED
 * | MAP_FIXED) of the file range into the reservation plus a KVM memory slot
 * of its own over exactly that range. Parts of the window with no slot are
 * not guest memory at all, so a guest access there is a KVM MMIO exit,
 * which the device turns into fuse_dax_fault() (slots restored from a
 * snapshot come back that way). One slot per mapping keeps that property;
 * the guest maps 2 MiB ranges, so a 1 GiB window needs at most 512 slots,
 * and the slot budget (KVM_CAP_NR_MEMSLOTS) is checked up front. */
#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sm/fuse.h"
#include "sm/vm.h"

struct vm_dax_slot {
	uint64_t off, len;
	int used;
};

struct vm_dax_map {
	int vm_fd;
	uint8_t *host;
	uint64_t base_gpa, len;
	uint32_t first_slot, max_slots;
	int readonly_mem; /* KVM_CAP_READONLY_MEM: read-only slots fault writes as MMIO */
	pthread_mutex_t lock;
	struct vm_dax_slot *slots; /* index i is KVM slot first_slot + i */
	uint32_t n_used;
};

static int kvm_slot_set(struct vm_dax_map *m, uint32_t idx, uint64_t off, uint64_t len, int prot)
{
	if (m->vm_fd < 0)
		return 0; /* unit tests: host mapping only */
	struct kvm_userspace_memory_region r = {
		.slot = m->first_slot + idx,
		.flags = (!(prot & PROT_WRITE) && m->readonly_mem) ? KVM_MEM_READONLY : 0,
		.guest_phys_addr = m->base_gpa + off,
		.memory_size = len,
		.userspace_addr = (uint64_t)(uintptr_t)(m->host + off),
	};
	if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return -errno;
	return 0;
}

static void kvm_slot_del(struct vm_dax_map *m, uint32_t idx)
{
	if (m->vm_fd < 0)
		return;
	struct kvm_userspace_memory_region r = {.slot = m->first_slot + idx};
	ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &r); /* size 0 deletes; cannot fail here */
}

/* Put the range back to inaccessible reserved address space. */
static int host_reserve(struct vm_dax_map *m, uint64_t off, uint64_t len)
{
	void *p = mmap(m->host + off, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	return p == MAP_FAILED ? -errno : 0;
}

static int range_ok(const struct vm_dax_map *m, uint64_t off, uint64_t len)
{
	return len > 0 && (off % FUSE_DAX_GRANULE) == 0 && (len % FUSE_DAX_GRANULE) == 0 &&
	       sm_range_ok(off, len, m->len);
}

static int find_slot(const struct vm_dax_map *m, uint64_t off, uint64_t len)
{
	for (uint32_t i = 0; i < m->max_slots; i++)
		if (m->slots[i].used && m->slots[i].off == off && m->slots[i].len == len)
			return (int)i;
	return -1;
}

static int dax_map(void *ctx, uint64_t off, int fd, uint64_t foffset, uint64_t len, int prot)
{
	struct vm_dax_map *m = ctx;
	if (!range_ok(m, off, len) || (prot & ~(PROT_READ | PROT_WRITE)) || !(prot & PROT_READ))
		return -EINVAL;
	if (foffset > (uint64_t)INT64_MAX - len)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	int idx = find_slot(m, off, len);
	if (idx >= 0) {
		/* Upgrade (read -> write): the slot's flags change, so drop it first. */
		kvm_slot_del(m, (uint32_t)idx);
	} else {
		for (uint32_t i = 0; i < m->max_slots && idx < 0; i++)
			if (!m->slots[i].used)
				idx = (int)i;
		if (idx < 0) {
			pthread_mutex_unlock(&m->lock);
			return -ENOSPC;
		}
		m->slots[idx] = (struct vm_dax_slot){.off = off, .len = len, .used = 1};
		m->n_used++;
	}
	int r = 0;
	void *p = mmap(m->host + off, len, prot, MAP_SHARED | MAP_FIXED, fd, (off_t)foffset);
	if (p == MAP_FAILED)
		r = -errno;
	if (r == 0)
		r = kvm_slot_set(m, (uint32_t)idx, off, len, prot);
	if (r < 0) {
		host_reserve(m, off, len);
		m->slots[idx].used = 0;
		m->n_used--;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int dax_unmap(void *ctx, uint64_t off, uint64_t len)
{
	struct vm_dax_map *m = ctx;
	if (!range_ok(m, off, len))
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	int idx = find_slot(m, off, len);
	if (idx >= 0) {
		kvm_slot_del(m, (uint32_t)idx);
		m->slots[idx].used = 0;
		m->n_used--;
	}
	int r = host_reserve(m, off, len);
	pthread_mutex_unlock(&m->lock);
	return r;
}

int vm_dax_map_new(int vm_fd, uint64_t base_gpa, uint64_t len, uint32_t first_slot,
		   uint32_t max_slots, struct vm_dax_map **out, struct sm_error *err)
{
	*out = NULL;
	if (len == 0 || len % FUSE_DAX_GRANULE || base_gpa % FUSE_DAX_GRANULE ||
	    base_gpa + len < base_gpa)
		return sm_error_set(err, EINVAL, "DAX window 0x%llx+0x%llx is not page aligned",
				    (unsigned long long)base_gpa, (unsigned long long)len);
	if (max_slots == 0 || first_slot > 0x7fff || max_slots > 0x8000 - first_slot)
		return sm_error_set(err, EINVAL, "DAX window: bad memory slot range %u+%u",
				    first_slot, max_slots);
	struct vm_dax_map *m = calloc(1, sizeof(*m));
	if (!m)
		return sm_error_set(err, ENOMEM, "DAX window");
	m->vm_fd = vm_fd;
	m->base_gpa = base_gpa;
	m->len = len;
	m->first_slot = first_slot;
	m->max_slots = max_slots;
	m->slots = calloc(max_slots, sizeof(*m->slots));
	void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!m->slots || p == MAP_FAILED) {
		int e = p == MAP_FAILED ? errno : ENOMEM;
		if (p != MAP_FAILED)
			munmap(p, len);
		free(m->slots);
		free(m);
		return sm_error_errno(err, e, "cannot reserve %llu MiB for the DAX window",
				      (unsigned long long)(len >> 20));
	}
	m->host = p;
	if (vm_fd >= 0)
		m->readonly_mem = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) > 0;
	pthread_mutex_init(&m->lock, NULL);
	*out = m;
	return 0;
}

void vm_dax_map_free(struct vm_dax_map *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->max_slots; i++)
		if (m->slots[i].used)
			kvm_slot_del(m, i);
	munmap(m->host, m->len);
	pthread_mutex_destroy(&m->lock);
	free(m->slots);
	free(m);
}

void vm_dax_map_mapper(struct vm_dax_map *m, struct fuse_dax_mapper *out)
{
	out->map = dax_map;
	out->unmap = dax_unmap;
	out->ctx = m;
}

int vm_dax_map_access(struct vm_dax_map *m, uint64_t off, uint8_t *data, uint32_t len, int is_write)
{
	if (!sm_range_ok(off, len, m->len))
		return -EFAULT;
	/* process_vm_readv/writev on ourselves: an unmapped, read-only or
	 * past-EOF page gives EFAULT instead of SIGBUS/SIGSEGV in the VMM. */
	struct iovec local = {.iov_base = data, .iov_len = len};
	struct iovec remote = {.iov_base = m->host + off, .iov_len = len};
	ssize_t n = is_write ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
			     : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	return n == (ssize_t)len ? 0 : -EFAULT;
}

uint32_t vm_dax_map_slots_used(struct vm_dax_map *m)
{
	pthread_mutex_lock(&m->lock);
	uint32_t n = m->n_used;
	pthread_mutex_unlock(&m->lock);
	return n;
}

uint8_t *vm_dax_map_host(struct vm_dax_map *m)
{
	return m->host;
}
