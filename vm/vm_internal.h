/* SPDX-License-Identifier: Apache-2.0 */
/* Private structures of the VM monitor, shared by the files of vm/. */
#pragma once

#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>

#include "sm/vm.h"

struct vm_serial {
	pthread_mutex_t lock;
	uint8_t ier, iir_fifo, lcr, mcr, scr, dll, dlm;
	int thre_pending;
	int line; /* current IRQ line level */
	int out_fd;
	char buf[256];
	size_t buf_len;
	void (*set_irq)(void *ctx, int level);
	void *irq_ctx;
};

void vm_serial_init(struct vm_serial *s, int out_fd, void (*set_irq)(void *, int), void *ctx);
void vm_serial_flush(struct vm_serial *s);
void vm_serial_destroy(struct vm_serial *s);
void vm_serial_io(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len, int is_write,
		  void *opaque);

/* i8042: ports 0x60 and 0x64 (registered as 0x60 + 5); command 0xfe on 0x64
 * resets the VM. */
struct vm_i8042 {
	pthread_mutex_t lock;
	struct vm *vm;
	uint8_t ctr, pending;
	uint8_t out[8];
	int out_n;
};
void vm_i8042_init(struct vm_i8042 *k, struct vm *vm);
void vm_i8042_io(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len, int is_write,
		 void *opaque);

/* Stop the VM from a vCPU or device thread with a reason. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason why, const struct sm_error *err);

struct vm_vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	int started;
	/* Exits to user space, by kind (vm_get_exits); this vCPU's thread
	 * writes them, readers take them after vm_destroy or as a snapshot. */
	uint64_t exits_io, exits_uart, exits_mmio, exits_virtio_mmio, exits_other;
};

struct virtio_vsock;

/* What vm/snapshot.c captures and restores (pointers into the struct vm). */
#define VM_PARTS_MAX_VIRTIO 8
struct vm_parts {
	int kvm_fd, vm_fd;
	struct vm_mem *mem;
	int ncpus;
	struct vm_vcpu *vcpus;
	int n_virtio;
	struct virtio_mmio *virtio[VM_PARTS_MAX_VIRTIO];
	uint64_t virtio_base[VM_PARTS_MAX_VIRTIO];
	struct vm_serial *serial;
	struct vm_i8042 *i8042;
	struct virtio_vsock *vsock;
	struct virtio_fs *fs; /* the virtio-fs device (always the last one), or NULL */
	int *kept_conn;	      /* vm_snapshot_load: the kept connection's host end */
};
void vm_get_parts(struct vm *vm, struct vm_parts *p);

/* vsock snapshot hooks (transport lock held): drop every host connection
 * and pending control packet; queue a TRANSPORT_RESET event to the guest
 * (returns 0 when sent, -ENOSPC when the guest posted no event buffer). */
void virtio_vsock_drop_conns(struct virtio_vsock *v);

/* The connection a snapshot keeps (docs/snapshot.md, "vsock"): the host
 * end is re-created on restore, the guest's socket never notices. */
#define VIRTIO_VSOCK_MAX_DROPPED 64
/* Both are also laid out as in the snapshot's vsock section (u32 each). */
struct virtio_vsock_kept {
	uint32_t local_port, peer_port;	       /* host port, guest port */
	uint32_t peer_buf_alloc, peer_fwd_cnt; /* the guest's receive side */
	uint32_t tx_cnt, fwd_cnt;	       /* bytes sent to / taken from the guest */
};
_Static_assert(sizeof(struct virtio_vsock_kept) == 24, "virtio_vsock_kept layout");
struct virtio_vsock_ports {
	uint32_t local_port, peer_port; /* host port, guest port */
};
_Static_assert(sizeof(struct virtio_vsock_ports) == 8, "virtio_vsock_ports layout");
struct virtio_vsock_saved {
	int kept; /* conn is valid */
	struct virtio_vsock_kept conn;
	uint32_t n_dropped; /* the guest's other connections: reset on restore */
	struct virtio_vsock_ports dropped[VIRTIO_VSOCK_MAX_DROPPED];
};
/* Mark the established connection LOCAL_PORT <-> guest PEER_PORT to be kept
 * by the next capture (takes the transport lock); -ENOENT if there is none. */
int virtio_vsock_keep(struct virtio_vsock *v, uint32_t local_port, uint32_t peer_port);
/* Capture (transport lock held): S gets the kept connection if it is idle
 * (nothing in flight either way) and the ports of every other connection;
 * then all host connections are dropped. Returns 1 when S keeps one; 0 when
 * none is kept (S is empty: the guest needs a TRANSPORT_RESET on restore). */
int virtio_vsock_save(struct virtio_vsock *v, struct virtio_vsock_saved *s);
/* Restore (transport lock held, a device without connections): re-create
 * the kept connection over a socketpair, queue an RST for each dropped one
 * and wake the I/O thread. *HOST_FD: the other end (blocking, close-on-exec).
 * 0, or -errno (-EINVAL: S keeps nothing, or too many dropped). */
int virtio_vsock_restore(struct virtio_vsock *v, const struct virtio_vsock_saved *s, int *host_fd);
int virtio_vsock_send_reset(struct virtio_vsock *v);
uint64_t virtio_vsock_guest_cid(const struct virtio_vsock *v);

/* Host-side work of vsock, run in the I/O thread. */
int virtio_vsock_poll_fds(struct virtio_vsock *v, struct pollfd *fds, int maxfds);
void virtio_vsock_process(struct virtio_vsock *v);

/* virtio-fs snapshot records (vm/snapshot.c; docs/snapshot.md), usable
 * without KVM. Save: the device record, FUSE state and DAX slot table of
 * device number D (device paused, no request in flight). Probe: read and
 * check the device record alone, giving its DAX window length. Load: check
 * all three against FS (a fresh device, no request handled yet) and restore
 * the FUSE server and DAX session from them. */
struct fmt_writer;
struct fmt_reader;
/* The vsock section of device number D (docs/snapshot.md, "vsock"), if
 * any: 1 with *S filled, 0 when the snapshot has none, -errno for a
 * malformed one. No KVM involved. */
/* Restoring MSRs on a host whose KVM does not list all the snapshot's
 * (vm/snapshot.c): keep, in order and in place, the N entries of E that
 * LISTED[NLISTED] (this KVM's KVM_GET_MSR_INDEX_LIST) has; drop an unlisted
 * one only where that loses no guest state (its reset value, or a Hyper-V
 * synthetic MSR, which our guests cannot use); any other unlisted MSR is
 * -ENOTSUP naming it. *KEEP gets the count kept. */
struct kvm_msr_entry;
int vm_snapshot_msr_filter(struct kvm_msr_entry *e, uint32_t n, const uint32_t *listed,
			   uint32_t nlisted, uint32_t *keep, struct sm_error *err);

int vm_snapshot_vsock_read(struct fmt_reader *rd, uint32_t d, struct virtio_vsock_saved *s,
			   struct sm_error *err);
int vm_snapshot_fs_save(struct virtio_fs *fs, uint32_t d, struct fmt_writer *w,
			struct sm_error *err);
int vm_snapshot_fs_probe(struct fmt_reader *rd, uint32_t d, uint64_t *dax_len,
			 struct sm_error *err);
int vm_snapshot_fs_load(struct virtio_fs *fs, uint32_t d, struct fmt_reader *rd,
			struct sm_error *err);
