/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvm_floor: the least host-side work any VMM must do on this /dev/kvm
 * before a guest runs, the floor that smrestore's "start to first KVM_RUN"
 * is compared with (bench/restore.sh).
 *
 *   kvm_floor [-n RUNS] [-m MIB] [-w MS]   (default 10 runs, 256 MiB)
 *
 * -w MS pauses MS milliseconds after KVM_CREATE_PIT2, untimed. For a look at
 * what the memory slot costs: on kvm-pvm KVM_SET_USER_MEMORY_REGION returns
 * no sooner than ~8-10 ms after KVM_CREATE_VM (a wait, not work: after a
 * 10 ms pause it takes ~0.2 ms), so the floor without a pause is mostly
 * that wait (docs/snapshot.md).
 *
 * One run: open /dev/kvm; KVM_CREATE_VM, KVM_SET_TSS_ADDR, KVM_CREATE_IRQCHIP,
 * KVM_CREATE_PIT2; map MIB of anonymous memory and register it as one
 * memslot; KVM_CREATE_VCPU and map its kvm_run; set the vCPU state with the
 * kinds of ioctls a restore uses (KVM_SET_CPUID2, KVM_SET_SREGS, KVM_SET_REGS,
 * KVM_SET_XSAVE, KVM_SET_XCRS, KVM_SET_LAPIC, KVM_SET_MSRS); then the first
 * KVM_RUN, which runs two instructions (`out 0x10, al; hlt`) and exits on
 * the port write. The state values are taken once, before the timed runs,
 * from a throw-away vCPU, so no KVM_GET_* is timed (a restore reads its
 * state from the snapshot, not from KVM). Teardown is timed apart.
 *
 * Prints one JSON object on stdout: medians over the runs of each step and
 * of "to_first_run_ms" (open to the moment KVM_RUN is called, the figure to
 * compare), "first_exit_ms" (that KVM_RUN until it returned) and
 * "teardown_ms", plus the raw "to_first_run_ms" samples. Exit status 0, or
 * 1 with a message on stderr when a KVM call fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 1000

static unsigned pause_ms; /* -w */
#define GUEST_RIP 0x1000
#define OUT_PORT  0x10

enum step { S_OPEN, S_VM, S_IRQCHIP, S_PIT, S_MEMSLOT, S_VCPU, S_CPUID, S_STATE, S_NSTEPS };
static const char *const step_name[S_NSTEPS] = {
	"open_ms",    "create_vm_ms", "irqchip_ms", "pit_ms",
	"memslot_ms", "vcpu_ms",      "cpuid_ms",   "state_ms",
};

/* vCPU state prepared once; the timed runs only set it. */
struct state {
	struct kvm_cpuid2 *cpuid;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	void *xsave;
	int xsave2; /* KVM_CAP_XSAVE2 size when larger than struct kvm_xsave */
	struct kvm_xcrs xcrs;
	int have_xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_msrs *msrs;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int fail(const char *what)
{
	fprintf(stderr, "kvm_floor: %s: %s\n", what, strerror(errno));
	return -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double *s = malloc(sizeof(double) * (size_t)n);
	if (!s)
		return -1;
	memcpy(s, v, sizeof(double) * (size_t)n);
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	double m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	free(s);
	return m;
}

/* Read a sane vCPU state from a throw-away VM: real mode at GUEST_RIP. */
static int prepare(struct state *st)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("open /dev/kvm");
	int ret = -1, vm = -1, vcpu = -1;
	int nent = 256;
	for (;;) {
		st->cpuid = calloc(1, sizeof(*st->cpuid) +
					      (size_t)nent * sizeof(st->cpuid->entries[0]));
		if (!st->cpuid)
			goto out;
		st->cpuid->nent = (uint32_t)nent;
		if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, st->cpuid) == 0)
			break;
		free(st->cpuid);
		st->cpuid = NULL;
		if (errno != E2BIG || nent >= 4096) {
			fail("KVM_GET_SUPPORTED_CPUID");
			goto out;
		}
		nent *= 2;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		fail("KVM_CREATE_VM");
		goto out;
	}
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) {
		fail("KVM_CREATE_IRQCHIP");
		goto out;
	}
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) {
		fail("KVM_CREATE_VCPU");
		goto out;
	}
	if (ioctl(vcpu, KVM_SET_CPUID2, st->cpuid) < 0) {
		fail("KVM_SET_CPUID2");
		goto out;
	}
	if (ioctl(vcpu, KVM_GET_SREGS, &st->sregs) < 0 ||
	    ioctl(vcpu, KVM_GET_REGS, &st->regs) < 0 ||
	    ioctl(vcpu, KVM_GET_LAPIC, &st->lapic) < 0) {
		fail("KVM_GET_SREGS/REGS/LAPIC");
		goto out;
	}
	st->sregs.cs.base = 0;
	st->sregs.cs.selector = 0;
	st->regs.rip = GUEST_RIP;
	st->regs.rflags = 2;
	int x2 = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	size_t xsz = x2 > (int)sizeof(struct kvm_xsave) ? (size_t)x2 : sizeof(struct kvm_xsave);
	st->xsave2 = x2 > (int)sizeof(struct kvm_xsave);
	st->xsave = calloc(1, xsz);
	if (!st->xsave)
		goto out;
	if (ioctl(vcpu, st->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, st->xsave) < 0) {
		fail("KVM_GET_XSAVE");
		goto out;
	}
	st->have_xcrs = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0 &&
			ioctl(vcpu, KVM_GET_XCRS, &st->xcrs) == 0;
	/* The MSRs a 64-bit Linux guest has set up (values as at reset). */
	static const uint32_t idx[] = {
		0x174,	    0x175,	0x176,	    0xc0000081, 0xc0000082, 0xc0000083,
		0xc0000084, 0xc0000102, 0x10,	    0x1a0,	0x2ff,	    0xc0000100,
		0xc0000101, 0xc0000103, 0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d04,
	};
	size_t n = sizeof(idx) / sizeof(idx[0]);
	st->msrs = calloc(1, sizeof(*st->msrs) + n * sizeof(st->msrs->entries[0]));
	if (!st->msrs)
		goto out;
	/* Keep only the MSRs this KVM can read, with the values it reports. */
	uint32_t k = 0;
	for (size_t i = 0; i < n; i++) {
		struct {
			struct kvm_msrs h;
			struct kvm_msr_entry e;
		} one = {.h = {.nmsrs = 1}, .e = {.index = idx[i]}};
		if (ioctl(vcpu, KVM_GET_MSRS, &one) == 1)
			st->msrs->entries[k++] = one.e;
	}
	st->msrs->nmsrs = k;
	ret = 0;
out:
	if (vcpu >= 0)
		close(vcpu);
	if (vm >= 0)
		close(vm);
	close(kvm);
	return ret;
}

/* One timed run; t[] gets the duration of each step. */
static int one_run(const struct state *st, uint64_t mem_size, double t[S_NSTEPS],
		   double *first_exit, double *teardown)
{
	int ret = -1, kvm = -1, vm = -1, vcpu = -1;
	void *ram = MAP_FAILED, *run = MAP_FAILED;
	size_t run_size = 0;
	double p = now_ms(), q;
#define LAP(s)                                                                                     \
	do {                                                                                       \
		q = now_ms();                                                                      \
		t[s] = q - p;                                                                      \
		p = q;                                                                             \
	} while (0)
#define DO(call, what)                                                                             \
	do {                                                                                       \
		if ((call) < 0) {                                                                  \
			fail(what);                                                                \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	DO(kvm, "open /dev/kvm");
	LAP(S_OPEN);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	DO(vm, "KVM_CREATE_VM");
	DO(ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL), "KVM_SET_TSS_ADDR");
	LAP(S_VM);
	DO(ioctl(vm, KVM_CREATE_IRQCHIP, 0), "KVM_CREATE_IRQCHIP");
	LAP(S_IRQCHIP);
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	DO(ioctl(vm, KVM_CREATE_PIT2, &pit), "KVM_CREATE_PIT2");
	LAP(S_PIT);
	if (pause_ms) {
		usleep(pause_ms * 1000u);
		p = now_ms();
	}
	ram = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED) {
		fail("mmap guest memory");
		goto out;
	}
	static const uint8_t code[] = {0xe6, OUT_PORT, 0xf4}; /* out 0x10, al; hlt */
	memcpy((uint8_t *)ram + GUEST_RIP, code, sizeof(code));
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = mem_size,
		.userspace_addr = (uint64_t)(uintptr_t)ram,
	};
	DO(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region), "KVM_SET_USER_MEMORY_REGION");
	LAP(S_MEMSLOT);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	DO(vcpu, "KVM_CREATE_VCPU");
	int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	DO(sz, "KVM_GET_VCPU_MMAP_SIZE");
	run_size = (size_t)sz;
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) {
		fail("mmap kvm_run");
		goto out;
	}
	LAP(S_VCPU);
	DO(ioctl(vcpu, KVM_SET_CPUID2, st->cpuid), "KVM_SET_CPUID2");
	LAP(S_CPUID);
	struct kvm_sregs sregs = st->sregs;
	struct kvm_regs regs = st->regs;
	struct kvm_lapic_state lapic = st->lapic;
	struct kvm_xcrs xcrs = st->xcrs;
	DO(ioctl(vcpu, KVM_SET_SREGS, &sregs), "KVM_SET_SREGS");
	DO(ioctl(vcpu, KVM_SET_REGS, &regs), "KVM_SET_REGS");
	DO(ioctl(vcpu, KVM_SET_XSAVE, st->xsave), "KVM_SET_XSAVE");
	if (st->have_xcrs)
		DO(ioctl(vcpu, KVM_SET_XCRS, &xcrs), "KVM_SET_XCRS");
	DO(ioctl(vcpu, KVM_SET_LAPIC, &lapic), "KVM_SET_LAPIC");
	int n = ioctl(vcpu, KVM_SET_MSRS, st->msrs);
	DO(n, "KVM_SET_MSRS");
	if ((uint32_t)n != st->msrs->nmsrs) {
		fprintf(stderr, "kvm_floor: KVM_SET_MSRS set %d of %u\n", n, st->msrs->nmsrs);
		goto out;
	}
	LAP(S_STATE);
	DO(ioctl(vcpu, KVM_RUN, 0), "KVM_RUN");
	*first_exit = now_ms() - p;
	struct kvm_run *kr = run;
	if (kr->exit_reason != KVM_EXIT_IO || kr->io.port != OUT_PORT) {
		fprintf(stderr, "kvm_floor: first KVM_RUN exit %u, want KVM_EXIT_IO on port %#x\n",
			kr->exit_reason, OUT_PORT);
		goto out;
	}
	ret = 0;
#undef LAP
#undef DO
out:
	p = now_ms();
	if (run != MAP_FAILED)
		munmap(run, run_size);
	if (vcpu >= 0)
		close(vcpu);
	if (vm >= 0)
		close(vm);
	if (ram != MAP_FAILED)
		munmap(ram, mem_size);
	if (kvm >= 0)
		close(kvm);
	*teardown = now_ms() - p;
	return ret;
}

int main(int argc, char **argv)
{
	int runs = 10;
	unsigned long mib = 256;
	for (int i = 1; i < argc; i++) {
		char *end;
		if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			runs = (int)strtol(argv[++i], &end, 10);
			if (*end || runs < 1 || runs > MAX_RUNS) {
				fprintf(stderr, "kvm_floor: -n wants 1..%d\n", MAX_RUNS);
				return 2;
			}
		} else if (!strcmp(argv[i], "-m") && i + 1 < argc) {
			mib = strtoul(argv[++i], &end, 10);
			if (*end || mib < 1 || mib > 65536) {
				fprintf(stderr, "kvm_floor: -m wants 1..65536 MiB\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "-w") && i + 1 < argc) {
			unsigned long w = strtoul(argv[++i], &end, 10);
			if (*end || w > 10000) {
				fprintf(stderr, "kvm_floor: -w wants 0..10000 ms\n");
				return 2;
			}
			pause_ms = (unsigned)w;
		} else {
			fprintf(stderr, "usage: kvm_floor [-n RUNS] [-m MIB] [-w MS]\n");
			return 2;
		}
	}
	struct state st;
	memset(&st, 0, sizeof(st));
	if (prepare(&st) < 0)
		return 1;
	static double steps[S_NSTEPS][MAX_RUNS], total[MAX_RUNS], first[MAX_RUNS], down[MAX_RUNS];
	for (int r = 0; r < runs; r++) {
		double t[S_NSTEPS];
		if (one_run(&st, (uint64_t)mib << 20, t, &first[r], &down[r]) < 0)
			return 1;
		total[r] = 0;
		for (int s = 0; s < S_NSTEPS; s++) {
			steps[s][r] = t[s];
			total[r] += t[s];
		}
	}
	printf("{\"kvm_floor\":1,\"runs\":%d,\"mem_mib\":%lu,\"pause_ms\":%u,\"msrs\":%u,"
	       "\"to_first_run_ms\":%.3f,\"first_exit_ms\":%.3f,\"teardown_ms\":%.3f",
	       runs, mib, pause_ms, st.msrs->nmsrs, median(total, runs), median(first, runs),
	       median(down, runs));
	for (int s = 0; s < S_NSTEPS; s++)
		printf(",\"%s\":%.3f", step_name[s], median(steps[s], runs));
	printf(",\"samples_ms\":[");
	for (int r = 0; r < runs; r++)
		printf("%s%.3f", r ? "," : "", total[r]);
	printf("]}\n");
	free(st.cpuid);
	free(st.xsave);
	free(st.msrs);
	return 0;
}
