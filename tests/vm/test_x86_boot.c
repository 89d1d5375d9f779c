/* SPDX-License-Identifier: Apache-2.0 */
/* x86-64 boot builders (ELF loader, zero page, e820, page tables, GDT, MP
 * table, initrd placement), the I/O bus, and the initramfs writer. */
#include <archive.h>
#include <archive_entry.h>
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "sm/vm.h"

#define MEM (64ULL << 20)

static struct vm_mem mem_new(void)
{
	struct vm_mem m = {.host = calloc(1, MEM), .size = MEM};
	return m;
}

/* A minimal vmlinux-like ELF: two PT_LOAD segments and a note. */
struct fake_elf {
	Elf64_Ehdr eh;
	Elf64_Phdr ph[3];
	uint8_t text[64];
	uint8_t data[32];
};

static void fake_elf_init(struct fake_elf *f)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->eh.e_ident, ELFMAG, SELFMAG);
	f->eh.e_ident[EI_CLASS] = ELFCLASS64;
	f->eh.e_ident[EI_DATA] = ELFDATA2LSB;
	f->eh.e_machine = EM_X86_64;
	f->eh.e_type = ET_EXEC;
	f->eh.e_entry = 0x1000000;
	f->eh.e_phoff = offsetof(struct fake_elf, ph);
	f->eh.e_phentsize = sizeof(Elf64_Phdr);
	f->eh.e_phnum = 3;
	f->ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
				.p_offset = offsetof(struct fake_elf, text),
				.p_paddr = 0x1000000,
				.p_filesz = 64,
				.p_memsz = 64};
	f->ph[1] = (Elf64_Phdr){.p_type = PT_NOTE,
				.p_offset = 0,
				.p_paddr = 0xffffffff00000000,
				.p_filesz = 0xffffffff,
				.p_memsz = 0xffffffff};
	f->ph[2] = (Elf64_Phdr){.p_type = PT_LOAD,
				.p_offset = offsetof(struct fake_elf, data),
				.p_paddr = 0x1200000,
				.p_filesz = 32,
				.p_memsz = 4096};
	memset(f->text, 0x90, sizeof(f->text));
	memset(f->data, 0x42, sizeof(f->data));
}

static void test_elf_load(void **state)
{
	(void)state;
	struct vm_mem m = mem_new();
	struct fake_elf f;
	fake_elf_init(&f);
	memset(m.host + 0x1200000, 0xcc, 8192); /* bss must be zeroed */
	uint64_t entry = 0, end = 0;
	struct sm_error err = {0};
	assert_int_equal(vm_elf_load(&m, &f, sizeof(f), &entry, &end, &err), 0);
	assert_int_equal(entry, 0x1000000);
	assert_int_equal(end, 0x1201000);
	assert_int_equal(m.host[0x1000000], 0x90);
	assert_int_equal(m.host[0x1200000 + 31], 0x42);
	assert_int_equal(m.host[0x1200000 + 32], 0);
	assert_int_equal(m.host[0x1200000 + 4095], 0);
	assert_int_equal(m.host[0x1200000 + 4096], 0xcc);
	free(m.host);
}

static void test_elf_load_fd(void **state)
{
	(void)state;
	struct vm_mem m = mem_new();
	struct fake_elf f;
	fake_elf_init(&f);
	FILE *tf = tmpfile();
	assert_non_null(tf);
	assert_int_equal(fwrite(&f, 1, sizeof(f), tf), sizeof(f));
	fflush(tf);
	uint64_t entry = 0, end = 0;
	struct sm_error err = {0};
	assert_int_equal(vm_elf_load_fd(&m, fileno(tf), sizeof(f), &entry, &end, &err), 0);
	assert_int_equal(entry, 0x1000000);
	assert_int_equal(end, 0x1201000);
	assert_int_equal(m.host[0x1200000 + 31], 0x42);
	/* A file shorter than its segments claim: refused. */
	assert_true(vm_elf_load_fd(&m, fileno(tf), sizeof(f) - 8, &entry, &end, &err) < 0);
	f.ph[2].p_offset = sizeof(f) + 100; /* segment beyond the end of the file */
	rewind(tf);
	assert_int_equal(fwrite(&f, 1, sizeof(f), tf), sizeof(f));
	fflush(tf);
	assert_true(vm_elf_load_fd(&m, fileno(tf), sizeof(f), &entry, &end, &err) < 0);
	assert_non_null(strstr(err.msg, "outside the file"));
	fclose(tf);
	free(m.host);
}

static void expect_refused(struct fake_elf *f, size_t len, const char *msg)
{
	struct vm_mem m = mem_new();
	uint64_t entry;
	struct sm_error err = {0};
	assert_true(vm_elf_load(&m, f, len, &entry, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, msg));
	free(m.host);
}

static void test_elf_hostile(void **state)
{
	(void)state;
	struct fake_elf f;
	fake_elf_init(&f);
	expect_refused(&f, 10, "too small");
	fake_elf_init(&f);
	f.eh.e_ident[0] = 0x7e;
	expect_refused(&f, sizeof(f), "not an ELF");
	fake_elf_init(&f);
	f.eh.e_machine = EM_AARCH64;
	expect_refused(&f, sizeof(f), "x86-64");
	fake_elf_init(&f);
	f.eh.e_phoff = 0xfffffffffffffff0ULL;
	expect_refused(&f, sizeof(f), "program headers");
	fake_elf_init(&f);
	f.eh.e_phnum = 0xffff;
	expect_refused(&f, sizeof(f), "program headers");
	fake_elf_init(&f);
	f.ph[0].p_offset = sizeof(f) - 10; /* runs past the file */
	expect_refused(&f, sizeof(f), "outside the file");
	fake_elf_init(&f);
	f.ph[0].p_filesz = 128;
	expect_refused(&f, sizeof(f), "filesz > memsz");
	fake_elf_init(&f);
	f.ph[2].p_paddr = MEM - 100; /* memsz 4096 does not fit */
	expect_refused(&f, sizeof(f), "does not fit guest memory");
	fake_elf_init(&f);
	f.ph[2].p_paddr = 0xfffffffffffff000ULL; /* wraps */
	expect_refused(&f, sizeof(f), "does not fit guest memory");
	fake_elf_init(&f);
	f.ph[0].p_paddr = 0x1000; /* would overwrite our boot structures */
	expect_refused(&f, sizeof(f), "does not fit");
	fake_elf_init(&f);
	f.eh.e_entry = MEM + 5;
	expect_refused(&f, sizeof(f), "entry");
	fake_elf_init(&f);
	f.ph[0].p_type = PT_NULL;
	f.ph[2].p_type = PT_NULL;
	expect_refused(&f, sizeof(f), "no PT_LOAD");
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}
static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void test_boot_memory(void **state)
{
	(void)state;
	struct vm_mem m = mem_new();
	struct sm_error err = {0};
	const char *cl = "console=ttyS0 rdinit=/init";
	assert_int_equal(vm_boot_setup_memory(&m, cl, 0x2000000, 12345, &err), 0);
	const uint8_t *zp = m.host + VM_BOOT_ZERO_PAGE;
	assert_int_equal(zp[0x1fe] | (zp[0x1ff] << 8), 0xaa55);
	assert_int_equal(rd32(zp + 0x202), 0x53726448);
	assert_int_equal(zp[0x210], 0xff);
	assert_int_equal(rd32(zp + 0x228), VM_BOOT_CMDLINE);
	assert_int_equal(rd32(zp + 0x238), strlen(cl));
	assert_string_equal((const char *)m.host + VM_BOOT_CMDLINE, cl);
	assert_int_equal(rd32(zp + 0x218), 0x2000000);
	assert_int_equal(rd32(zp + 0x21c), 12345);
	/* e820: low RAM, a reserved hole (MP table, BIOS area), high RAM. */
	assert_int_equal(zp[0x1e8], 3);
	const uint8_t *e = zp + 0x2d0;
	assert_int_equal(rd64(e), 0);
	assert_int_equal(rd64(e + 8), VM_BOOT_EBDA_START);
	assert_int_equal(rd32(e + 16), 1);
	assert_int_equal(rd32(e + 36), 2);
	assert_int_equal(rd64(e + 40), VM_BOOT_HIMEM_START);
	assert_int_equal(rd64(e + 48), MEM - VM_BOOT_HIMEM_START);
	assert_int_equal(rd32(e + 56), 1);
	/* Page tables: identity map with 2 MiB pages up to 4 GiB. */
	assert_int_equal(rd64(m.host + VM_BOOT_PML4), VM_BOOT_PDPTE | 3);
	assert_int_equal(rd64(m.host + VM_BOOT_PDPTE + 8 * 3), (VM_BOOT_PDE + 3 * 4096) | 3);
	assert_int_equal(rd64(m.host + VM_BOOT_PDE), 0x83);
	assert_int_equal(rd64(m.host + VM_BOOT_PDE + 8 * 2047), (2047ULL << 21) | 0x83);
	/* GDT: 64-bit code segment at selector 0x8. */
	assert_int_equal(rd64(m.host + VM_BOOT_GDT_ADDR + 8), 0x00af9b000000ffffULL);

	/* Refusals: command line too long, initrd outside RAM, memory size. */
	char *longcl = malloc(VM_BOOT_CMDLINE_MAX + 1);
	memset(longcl, 'x', VM_BOOT_CMDLINE_MAX);
	longcl[VM_BOOT_CMDLINE_MAX] = 0;
	assert_int_equal(vm_boot_setup_memory(&m, longcl, 0, 0, &err), -E2BIG);
	free(longcl);
	assert_int_equal(vm_boot_setup_memory(&m, cl, MEM - 10, 100, &err), -EINVAL);
	struct vm_mem tiny = {.host = m.host, .size = 1 << 20};
	assert_int_equal(vm_boot_setup_memory(&tiny, cl, 0, 0, &err), -EINVAL);
	free(m.host);
}

static void test_mptable(void **state)
{
	(void)state;
	struct vm_mem m = mem_new();
	struct sm_error err = {0};
	assert_int_equal(vm_mptable_setup(&m, 4, &err), 0);
	const uint8_t *fp = m.host + VM_BOOT_MPTABLE;
	assert_memory_equal(fp, "_MP_", 4);
	uint8_t sum = 0;
	for (int i = 0; i < 16; i++)
		sum += fp[i];
	assert_int_equal(sum, 0);
	uint32_t cfg_at = rd32(fp + 4);
	const uint8_t *cfg = m.host + cfg_at;
	assert_memory_equal(cfg, "PCMP", 4);
	uint16_t len = (uint16_t)(cfg[4] | (cfg[5] << 8));
	sum = 0;
	for (int i = 0; i < len; i++)
		sum += cfg[i];
	assert_int_equal(sum, 0);
	uint16_t entries = (uint16_t)(cfg[34] | (cfg[35] << 8));
	assert_int_equal(entries, 4 + 1 + 1 + 24 + 2);
	/* processors: ids 0..3, only 0 is the BSP */
	assert_int_equal(cfg[44 + 0], 0);
	assert_int_equal(cfg[44 + 3], 3);
	assert_int_equal(cfg[44 + 20 + 1], 1);
	assert_int_equal(cfg[44 + 20 + 3], 1);
	assert_true(cfg_at + len <= VM_BOOT_HIMEM_START);
	assert_int_equal(vm_mptable_setup(&m, 0, &err), -EINVAL);
	assert_int_equal(vm_mptable_setup(&m, 255, &err), -EINVAL);
	free(m.host);
}

static void test_initrd_place(void **state)
{
	(void)state;
	struct vm_mem m = {.host = NULL, .size = MEM};
	uint64_t gpa;
	struct sm_error err = {0};
	assert_int_equal(vm_initrd_place(&m, 0x2000000, 5000, &gpa, &err), 0);
	assert_int_equal(gpa & 0xfff, 0);
	assert_true(gpa + 5000 <= MEM);
	assert_true(gpa >= 0x2000000);
	assert_true(vm_initrd_place(&m, MEM - 4096, 5000, &gpa, &err) < 0);
	assert_true(vm_initrd_place(&m, 0, MEM + 1, &gpa, &err) < 0);
	assert_true(vm_initrd_place(&m, 0, 0, &gpa, &err) < 0);
}

static int hits;
static uint64_t last_off;
static void h(struct vm_vcpu *c, uint64_t off, uint8_t *data, uint32_t len, int w, void *o)
{
	(void)c, (void)data, (void)len, (void)w, (void)o;
	hits++;
	last_off = off;
}

static void test_io_bus(void **state)
{
	(void)state;
	struct vm_io_bus bus = {0};
	struct sm_error err = {0};
	assert_int_equal(vm_io_bus_register(&bus, 0x3f8, 8, h, NULL, &err), 0);
	assert_int_equal(vm_io_bus_register(&bus, 0x3f0, 9, h, NULL, &err), -EEXIST);
	assert_int_equal(vm_io_bus_register(&bus, 0x3ff, 1, h, NULL, &err), -EEXIST);
	assert_int_equal(vm_io_bus_register(&bus, 0x3f0, 8, h, NULL, &err), 0); /* adjacent */
	assert_int_equal(vm_io_bus_register(&bus, 0x400, 0, h, NULL, &err), -EINVAL);
	assert_int_equal(vm_io_bus_register(&bus, ~0ULL, 2, h, NULL, &err), -EINVAL);
	uint8_t d[4] = {0};
	assert_int_equal(vm_io_bus_dispatch(&bus, NULL, 0x3fa, d, 1, 0), 1);
	assert_int_equal(hits, 1);
	assert_int_equal(last_off, 2);
	assert_int_equal(vm_io_bus_dispatch(&bus, NULL, 0x500, d, 4, 0), 0);
	assert_int_equal(rd32(d), 0xffffffff); /* unclaimed reads: all ones */
	for (int i = 0; i < VM_IO_MAX_RANGES; i++)
		vm_io_bus_register(&bus, 0x10000 + 16 * (uint64_t)i, 16, h, NULL, &err);
	assert_int_equal(bus.n, VM_IO_MAX_RANGES);
	assert_int_equal(vm_io_bus_register(&bus, 0x90000, 1, h, NULL, &err), -ENOSPC);
}

static void test_initramfs(void **state)
{
	(void)state;
	char agent[] = "/tmp/sm-agent-XXXXXX";
	int fd = mkstemp(agent);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\177ELF-agent", 10), 10);
	close(fd);
	struct stat st;
	const char *bb = stat("/bin/busybox", &st) == 0 ? "/bin/busybox" : NULL;
	void *img;
	size_t len;
	struct sm_error err = {0};
	assert_int_equal(vm_initramfs_build(agent, bb, &img, &len, &err), 0);
	struct archive *a = archive_read_new();
	archive_read_support_format_cpio(a);
	assert_int_equal(archive_read_open_memory(a, img, len), ARCHIVE_OK);
	struct archive_entry *e;
	int saw_init = 0, saw_console = 0, saw_sh = 0, saw_bb = 0;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *p = archive_entry_pathname(e);
		assert_int_equal(archive_format(a), ARCHIVE_FORMAT_CPIO_SVR4_NOCRC);
		assert_true(p[0] != '/' && !strstr(p, ".."));
		if (!strcmp(p, "init")) {
			char buf[16] = {0};
			assert_int_equal(archive_read_data(a, buf, sizeof(buf)), 10);
			assert_memory_equal(buf, "\177ELF-agent", 10);
			assert_int_equal(archive_entry_perm(e), 0755);
			saw_init = 1;
		} else if (!strcmp(p, "dev/console")) {
			assert_int_equal(archive_entry_filetype(e), AE_IFCHR);
			assert_int_equal(archive_entry_rdevmajor(e), 5);
			assert_int_equal(archive_entry_rdevminor(e), 1);
			saw_console = 1;
		} else if (!strcmp(p, "bin/sh")) {
			assert_string_equal(archive_entry_symlink(e), "/bin/busybox");
			saw_sh = 1;
		} else if (!strcmp(p, "bin/busybox")) {
			saw_bb = 1;
		}
	}
	archive_read_free(a);
	free(img);
	assert_true(saw_init && saw_console);
	if (bb)
		assert_true(saw_sh && saw_bb);
	/* A missing agent is a clear error. */
	unlink(agent);
	assert_true(vm_initramfs_build(agent, NULL, &img, &len, &err) < 0);
	assert_non_null(strstr(err.msg, agent));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_elf_load),    cmocka_unit_test(test_elf_load_fd),
		cmocka_unit_test(test_elf_hostile), cmocka_unit_test(test_boot_memory),
		cmocka_unit_test(test_mptable),	    cmocka_unit_test(test_initrd_place),
		cmocka_unit_test(test_io_bus),	    cmocka_unit_test(test_initramfs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
