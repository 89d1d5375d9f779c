/* SPDX-License-Identifier: Apache-2.0 */
/*
 * e2e smoke test for the KVM the tests run on: create a VM with 64 KiB of
 * RAM, run a few real-mode instructions that compute a byte, write it to
 * port 0x10 and halt, and check the exits. Fails if /dev/kvm cannot run a
 * guest (including kvm-pvm, which vm_kvm_require_usable() refuses).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sm/vm.h"

#define MEM_SIZE  0x10000
#define CODE_ADDR 0x1000

static int fail(const char *what)
{
	fprintf(stderr, "kvm_smoke: FAIL: %s (%s)\n", what, strerror(errno));
	return 1;
}

int main(void)
{
	struct sm_error err = {0};
	if (vm_kvm_require_usable(&err) < 0) {
		fprintf(stderr, "kvm_smoke: FAIL: %s\n", err.msg);
		return 1;
	}
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("open /dev/kvm");
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		fprintf(stderr, "kvm_smoke: FAIL: KVM API version %d, want %d\n", api,
			KVM_API_VERSION);
		return 1;
	}
	int vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vmfd < 0)
		return fail("KVM_CREATE_VM");
	uint8_t *mem =
		mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return fail("mmap guest memory");
	/* mov al, 0x40; add al, 0x02; out 0x10, al; mov al, 0x99; out 0x11, al; hlt */
	static const uint8_t code[] = {0xb0, 0x40, 0x04, 0x02, 0xe6, 0x10,
				       0xb0, 0x99, 0xe6, 0x11, 0xf4};
	memcpy(mem + CODE_ADDR, code, sizeof(code));
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = MEM_SIZE,
		.userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return fail("KVM_SET_USER_MEMORY_REGION");
	int vcpufd = ioctl(vmfd, KVM_CREATE_VCPU, 0);
	if (vcpufd < 0)
		return fail("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		return fail("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpufd, 0);
	if (run == MAP_FAILED)
		return fail("mmap kvm_run");
	struct kvm_sregs sregs;
	if (ioctl(vcpufd, KVM_GET_SREGS, &sregs) < 0)
		return fail("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpufd, KVM_SET_SREGS, &sregs) < 0)
		return fail("KVM_SET_SREGS");
	struct kvm_regs regs = {.rip = CODE_ADDR, .rflags = 0x2};
	if (ioctl(vcpufd, KVM_SET_REGS, &regs) < 0)
		return fail("KVM_SET_REGS");

	/* Expected exit sequence: out 0x10 <- 0x42, out 0x11 <- 0x99, hlt. */
	const struct {
		uint16_t port;
		uint8_t val;
	} want[] = {{0x10, 0x42}, {0x11, 0x99}};
	unsigned seen = 0;
	for (int iter = 0; iter < 16; iter++) {
		if (ioctl(vcpufd, KVM_RUN, 0) < 0)
			return fail("KVM_RUN");
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 1 ||
			    run->io.count != 1 || seen >= 2) {
				fprintf(stderr, "kvm_smoke: FAIL: unexpected I/O exit port 0x%x\n",
					run->io.port);
				return 1;
			}
			uint8_t v = *((uint8_t *)run + run->io.data_offset);
			printf("kvm_smoke: guest wrote 0x%02x to port 0x%02x\n", v, run->io.port);
			if (run->io.port != want[seen].port || v != want[seen].val) {
				fprintf(stderr, "kvm_smoke: FAIL: want 0x%02x on port 0x%02x\n",
					want[seen].val, want[seen].port);
				return 1;
			}
			seen++;
			break;
		}
		case KVM_EXIT_HLT:
			if (seen != 2) {
				fprintf(stderr, "kvm_smoke: FAIL: halted after %u of 2 writes\n",
					seen);
				return 1;
			}
			printf("kvm_smoke: PASS (guest halted after both writes)\n");
			return 0;
		default:
			fprintf(stderr, "kvm_smoke: FAIL: unexpected exit reason %u\n",
				run->exit_reason);
			return 1;
		}
	}
	fprintf(stderr, "kvm_smoke: FAIL: guest never halted\n");
	return 1;
}
