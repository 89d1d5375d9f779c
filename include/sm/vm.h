/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vm: the KVM monitor.
 *
 * This header is the public face of vm/. Functions return 0 (or a
 * non-negative value) on success and a negative errno on failure, with
 * details in the struct sm_error out-parameter.
 */
#pragma once

#include "sm/error.h"

/* ---- KVM flavour detection (vm/kvm_detect.c) ---------------------------- */

enum vm_kvm_kind {
	VM_KVM_NONE = 0,     /* no /dev/kvm */
	VM_KVM_HARDWARE = 1, /* /dev/kvm backed by VMX or SVM: runs Linux guests */
	VM_KVM_PVM = 2,	     /* kvm-pvm: needs PVM-patched guests, cannot run ours */
	VM_KVM_UNKNOWN = 3,  /* /dev/kvm present, no vmx/svm flag, no kvm-pvm */
};

/* Decide which KVM this host offers by looking at ROOT/dev/kvm,
 * ROOT/sys/module/kvm_pvm and the vmx/svm flags in ROOT/proc/cpuinfo.
 * ROOT is "" (or NULL) for the running system; tests pass a fake tree.
 * Never opens /dev/kvm. Returns 0 and sets *kind, or -errno when cpuinfo
 * cannot be read. */
int vm_kvm_probe(const char *root, enum vm_kvm_kind *kind, struct sm_error *err);

/* Short name of a kind: "none", "hardware", "kvm-pvm", "unknown". */
const char *vm_kvm_kind_name(enum vm_kvm_kind kind);

/* Probe the running system and fail with a message that says what to do
 * unless it has KVM that can run an unmodified Linux guest. kvm-pvm yields
 * "this host's /dev/kvm is kvm-pvm, which cannot run unmodified Linux
 * guests ...". VM_KVM_UNKNOWN is accepted (nested setups may hide flags),
 * so only /dev/kvm and /sys/module/kvm_pvm are looked at (two stat calls,
 * cheap enough for every restore); vm_kvm_probe() tells hardware apart. */
int vm_kvm_require_usable(struct sm_error *err);

/* ---- Guest memory (vm/guest_mem.c) --------------------------------------- */

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

/* Guest RAM: one host mapping backing guest physical [0, size). */
struct vm_mem {
	uint8_t *host;
	uint64_t size;
};

/* Host pointer for guest range [gpa, gpa+len), or NULL when any byte of it
 * lies outside guest RAM (overflow-safe). len 0 is valid inside RAM. */
static inline void *vm_mem_ptr(const struct vm_mem *mem, uint64_t gpa, uint64_t len)
{
	if (!mem || !mem->host || !sm_range_ok(gpa, len, mem->size))
		return NULL;
	return mem->host + gpa;
}

/* ---- x86-64 boot (vm/x86_boot.c): pure builders, testable without KVM ---- */

/* Fixed guest-physical layout used for a direct 64-bit vmlinux boot. */
#define VM_BOOT_GDT_ADDR    0x500ULL
#define VM_BOOT_IDT_ADDR    0x520ULL
#define VM_BOOT_ZERO_PAGE   0x7000ULL
#define VM_BOOT_STACK	    0x8ff0ULL
#define VM_BOOT_PML4	    0x9000ULL
#define VM_BOOT_PDPTE	    0xa000ULL
#define VM_BOOT_PDE	    0xb000ULL /* 4 pages: identity map of 4 GiB */
#define VM_BOOT_MPTABLE	    0x9fc00ULL
#define VM_BOOT_EBDA_START  0x9fc00ULL
#define VM_BOOT_CMDLINE	    0x20000ULL
#define VM_BOOT_CMDLINE_MAX 4096
#define VM_BOOT_HIMEM_START 0x100000ULL
#define VM_MMIO_GAP_START   0xc0000000ULL /* RAM stops here; MMIO above */
#define VM_VIRTIO_MMIO_BASE 0xd0000000ULL
#define VM_VIRTIO_MMIO_SIZE 0x1000ULL
#define VM_VIRTIO_IRQ_BASE  5

/* Load the PT_LOAD segments of the ELF64 x86-64 image IMG (LEN bytes) into
 * guest memory at their physical addresses, each checked against guest RAM
 * and the image bounds. Sets *entry to the physical entry point. */
int vm_elf_load(const struct vm_mem *mem, const void *img, size_t len, uint64_t *entry,
		uint64_t *kernel_end, struct sm_error *err);

/* The same, reading the file FD of FILE_LEN bytes with pread() straight
 * into guest memory (no intermediate copy). */
int vm_elf_load_fd(const struct vm_mem *mem, int fd, uint64_t file_len, uint64_t *entry,
		   uint64_t *kernel_end, struct sm_error *err);

/* Write the GDT, identity page tables (4 GiB with 2 MiB pages), and the
 * boot_params zero page (command line copied to VM_BOOT_CMDLINE, e820 map
 * of guest RAM, initrd at INITRD_GPA/INITRD_LEN, 0 when none). */
int vm_boot_setup_memory(const struct vm_mem *mem, const char *cmdline, uint64_t initrd_gpa,
			 uint64_t initrd_len, struct sm_error *err);

/* Write an MP table (floating pointer + config table) announcing NCPUS
 * processors, an IOAPIC and ISA interrupts, at VM_BOOT_MPTABLE. */
int vm_mptable_setup(const struct vm_mem *mem, int ncpus, struct sm_error *err);

/* Place an initrd of LEN bytes at the highest page-aligned address that
 * fits below the end of RAM and above KERNEL_END; returns the GPA in *gpa. */
int vm_initrd_place(const struct vm_mem *mem, uint64_t kernel_end, uint64_t len, uint64_t *gpa,
		    struct sm_error *err);

/* ---- Port I/O and MMIO dispatch (vm/io_bus.c) ---------------------------- */

struct vm_vcpu;

enum vm_io_space {
	VM_IO_PIO = 0,
	VM_IO_MMIO = 1,
};

/* One handler signature for both spaces (kvmtool style). OFF is relative to
 * the registered base; DATA holds LEN (1..8) bytes, filled on reads. */
typedef void (*vm_io_fn)(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len,
			 int is_write, void *opaque);

#define VM_IO_MAX_RANGES 32

struct vm_io_range {
	uint64_t base, len;
	vm_io_fn fn;
	void *opaque;
};

struct vm_io_bus {
	struct vm_io_range r[VM_IO_MAX_RANGES];
	int n;
};

/* Register [base, base+len) on BUS; refuses overlaps, empty or wrapping
 * ranges and a full table with -EEXIST/-EINVAL/-ENOSPC. Not thread-safe:
 * register everything before vCPUs run. */
int vm_io_bus_register(struct vm_io_bus *bus, uint64_t base, uint64_t len, vm_io_fn fn,
		       void *opaque, struct sm_error *err);

/* Dispatch one access. Returns 1 when a handler took it, 0 when nothing is
 * registered there (reads then return all ones). */
int vm_io_bus_dispatch(const struct vm_io_bus *bus, struct vm_vcpu *vcpu, uint64_t addr,
		       uint8_t *data, uint32_t len, int is_write);

/* ---- Split virtqueues (vm/virtqueue.c) ------------------------------------ */

#define VIRTQ_MAX_SIZE 1024

struct virtq {
	uint16_t size; /* negotiated queue size (power of two) */
	uint16_t max_size;
	int ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t last_avail; /* next avail ring slot to consume */
	uint16_t used_idx;   /* next used ring index to publish */
	int broken;	     /* guest gave us a malformed ring: stop serving it */
};

/* One segment of a descriptor chain, already translated to host memory. */
struct virtq_seg {
	uint8_t *p;
	uint32_t len;
};

#define VIRTQ_MAX_SEGS 64

/* A popped descriptor chain: device-readable segments (out) first, then
 * device-writable ones (in). */
struct virtq_elem {
	uint16_t head;
	int n_out, n_in;
	struct virtq_seg out[VIRTQ_MAX_SEGS];
	struct virtq_seg in[VIRTQ_MAX_SEGS];
	uint64_t out_len, in_len;
};

/* Check that the rings of Q (size, addresses) lie in guest memory. Returns
 * 0 or -EINVAL with a message; called when the driver sets QueueReady. */
int virtq_validate(const struct virtq *q, const struct vm_mem *mem, struct sm_error *err);

/* Pop the next available chain into *E. Returns 1 when one was popped, 0
 * when the ring is empty, -EINVAL (and marks Q broken) on a malformed
 * chain: index out of range, loop, address or length outside guest memory,
 * writable before readable, too many segments. */
int virtq_pop(struct virtq *q, const struct vm_mem *mem, struct virtq_elem *e);

/* Return chain HEAD to the driver with LEN bytes written. */
void virtq_push(struct virtq *q, const struct vm_mem *mem, uint16_t head, uint32_t len);

/* Does the avail ring hold chains we have not popped? */
int virtq_has_avail(const struct virtq *q, const struct vm_mem *mem);

/* Copy up to LEN bytes from the readable segments of E starting at byte
 * OFF into BUF; returns the number copied. */
size_t virtq_elem_read(const struct virtq_elem *e, size_t off, void *buf, size_t len);

/* Copy LEN bytes into the writable segments of E starting at byte OFF;
 * returns the number copied (less when the chain is too short). */
size_t virtq_elem_write(const struct virtq_elem *e, size_t off, const void *buf, size_t len);

/* ---- virtio-mmio transport (vm/virtio_mmio.c) ----------------------------- */

#define VIRTIO_MMIO_MAX_QUEUES 8
#define VIRTIO_F_VERSION_1_BIT 32

struct virtio_mmio;

/* What a device plugs into the transport (explicit table, no magic). */
struct virtio_dev_ops {
	const char *name;
	uint32_t device_id;
	uint64_t features; /* device features; VIRTIO_F_VERSION_1 is added */
	uint32_t num_queues;
	uint16_t queue_max;
	uint32_t config_len;
	/* Fill DATA with LEN bytes of config space at OFF (already bounds-checked). */
	void (*config_read)(void *dev, uint32_t off, uint8_t *data, uint32_t len);
	/* Queue QIDX was kicked; called with the transport lock held. */
	void (*queue_notify)(void *dev, uint32_t qidx);
	/* DRIVER_OK was set (1) or the device was reset (0); lock held. */
	void (*status_changed)(void *dev, int driver_ok);
	/* Shared memory region ID (virtio 1.2, 2.10): 1 with its guest-physical
	 * base and length, 0 when there is none. NULL: no regions. */
	int (*shm_region)(void *dev, uint32_t id, uint64_t *base, uint64_t *len);
};

struct virtio_mmio {
	const struct virtio_dev_ops *ops;
	void *dev;
	const struct vm_mem *mem;
	pthread_mutex_t lock;
	uint32_t status;
	uint32_t dev_features_sel, drv_features_sel;
	uint64_t drv_features;
	uint32_t queue_sel;
	uint32_t isr;
	uint32_t config_generation;
	uint32_t shm_sel;
	struct virtq vq[VIRTIO_MMIO_MAX_QUEUES];
	/* Raise the device's interrupt line (irqfd write); may be NULL. */
	void (*irq)(void *ctx);
	void *irq_ctx;
	struct sm_error last_err; /* why the device went broken, if it did */
};

/* Prepare transport T for device DEV with OPS over guest memory MEM. */
int virtio_mmio_init(struct virtio_mmio *t, const struct virtio_dev_ops *ops, void *dev,
		     const struct vm_mem *mem, struct sm_error *err);
void virtio_mmio_destroy(struct virtio_mmio *t);

/* Guest access to the register window at OFF (LEN 1, 2 or 4 bytes; config
 * space also accepts 8). Never fails: bad accesses read 0 / are ignored. */
void virtio_mmio_access(struct virtio_mmio *t, uint64_t off, uint8_t *data, uint32_t len,
			int is_write);

/* io_bus adaptor: opaque is the struct virtio_mmio. */
void virtio_mmio_io(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len, int is_write,
		    void *opaque);

/* A kick arrived for QIDX outside the MMIO path (ioeventfd). Takes the lock. */
void virtio_mmio_kick(struct virtio_mmio *t, uint32_t qidx);

/* Mark used buffers and raise the interrupt (call with the lock held). */
void virtio_mmio_signal_used(struct virtio_mmio *t);

/* The device found a fatal guest error: set DEVICE_NEEDS_RESET, raise a
 * config interrupt. Lock held. */
void virtio_mmio_set_broken(struct virtio_mmio *t);

/* Queue QIDX when the driver made it ready and the device is running, else NULL. */
struct virtq *virtio_mmio_queue(struct virtio_mmio *t, uint32_t qidx);

/* ---- Devices ---------------------------------------------------------------- */

/* virtio-rng: fills guest buffers from getrandom(). */
struct virtio_rng {
	struct virtio_mmio *t;
};
extern const struct virtio_dev_ops virtio_rng_ops;

/* virtio-vsock in user space. The host side is a Unix socket at UDS_PATH
 * (Firecracker style): a host process connects and writes "CONNECT <port>\n"
 * and gets "OK <hostport>\n" once the guest accepted. A guest connection to
 * CID 2 port P connects to the Unix socket "<UDS_PATH>_<P>". */
#define VIRTIO_VSOCK_GUEST_CID 3
#define VIRTIO_VSOCK_BUF_ALLOC (256 * 1024)

struct virtio_vsock;

/* Create the device; binds and listens on UDS_PATH (removed first). */
int virtio_vsock_create(struct virtio_vsock **out, const char *uds_path, uint64_t guest_cid,
			struct sm_error *err);
void virtio_vsock_destroy(struct virtio_vsock *v);
extern const struct virtio_dev_ops virtio_vsock_ops;

/* Wire the device to its transport (needed before the guest runs). */
void virtio_vsock_attach(struct virtio_vsock *v, struct virtio_mmio *t);

/* Connection counts for tests: established, total. */
void virtio_vsock_stats(struct virtio_vsock *v, int *established, int *total);

/* Test hooks: credit a connection sees from the peer. */
struct virtio_vsock_credit {
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt, fwd_cnt, buf_alloc, buffered;
};
int virtio_vsock_conn_credit(struct virtio_vsock *v, uint32_t local_port, uint32_t peer_port,
			     struct virtio_vsock_credit *c);

/* virtio-fs (device id 26): a host directory over the FUSE server of fuse/
 * (passthrough backend), hiprio + one request queue served by a worker
 * thread, and an optional DAX window (shared memory region 0). */
#define VIRTIO_FS_DEVICE_ID 26
/* The DAX window sits far above RAM and the MMIO gap, at 64 GiB. */
#define VM_DAX_WINDOW_GPA     0x1000000000ULL
#define VM_DAX_WINDOW_MAX_MIB (64 * 1024)
#define VM_DAX_FIRST_SLOT     32 /* KVM memory slots of DAX mappings start here */

struct virtio_fs;
struct fuse_server;
struct fuse_dax;
struct fuse_dax_mapper;

struct virtio_fs_config {
	const char *root_dir; /* shared host directory */
	const char *tag;      /* NULL: "rootfs" (at most 36 bytes) */
	int read_only;	      /* every mutation gets EROFS */
	uint64_t dax_gpa;     /* DAX window [dax_gpa, +dax_len); dax_len 0: none */
	uint64_t dax_len;
	int vm_fd;	     /* for the window's memory slots; -1: host mappings only (tests) */
	uint32_t first_slot; /* KVM slot ids first_slot .. first_slot+max_slots-1 */
	uint32_t max_slots;
};

/* Create the device: the FUSE server over root_dir and, with dax_len, the
 * window's host reservation and DAX session. */
int virtio_fs_create(struct virtio_fs **out, const struct virtio_fs_config *cfg,
		     struct sm_error *err);
/* Wire the device to its transport and start its worker (before the guest runs). */
int virtio_fs_attach(struct virtio_fs *fs, struct virtio_mmio *t, struct sm_error *err);
/* Stop the worker, free the server, the DAX session (unmapping every slot)
 * and the window. Call before the transport, guest RAM and VM fd go. */
void virtio_fs_destroy(struct virtio_fs *fs);
extern const struct virtio_dev_ops virtio_fs_ops;
/* io_bus handler for the DAX window (opaque: the struct virtio_fs): a guest
 * access where no memory slot is goes to fuse_dax_fault(); a claimed access
 * is completed through the new mapping, anything else reads all ones. */
void virtio_fs_dax_io(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len, int is_write,
		      void *opaque);
/* The device's server and DAX session (NULL without a window), for snapshots. */
struct fuse_server *virtio_fs_server(struct virtio_fs *fs);
struct fuse_dax *virtio_fs_dax(struct virtio_fs *fs);
/* Snapshots: stop taking chains and wait (up to TIMEOUT_MS) until no
 * request is in flight; -ETIMEDOUT (and resumed) otherwise. Resume looks at
 * every queue again (kicks that came meanwhile, or before a capture). */
int virtio_fs_pause(struct virtio_fs *fs, int timeout_ms, struct sm_error *err);
void virtio_fs_resume(struct virtio_fs *fs);
/* What a restored device must match: tag (NUL-padded, 36 bytes), read-only,
 * DAX window (0/0 without one). */
struct virtio_fs_layout {
	char tag[36];
	int read_only;
	uint64_t dax_gpa, dax_len;
};
void virtio_fs_layout(struct virtio_fs *fs, struct virtio_fs_layout *out);
/* Requests served, DAX faults claimed, KVM slots mapped now. */
void virtio_fs_stats(struct virtio_fs *fs, uint64_t *requests, uint64_t *dax_faults,
		     uint32_t *dax_slots);

/* The fuse_dax mapper (vm/dax_map.c): a PROT_NONE host reservation of the
 * window; each mapping is mmap(MAP_SHARED|MAP_FIXED) of the file range plus
 * one KVM memory slot over exactly that range (read-only slots when KVM has
 * KVM_CAP_READONLY_MEM), so unmapped window parts stay MMIO. */
struct vm_dax_map;
int vm_dax_map_new(int vm_fd, uint64_t base_gpa, uint64_t len, uint32_t first_slot,
		   uint32_t max_slots, struct vm_dax_map **out, struct sm_error *err);
/* Delete every slot and release the reservation. NULL is fine. */
void vm_dax_map_free(struct vm_dax_map *m);
/* Fill *OUT with the map/unmap callbacks for fuse_dax_new(). */
void vm_dax_map_mapper(struct vm_dax_map *m, struct fuse_dax_mapper *out);
/* Copy LEN bytes at window offset OFF from/to DATA through the host mapping
 * without ever faulting the VMM (unmapped, read-only or past-EOF: -EFAULT). */
int vm_dax_map_access(struct vm_dax_map *m, uint64_t off, uint8_t *data, uint32_t len,
		      int is_write);
uint32_t vm_dax_map_slots_used(struct vm_dax_map *m);
uint8_t *vm_dax_map_host(struct vm_dax_map *m);

/* ---- The VM (vm/vm.c) ------------------------------------------------------ */

struct vm;

struct vm_config {
	const char *kernel_path; /* uncompressed vmlinux (ELF) */
	const void *initrd;	 /* initramfs bytes, or NULL */
	size_t initrd_len;
	uint64_t mem_mib;	   /* 0: 256 */
	int ncpus;		   /* 0: 1 */
	const char *cmdline_extra; /* appended to the built-in command line, or NULL */
	int console_fd;		   /* where the UART writes; -1 discards */
	const char *vsock_uds;	   /* host side of virtio-vsock, or NULL for none */
	int no_rng;		   /* leave out virtio-rng */
	/* Share this directory read-only over virtio-fs (tag "rootfs"); the
	 * command line then carries sm.rootfs=rootfs for the agent. */
	const char *fs_root;
	uint64_t fs_dax_mib; /* DAX window in MiB (0: none); adds sm.dax=always */
	/* Restore: map this raw guest memory image (mem_mib MiB) copy-on-write
	 * (MAP_PRIVATE) instead of fresh RAM; no kernel, initrd or boot setup
	 * (kernel_path may be NULL). State comes from vm_snapshot_load(). */
	const char *restore_mem;
	/* Restore: use this already-mapped guest RAM (mem_mib MiB, page-aligned,
	 * e.g. anonymous memory registered with userfaultfd) as it is. vm_create
	 * takes it over in every case: vm_destroy (or a failing vm_create)
	 * munmaps it. Like restore_mem otherwise; exclusive with it. */
	void *restore_ram;
	/* A VM already made by vm_kvm_open() (e.g. on another thread while the
	 * snapshot was read), or NULL. vm_create takes its fds over in every
	 * case, as with restore_ram. */
	struct vm_kvm *kvm;
	/* Dry run (smrestore --dry-run): everything up to the first KVM_RUN,
	 * never the guest itself. vm_start() starts the threads; each vCPU
	 * stops where it would enter the guest for the first time, and the VM
	 * then stops (VM_STOP_REQUESTED; vm_first_run_ms() tells when). KVM may
	 * be kvm-pvm, which cannot run a Linux guest but takes every ioctl a
	 * restore makes. */
	int dry_run;
};

/* The first, snapshot-independent part of vm_create(): KVM checked usable
 * (vm_kvm_require_usable; with NO_RUN kvm-pvm passes too: it is fine for a
 * VM whose guest never runs, vm_config.dry_run; no /dev/kvm still fails),
 * /dev/kvm opened, KVM_CREATE_VM, TSS and identity-map addresses, in-kernel
 * irqchip and PIT. A restore runs it beside reading the snapshot and hands
 * it to vm_create() in vm_config.kvm. vm_kvm_close() releases one that was
 * never handed over (harmless after vm_create took it). */
struct vm_kvm {
	int kvm_fd, vm_fd;   /* -1 when not open */
	double ms;	     /* time vm_kvm_open took */
	double create_vm_ms; /* of which KVM_CREATE_VM */
};
int vm_kvm_open(struct vm_kvm *k, int no_run, struct sm_error *err);
void vm_kvm_close(struct vm_kvm *k);

enum vm_stop_reason {
	VM_RUNNING = 0,
	VM_STOP_REQUESTED = 1, /* vm_stop() */
	VM_STOP_RESET = 2,     /* guest reset (i8042, reboot=k, panic=-1) */
	VM_STOP_SHUTDOWN = 3,  /* guest power-off, or triple fault */
	VM_STOP_ERROR = 4,     /* monitor error: see vm_wait()'s err */
};

/* Build a VM from CFG: checks KVM is usable (vm_kvm_require_usable), creates
 * the VM, guest RAM, irqchip, PIT, vCPUs, devices, loads the kernel and
 * initrd. Nothing runs until vm_start(). */
int vm_create(struct vm **out, const struct vm_config *cfg, struct sm_error *err);

/* Start the vCPU threads and the device I/O thread. */
int vm_start(struct vm *vm, struct sm_error *err);

/* An fd that becomes readable once the VM has stopped (for poll). */
int vm_stopped_fd(const struct vm *vm);

/* Ask the VM to stop (idempotent, async-safe enough for signal handlers:
 * it only writes an eventfd). */
void vm_stop(struct vm *vm);

/* Wait until the VM stops; returns the reason and, for VM_STOP_ERROR, the
 * error (unknown exit reason with RIP, device failure...) in err. */
enum vm_stop_reason vm_wait(struct vm *vm, struct sm_error *err);

/* Where vm_create() spent its time, in milliseconds. */
struct vm_timings {
	double kvm_ms;	     /* open /dev/kvm, VM, irqchip, PIT */
	double create_vm_ms; /* of which the KVM_CREATE_VM ioctl alone */
	double memory_ms;    /* map guest RAM, memory slot */
	double load_ms;	     /* read and load the kernel, copy the initrd */
	double devices_ms;   /* UART, i8042, virtio devices, boot structures */
	double vcpus_ms;     /* create and set up the vCPUs */
};
void vm_get_timings(const struct vm *vm, struct vm_timings *t);

/* When the VM's first KVM_RUN was called (in a dry run: would have been),
 * on CLOCK_MONOTONIC in milliseconds; 0 while no vCPU got that far. The
 * end of the host-side work of a start or restore. */
double vm_first_run_ms(const struct vm *vm);

/* KVM_RUN returns to user space so far, summed over the vCPUs: port I/O
 * (of which the UART), MMIO (of which virtio-mmio registers), and other:
 * KVM_RUN interrupted by a signal (the terminal exits are not counted).
 * Each is a full round trip through this process, the costliest kind of
 * exit (most of all under nested virtualisation). */
struct vm_exits {
	uint64_t io, uart, mmio, virtio_mmio, other;
};
void vm_get_exits(const struct vm *vm, struct vm_exits *e);

/* The kernel command line the VM was booted with. */
const char *vm_cmdline(const struct vm *vm);

/* Guest RAM as this VM maps it; valid until vm_destroy(). */
const struct vm_mem *vm_memory(const struct vm *vm);

/* Map guest RAM [GPA, GPA+LEN) into KVM's stage-2 (NPT/EPT) tables ahead of
 * the guest's first touch (KVM_PRE_FAULT_MEMORY, Linux >= 6.10, TDP hosts),
 * through vCPU 0 in its current state: call after the vCPU state is set and
 * before vm_start(). Each page is mapped as a guest read would map it
 * (read-only where the host's page is not yet writable). -EOPNOTSUPP when
 * this host's KVM has no such ioctl (then nothing is done). */
int vm_prefault(struct vm *vm, uint64_t gpa, uint64_t len, struct sm_error *err);

/* Stop (if running), join threads, free everything. NULL is fine. */
void vm_destroy(struct vm *vm);

/* Stop every vCPU at a clean point (kicked out of KVM_RUN with a signal and
 * immediate_exit, pending I/O completed) and keep them parked. Fails with
 * -ETIMEDOUT after TIMEOUT_MS or -ECANCELED when the VM stopped. */
int vm_pause(struct vm *vm, int timeout_ms, struct sm_error *err);

/* Let paused vCPUs run again. */
void vm_resume(struct vm *vm);

/* ---- Snapshot of a VM (vm/snapshot.c) --------------------------------------- */

struct fmt_writer;
struct fmt_reader;

#define VM_SNAP_VERSION 1 /* version of the vcpu/vmstate/mmio/device records */

/* Capture the paused VM (vm_pause) into W: one vcpu section per vCPU, the
 * vmstate section (irqchips, PIT, kvmclock, UART, i8042), one mmio and one
 * device section per virtio device (virtio-fs: its record plus the FUSE
 * state and DAX slot table sections; docs/snapshot.md), and guest memory
 * (zero pages skipped). Host vsock connections are dropped, except one
 * marked with vm_vsock_keep() that is idle: its state goes into a vsock
 * section and restore re-creates it (vm_take_kept_conn); the guest's other
 * connections are reset on restore (RST each, or TRANSPORT_RESET when none
 * is kept). The metadata section is the caller's. The VM stays paused. */
int vm_snapshot_save(struct vm *vm, struct fmt_writer *w, struct sm_error *err);

/* Keep the established vsock connection between host port HOST_PORT (what
 * vm_agent_connect_port() reported) and guest port GUEST_PORT across the
 * next vm_snapshot_save(), so a restore talks to the guest at once instead
 * of reconnecting. Nothing may be in flight on it at capture (a request
 * answered in full), or it is dropped like the others. */
int vm_vsock_keep(struct vm *vm, uint32_t host_port, uint32_t guest_port, struct sm_error *err);

/* After vm_snapshot_load(): the host end of the connection the snapshot
 * kept (the caller owns it from here), or -1 when the snapshot kept none. */
int vm_take_kept_conn(struct vm *vm);

/* What a snapshot needs from vm_create() (its vmstate section and, with
 * virtio-fs, that device's record). */
struct vm_snapshot_info {
	uint64_t mem_size;
	int ncpus;
	int has_rng, has_vsock;
	int n_virtio;
	int has_fs;	     /* a virtio-fs root (restore needs the directory) */
	uint64_t fs_dax_len; /* its DAX window in bytes (0: none) */
};

/* Read and validate the vmstate section of R (trusting nothing). */
int vm_snapshot_probe(struct fmt_reader *r, struct vm_snapshot_info *info, struct sm_error *err);

/* Load the state of R into VM, created with restore_mem and the probe's
 * shape but not started: VM state (PIT, kvmclock, irqchips), then per vCPU
 * sregs, regs, XSAVE, XCRs, LAPIC, MSRs, MP state, events, debug regs, then
 * the transports and devices (virtio-fs: FUSE server and DAX slot table,
 * slots mapped again on first guest access); re-creates the vsock
 * connection the snapshot kept and resets the guest's others (without a
 * kept one: a TRANSPORT_RESET event). Every record is validated first. */
int vm_snapshot_load(struct vm *vm, struct fmt_reader *r, struct sm_error *err);

/* ---- Initramfs (vm/initramfs.c) -------------------------------------------- */

/* Build a cpio "newc" initramfs in memory holding AGENT_PATH as /init (and
 * /sbin/sminit), the directories /dev /proc /sys /tmp /run /root, the node
 * /dev/console, and, when BUSYBOX_PATH is not NULL, /bin/busybox plus a
 * symlink for each of its applets in /bin. *OUT is malloc'ed. */
int vm_initramfs_build(const char *agent_path, const char *busybox_path, void **out,
		       size_t *out_len, struct sm_error *err);

/* ---- Guest agent protocol (vm/agent_proto.c; docs/agent-protocol.md) ------- */

/* Shared by the host client and the static guest agent (sminit), so it
 * uses only libc. Frames: a 12-byte little-endian header, then payload. */
#define VM_AGENT_PROTO_VERSION 2    /* 2: SYNC / SYNC_ACK */
#define VM_AGENT_PORT	       1024 /* the agent listens here (guest side) */
#define VM_AGENT_READY_PORT    1025 /* the agent reports readiness to CID 2 here */
#define VM_AGENT_HDR_LEN       12
#define VM_AGENT_MAX_PAYLOAD   (1024 * 1024)
#define VM_AGENT_MAX_ARGS      4096

enum vm_agent_type {
	VM_AGENT_READY = 1,	/* agent -> host: u32 version */
	VM_AGENT_EXEC = 2,	/* host -> agent: see struct vm_agent_exec */
	VM_AGENT_STDIN = 3,	/* host -> agent: bytes; empty = end of input */
	VM_AGENT_STDOUT = 4,	/* agent -> host: bytes */
	VM_AGENT_STDERR = 5,	/* agent -> host: bytes */
	VM_AGENT_EXIT = 6,	/* agent -> host: i32 signaled, i32 code */
	VM_AGENT_ERROR = 7,	/* agent -> host: i32 errno, message (exec failed) */
	VM_AGENT_SIGNAL = 8,	/* host -> agent: i32 signal number */
	VM_AGENT_SYNC = 9,	/* host -> agent: wall clock + entropy (v2) */
	VM_AGENT_SYNC_ACK = 10, /* agent -> host: what SYNC did (v2) */
};

struct vm_agent_hdr {
	uint32_t len;	/* payload bytes, <= VM_AGENT_MAX_PAYLOAD */
	uint16_t type;	/* enum vm_agent_type */
	uint16_t flags; /* 0 */
	uint32_t id;	/* exec id chosen by the host; 0 for READY */
};

#define VM_AGENT_EXEC_STDIN 1 /* STDIN frames follow; else stdin is /dev/null */

struct vm_agent_exec {
	uint32_t uid, gid, flags;
	const char *cwd;	 /* "" or NULL: "/" */
	const char *const *argv; /* argc entries, argc >= 1 */
	uint32_t argc;
	const char *const *env;
	uint32_t envc;
};

/* Encode/decode a header into/from 12 bytes. Decode validates type, flags
 * and length; returns 0 or -EPROTO. */
void vm_agent_hdr_encode(uint8_t out[VM_AGENT_HDR_LEN], uint16_t type, uint32_t id, uint32_t len);
int vm_agent_hdr_decode(const uint8_t in[VM_AGENT_HDR_LEN], struct vm_agent_hdr *h);

/* Encode an EXEC payload into a malloc'ed buffer. -E2BIG when too large,
 * -EINVAL when argc is 0. */
int vm_agent_exec_encode(const struct vm_agent_exec *x, uint8_t **out, size_t *len);

/* Decode an EXEC payload. Strings point into P (which must outlive X);
 * argv/env arrays are malloc'ed, NULL-terminated: free with
 * vm_agent_exec_free(). Every count and string is validated: -EPROTO. */
int vm_agent_exec_decode(const uint8_t *p, size_t len, struct vm_agent_exec *x);
void vm_agent_exec_free(struct vm_agent_exec *x);

/* EXIT payload: 8 bytes. */
void vm_agent_exit_encode(uint8_t out[8], int signaled, int code);
int vm_agent_exit_decode(const uint8_t *p, size_t len, int *signaled, int *code);

/* SYNC payload (id 0): the host's CLOCK_REALTIME and fresh entropy, sent
 * after a restore so the guest's wall clock is now and its RNG no longer
 * shares state with other restores of the snapshot. Layout (LE):
 *   u32 version (VM_AGENT_SYNC_VERSION), u32 flags (0), i64 sec (>= 0),
 *   u32 nsec (< 1e9), u32 entropy_len (MIN..MAX), entropy bytes. */
#define VM_AGENT_SYNC_VERSION	  1
#define VM_AGENT_SYNC_FIXED	  24
#define VM_AGENT_SYNC_ENTROPY_MIN 32
#define VM_AGENT_SYNC_ENTROPY_MAX 256
#define VM_AGENT_SYNC_ACK_LEN	  12

struct vm_agent_sync {
	int64_t sec;
	uint32_t nsec;
	const uint8_t *entropy; /* entropy_len bytes */
	uint32_t entropy_len;
};

/* Encode a SYNC payload into OUT (CAP bytes; VM_AGENT_SYNC_FIXED +
 * VM_AGENT_SYNC_ENTROPY_MAX always suffice); *LEN gets its size. -EINVAL for
 * a time or entropy length out of range, -ENOSPC when CAP is too small. */
int vm_agent_sync_encode(const struct vm_agent_sync *s, uint8_t *out, size_t cap, size_t *len);

/* Decode a SYNC payload; S->entropy points into P. Version, flags, time
 * range, entropy length and the exact total length are checked: -EPROTO. */
int vm_agent_sync_decode(const uint8_t *p, size_t len, struct vm_agent_sync *s);

/* SYNC_ACK payload: three u32 errno values, 0 = done: setting the clock,
 * adding the entropy (RNDADDENTROPY), re-keying the CRNG (RNDRESEEDCRNG). */
void vm_agent_sync_ack_encode(uint8_t out[VM_AGENT_SYNC_ACK_LEN], int clock_errno,
			      int entropy_errno, int reseed_errno);
int vm_agent_sync_ack_decode(const uint8_t *p, size_t len, int *clock_errno, int *entropy_errno,
			     int *reseed_errno);

/* ---- Host-side agent client (vm/agent_client.c) ---------------------------- */

/* Listen on "<UDS>_<VM_AGENT_READY_PORT>" for the agent's readiness report
 * (create before the VM starts). Returns the listening fd. */
int vm_agent_ready_listen(const char *uds, struct sm_error *err);

/* Wait up to TIMEOUT_MS for the agent to connect to LISTEN_FD and send
 * READY, or for STOP_FD (may be -1) to become readable (-ECANCELED). */
int vm_agent_wait_ready(int listen_fd, int stop_fd, int timeout_ms, struct sm_error *err);

/* Connect to guest port PORT through the vsock Unix socket UDS (CONNECT
 * handshake). Returns a connected fd. */
int vm_agent_connect(const char *uds, uint32_t port, int timeout_ms, struct sm_error *err);
/* The same; *HOST_PORT gets the host-side vsock port of the connection
 * (the number in the "OK <port>" reply). */
int vm_agent_connect_port(const char *uds, uint32_t port, int timeout_ms, uint32_t *host_port,
			  struct sm_error *err);

struct vm_agent_job {
	struct vm_agent_exec exec;
	int stdin_fd;  /* forwarded when exec.flags has VM_AGENT_EXEC_STDIN */
	int stdout_fd; /* where STDOUT chunks go */
	int stderr_fd;
	/* results */
	int done;
	int signaled, code; /* from EXIT */
	int exec_errno;	    /* from ERROR, 0 otherwise */
	char error[256];
};

/* Run N jobs concurrently over the agent connection FD and wait for all of
 * them: exec requests, stdin forwarding, output to the jobs' fds. SIG_FD
 * (a signalfd, or -1) is forwarded: each signal read from it is sent to
 * every running job. Returns 0 when every job finished (EXIT or ERROR),
 * -errno on a connection or protocol failure, or -ECANCELED when STOP_FD
 * (may be -1) fires. */
int vm_agent_run(int fd, struct vm_agent_job *jobs, int n, int stop_fd, int sig_fd,
		 struct sm_error *err);

/* Send SYNC over the agent connection FD (before any job): the host's
 * CLOCK_REALTIME now and VM_AGENT_SYNC_ENTROPY_DEFAULT bytes from
 * getrandom(), then wait up to TIMEOUT_MS for SYNC_ACK. Fails (-EIO with
 * the guest's errno in the message) when the guest could not set the clock
 * or mix in and credit the entropy; -ECANCELED when STOP_FD fires. */
#define VM_AGENT_SYNC_ENTROPY_DEFAULT 64
int vm_agent_sync(int fd, int stop_fd, int timeout_ms, struct sm_error *err);

/* vm_agent_sync() and vm_agent_run() in one round trip: SYNC goes out
 * ahead of the EXEC frames (the agent handles a connection's frames in
 * order, and refuses EXEC on a connection whose SYNC failed), SYNC_ACK must
 * be the first frame back, and a failed step fails the run (-EIO) as
 * vm_agent_sync() would. No timeout of its own: STOP_FD ends it. */
int vm_agent_run_synced(int fd, struct vm_agent_job *jobs, int n, int stop_fd, int sig_fd,
			struct sm_error *err);
