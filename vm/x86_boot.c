/* SPDX-License-Identifier: Apache-2.0 */
/* x86-64 direct boot of an uncompressed vmlinux, entered in 64-bit mode as
 * Firecracker does: ELF PT_LOAD segments, GDT, identity page tables, the
 * boot_params zero page with command line and e820 map, and an MP table.
 * Everything here only writes guest memory, so it is testable without KVM. */
#include <elf.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "sm/vm.h"

/* boot_params (Documentation/arch/x86/zero-page.rst): only what we fill. */
#define BP_E820_ENTRIES	   0x1e8
#define BP_HDR_BOOT_FLAG   0x1fe
#define BP_HDR_HEADER	   0x202
#define BP_HDR_TYPE_LOADER 0x210
#define BP_HDR_LOADFLAGS   0x211
#define BP_HDR_RAMDISK_IMG 0x218
#define BP_HDR_RAMDISK_SZ  0x21c
#define BP_HDR_CMD_LINE	   0x228
#define BP_HDR_KERNEL_ALGN 0x230
#define BP_HDR_CMDLINE_SZ  0x238
#define BP_E820_TABLE	   0x2d0
#define BP_E820_MAX	   128

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));
_Static_assert(sizeof(struct e820_entry) == 20, "e820 entry layout");
_Static_assert(BP_E820_TABLE + BP_E820_MAX * sizeof(struct e820_entry) <= 0x1000,
	       "e820 table fits the zero page");

#define E820_RAM      1
#define E820_RESERVED 2

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* Source of ELF bytes: an in-memory image or a file descriptor. */
struct elf_src {
	const uint8_t *buf; /* or NULL: read from fd */
	int fd;
	uint64_t len;
};

static int src_read(const struct elf_src *src, void *dst, uint64_t off, uint64_t len)
{
	if (!sm_range_ok(off, len, src->len))
		return -EINVAL;
	if (src->buf) {
		memcpy(dst, src->buf + off, len);
		return 0;
	}
	uint64_t got = 0;
	while (got < len) {
		uint64_t chunk = len - got > (1u << 30) ? (1u << 30) : len - got;
		ssize_t n = pread(src->fd, (uint8_t *)dst + got, chunk, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		got += (uint64_t)n;
	}
	return 0;
}

static int elf_load(const struct vm_mem *mem, const struct elf_src *src, uint64_t *entry,
		    uint64_t *kernel_end, struct sm_error *err)
{
	Elf64_Ehdr eh;
	if (src->len < sizeof(eh))
		return sm_error_set(err, ENOEXEC, "kernel image too small for an ELF header");
	int r = src_read(src, &eh, 0, sizeof(eh));
	if (r < 0)
		return sm_error_errno(err, -r, "cannot read the ELF header");
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
		return sm_error_set(err, ENOEXEC,
				    "kernel is not an ELF file (need an uncompressed vmlinux)");
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64)
		return sm_error_set(err, ENOEXEC, "kernel is not a little-endian x86-64 ELF64");
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
		return sm_error_set(err, ENOEXEC, "kernel ELF has no usable program headers");
	if (!sm_range_ok(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), src->len))
		return sm_error_set(err, ENOEXEC, "kernel ELF program headers out of file bounds");
	uint64_t end = 0;
	int loaded = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		r = src_read(src, &ph, eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (r < 0)
			return sm_error_errno(err, -r, "cannot read ELF program header %u", i);
		if (ph.p_type != PT_LOAD)
			continue;
		if (ph.p_filesz > ph.p_memsz)
			return sm_error_set(err, ENOEXEC, "ELF segment %u: filesz > memsz", i);
		if (!sm_range_ok(ph.p_offset, ph.p_filesz, src->len))
			return sm_error_set(err, ENOEXEC, "ELF segment %u outside the file", i);
		uint8_t *dst = vm_mem_ptr(mem, ph.p_paddr, ph.p_memsz);
		if (!dst || ph.p_paddr < VM_BOOT_HIMEM_START)
			return sm_error_set(err, ENOMEM,
					    "ELF segment %u at 0x%llx+0x%llx does not fit guest "
					    "memory of %llu MiB",
					    i, (unsigned long long)ph.p_paddr,
					    (unsigned long long)ph.p_memsz,
					    (unsigned long long)(mem->size >> 20));
		/* Straight into guest memory: no intermediate copy. */
		r = src_read(src, dst, ph.p_offset, ph.p_filesz);
		if (r < 0)
			return sm_error_errno(err, -r, "cannot read ELF segment %u", i);
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		if (ph.p_paddr + ph.p_memsz > end)
			end = ph.p_paddr + ph.p_memsz;
		loaded++;
	}
	if (!loaded)
		return sm_error_set(err, ENOEXEC, "kernel ELF has no PT_LOAD segment");
	if (!vm_mem_ptr(mem, eh.e_entry, 1))
		return sm_error_set(err, ENOEXEC, "kernel entry 0x%llx outside guest memory",
				    (unsigned long long)eh.e_entry);
	*entry = eh.e_entry;
	if (kernel_end)
		*kernel_end = end;
	return 0;
}

int vm_elf_load(const struct vm_mem *mem, const void *img, size_t len, uint64_t *entry,
		uint64_t *kernel_end, struct sm_error *err)
{
	struct elf_src src = {.buf = img, .fd = -1, .len = len};
	return elf_load(mem, &src, entry, kernel_end, err);
}

int vm_elf_load_fd(const struct vm_mem *mem, int fd, uint64_t file_len, uint64_t *entry,
		   uint64_t *kernel_end, struct sm_error *err)
{
	struct elf_src src = {.buf = NULL, .fd = fd, .len = file_len};
	return elf_load(mem, &src, entry, kernel_end, err);
}

int vm_boot_setup_memory(const struct vm_mem *mem, const char *cmdline, uint64_t initrd_gpa,
			 uint64_t initrd_len, struct sm_error *err)
{
	if (mem->size < (16ULL << 20) || mem->size > VM_MMIO_GAP_START)
		return sm_error_set(err, EINVAL, "guest memory %llu MiB out of range (16..%llu)",
				    (unsigned long long)(mem->size >> 20),
				    (unsigned long long)(VM_MMIO_GAP_START >> 20));
	size_t clen = strlen(cmdline);
	if (clen + 1 > VM_BOOT_CMDLINE_MAX)
		return sm_error_set(err, E2BIG, "kernel command line longer than %d bytes",
				    VM_BOOT_CMDLINE_MAX - 1);
	if (initrd_len &&
	    (!vm_mem_ptr(mem, initrd_gpa, initrd_len) || initrd_gpa + initrd_len > 0xffffffffULL))
		return sm_error_set(err, EINVAL, "initrd outside guest memory");

	/* GDT: null, 64-bit code, data, TSS (Firecracker's layout). */
	static const uint64_t gdt[4] = {
		0, 0x00af9b000000ffffULL, /* 0x08: code, L=1 */
		0x00cf93000000ffffULL,	  /* 0x10: data */
		0x008f8b000000ffffULL,	  /* 0x18: TSS */
	};
	uint8_t *p = vm_mem_ptr(mem, VM_BOOT_GDT_ADDR, sizeof(gdt));
	memcpy(p, gdt, sizeof(gdt));
	memset(vm_mem_ptr(mem, VM_BOOT_IDT_ADDR, 8), 0, 8);

	/* Identity map of the first 4 GiB with 2 MiB pages. */
	uint8_t *pml4 = vm_mem_ptr(mem, VM_BOOT_PML4, 4096);
	uint8_t *pdpte = vm_mem_ptr(mem, VM_BOOT_PDPTE, 4096);
	uint8_t *pde = vm_mem_ptr(mem, VM_BOOT_PDE, 4 * 4096);
	memset(pml4, 0, 4096);
	memset(pdpte, 0, 4096);
	put64(pml4, VM_BOOT_PDPTE | 0x3);
	for (uint64_t i = 0; i < 4; i++)
		put64(pdpte + 8 * i, (VM_BOOT_PDE + i * 4096) | 0x3);
	for (uint64_t i = 0; i < 4 * 512; i++)
		put64(pde + 8 * i, (i << 21) | 0x83);

	/* Command line. */
	uint8_t *cl = vm_mem_ptr(mem, VM_BOOT_CMDLINE, VM_BOOT_CMDLINE_MAX);
	memset(cl, 0, VM_BOOT_CMDLINE_MAX);
	memcpy(cl, cmdline, clen);

	/* Zero page. */
	uint8_t *zp = vm_mem_ptr(mem, VM_BOOT_ZERO_PAGE, 4096);
	memset(zp, 0, 4096);
	put16(zp + BP_HDR_BOOT_FLAG, 0xaa55);
	put32(zp + BP_HDR_HEADER, 0x53726448); /* "HdrS" */
	zp[BP_HDR_TYPE_LOADER] = 0xff;
	zp[BP_HDR_LOADFLAGS] = 0x01; /* LOADED_HIGH */
	put32(zp + BP_HDR_CMD_LINE, (uint32_t)VM_BOOT_CMDLINE);
	put32(zp + BP_HDR_CMDLINE_SZ, (uint32_t)clen);
	put32(zp + BP_HDR_KERNEL_ALGN, 0x01000000);
	put32(zp + BP_HDR_RAMDISK_IMG, (uint32_t)initrd_gpa);
	put32(zp + BP_HDR_RAMDISK_SZ, (uint32_t)initrd_len);

	struct e820_entry e[3] = {
		{0, VM_BOOT_EBDA_START, E820_RAM},
		{VM_BOOT_EBDA_START, VM_BOOT_HIMEM_START - VM_BOOT_EBDA_START, E820_RESERVED},
		{VM_BOOT_HIMEM_START, mem->size - VM_BOOT_HIMEM_START, E820_RAM},
	};
	memcpy(zp + BP_E820_TABLE, e, sizeof(e));
	zp[BP_E820_ENTRIES] = 3;
	return 0;
}

int vm_initrd_place(const struct vm_mem *mem, uint64_t kernel_end, uint64_t len, uint64_t *gpa,
		    struct sm_error *err)
{
	if (len == 0 || len > mem->size)
		return sm_error_set(err, EFBIG, "initrd of %llu bytes does not fit guest memory",
				    (unsigned long long)len);
	uint64_t at = (mem->size - len) & ~0xfffULL;
	if (at < kernel_end || at < VM_BOOT_HIMEM_START)
		return sm_error_set(err, EFBIG,
				    "initrd of %llu KiB does not fit above the kernel in %llu "
				    "MiB of guest memory",
				    (unsigned long long)(len >> 10),
				    (unsigned long long)(mem->size >> 20));
	*gpa = at;
	return 0;
}

/* ---- MP table (Intel MultiProcessor Specification 1.4) ------------------- */

#define MP_IOAPIC_ADDR 0xfec00000U
#define MP_LAPIC_ADDR  0xfee00000U
#define MP_IRQ_LINES   24

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return (uint8_t)(0 - s);
}

int vm_mptable_setup(const struct vm_mem *mem, int ncpus, struct sm_error *err)
{
	if (ncpus < 1 || ncpus > 254)
		return sm_error_set(err, EINVAL, "bad vCPU count %d", ncpus);
	size_t cfg_len = 44 + 20 * (size_t)ncpus + 8 + 8 + 8 * MP_IRQ_LINES + 2 * 8;
	size_t total = 16 + cfg_len;
	if (VM_BOOT_MPTABLE + total > VM_BOOT_HIMEM_START)
		return sm_error_set(err, E2BIG, "MP table too large for %d vCPUs", ncpus);
	uint8_t *base = vm_mem_ptr(mem, VM_BOOT_MPTABLE, total);
	if (!base)
		return sm_error_set(err, EINVAL, "MP table outside guest memory");
	memset(base, 0, total);
	uint8_t *fp = base, *cfg = base + 16, *q = cfg + 44;
	uint8_t ioapic_id = (uint8_t)ncpus;
	uint16_t entries = 0;

	for (int i = 0; i < ncpus; i++, entries++) {
		q[0] = 0;			     /* processor */
		q[1] = (uint8_t)i;		     /* LAPIC id */
		q[2] = 0x14;			     /* LAPIC version */
		q[3] = 1 | (i == 0 ? 2 : 0);	     /* enabled, BSP */
		put32(q + 4, 0x600);		     /* signature */
		put32(q + 8, (1U << 0) | (1U << 9)); /* FPU, APIC */
		q += 20;
	}
	q[0] = 1; /* bus */
	q[1] = 0;
	memcpy(q + 2, "ISA   ", 6);
	q += 8, entries++;
	q[0] = 2; /* IOAPIC */
	q[1] = ioapic_id;
	q[2] = 0x11;
	q[3] = 1;
	put32(q + 4, MP_IOAPIC_ADDR);
	q += 8, entries++;
	for (int irq = 0; irq < MP_IRQ_LINES; irq++, entries++) {
		q[0] = 3; /* I/O interrupt: INT, conforming polarity/trigger */
		q[1] = 0;
		put16(q + 2, 0);
		q[4] = 0;
		q[5] = (uint8_t)irq;
		q[6] = ioapic_id;
		q[7] = (uint8_t)irq;
		q += 8;
	}
	q[0] = 4; /* local interrupt: ExtINT on LINT0 of all CPUs */
	q[1] = 3;
	q[4] = 0;
	q[6] = 0xff;
	q[7] = 0;
	q += 8, entries++;
	q[0] = 4; /* NMI on LINT1 */
	q[1] = 1;
	q[6] = 0xff;
	q[7] = 1;
	q += 8, entries++;

	memcpy(cfg, "PCMP", 4);
	put16(cfg + 4, (uint16_t)cfg_len);
	cfg[6] = 4;
	memcpy(cfg + 8, "SMACHINE", 8);
	memcpy(cfg + 16, "000000000000", 12);
	put16(cfg + 34, entries);
	put32(cfg + 36, MP_LAPIC_ADDR);
	cfg[7] = checksum(cfg, cfg_len);

	memcpy(fp, "_MP_", 4);
	put32(fp + 4, (uint32_t)(VM_BOOT_MPTABLE + 16));
	fp[8] = 1;
	fp[9] = 4;
	fp[10] = checksum(fp, 16);
	return 0;
}
