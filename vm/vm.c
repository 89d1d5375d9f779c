/* SPDX-License-Identifier: Apache-2.0 */
/* The KVM monitor: VM, guest RAM, in-kernel irqchip and PIT, vCPU threads
 * with one exit switch, and a device I/O thread (ioeventfd kicks, vsock). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vm_internal.h"

#define VM_MAX_VCPUS   64
#define VM_MAX_VIRTIO  4
#define KVM_TSS_ADDR   0xfffbd000ULL
#define KVM_IDMAP_ADDR 0xfffbc000ULL
#define SERIAL_IRQ     4

#define VM_BASE_CMDLINE                                                                            \
	"console=ttyS0 reboot=k panic=-1 pci=off nomodules quiet "                                 \
	"i8042.nokbd i8042.noaux tsc=reliable no_timer_check rdinit=/init"

struct vm_virtio_slot {
	struct virtio_mmio t;
	uint64_t base;
	int gsi;
	int irqfd;
	int kickfd[VIRTIO_MMIO_MAX_QUEUES];
};

struct vm {
	int kvm_fd, vm_fd;
	struct vm_mem mem;
	int ncpus;
	struct vm_vcpu vcpus[VM_MAX_VCPUS];
	struct vm_io_bus pio, mmio;
	struct vm_serial serial;
	struct vm_i8042 i8042;
	struct vm_virtio_slot virtio[VM_MAX_VIRTIO];
	int n_virtio;
	struct virtio_rng rng;
	struct virtio_vsock *vsock;
	struct virtio_fs *fs;
	char cmdline[VM_BOOT_CMDLINE_MAX];
	uint64_t entry;

	pthread_t io_thread;
	int io_started;
	int stop_fd; /* eventfd: readable once stopped */
	pthread_mutex_t stop_lock;
	enum vm_stop_reason reason;
	struct sm_error stop_err;
	struct vm_timings timings;

	/* vm_pause(): vCPUs park at a clean point (after an immediate exit). */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	int pause_req, n_paused;
	int restoring;	       /* created from a snapshot: no boot setup */
	int kept_conn;	       /* host end of the vsock connection the snapshot kept, or -1 */
	int dry_run;	       /* vm_config.dry_run: vCPUs never enter the guest */
	int dry_left;	       /* dry run: vCPU threads not yet at their first KVM_RUN */
	uint64_t first_run_ns; /* vm_first_run_ms() in ns; written once (CAS from 0) */
	int prefault_checked, prefault_ok; /* KVM_CAP_PRE_FAULT_MEMORY, asked once */
};

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Linux 6.10's uapi (not in bookworm's headers). */
#ifndef KVM_CAP_PRE_FAULT_MEMORY
#define KVM_CAP_PRE_FAULT_MEMORY 236
struct kvm_pre_fault_memory {
	__u64 gpa;
	__u64 size;
	__u64 flags;
	__u64 padding[5];
};
#define KVM_PRE_FAULT_MEMORY _IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)
#endif

int vm_prefault(struct vm *vm, uint64_t gpa, uint64_t len, struct sm_error *err)
{
	if (!vm->prefault_checked) {
		vm->prefault_ok =
			ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PRE_FAULT_MEMORY) > 0;
		vm->prefault_checked = 1;
	}
	if (!vm->prefault_ok)
		return sm_error_set(err, EOPNOTSUPP, "KVM_PRE_FAULT_MEMORY: not supported");
	if (!sm_range_ok(gpa, len, vm->mem.size))
		return sm_error_set(err, EINVAL, "prefault range outside guest RAM");
	/* Guest RAM is memory slot 0 at guest-physical 0 (vm_create), so an
	 * offset into it is its gpa. The ioctl advances gpa/size as it goes
	 * and may stop early (a signal, rescheduling): go on until all of it
	 * is mapped, but not forever where it makes no progress. */
	struct kvm_pre_fault_memory pf = {.gpa = gpa, .size = len};
	for (int stuck = 0; pf.size;) {
		uint64_t left = pf.size;
		int r = ioctl(vm->vcpus[0].fd, KVM_PRE_FAULT_MEMORY, &pf);
		if (r < 0 && errno != EINTR && errno != EAGAIN)
			return sm_error_errno(err, errno, "KVM_PRE_FAULT_MEMORY");
		if (pf.size < left)
			stuck = 0;
		else if (++stuck > 64)
			return sm_error_set(err, EIO, "KVM_PRE_FAULT_MEMORY made no progress");
	}
	return 0;
}

void vm_get_timings(const struct vm *vm, struct vm_timings *t)
{
	*t = vm->timings;
}

double vm_first_run_ms(const struct vm *vm)
{
	return (double)__atomic_load_n(&vm->first_run_ns, __ATOMIC_ACQUIRE) / 1e6;
}

/* The VM's first KVM_RUN is due now: note the time once (the first vCPU to
 * get here). A dry run stops here: 1 when this thread must not enter. */
static int vcpu_first_run(struct vm_vcpu *c)
{
	struct vm *vm = c->vm;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, zero = 0;
	__atomic_compare_exchange_n(&vm->first_run_ns, &zero, now, 0, __ATOMIC_RELEASE,
				    __ATOMIC_RELAXED);
	if (!vm->dry_run)
		return 0;
	if (__atomic_sub_fetch(&vm->dry_left, 1, __ATOMIC_ACQ_REL) == 0)
		vm_request_stop(vm, VM_STOP_REQUESTED, NULL);
	return 1;
}

void vm_get_exits(const struct vm *vm, struct vm_exits *e)
{
	memset(e, 0, sizeof(*e));
	for (int i = 0; i < vm->ncpus; i++) {
		const struct vm_vcpu *c = &vm->vcpus[i];
		e->io += __atomic_load_n(&c->exits_io, __ATOMIC_RELAXED);
		e->uart += __atomic_load_n(&c->exits_uart, __ATOMIC_RELAXED);
		e->mmio += __atomic_load_n(&c->exits_mmio, __ATOMIC_RELAXED);
		e->virtio_mmio += __atomic_load_n(&c->exits_virtio_mmio, __ATOMIC_RELAXED);
		e->other += __atomic_load_n(&c->exits_other, __ATOMIC_RELAXED);
	}
}

static int vcpu_signal(void)
{
	return SIGRTMIN + 4;
}

static void vcpu_signal_handler(int sig)
{
	(void)sig; /* only there to interrupt KVM_RUN */
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason why, const struct sm_error *err)
{
	pthread_mutex_lock(&vm->stop_lock);
	if (vm->reason == VM_RUNNING) {
		vm->reason = why;
		if (err)
			vm->stop_err = *err;
		for (int i = 0; i < vm->ncpus; i++)
			if (vm->vcpus[i].run)
				__atomic_store_n(&vm->vcpus[i].run->immediate_exit, 1,
						 __ATOMIC_SEQ_CST);
		uint64_t one = 1;
		if (write(vm->stop_fd, &one, sizeof(one)) < 0) {
			/* eventfd counter cannot overflow here */
		}
		for (int i = 0; i < vm->ncpus; i++)
			if (vm->vcpus[i].started &&
			    !pthread_equal(vm->vcpus[i].thread, pthread_self()))
				pthread_kill(vm->vcpus[i].thread, vcpu_signal());
	}
	pthread_mutex_unlock(&vm->stop_lock);
}

void vm_stop(struct vm *vm)
{
	vm_request_stop(vm, VM_STOP_REQUESTED, NULL);
}

int vm_stopped_fd(const struct vm *vm)
{
	return vm->stop_fd;
}

const char *vm_cmdline(const struct vm *vm)
{
	return vm->cmdline;
}

const struct vm_mem *vm_memory(const struct vm *vm)
{
	return &vm->mem;
}

static int stopping(struct vm *vm)
{
	pthread_mutex_lock(&vm->stop_lock);
	int s = vm->reason != VM_RUNNING;
	pthread_mutex_unlock(&vm->stop_lock);
	return s;
}

/* ---- IRQ plumbing ---------------------------------------------------------- */

static void serial_set_irq(void *ctx, int level)
{
	struct vm *vm = ctx;
	struct kvm_irq_level l = {.irq = SERIAL_IRQ, .level = (uint32_t)level};
	ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
}

static void virtio_irq(void *ctx)
{
	struct vm_virtio_slot *s = ctx;
	uint64_t one = 1;
	if (write(s->irqfd, &one, sizeof(one)) < 0) {
		/* counter saturation is harmless: an interrupt is pending anyway */
	}
}

/* ---- vCPU setup ------------------------------------------------------------ */

static int setup_cpuid(struct vm *vm, struct vm_vcpu *c, struct sm_error *err)
{
	int nent = 128;
	struct kvm_cpuid2 *cpuid = NULL;
	for (;;) {
		cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
		if (!cpuid)
			return sm_error_set(err, ENOMEM, "cpuid table");
		cpuid->nent = nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			break;
		int e = errno;
		free(cpuid);
		if (e != E2BIG || nent >= 4096)
			return sm_error_errno(err, e, "KVM_GET_SUPPORTED_CPUID");
		nent *= 2;
	}
	int tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x00ffffff) | ((uint32_t)c->id << 24);
			e->ecx |= 1U << 31; /* hypervisor */
			/* KVM emulates the TSC-deadline timer with the in-kernel
			 * LAPIC but does not list it as supported (as QEMU does). */
			if (tsc_deadline)
				e->ecx |= 1U << 24;
			break;
		case 0xb:
		case 0x1f:
			e->edx = (uint32_t)c->id; /* x2APIC id */
			break;
		}
	}
	int r = ioctl(c->fd, KVM_SET_CPUID2, cpuid);
	int e = errno;
	free(cpuid);
	if (r < 0)
		return sm_error_errno(err, e, "vCPU %d: KVM_SET_CPUID2", c->id);
	return 0;
}

static int setup_msrs(struct vm_vcpu *c, struct sm_error *err)
{
	static const struct {
		uint32_t index;
		uint64_t data;
	} init[] = {
		{0x174, 0},		/* SYSENTER_CS */
		{0x175, 0},		/* SYSENTER_ESP */
		{0x176, 0},		/* SYSENTER_EIP */
		{0xc0000081, 0},	/* STAR */
		{0xc0000082, 0},	/* LSTAR */
		{0xc0000083, 0},	/* CSTAR */
		{0xc0000084, 0},	/* SYSCALL_MASK */
		{0xc0000102, 0},	/* KERNEL_GS_BASE */
		{0x10, 0},		/* TSC */
		{0x1a0, 1},		/* MISC_ENABLE: fast strings */
		{0x2ff, (1 << 11) | 6}, /* MTRRdefType: enabled, write-back */
	};
	const int n = sizeof(init) / sizeof(init[0]);
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[sizeof(init) / sizeof(init[0])];
	} msrs;
	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = n;
	for (int i = 0; i < n; i++) {
		msrs.e[i].index = init[i].index;
		msrs.e[i].data = init[i].data;
	}
	int r = ioctl(c->fd, KVM_SET_MSRS, &msrs);
	if (r < 0)
		return sm_error_errno(err, errno, "vCPU %d: KVM_SET_MSRS", c->id);
	if (r != n)
		return sm_error_set(err, EINVAL, "vCPU %d: KVM_SET_MSRS set %d of %d (MSR 0x%x)",
				    c->id, r, n, init[r].index);
	return 0;
}

static int setup_lapic(struct vm_vcpu *c, struct sm_error *err)
{
	struct kvm_lapic_state lapic;
	if (ioctl(c->fd, KVM_GET_LAPIC, &lapic) < 0)
		return sm_error_errno(err, errno, "vCPU %d: KVM_GET_LAPIC", c->id);
	uint32_t lvt0, lvt1;
	memcpy(&lvt0, lapic.regs + 0x350, 4);
	memcpy(&lvt1, lapic.regs + 0x360, 4);
	lvt0 = (lvt0 & ~0x700U) | (7U << 8); /* ExtINT */
	lvt1 = (lvt1 & ~0x700U) | (4U << 8); /* NMI */
	memcpy(lapic.regs + 0x350, &lvt0, 4);
	memcpy(lapic.regs + 0x360, &lvt1, 4);
	if (ioctl(c->fd, KVM_SET_LAPIC, &lapic) < 0)
		return sm_error_errno(err, errno, "vCPU %d: KVM_SET_LAPIC", c->id);
	return 0;
}

static int setup_boot_regs(struct vm *vm, struct vm_vcpu *c, struct sm_error *err)
{
	struct kvm_sregs sregs;
	if (ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0)
		return sm_error_errno(err, errno, "KVM_GET_SREGS");
	struct kvm_segment code = {
		.base = 0,
		.limit = 0xfffff,
		.selector = 0x8,
		.type = 0xb,
		.present = 1,
		.dpl = 0,
		.db = 0,
		.s = 1,
		.l = 1,
		.g = 1,
	};
	struct kvm_segment data = code;
	data.selector = 0x10;
	data.type = 0x3;
	data.db = 1;
	data.l = 0;
	struct kvm_segment tss = code;
	tss.selector = 0x18;
	tss.type = 0xb;
	tss.s = 0;
	tss.l = 0;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr = tss;
	sregs.gdt.base = VM_BOOT_GDT_ADDR;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.idt.base = VM_BOOT_IDT_ADDR;
	sregs.idt.limit = 7;
	sregs.cr0 = 0x80000001ULL | 0x10; /* PG | PE | ET */
	sregs.cr3 = VM_BOOT_PML4;
	sregs.cr4 = 0x20;   /* PAE */
	sregs.efer = 0x500; /* LME | LMA */
	if (ioctl(c->fd, KVM_SET_SREGS, &sregs) < 0)
		return sm_error_errno(err, errno, "KVM_SET_SREGS");

	struct kvm_regs regs = {0};
	regs.rflags = 2;
	regs.rip = vm->entry;
	regs.rsp = regs.rbp = VM_BOOT_STACK;
	regs.rsi = VM_BOOT_ZERO_PAGE;
	if (ioctl(c->fd, KVM_SET_REGS, &regs) < 0)
		return sm_error_errno(err, errno, "KVM_SET_REGS");

	struct kvm_fpu fpu = {0};
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(c->fd, KVM_SET_FPU, &fpu) < 0)
		return sm_error_errno(err, errno, "KVM_SET_FPU");
	return 0;
}

static int vcpu_create(struct vm *vm, int id, struct sm_error *err)
{
	struct vm_vcpu *c = &vm->vcpus[id];
	c->vm = vm;
	c->id = id;
	c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (c->fd < 0)
		return sm_error_errno(err, errno, "KVM_CREATE_VCPU %d", id);
	int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < (int)sizeof(struct kvm_run))
		return sm_error_errno(err, errno, "KVM_GET_VCPU_MMAP_SIZE");
	void *run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (run == MAP_FAILED)
		return sm_error_errno(err, errno, "mmap kvm_run");
	c->run = run;
	c->run_size = (size_t)sz;
	int r = setup_cpuid(vm, c, err);
	if (r == 0)
		r = setup_msrs(c, err);
	if (r == 0)
		r = setup_lapic(c, err);
	if (r == 0 && id == 0 && !vm->restoring)
		r = setup_boot_regs(vm, c, err);
	return r;
}

/* ---- vCPU loop --------------------------------------------------------------- */

static uint64_t vcpu_rip(struct vm_vcpu *c)
{
	struct kvm_regs regs;
	if (ioctl(c->fd, KVM_GET_REGS, &regs) < 0)
		return ~0ULL;
	return regs.rip;
}

static void vcpu_fatal(struct vm_vcpu *c, const char *what, unsigned long long detail)
{
	struct sm_error e = {0};
	sm_error_set(&e, EIO, "vCPU %d: %s (exit reason %u, detail 0x%llx) at RIP 0x%llx", c->id,
		     what, c->run->exit_reason, detail, (unsigned long long)vcpu_rip(c));
	vm_request_stop(c->vm, VM_STOP_ERROR, &e);
}

/* Park here while vm_pause() holds the VM. Only reached after KVM_RUN
 * returned EINTR, so any pending I/O completion is done (immediate_exit). */
static void vcpu_pause_point(struct vm_vcpu *c)
{
	struct vm *vm = c->vm;
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->pause_req) {
		vm->n_paused++;
		pthread_cond_broadcast(&vm->pause_cond);
		while (vm->pause_req && !stopping(vm)) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 50 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&vm->pause_cond, &vm->pause_lock, &ts);
		}
		vm->n_paused--;
	}
	pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_thread(void *arg)
{
	struct vm_vcpu *c = arg;
	struct vm *vm = c->vm;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, vcpu_signal());
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	if (vcpu_first_run(c))
		return NULL;
	while (!stopping(vm)) {
		int r = ioctl(c->fd, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu_pause_point(c);
				continue;
			}
			struct sm_error e = {0};
			sm_error_errno(&e, errno, "vCPU %d: KVM_RUN", c->id);
			vm_request_stop(vm, VM_STOP_ERROR, &e);
			break;
		}
		struct kvm_run *run = c->run;
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			__atomic_add_fetch(&c->exits_io, 1, __ATOMIC_RELAXED);
			if (run->io.port >= 0x3f8 && run->io.port < 0x400)
				__atomic_add_fetch(&c->exits_uart, 1, __ATOMIC_RELAXED);
			uint8_t *data = (uint8_t *)run + run->io.data_offset;
			for (uint32_t i = 0; i < run->io.count; i++) {
				vm_io_bus_dispatch(&vm->pio, c, run->io.port, data, run->io.size,
						   run->io.direction == KVM_EXIT_IO_OUT);
				data += run->io.size;
			}
			break;
		}
		case KVM_EXIT_MMIO:
			__atomic_add_fetch(&c->exits_mmio, 1, __ATOMIC_RELAXED);
			if (run->mmio.phys_addr >= VM_VIRTIO_MMIO_BASE &&
			    run->mmio.phys_addr <
				    VM_VIRTIO_MMIO_BASE + VM_MAX_VIRTIO * VM_VIRTIO_MMIO_SIZE)
				__atomic_add_fetch(&c->exits_virtio_mmio, 1, __ATOMIC_RELAXED);
			vm_io_bus_dispatch(&vm->mmio, c, run->mmio.phys_addr, run->mmio.data,
					   run->mmio.len, run->mmio.is_write);
			break;
		case KVM_EXIT_HLT:
			vm_request_stop(vm, VM_STOP_SHUTDOWN, NULL);
			break;
		case KVM_EXIT_SHUTDOWN: {
			struct sm_error e = {0};
			sm_error_set(&e, EIO,
				     "vCPU %d: guest shut down (triple fault) at RIP 0x%llx", c->id,
				     (unsigned long long)vcpu_rip(c));
			vm_request_stop(vm, VM_STOP_SHUTDOWN, &e);
			break;
		}
		case KVM_EXIT_SYSTEM_EVENT:
			vm_request_stop(vm,
					run->system_event.type == KVM_SYSTEM_EVENT_RESET
						? VM_STOP_RESET
						: VM_STOP_SHUTDOWN,
					NULL);
			break;
		case KVM_EXIT_INTR:
			__atomic_add_fetch(&c->exits_other, 1, __ATOMIC_RELAXED);
			break;
		case KVM_EXIT_FAIL_ENTRY:
			vcpu_fatal(c, "VM entry failed",
				   run->fail_entry.hardware_entry_failure_reason);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			vcpu_fatal(c, "KVM internal error", run->internal.suberror);
			break;
		default:
			vcpu_fatal(c, "unhandled exit", run->exit_reason);
			break;
		}
	}
	return NULL;
}

/* ---- I/O thread -------------------------------------------------------------- */

#define IO_MAX_FDS 256

static void *io_thread(void *arg)
{
	struct vm *vm = arg;
	struct pollfd fds[IO_MAX_FDS];
	struct {
		struct vm_virtio_slot *slot;
		uint32_t q;
	} kick[IO_MAX_FDS];
	while (!stopping(vm)) {
		int n = 0;
		fds[n++] = (struct pollfd){.fd = vm->stop_fd, .events = POLLIN};
		for (int d = 0; d < vm->n_virtio; d++) {
			struct vm_virtio_slot *s = &vm->virtio[d];
			for (uint32_t q = 0; q < s->t.ops->num_queues; q++) {
				kick[n].slot = s;
				kick[n].q = q;
				fds[n++] = (struct pollfd){.fd = s->kickfd[q], .events = POLLIN};
			}
		}
		int nfixed = n;
		if (vm->vsock)
			n += virtio_vsock_poll_fds(vm->vsock, fds + n, IO_MAX_FDS - n);
		int r = poll(fds, (nfds_t)n, -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			struct sm_error e = {0};
			sm_error_errno(&e, errno, "I/O thread: poll");
			vm_request_stop(vm, VM_STOP_ERROR, &e);
			break;
		}
		if (fds[0].revents)
			break;
		for (int i = 1; i < nfixed; i++) {
			if (!(fds[i].revents & POLLIN))
				continue;
			uint64_t cnt;
			if (read(fds[i].fd, &cnt, sizeof(cnt)) == sizeof(cnt))
				virtio_mmio_kick(&kick[i].slot->t, kick[i].q);
		}
		if (vm->vsock)
			virtio_vsock_process(vm->vsock);
	}
	return NULL;
}

/* ---- VM creation --------------------------------------------------------------- */

static int add_virtio(struct vm *vm, const struct virtio_dev_ops *ops, void *dev,
		      struct virtio_mmio **out, struct sm_error *err)
{
	if (vm->n_virtio >= VM_MAX_VIRTIO)
		return sm_error_set(err, ENOSPC, "too many virtio devices");
	int idx = vm->n_virtio;
	struct vm_virtio_slot *s = &vm->virtio[idx];
	s->irqfd = -1;
	for (int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		s->kickfd[q] = -1;
	s->base = VM_VIRTIO_MMIO_BASE + (uint64_t)idx * VM_VIRTIO_MMIO_SIZE;
	s->gsi = VM_VIRTIO_IRQ_BASE + idx;
	int r = virtio_mmio_init(&s->t, ops, dev, &vm->mem, err);
	if (r < 0)
		return r;
	vm->n_virtio++; /* from here on vm_destroy cleans the slot */
	s->t.irq = virtio_irq;
	s->t.irq_ctx = s;
	s->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->irqfd < 0)
		return sm_error_errno(err, errno, "%s: eventfd", ops->name);
	struct kvm_irqfd irqfd = {.fd = (uint32_t)s->irqfd, .gsi = (uint32_t)s->gsi};
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
		return sm_error_errno(err, errno, "%s: KVM_IRQFD", ops->name);
	for (uint32_t q = 0; q < ops->num_queues; q++) {
		s->kickfd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (s->kickfd[q] < 0)
			return sm_error_errno(err, errno, "%s: eventfd", ops->name);
		struct kvm_ioeventfd ioe = {
			.datamatch = q,
			.addr = s->base + 0x50,
			.len = 4,
			.fd = s->kickfd[q],
			.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
		};
		if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &ioe) < 0)
			return sm_error_errno(err, errno, "%s: KVM_IOEVENTFD", ops->name);
	}
	r = vm_io_bus_register(&vm->mmio, s->base, VM_VIRTIO_MMIO_SIZE, virtio_mmio_io, &s->t, err);
	if (r < 0)
		return r;
	char dev_arg[96];
	snprintf(dev_arg, sizeof(dev_arg), " virtio_mmio.device=4K@0x%llx:%d",
		 (unsigned long long)s->base, s->gsi);
	if (strlen(vm->cmdline) + strlen(dev_arg) + 1 > sizeof(vm->cmdline))
		return sm_error_set(err, E2BIG, "kernel command line too long");
	strcat(vm->cmdline, dev_arg);
	if (out)
		*out = &s->t;
	return 0;
}

static int load_kernel(struct vm *vm, const char *path, uint64_t *kernel_end, struct sm_error *err)
{
	sm_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_errno(err, errno, "cannot open kernel %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return sm_error_errno(err, errno, "stat %s", path);
	if (st.st_size <= 0)
		return sm_error_set(err, ENOEXEC, "kernel %s is empty", path);
	int r = vm_elf_load_fd(&vm->mem, fd, (uint64_t)st.st_size, &vm->entry, kernel_end, err);
	if (r < 0)
		return sm_error_wrap(err, "kernel %s", path);
	return 0;
}

/* virtio-fs over cfg->fs_root, read-only, with an optional DAX window at
 * VM_DAX_WINDOW_GPA (one KVM slot per mapping, see vm/dax_map.c). */
static int add_fs(struct vm *vm, const struct vm_config *cfg, struct sm_error *err)
{
	if (cfg->fs_dax_mib > VM_DAX_WINDOW_MAX_MIB)
		return sm_error_set(err, EINVAL, "DAX window of %llu MiB is over %d MiB",
				    (unsigned long long)cfg->fs_dax_mib, VM_DAX_WINDOW_MAX_MIB);
	uint64_t dax_len = cfg->fs_dax_mib << 20;
	uint32_t max_slots = 0;
	if (dax_len) {
		int n = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
		if (n <= VM_DAX_FIRST_SLOT + 1)
			return sm_error_set(err, ENOSPC,
					    "KVM offers %d memory slots, too few for DAX", n);
		max_slots = (uint32_t)(n - VM_DAX_FIRST_SLOT);
		if (max_slots > 4096)
			max_slots = 4096;
		/* The guest maps 2 MiB ranges: never offer more than the slots cover. */
		if (dax_len > ((uint64_t)max_slots << 21))
			dax_len = (uint64_t)max_slots << 21;
	}
	struct virtio_fs_config fc = {
		.root_dir = cfg->fs_root,
		.tag = "rootfs",
		.read_only = 1,
		.dax_gpa = VM_DAX_WINDOW_GPA,
		.dax_len = dax_len,
		.vm_fd = vm->vm_fd,
		.first_slot = VM_DAX_FIRST_SLOT,
		.max_slots = max_slots,
	};
	int r = virtio_fs_create(&vm->fs, &fc, err);
	struct virtio_mmio *t = NULL;
	if (r == 0)
		r = add_virtio(vm, &virtio_fs_ops, vm->fs, &t, err);
	if (r == 0)
		r = virtio_fs_attach(vm->fs, t, err);
	if (r == 0 && dax_len)
		r = vm_io_bus_register(&vm->mmio, VM_DAX_WINDOW_GPA, dax_len, virtio_fs_dax_io,
				       vm->fs, err);
	if (r < 0)
		return r;
	const char *arg = dax_len ? " sm.rootfs=rootfs sm.dax=always" : " sm.rootfs=rootfs";
	if (strlen(vm->cmdline) + strlen(arg) + 1 > sizeof(vm->cmdline))
		return sm_error_set(err, E2BIG, "kernel command line too long");
	strcat(vm->cmdline, arg);
	return 0;
}

int vm_kvm_open(struct vm_kvm *k, int no_run, struct sm_error *err)
{
	double t0 = mono_ms();
	k->kvm_fd = k->vm_fd = -1;
	k->ms = k->create_vm_ms = 0;
	int r = vm_kvm_require_usable(err);
	if (r == -ENOTSUP && no_run) { /* kvm-pvm: fine for a guest that never runs */
		if (err)
			*err = (struct sm_error){0};
		r = 0;
	}
	if (r < 0)
		return r;
	k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm_fd < 0)
		return sm_error_errno(err, errno, "cannot open /dev/kvm");
	int api = ioctl(k->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		r = sm_error_set(err, ENOTSUP, "KVM API version %d, need %d", api, KVM_API_VERSION);
		goto fail;
	}
	static const struct {
		int cap;
		const char *name;
	} caps[] = {
		{KVM_CAP_IRQCHIP, "IRQCHIP"},
		{KVM_CAP_PIT2, "PIT2"},
		{KVM_CAP_IRQFD, "IRQFD"},
		{KVM_CAP_IOEVENTFD, "IOEVENTFD"},
		{KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"},
		{KVM_CAP_USER_MEMORY, "USER_MEMORY"},
	};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		if (ioctl(k->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
			r = sm_error_set(err, ENOTSUP, "KVM lacks KVM_CAP_%s", caps[i].name);
			goto fail;
		}
	double tc = mono_ms();
	k->vm_fd = ioctl(k->kvm_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		r = sm_error_errno(err, errno, "KVM_CREATE_VM");
		goto fail;
	}
	k->create_vm_ms = mono_ms() - tc;
	uint64_t idmap = KVM_IDMAP_ADDR;
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(k->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
		r = sm_error_errno(err, errno, "KVM_SET_TSS_ADDR");
	else if (ioctl(k->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		r = sm_error_errno(err, errno, "KVM_SET_IDENTITY_MAP_ADDR");
	else if (ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		r = sm_error_errno(err, errno, "KVM_CREATE_IRQCHIP");
	else if (ioctl(k->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		r = sm_error_errno(err, errno, "KVM_CREATE_PIT2");
	if (r < 0)
		goto fail;
	k->ms = mono_ms() - t0;
	return 0;
fail:
	vm_kvm_close(k);
	return r;
}

void vm_kvm_close(struct vm_kvm *k)
{
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->kvm_fd >= 0)
		close(k->kvm_fd);
	k->kvm_fd = k->vm_fd = -1;
}

static int create_locked(struct vm *vm, const struct vm_config *cfg, struct sm_error *err)
{
	double t0 = mono_ms();
	int r;
	struct vm_kvm own;
	if (cfg->kvm) { /* made beforehand: its time is the caller's to report */
		own = *cfg->kvm;
		cfg->kvm->kvm_fd = cfg->kvm->vm_fd = -1; /* ours now */
		t0 -= own.ms;
	} else {
		r = vm_kvm_open(&own, cfg->dry_run, err);
		if (r < 0)
			return r;
	}
	vm->kvm_fd = own.kvm_fd;
	vm->vm_fd = own.vm_fd;
	vm->timings.create_vm_ms = own.create_vm_ms;
	if (vm->kvm_fd < 0 || vm->vm_fd < 0)
		return sm_error_set(err, EINVAL, "vm_config.kvm is not open");

	double t1 = mono_ms();
	vm->timings.kvm_ms = t1 - t0;

	/* Guest RAM. */
	uint64_t mib = cfg->mem_mib ? cfg->mem_mib : 256;
	if (mib < 16 || mib > (VM_MMIO_GAP_START >> 20))
		return sm_error_set(err, EINVAL, "guest memory %llu MiB out of range (16..%llu)",
				    (unsigned long long)mib,
				    (unsigned long long)(VM_MMIO_GAP_START >> 20));
	vm->mem.size = mib << 20;
	void *ram;
	if (cfg->restore_ram) {
		ram = vm->mem.host; /* taken over by vm_create */
	} else if (cfg->restore_mem) {
		/* Copy-on-write view of a memory image shared by all restores. */
		sm_autoclose int mfd = open(cfg->restore_mem, O_RDONLY | O_CLOEXEC);
		struct stat mst;
		if (mfd < 0 || fstat(mfd, &mst) < 0)
			return sm_error_errno(err, errno, "cannot open memory image %s",
					      cfg->restore_mem);
		if ((uint64_t)mst.st_size != vm->mem.size)
			return sm_error_set(err, EINVAL,
					    "memory image %s has %lld bytes, want %llu",
					    cfg->restore_mem, (long long)mst.st_size,
					    (unsigned long long)vm->mem.size);
		ram = mmap(NULL, vm->mem.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
			   mfd, 0);
	} else {
		ram = mmap(NULL, vm->mem.size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	}
	if (ram == MAP_FAILED)
		return sm_error_errno(err, errno, "cannot map %llu MiB of guest memory",
				      (unsigned long long)mib);
	vm->mem.host = ram;
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = vm->mem.size,
		.userspace_addr = (uint64_t)(uintptr_t)ram,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return sm_error_errno(err, errno, "KVM_SET_USER_MEMORY_REGION");

	double t2 = mono_ms();
	vm->timings.memory_ms = t2 - t1;

	/* Kernel, initrd. */
	uint64_t kernel_end = 0, initrd_gpa = 0;
	r = vm->restoring ? 0 : load_kernel(vm, cfg->kernel_path, &kernel_end, err);
	if (r < 0)
		return r;
	if (!vm->restoring && cfg->initrd && cfg->initrd_len) {
		r = vm_initrd_place(&vm->mem, kernel_end, cfg->initrd_len, &initrd_gpa, err);
		if (r < 0)
			return r;
		memcpy(vm->mem.host + initrd_gpa, cfg->initrd, cfg->initrd_len);
	}

	double t3 = mono_ms();
	vm->timings.load_ms = t3 - t2;

	/* Legacy devices. */
	snprintf(vm->cmdline, sizeof(vm->cmdline), "%s", VM_BASE_CMDLINE);
	vm_serial_init(&vm->serial, cfg->console_fd, serial_set_irq, vm);
	vm_i8042_init(&vm->i8042, vm);
	r = vm_io_bus_register(&vm->pio, 0x3f8, 8, vm_serial_io, &vm->serial, err);
	if (r == 0)
		r = vm_io_bus_register(&vm->pio, 0x60, 5, vm_i8042_io, &vm->i8042, err);
	if (r < 0)
		return r;

	/* virtio devices. */
	if (!cfg->no_rng) {
		r = add_virtio(vm, &virtio_rng_ops, &vm->rng, &vm->rng.t, err);
		if (r < 0)
			return r;
	}
	if (cfg->vsock_uds) {
		r = virtio_vsock_create(&vm->vsock, cfg->vsock_uds, VIRTIO_VSOCK_GUEST_CID, err);
		if (r < 0)
			return r;
		struct virtio_mmio *t;
		r = add_virtio(vm, &virtio_vsock_ops, vm->vsock, &t, err);
		if (r < 0)
			return r;
		virtio_vsock_attach(vm->vsock, t);
	}
	if (cfg->fs_root) {
		r = add_fs(vm, cfg, err);
		if (r < 0)
			return r;
	}
	if (cfg->cmdline_extra && *cfg->cmdline_extra) {
		if (strlen(vm->cmdline) + strlen(cfg->cmdline_extra) + 2 > sizeof(vm->cmdline))
			return sm_error_set(err, E2BIG, "kernel command line too long");
		strcat(vm->cmdline, " ");
		strcat(vm->cmdline, cfg->cmdline_extra);
	}

	if (!vm->restoring)
		r = vm_boot_setup_memory(&vm->mem, vm->cmdline, initrd_gpa, cfg->initrd_len, err);
	if (r == 0 && !vm->restoring)
		r = vm_mptable_setup(&vm->mem, vm->ncpus, err);
	if (r < 0)
		return r;

	double t4 = mono_ms();
	vm->timings.devices_ms = t4 - t3;
	for (int i = 0; i < vm->ncpus; i++) {
		r = vcpu_create(vm, i, err);
		if (r < 0)
			return r;
	}
	vm->timings.vcpus_ms = mono_ms() - t4;
	return 0;
}

int vm_create(struct vm **out, const struct vm_config *cfg, struct sm_error *err)
{
	*out = NULL;
	int ncpus = cfg->ncpus ? cfg->ncpus : 1;
	struct vm *vm = NULL;
	int r = 0;
	if (ncpus < 1 || ncpus > VM_MAX_VCPUS)
		r = sm_error_set(err, EINVAL, "vCPU count %d out of range (1..%d)", ncpus,
				 VM_MAX_VCPUS);
	else if (!cfg->kernel_path && !cfg->restore_mem && !cfg->restore_ram)
		r = sm_error_set(err, EINVAL, "no kernel given");
	else if (cfg->restore_mem && cfg->restore_ram)
		r = sm_error_set(err, EINVAL, "both restore_mem and restore_ram given");
	else if (!(vm = calloc(1, sizeof(*vm))))
		r = sm_error_set(err, ENOMEM, "out of memory");
	if (r < 0) {
		if (cfg->restore_ram) /* taken over even on failure */
			munmap(cfg->restore_ram, (uint64_t)(cfg->mem_mib ? cfg->mem_mib : 256)
							 << 20);
		if (cfg->kvm) /* so is a prepared VM */
			vm_kvm_close(cfg->kvm);
		return r;
	}
	if (cfg->restore_ram) { /* ours from here on: vm_destroy unmaps it */
		vm->mem.host = cfg->restore_ram;
		vm->mem.size = (uint64_t)(cfg->mem_mib ? cfg->mem_mib : 256) << 20;
	}
	vm->kvm_fd = vm->vm_fd = -1;
	vm->kept_conn = -1;
	for (int i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	vm->ncpus = ncpus;
	vm->restoring = cfg->restore_mem != NULL || cfg->restore_ram != NULL;
	vm->dry_run = cfg->dry_run;
	vm->dry_left = ncpus;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0) {
		int e = errno;
		pthread_mutex_destroy(&vm->stop_lock);
		pthread_mutex_destroy(&vm->pause_lock);
		pthread_cond_destroy(&vm->pause_cond);
		if (vm->mem.host)
			munmap(vm->mem.host, vm->mem.size);
		if (cfg->kvm)
			vm_kvm_close(cfg->kvm);
		free(vm);
		return sm_error_errno(err, e, "eventfd");
	}
	r = create_locked(vm, cfg, err);
	if (r < 0) {
		vm_destroy(vm);
		return r;
	}
	*out = vm;
	return 0;
}

int vm_start(struct vm *vm, struct sm_error *err)
{
	struct sigaction sa = {0};
	sa.sa_handler = vcpu_signal_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(vcpu_signal(), &sa, NULL) < 0)
		return sm_error_errno(err, errno, "sigaction");
	/* Threads start with the kick signal blocked; vCPUs unblock it. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, vcpu_signal());
	pthread_sigmask(SIG_BLOCK, &set, &old);
	int r = pthread_create(&vm->io_thread, NULL, io_thread, vm);
	if (r == 0)
		vm->io_started = 1;
	for (int i = 0; r == 0 && i < vm->ncpus; i++) {
		r = pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
		if (r == 0)
			vm->vcpus[i].started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		vm_stop(vm);
		return sm_error_errno(err, r, "cannot start VM threads");
	}
	return 0;
}

enum vm_stop_reason vm_wait(struct vm *vm, struct sm_error *err)
{
	struct pollfd p = {.fd = vm->stop_fd, .events = POLLIN};
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&vm->stop_lock);
	enum vm_stop_reason why = vm->reason;
	if (err && vm->stop_err.msg[0])
		*err = vm->stop_err;
	pthread_mutex_unlock(&vm->stop_lock);
	return why;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm_stop(vm);
	for (int i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].started)
			pthread_join(vm->vcpus[i].thread, NULL);
	if (vm->io_started)
		pthread_join(vm->io_thread, NULL);
	for (int i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, vm->vcpus[i].run_size);
		if (vm->vcpus[i].fd >= 0)
			close(vm->vcpus[i].fd);
	}
	virtio_fs_destroy(vm->fs); /* its worker uses the transport and guest RAM */
	for (int d = 0; d < vm->n_virtio; d++) {
		struct vm_virtio_slot *s = &vm->virtio[d];
		for (int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
			if (s->kickfd[q] >= 0)
				close(s->kickfd[q]);
		if (s->irqfd >= 0)
			close(s->irqfd);
		virtio_mmio_destroy(&s->t);
	}
	if (vm->vsock)
		virtio_vsock_destroy(vm->vsock);
	if (vm->kept_conn >= 0)
		close(vm->kept_conn);
	if (vm->cmdline[0])
		vm_serial_destroy(&vm->serial);
	if (vm->mem.host)
		munmap(vm->mem.host, vm->mem.size);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	close(vm->stop_fd);
	pthread_mutex_destroy(&vm->stop_lock);
	pthread_mutex_destroy(&vm->pause_lock);
	pthread_cond_destroy(&vm->pause_cond);
	free(vm);
}

/* ---- Pause / resume, and the parts vm/snapshot.c works on ---------------------- */

/* vm_pause() parks the vCPUs, then quiesces the virtio-fs worker (no request
 * in flight); vm_resume() lets both go (the worker re-scans its queues). The
 * vsock I/O thread keeps running: vm/snapshot.c holds every transport lock
 * while it copies rings and memory. */

int vm_pause(struct vm *vm, int timeout_ms, struct sm_error *err)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_req = 1;
	pthread_mutex_unlock(&vm->pause_lock);
	for (int i = 0; i < vm->ncpus; i++) {
		__atomic_store_n(&vm->vcpus[i].run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (vm->vcpus[i].started)
			pthread_kill(vm->vcpus[i].thread, vcpu_signal());
	}
	double deadline = mono_ms() + timeout_ms;
	int r = 0;
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->n_paused < vm->ncpus) {
		if (stopping(vm)) {
			r = sm_error_set(err, ECANCELED, "the VM stopped while pausing");
			break;
		}
		if (mono_ms() > deadline) {
			r = sm_error_set(err, ETIMEDOUT, "vCPUs did not pause within %d ms",
					 timeout_ms);
			break;
		}
		pthread_mutex_unlock(&vm->pause_lock);
		/* A vCPU may be between the immediate_exit check and KVM_RUN: kick again. */
		for (int i = 0; i < vm->ncpus; i++)
			if (vm->vcpus[i].started)
				pthread_kill(vm->vcpus[i].thread, vcpu_signal());
		struct timespec ts = {0, 1000000L};
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&vm->pause_lock);
	}
	pthread_mutex_unlock(&vm->pause_lock);
	/* With the vCPUs parked no new request comes; let the virtio-fs worker
	 * finish the one it serves so rings and memory are consistent. */
	if (r == 0 && vm->fs) {
		double left = deadline - mono_ms();
		r = virtio_fs_pause(vm->fs, left > 1 ? (int)left : 1, err);
	}
	if (r < 0)
		vm_resume(vm);
	return r;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (!stopping(vm))
		for (int i = 0; i < vm->ncpus; i++)
			__atomic_store_n(&vm->vcpus[i].run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	vm->pause_req = 0;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	if (vm->fs)
		virtio_fs_resume(vm->fs);
}

int vm_vsock_keep(struct vm *vm, uint32_t host_port, uint32_t guest_port, struct sm_error *err)
{
	if (!vm->vsock)
		return sm_error_set(err, ENODEV, "this VM has no vsock device");
	int r = virtio_vsock_keep(vm->vsock, host_port, guest_port);
	if (r < 0)
		return sm_error_set(err, -r, "no established vsock connection %u <-> guest port %u",
				    host_port, guest_port);
	return 0;
}

int vm_take_kept_conn(struct vm *vm)
{
	int fd = vm->kept_conn;
	vm->kept_conn = -1;
	return fd;
}

void vm_get_parts(struct vm *vm, struct vm_parts *p)
{
	memset(p, 0, sizeof(*p));
	p->kvm_fd = vm->kvm_fd;
	p->vm_fd = vm->vm_fd;
	p->mem = &vm->mem;
	p->ncpus = vm->ncpus;
	p->vcpus = vm->vcpus;
	p->n_virtio = vm->n_virtio;
	for (int d = 0; d < vm->n_virtio; d++) {
		p->virtio[d] = &vm->virtio[d].t;
		p->virtio_base[d] = vm->virtio[d].base;
	}
	p->serial = &vm->serial;
	p->i8042 = &vm->i8042;
	p->vsock = vm->vsock;
	p->fs = vm->fs;
	p->kept_conn = &vm->kept_conn;
}
