/* SPDX-License-Identifier: Apache-2.0 */
/* Capture a paused VM into snapshot sections and load them back into a VM
 * created for restore (Firecracker-style: vCPU, VM and device state, then
 * guest memory through the format writer).
 *
 * Records are little-endian (x86-64 only), versioned (VM_SNAP_VERSION) and
 * laid out with fixed sizes checked by _Static_assert. KVM's own structures
 * are embedded as KVM defines them for x86-64. On load every record is
 * checked (magic, version, exact size, reserved fields, counts, ranges)
 * before anything reaches KVM. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "sm/format.h"
#include "sm/fuse.h"
#include "vm_internal.h"

#define SNAP_MAGIC_VCPU 0x55504356u /* "VCPU" */
#define SNAP_MAGIC_VMST 0x54534d56u /* "VMST" */
#define SNAP_MAGIC_MMIO 0x4f494d4du /* "MMIO" */
#define SNAP_MAGIC_DEV	0x56454453u /* "SDEV" */
#define SNAP_MAGIC_FS	0x56445346u /* "FSDV" */
#define SNAP_MAGIC_VSCK 0x4b435356u /* "VSCK" */
#define SNAP_MAX_MSRS	1024
#define SNAP_MAX_XSAVE	(1u << 20)
#define SNAP_MAX_VCPUS	64
#define SNAP_MEM_CHUNK	(4u << 20)
#define SNAP_FLAG_RNG	1u
#define SNAP_FLAG_VSOCK 2u
#define SNAP_FLAG_FS	4u
#define SNAP_FLAGS_ALL	(SNAP_FLAG_RNG | SNAP_FLAG_VSOCK | SNAP_FLAG_FS)
#define SNAP_DEV_RNG	4u
#define SNAP_DEV_VSOCK	19u
#define SNAP_DEV_FS	VIRTIO_FS_DEVICE_ID
#define SNAP_FS_TAG_LEN 36
#define SNAP_MAX_FUSN	(256u << 20) /* FUSE node/handle table blob */
#define SNAP_MAX_DAXS	(64u << 20)  /* DAX slot table blob */
/* State records smaller than this are stored raw: a restore reads them on
 * every run, and setting up zstd for a few KiB (tables, a context) costs
 * more than the bytes it saves (a vCPU record is ~7 KiB raw, ~1 KiB
 * compressed; the memory dominates the file anyway). */
#define SNAP_ZSTD_MIN (64u << 10)

static uint32_t zstd_if_large(size_t len)
{
	return len >= SNAP_ZSTD_MIN ? FMT_SECF_ZSTD : 0;
}

struct snap_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t reserved0;
	uint32_t size; /* bytes of the fixed record, this header included */
	uint32_t reserved1;
};
_Static_assert(sizeof(struct snap_hdr) == 16, "snap_hdr layout");

/* vcpu section: struct snap_vcpu, then nmsrs kvm_msr_entry, then xsave. */
struct snap_vcpu {
	struct snap_hdr h;
	uint32_t id;
	uint32_t nmsrs;
	uint32_t xsave_size;
	uint32_t reserved;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_debugregs dregs;
	struct kvm_mp_state mp;
	uint32_t reserved2;
};
_Static_assert(sizeof(struct kvm_regs) == 144, "kvm_regs");
_Static_assert(sizeof(struct kvm_sregs) == 312, "kvm_sregs");
_Static_assert(sizeof(struct kvm_xcrs) == 392, "kvm_xcrs");
_Static_assert(sizeof(struct kvm_lapic_state) == 1024, "kvm_lapic_state");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "kvm_vcpu_events");
_Static_assert(sizeof(struct kvm_debugregs) == 128, "kvm_debugregs");
_Static_assert(sizeof(struct kvm_mp_state) == 4, "kvm_mp_state");
_Static_assert(sizeof(struct kvm_msr_entry) == 16, "kvm_msr_entry");
_Static_assert(offsetof(struct snap_vcpu, regs) == 32, "snap_vcpu layout");
_Static_assert(sizeof(struct snap_vcpu) == 32 + 144 + 312 + 392 + 1024 + 64 + 128 + 8,
	       "snap_vcpu layout");

struct snap_vmstate {
	struct snap_hdr h;
	uint64_t mem_size;
	uint32_t ncpus;
	uint32_t n_virtio;
	uint32_t flags; /* SNAP_FLAG_* */
	uint32_t reserved;
	struct kvm_irqchip pic_master, pic_slave, ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	/* UART */
	uint8_t uart_ier, uart_iir_fifo, uart_lcr, uart_mcr;
	uint8_t uart_scr, uart_dll, uart_dlm, uart_thre_pending;
	/* i8042 */
	uint8_t kbd_ctr, kbd_pending, kbd_out_n, kbd_reserved;
	uint8_t kbd_out[8];
	uint32_t reserved2;
};
_Static_assert(sizeof(struct kvm_irqchip) == 520, "kvm_irqchip");
_Static_assert(sizeof(struct kvm_pit_state2) == 112, "kvm_pit_state2");
_Static_assert(sizeof(struct kvm_clock_data) == 48, "kvm_clock_data");
_Static_assert(sizeof(struct snap_vmstate) == 40 + 3 * 520 + 112 + 48 + 24, "snap_vmstate");

struct snap_vq {
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t size, max_size, last_avail, used_idx;
	uint32_t ready, broken;
};
_Static_assert(sizeof(struct snap_vq) == 40, "snap_vq");

struct snap_mmio {
	struct snap_hdr h;
	uint32_t device_id, num_queues;
	uint64_t base;
	uint32_t status, dev_features_sel, drv_features_sel, queue_sel;
	uint64_t drv_features;
	uint32_t isr, config_generation, shm_sel, reserved;
	struct snap_vq vq[VIRTIO_MMIO_MAX_QUEUES];
};
_Static_assert(sizeof(struct snap_mmio) == 72 + 40 * VIRTIO_MMIO_MAX_QUEUES, "snap_mmio");

struct snap_dev {
	struct snap_hdr h;
	uint32_t device_id;
	uint32_t reserved;
	uint64_t guest_cid; /* vsock; 0 otherwise */
};
_Static_assert(sizeof(struct snap_dev) == 32, "snap_dev");

/* vsock section (FMT_SEC_VSOCK, optional, instance = device number): the
 * connection the capture kept (virtio_vsock_save), then n_dropped port
 * pairs (host, guest) of the guest's other connections, reset on restore.
 * A reader without it sends TRANSPORT_RESET, which resets the kept one too:
 * correct, only slower. */
struct snap_vsock {
	struct snap_hdr h;
	struct virtio_vsock_kept conn; /* ports, then the four counters */
	uint32_t n_dropped;
	uint32_t reserved;
};
_Static_assert(sizeof(struct snap_vsock) == 48, "snap_vsock");

/* virtio-fs device record (FMT_SEC_DEVICE, instance = device number), in
 * place of struct snap_dev. The FUSE server state ("FUSN" v1, from
 * fuse_server_snapshot) is the FMT_SEC_FUSE_NODES section and, with a DAX
 * window, the slot table ("DAXS" v1, fuse_dax_snapshot) the FMT_SEC_DAX
 * section, both with the same instance. The window's contents are file
 * mappings, not guest RAM: only slot metadata is saved, and slots are
 * mapped again by the guest's first access after restore. */
struct snap_fs {
	struct snap_hdr h;
	uint32_t device_id;	   /* 26 */
	uint32_t read_only;	   /* 0 or 1 */
	uint64_t dax_gpa;	   /* window base, 0 without a window */
	uint64_t dax_len;	   /* window bytes (MiB multiple), 0 without a window */
	uint64_t fusn_len;	   /* bytes of the FUSE_NODES section (raw) */
	uint64_t daxs_len;	   /* bytes of the DAX section (raw), 0 without a window */
	char tag[SNAP_FS_TAG_LEN]; /* NUL-padded */
	uint32_t reserved;
};
_Static_assert(sizeof(struct snap_fs) == 96, "snap_fs");
_Static_assert(offsetof(struct snap_fs, tag) == 56, "snap_fs layout");

static void hdr_init(struct snap_hdr *h, uint32_t magic, uint32_t size)
{
	memset(h, 0, sizeof(*h));
	h->magic = magic;
	h->version = VM_SNAP_VERSION;
	h->size = size;
}

static int hdr_check(const struct snap_hdr *h, uint32_t magic, uint32_t size, const char *what,
		     struct sm_error *err)
{
	if (h->magic != magic)
		return sm_error_set(err, EBADMSG, "%s record: bad magic 0x%08x", what, h->magic);
	if (h->version != VM_SNAP_VERSION)
		return sm_error_set(err, ENOTSUP, "%s record version %u, this build reads %u", what,
				    h->version, VM_SNAP_VERSION);
	if (h->size != size || h->reserved0 || h->reserved1)
		return sm_error_set(err, EBADMSG, "%s record: size %u (want %u) or reserved bits",
				    what, h->size, size);
	return 0;
}

/* ---- capture ----------------------------------------------------------------- */

static int msr_index_list(int kvm_fd, struct kvm_msr_list **out, struct sm_error *err)
{
	struct kvm_msr_list probe = {.nmsrs = 0};
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return sm_error_errno(err, errno, "KVM_GET_MSR_INDEX_LIST");
	if (probe.nmsrs > SNAP_MAX_MSRS)
		return sm_error_set(err, E2BIG, "KVM lists %u MSRs", probe.nmsrs);
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	if (!l)
		return sm_error_set(err, ENOMEM, "MSR list");
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int e = errno;
		free(l);
		return sm_error_errno(err, e, "KVM_GET_MSR_INDEX_LIST");
	}
	*out = l;
	return 0;
}

static int xsave_size(int vm_fd)
{
	int n = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return n > (int)sizeof(struct kvm_xsave) ? n : (int)sizeof(struct kvm_xsave);
}

static int save_vcpu(const struct vm_parts *p, struct vm_vcpu *c, const struct kvm_msr_list *ml,
		     struct fmt_writer *w, struct sm_error *err)
{
	uint32_t xsz = (uint32_t)xsave_size(p->vm_fd);
	size_t len =
		sizeof(struct snap_vcpu) + (size_t)ml->nmsrs * sizeof(struct kvm_msr_entry) + xsz;
	sm_autofree uint8_t *buf = calloc(1, len);
	if (!buf)
		return sm_error_set(err, ENOMEM, "vCPU %d state", c->id);
	struct snap_vcpu *s = (struct snap_vcpu *)buf;
	hdr_init(&s->h, SNAP_MAGIC_VCPU, sizeof(*s));
	s->id = (uint32_t)c->id;
#define GET(req, arg, name)                                                                        \
	do {                                                                                       \
		if (ioctl(c->fd, req, arg) < 0)                                                    \
			return sm_error_errno(err, errno, "vCPU %d: " name, c->id);                \
	} while (0)
	GET(KVM_GET_REGS, &s->regs, "KVM_GET_REGS");
	GET(KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS");
	GET(KVM_GET_XCRS, &s->xcrs, "KVM_GET_XCRS");
	GET(KVM_GET_LAPIC, &s->lapic, "KVM_GET_LAPIC");
	GET(KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
	GET(KVM_GET_DEBUGREGS, &s->dregs, "KVM_GET_DEBUGREGS");
	GET(KVM_GET_MP_STATE, &s->mp, "KVM_GET_MP_STATE");
	uint8_t *xs = buf + len - xsz;
	if (xsz > sizeof(struct kvm_xsave))
		GET(KVM_GET_XSAVE2, xs, "KVM_GET_XSAVE2");
	else
		GET(KVM_GET_XSAVE, xs, "KVM_GET_XSAVE");
	s->xsave_size = xsz;
	/* MSRs one by one: KVM lists some a given CPU cannot read. */
	struct kvm_msr_entry *out = (struct kvm_msr_entry *)(buf + sizeof(*s));
	uint32_t n = 0;
	for (uint32_t i = 0; i < ml->nmsrs; i++) {
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e;
		} one;
		memset(&one, 0, sizeof(one));
		one.hdr.nmsrs = 1;
		one.e.index = ml->indices[i];
		if (ioctl(c->fd, KVM_GET_MSRS, &one) == 1)
			out[n++] = one.e;
	}
#undef GET
	s->nmsrs = n;
	/* Move the XSAVE area right after the MSRs we kept. */
	size_t used = sizeof(*s) + (size_t)n * sizeof(struct kvm_msr_entry);
	memmove(buf + used, xs, xsz);
	char name[17];
	snprintf(name, sizeof(name), "vcpu%d", c->id);
	return fmt_writer_add(w, FMT_SEC_VCPU, zstd_if_large(used + xsz), (uint32_t)c->id, name,
			      buf, used + xsz, err);
}

static int save_vmstate(const struct vm_parts *p, struct fmt_writer *w, struct sm_error *err)
{
	struct snap_vmstate s;
	memset(&s, 0, sizeof(s));
	hdr_init(&s.h, SNAP_MAGIC_VMST, sizeof(s));
	s.mem_size = p->mem->size;
	s.ncpus = (uint32_t)p->ncpus;
	s.n_virtio = (uint32_t)p->n_virtio;
	for (int d = 0; d < p->n_virtio; d++) {
		uint32_t id = p->virtio[d]->ops->device_id;
		s.flags |= id == SNAP_DEV_RNG	  ? SNAP_FLAG_RNG
			   : id == SNAP_DEV_VSOCK ? SNAP_FLAG_VSOCK
			   : id == SNAP_DEV_FS	  ? SNAP_FLAG_FS
						  : 0;
	}
	s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(p->vm_fd, KVM_GET_IRQCHIP, &s.pic_master) < 0 ||
	    ioctl(p->vm_fd, KVM_GET_IRQCHIP, &s.pic_slave) < 0 ||
	    ioctl(p->vm_fd, KVM_GET_IRQCHIP, &s.ioapic) < 0)
		return sm_error_errno(err, errno, "KVM_GET_IRQCHIP");
	if (ioctl(p->vm_fd, KVM_GET_PIT2, &s.pit) < 0)
		return sm_error_errno(err, errno, "KVM_GET_PIT2");
	if (ioctl(p->vm_fd, KVM_GET_CLOCK, &s.clock) < 0)
		return sm_error_errno(err, errno, "KVM_GET_CLOCK");
	struct vm_serial *u = p->serial;
	pthread_mutex_lock(&u->lock);
	s.uart_ier = u->ier;
	s.uart_iir_fifo = u->iir_fifo;
	s.uart_lcr = u->lcr;
	s.uart_mcr = u->mcr;
	s.uart_scr = u->scr;
	s.uart_dll = u->dll;
	s.uart_dlm = u->dlm;
	s.uart_thre_pending = (uint8_t) !!u->thre_pending;
	pthread_mutex_unlock(&u->lock);
	struct vm_i8042 *k = p->i8042;
	pthread_mutex_lock(&k->lock);
	s.kbd_ctr = k->ctr;
	s.kbd_pending = k->pending;
	s.kbd_out_n = (uint8_t)(k->out_n < 0 ? 0 : k->out_n > 8 ? 8 : k->out_n);
	memcpy(s.kbd_out, k->out, sizeof(s.kbd_out));
	pthread_mutex_unlock(&k->lock);
	return fmt_writer_add(w, FMT_SEC_VMSTATE, zstd_if_large(sizeof(s)), 0, "vmstate", &s,
			      sizeof(s), err);
}

static int read_section(struct fmt_reader *r, uint32_t type, uint32_t instance, void **data,
			size_t *len, struct sm_error *err);

/* Transport lock held. */
static int save_device(const struct vm_parts *p, int d, struct fmt_writer *w, struct sm_error *err)
{
	struct virtio_mmio *t = p->virtio[d];
	struct snap_mmio m;
	memset(&m, 0, sizeof(m));
	hdr_init(&m.h, SNAP_MAGIC_MMIO, sizeof(m));
	m.device_id = t->ops->device_id;
	m.num_queues = t->ops->num_queues;
	m.base = p->virtio_base[d];
	m.status = t->status;
	m.dev_features_sel = t->dev_features_sel;
	m.drv_features_sel = t->drv_features_sel;
	m.queue_sel = t->queue_sel;
	m.drv_features = t->drv_features;
	m.isr = t->isr;
	m.config_generation = t->config_generation;
	m.shm_sel = t->shm_sel;
	for (int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		const struct virtq *v = &t->vq[q];
		m.vq[q] = (struct snap_vq){
			.desc_gpa = v->desc_gpa,
			.avail_gpa = v->avail_gpa,
			.used_gpa = v->used_gpa,
			.size = v->size,
			.max_size = v->max_size,
			.last_avail = v->last_avail,
			.used_idx = v->used_idx,
			.ready = (uint32_t) !!v->ready,
			.broken = (uint32_t) !!v->broken,
		};
	}
	int r = fmt_writer_add(w, FMT_SEC_MMIO, 0, (uint32_t)d, t->ops->name, &m, sizeof(m), err);
	if (r < 0)
		return r;
	if (m.device_id == SNAP_DEV_FS)
		return p->fs ? vm_snapshot_fs_save(p->fs, (uint32_t)d, w, err)
			     : sm_error_set(err, EINVAL, "virtio-fs transport without a device");
	struct snap_dev dev;
	memset(&dev, 0, sizeof(dev));
	hdr_init(&dev.h, SNAP_MAGIC_DEV, sizeof(dev));
	dev.device_id = t->ops->device_id;
	struct virtio_vsock_saved vs = {0};
	if (dev.device_id == SNAP_DEV_VSOCK && p->vsock) {
		dev.guest_cid = virtio_vsock_guest_cid(p->vsock);
		/* Host connections do not survive, except the one kept. */
		virtio_vsock_save(p->vsock, &vs);
	}
	int r2 = fmt_writer_add(w, FMT_SEC_DEVICE, 0, (uint32_t)d, t->ops->name, &dev, sizeof(dev),
				err);
	if (r2 < 0 || !vs.kept)
		return r2;
	struct {
		struct snap_vsock s;
		struct virtio_vsock_ports dropped[VIRTIO_VSOCK_MAX_DROPPED];
	} rec;
	memset(&rec, 0, sizeof(rec));
	hdr_init(&rec.s.h, SNAP_MAGIC_VSCK, sizeof(rec.s));
	rec.s.conn = vs.conn;
	rec.s.n_dropped = vs.n_dropped;
	memcpy(rec.dropped, vs.dropped, vs.n_dropped * sizeof(vs.dropped[0]));
	return fmt_writer_add(w, FMT_SEC_VSOCK, FMT_SECF_OPTIONAL, (uint32_t)d, "vsock", &rec,
			      sizeof(rec.s) + vs.n_dropped * sizeof(vs.dropped[0]), err);
}

int vm_snapshot_vsock_read(struct fmt_reader *rd, uint32_t d, struct virtio_vsock_saved *s,
			   struct sm_error *err)
{
	memset(s, 0, sizeof(*s));
	struct sm_error ignore = {0};
	if (fmt_reader_find(rd, FMT_SEC_VSOCK, d, &ignore) < 0)
		return 0;
	sm_autofree void *data = NULL;
	size_t len = 0;
	int r = read_section(rd, FMT_SEC_VSOCK, d, &data, &len, err);
	if (r < 0)
		return r;
	struct snap_vsock v;
	if (len < sizeof(v))
		return sm_error_set(err, EBADMSG, "vsock section: %zu bytes", len);
	memcpy(&v, data, sizeof(v));
	r = hdr_check(&v.h, SNAP_MAGIC_VSCK, sizeof(v), "vsock", err);
	if (r < 0)
		return r;
	if (v.reserved || v.n_dropped > VIRTIO_VSOCK_MAX_DROPPED ||
	    len != sizeof(v) + v.n_dropped * sizeof(s->dropped[0]))
		return sm_error_set(
			err, EBADMSG,
			"vsock section: %u dropped connections in %zu bytes, or reserved "
			"field set",
			v.n_dropped, len);
	s->kept = 1;
	s->conn = v.conn;
	s->n_dropped = v.n_dropped;
	memcpy(s->dropped, (const uint8_t *)data + sizeof(v), v.n_dropped * sizeof(s->dropped[0]));
	return 1;
}

static int save_memory(const struct vm_parts *p, struct fmt_writer *w, struct sm_error *err)
{
	int r = fmt_writer_mem_begin(w, p->mem->size, err);
	for (uint64_t off = 0; r == 0 && off < p->mem->size; off += SNAP_MEM_CHUNK) {
		uint64_t n =
			p->mem->size - off < SNAP_MEM_CHUNK ? p->mem->size - off : SNAP_MEM_CHUNK;
		r = fmt_writer_mem_write(w, p->mem->host + off, (size_t)n, err);
	}
	if (r == 0)
		r = fmt_writer_mem_end(w, err);
	return r < 0 ? sm_error_wrap(err, "guest memory") : 0;
}

int vm_snapshot_save(struct vm *vm, struct fmt_writer *w, struct sm_error *err)
{
	struct vm_parts p;
	vm_get_parts(vm, &p);
	if (p.n_virtio > VM_PARTS_MAX_VIRTIO)
		return sm_error_set(err, EINVAL, "too many devices");
	for (int d = 0; d < p.n_virtio; d++) {
		uint32_t id = p.virtio[d]->ops->device_id;
		if (id != SNAP_DEV_RNG && id != SNAP_DEV_VSOCK &&
		    !(id == SNAP_DEV_FS && p.fs && d == p.n_virtio - 1))
			return sm_error_set(err, ENOTSUP,
					    "capture: cannot snapshot a %s device yet",
					    p.virtio[d]->ops->name);
	}
	struct kvm_msr_list *ml = NULL;
	int r = msr_index_list(p.kvm_fd, &ml, err);
	for (int i = 0; r == 0 && i < p.ncpus; i++)
		r = save_vcpu(&p, &p.vcpus[i], ml, w, err);
	free(ml);
	if (r == 0)
		r = save_vmstate(&p, w, err);
	if (r < 0)
		return sm_error_wrap(err, "capture");
	/* Hold every transport lock until memory is written: the I/O thread
	 * must not touch rings while we copy them. */
	for (int d = 0; d < p.n_virtio; d++)
		pthread_mutex_lock(&p.virtio[d]->lock);
	for (int d = 0; r == 0 && d < p.n_virtio; d++)
		r = save_device(&p, d, w, err);
	if (r == 0)
		r = save_memory(&p, w, err);
	for (int d = p.n_virtio - 1; d >= 0; d--)
		pthread_mutex_unlock(&p.virtio[d]->lock);
	return r < 0 ? sm_error_wrap(err, "capture") : 0;
}

/* ---- virtio-fs ------------------------------------------------------------------- */

static int read_section(struct fmt_reader *r, uint32_t type, uint32_t instance, void **data,
			size_t *len, struct sm_error *err)
{
	int idx = fmt_reader_find(r, type, instance, err);
	if (idx < 0)
		return idx;
	return fmt_reader_read(r, (unsigned)idx, data, len, err);
}

/* Device paused (vm_pause: no request in flight), transport lock held. */
int vm_snapshot_fs_save(struct virtio_fs *fs, uint32_t d, struct fmt_writer *w,
			struct sm_error *err)
{
	struct virtio_fs_layout lay;
	virtio_fs_layout(fs, &lay);
	sm_autofree void *fusn = NULL;
	sm_autofree void *daxs = NULL;
	size_t fusn_len = 0, daxs_len = 0;
	int r = fuse_server_snapshot(virtio_fs_server(fs), &fusn, &fusn_len, err);
	if (r == 0 && lay.dax_len)
		r = fuse_dax_snapshot(virtio_fs_dax(fs), &daxs, &daxs_len, err);
	if (r < 0)
		return sm_error_wrap(err, "virtio-fs");
	if (fusn_len > SNAP_MAX_FUSN || daxs_len > SNAP_MAX_DAXS)
		return sm_error_set(err, E2BIG, "virtio-fs: state too large (%zu + %zu bytes)",
				    fusn_len, daxs_len);
	struct snap_fs s;
	memset(&s, 0, sizeof(s));
	hdr_init(&s.h, SNAP_MAGIC_FS, sizeof(s));
	s.device_id = SNAP_DEV_FS;
	s.read_only = (uint32_t) !!lay.read_only;
	s.dax_gpa = lay.dax_gpa;
	s.dax_len = lay.dax_len;
	s.fusn_len = fusn_len;
	s.daxs_len = daxs_len;
	memcpy(s.tag, lay.tag, SNAP_FS_TAG_LEN);
	r = fmt_writer_add(w, FMT_SEC_DEVICE, 0, d, "virtio-fs", &s, sizeof(s), err);
	if (r == 0)
		r = fmt_writer_add(w, FMT_SEC_FUSE_NODES, zstd_if_large(fusn_len), d, "virtio-fs",
				   fusn, fusn_len, err);
	if (r == 0 && lay.dax_len)
		r = fmt_writer_add(w, FMT_SEC_DAX, zstd_if_large(daxs_len), d, "virtio-fs", daxs,
				   daxs_len, err);
	return r;
}

/* The record on its own: layout, ranges, reserved bytes. */
static int check_fs_record(uint32_t d, const struct snap_fs *s, size_t len, struct sm_error *err)
{
	if (len != sizeof(*s))
		return sm_error_set(err, EBADMSG, "virtio-fs device %u: %zu bytes, want %zu", d,
				    len, sizeof(*s));
	int r = hdr_check(&s->h, SNAP_MAGIC_FS, sizeof(*s), "virtio-fs device", err);
	if (r < 0)
		return r;
	if (s->device_id != SNAP_DEV_FS || s->read_only > 1 || s->reserved)
		return sm_error_set(err, EBADMSG,
				    "virtio-fs device %u: bad device id %u, read-only flag %u or "
				    "reserved field",
				    d, s->device_id, s->read_only);
	size_t tl = strnlen(s->tag, SNAP_FS_TAG_LEN);
	for (size_t i = tl; i < SNAP_FS_TAG_LEN; i++)
		if (s->tag[i])
			return sm_error_set(err, EBADMSG, "virtio-fs device %u: tag not NUL-padded",
					    d);
	if (tl == 0)
		return sm_error_set(err, EBADMSG, "virtio-fs device %u: empty tag", d);
	if (s->dax_len == 0 ? s->dax_gpa || s->daxs_len
			    : s->dax_gpa != VM_DAX_WINDOW_GPA || s->dax_len % (1ULL << 20) ||
				      s->dax_len > ((uint64_t)VM_DAX_WINDOW_MAX_MIB << 20) ||
				      s->daxs_len == 0 || s->daxs_len > SNAP_MAX_DAXS)
		return sm_error_set(err, EBADMSG,
				    "virtio-fs device %u: bad DAX window 0x%llx+0x%llx (slot table "
				    "%llu bytes)",
				    d, (unsigned long long)s->dax_gpa,
				    (unsigned long long)s->dax_len,
				    (unsigned long long)s->daxs_len);
	if (s->fusn_len == 0 || s->fusn_len > SNAP_MAX_FUSN)
		return sm_error_set(err, EBADMSG, "virtio-fs device %u: bad FUSE state size %llu",
				    d, (unsigned long long)s->fusn_len);
	return 0;
}

int vm_snapshot_fs_probe(struct fmt_reader *rd, uint32_t d, uint64_t *dax_len, struct sm_error *err)
{
	sm_autofree void *rec = NULL;
	size_t len;
	int r = read_section(rd, FMT_SEC_DEVICE, d, &rec, &len, err);
	if (r == 0)
		r = check_fs_record(d, rec, len, err);
	if (r < 0)
		return r;
	*dax_len = ((const struct snap_fs *)rec)->dax_len;
	return 0;
}

int vm_snapshot_fs_load(struct virtio_fs *fs, uint32_t d, struct fmt_reader *rd,
			struct sm_error *err)
{
	sm_autofree void *rec = NULL;
	sm_autofree void *fusn = NULL;
	sm_autofree void *daxs = NULL;
	size_t len, fusn_len = 0, daxs_len = 0;
	int r = read_section(rd, FMT_SEC_DEVICE, d, &rec, &len, err);
	if (r == 0)
		r = check_fs_record(d, rec, len, err);
	if (r < 0)
		return r;
	const struct snap_fs *s = rec;
	struct virtio_fs_layout lay;
	virtio_fs_layout(fs, &lay);
	if (memcmp(s->tag, lay.tag, SNAP_FS_TAG_LEN) || s->read_only != (uint32_t) !!lay.read_only)
		return sm_error_set(err, EBADMSG,
				    "virtio-fs device %u: tag '%.36s'%s, this VM has '%.36s'%s", d,
				    s->tag, s->read_only ? " (read-only)" : "", lay.tag,
				    lay.read_only ? " (read-only)" : "");
	if (s->dax_gpa != lay.dax_gpa || s->dax_len != lay.dax_len)
		return sm_error_set(err, EINVAL,
				    "virtio-fs device %u: DAX window of %llu MiB, this VM has %llu "
				    "MiB",
				    d, (unsigned long long)(s->dax_len >> 20),
				    (unsigned long long)(lay.dax_len >> 20));
	r = read_section(rd, FMT_SEC_FUSE_NODES, d, &fusn, &fusn_len, err);
	if (r < 0)
		return r;
	if (fusn_len != s->fusn_len)
		return sm_error_set(
			err, EBADMSG,
			"virtio-fs device %u: FUSE state is %zu bytes, record says %llu", d,
			fusn_len, (unsigned long long)s->fusn_len);
	struct sm_error ignore = {0};
	int di = fmt_reader_find(rd, FMT_SEC_DAX, d, &ignore);
	if (s->dax_len == 0 && di >= 0)
		return sm_error_set(err, EBADMSG,
				    "virtio-fs device %u: DAX slot table without a window", d);
	if (s->dax_len) {
		r = read_section(rd, FMT_SEC_DAX, d, &daxs, &daxs_len, err);
		if (r < 0)
			return r;
		if (daxs_len != s->daxs_len)
			return sm_error_set(err, EBADMSG,
					    "virtio-fs device %u: DAX slot table is %zu bytes, "
					    "record says %llu",
					    d, daxs_len, (unsigned long long)s->daxs_len);
	}
	r = fuse_server_restore(virtio_fs_server(fs), fusn, fusn_len, err);
	if (r == 0 && s->dax_len)
		r = fuse_dax_restore(virtio_fs_dax(fs), daxs, daxs_len, err);
	return r < 0 ? sm_error_wrap(err, "virtio-fs device %u", d) : 0;
}

/* ---- load ------------------------------------------------------------------------ */

static int check_vmstate(const struct snap_vmstate *s, size_t len, struct sm_error *err)
{
	if (len != sizeof(*s))
		return sm_error_set(err, EBADMSG, "vmstate: %zu bytes, want %zu", len, sizeof(*s));
	int r = hdr_check(&s->h, SNAP_MAGIC_VMST, sizeof(*s), "vmstate", err);
	if (r < 0)
		return r;
	if (s->mem_size < (16ULL << 20) || s->mem_size > VM_MMIO_GAP_START ||
	    s->mem_size % (1ULL << 20))
		return sm_error_set(err, EBADMSG, "vmstate: bad memory size %llu",
				    (unsigned long long)s->mem_size);
	if (s->ncpus < 1 || s->ncpus > SNAP_MAX_VCPUS)
		return sm_error_set(err, EBADMSG, "vmstate: bad vCPU count %u", s->ncpus);
	if (s->n_virtio > VM_PARTS_MAX_VIRTIO || (s->flags & ~SNAP_FLAGS_ALL) ||
	    s->n_virtio != (uint32_t) !!(s->flags & SNAP_FLAG_RNG) +
				   !!(s->flags & SNAP_FLAG_VSOCK) + !!(s->flags & SNAP_FLAG_FS))
		return sm_error_set(err, EBADMSG,
				    "vmstate: bad device set (%u devices, flags 0x%x)", s->n_virtio,
				    s->flags);
	if (s->reserved || s->reserved2 || s->kbd_reserved || s->kbd_out_n > 8 ||
	    s->uart_thre_pending > 1)
		return sm_error_set(err, EBADMSG, "vmstate: reserved fields set");
	if (s->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
	    s->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
	    s->ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
		return sm_error_set(err, EBADMSG, "vmstate: bad irqchip ids");
	return 0;
}

int vm_snapshot_probe(struct fmt_reader *rd, struct vm_snapshot_info *info, struct sm_error *err)
{
	sm_autofree void *data = NULL;
	size_t len;
	int r = read_section(rd, FMT_SEC_VMSTATE, 0, &data, &len, err);
	if (r == 0)
		r = check_vmstate(data, len, err);
	if (r < 0)
		return r;
	const struct snap_vmstate *s = data;
	info->mem_size = s->mem_size;
	info->ncpus = (int)s->ncpus;
	info->has_rng = !!(s->flags & SNAP_FLAG_RNG);
	info->has_vsock = !!(s->flags & SNAP_FLAG_VSOCK);
	info->n_virtio = (int)s->n_virtio;
	info->has_fs = !!(s->flags & SNAP_FLAG_FS);
	info->fs_dax_len = 0;
	/* vm_create() adds rng, vsock, then virtio-fs: fs is the last device. */
	if (info->has_fs)
		return vm_snapshot_fs_probe(rd, s->n_virtio - 1, &info->fs_dax_len, err);
	return 0;
}

static int load_vmstate(const struct vm_parts *p, const struct snap_vmstate *s,
			struct sm_error *err)
{
	if (s->mem_size != p->mem->size || (int)s->ncpus != p->ncpus ||
	    (int)s->n_virtio != p->n_virtio)
		return sm_error_set(err, EINVAL, "the VM does not have the snapshot's shape");
	struct kvm_pit_state2 pit = s->pit;
	if (ioctl(p->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return sm_error_errno(err, errno, "KVM_SET_PIT2");
	struct kvm_clock_data clock = s->clock;
	clock.flags = 0; /* the guest clock resumes where it was captured */
	memset(clock.pad, 0, sizeof(clock.pad));
	if (ioctl(p->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return sm_error_errno(err, errno, "KVM_SET_CLOCK");
	struct kvm_irqchip chips[3] = {s->pic_master, s->pic_slave, s->ioapic};
	for (int i = 0; i < 3; i++)
		if (ioctl(p->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
			return sm_error_errno(err, errno, "KVM_SET_IRQCHIP %u", chips[i].chip_id);
	struct vm_serial *u = p->serial;
	pthread_mutex_lock(&u->lock);
	u->ier = s->uart_ier;
	u->iir_fifo = s->uart_iir_fifo;
	u->lcr = s->uart_lcr;
	u->mcr = s->uart_mcr;
	u->scr = s->uart_scr;
	u->dll = s->uart_dll;
	u->dlm = s->uart_dlm;
	u->thre_pending = s->uart_thre_pending;
	pthread_mutex_unlock(&u->lock);
	struct vm_i8042 *k = p->i8042;
	pthread_mutex_lock(&k->lock);
	k->ctr = s->kbd_ctr;
	k->pending = s->kbd_pending;
	k->out_n = s->kbd_out_n;
	memcpy(k->out, s->kbd_out, sizeof(k->out));
	pthread_mutex_unlock(&k->lock);
	return 0;
}

/* Can a restore leave out MSR E, which this host's KVM does not list? Only
 * where that loses no guest state: the MSR holds its reset value (0 for
 * every such MSR seen: PMU counters and controls, debug store, PEBS; the
 * others below), or it is a Hyper-V synthetic MSR (0x40000000-0x400001ff:
 * KVM lists them where it could emulate Hyper-V, but our guests only get
 * KVM's CPUID leaves and never use them; their values are KVM's own, e.g.
 * the TSC and APIC frequencies). */
static int msr_droppable(const struct kvm_msr_entry *e)
{
	static const struct {
		uint32_t index;
		uint64_t reset;
	} nonzero_reset[] = {
		{0x9e, 0x30000},	  /* IA32_SMBASE (no SMM here) */
		{0xc0000104, 1ull << 32}, /* AMD TSC_RATIO: 1.0, no scaling */
	};
	if (e->data == 0 || (e->index >= 0x40000000u && e->index <= 0x400001ffu))
		return 1;
	for (size_t i = 0; i < sizeof(nonzero_reset) / sizeof(nonzero_reset[0]); i++)
		if (e->index == nonzero_reset[i].index)
			return e->data == nonzero_reset[i].reset;
	return 0;
}

int vm_snapshot_msr_filter(struct kvm_msr_entry *e, uint32_t n, const uint32_t *listed,
			   uint32_t nlisted, uint32_t *keep, struct sm_error *err)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < n; i++) {
		int found = 0;
		for (uint32_t j = 0; j < nlisted && !found; j++)
			found = listed[j] == e[i].index;
		if (found)
			e[k++] = e[i];
		else if (!msr_droppable(&e[i]))
			return sm_error_set(
				err, ENOTSUP,
				"the snapshot's MSR 0x%x (value 0x%llx) is not supported "
				"by this host's KVM; restore on the kind of host that "
				"baked it (same CPU vendor and kernel)",
				e[i].index, (unsigned long long)e[i].data);
	}
	*keep = k;
	return 0;
}

/* KVM_SET_MSRS of M (entries modified). The snapshot's list is the bake
 * host's KVM_GET_MSR_INDEX_LIST: on the same host KVM takes it whole, in one
 * call. Where it stops at an MSR (a host whose KVM lists fewer, e.g. another
 * CPU vendor or kernel, or kvm-pvm), the rest goes through
 * vm_snapshot_msr_filter() against this KVM's list and is set again; an MSR
 * this KVM lists but refuses is an error. */
static int set_msrs(const struct vm_parts *p, struct vm_vcpu *c, struct kvm_msrs *m,
		    struct sm_error *err)
{
	uint32_t total = m->nmsrs;
	int n = ioctl(c->fd, KVM_SET_MSRS, m);
	if (n < 0)
		return sm_error_errno(err, errno, "vCPU %d: KVM_SET_MSRS", c->id);
	if ((uint32_t)n == total)
		return 0;
	sm_autofree struct kvm_msr_list *ml = NULL;
	int r = msr_index_list(p->kvm_fd, &ml, err);
	if (r < 0)
		return r;
	uint32_t keep = 0;
	r = vm_snapshot_msr_filter(m->entries + n, total - (uint32_t)n, ml->indices, ml->nmsrs,
				   &keep, err);
	if (r < 0)
		return sm_error_wrap(err, "vCPU %d", c->id);
	if (keep == 0)
		return 0;
	memmove(m->entries, m->entries + n, keep * sizeof(m->entries[0]));
	m->nmsrs = keep;
	n = ioctl(c->fd, KVM_SET_MSRS, m);
	if (n < 0)
		return sm_error_errno(err, errno, "vCPU %d: KVM_SET_MSRS", c->id);
	if ((uint32_t)n != keep)
		return sm_error_set(err, EINVAL, "vCPU %d: KVM refused MSR 0x%x = 0x%llx", c->id,
				    m->entries[n].index, (unsigned long long)m->entries[n].data);
	return 0;
}

static int load_vcpu(const struct vm_parts *p, struct vm_vcpu *c, const uint8_t *buf, size_t len,
		     struct sm_error *err)
{
	const struct snap_vcpu *s = (const void *)buf;
	if (len < sizeof(*s))
		return sm_error_set(err, EBADMSG, "vcpu %d: record too short", c->id);
	int r = hdr_check(&s->h, SNAP_MAGIC_VCPU, sizeof(*s), "vcpu", err);
	if (r < 0)
		return r;
	if (s->id != (uint32_t)c->id || s->reserved || s->reserved2 || s->nmsrs > SNAP_MAX_MSRS ||
	    s->xsave_size < sizeof(struct kvm_xsave) || s->xsave_size > SNAP_MAX_XSAVE ||
	    s->xsave_size % 4)
		return sm_error_set(err, EBADMSG, "vcpu %d: bad id, counts or reserved fields",
				    c->id);
	size_t want = sizeof(*s) + (size_t)s->nmsrs * sizeof(struct kvm_msr_entry) + s->xsave_size;
	if (len != want)
		return sm_error_set(err, EBADMSG, "vcpu %d: %zu bytes, want %zu", c->id, len, want);
	const struct kvm_msr_entry *msrs = (const void *)(buf + sizeof(*s));
	const uint8_t *xs = buf + sizeof(*s) + (size_t)s->nmsrs * sizeof(struct kvm_msr_entry);

	/* XSAVE: the buffer KVM reads is its own size; extra bytes must be 0. */
	size_t local = (size_t)xsave_size(p->vm_fd);
	size_t cap = local > s->xsave_size ? local : s->xsave_size;
	sm_autofree uint8_t *xbuf = calloc(1, cap);
	if (!xbuf)
		return sm_error_set(err, ENOMEM, "xsave");
	memcpy(xbuf, xs, s->xsave_size);
	for (size_t i = local; i < s->xsave_size; i++)
		if (xbuf[i])
			return sm_error_set(err, ENOTSUP,
					    "vcpu %d: the snapshot's XSAVE state (%u bytes) does "
					    "not fit this host's (%zu)",
					    c->id, s->xsave_size, local);

	struct kvm_sregs sregs = s->sregs;
	struct kvm_regs regs = s->regs;
	struct kvm_xcrs xcrs = s->xcrs;
	struct kvm_lapic_state lapic = s->lapic;
	struct kvm_mp_state mp = s->mp;
	struct kvm_vcpu_events events = s->events;
	struct kvm_debugregs dregs = s->dregs;
#define SET(req, arg, name)                                                                        \
	do {                                                                                       \
		if (ioctl(c->fd, req, arg) < 0)                                                    \
			return sm_error_errno(err, errno, "vCPU %d: " name, c->id);                \
	} while (0)
	SET(KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	SET(KVM_SET_REGS, &regs, "KVM_SET_REGS");
	SET(KVM_SET_XSAVE, xbuf, "KVM_SET_XSAVE");
	SET(KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
	SET(KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
	if (s->nmsrs) {
		size_t ml =
			sizeof(struct kvm_msrs) + (size_t)s->nmsrs * sizeof(struct kvm_msr_entry);
		sm_autofree struct kvm_msrs *m = calloc(1, ml);
		if (!m)
			return sm_error_set(err, ENOMEM, "MSRs");
		m->nmsrs = s->nmsrs;
		memcpy(m->entries, msrs, (size_t)s->nmsrs * sizeof(struct kvm_msr_entry));
		r = set_msrs(p, c, m, err);
		if (r < 0)
			return r;
	}
	SET(KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
	SET(KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS");
	SET(KVM_SET_DEBUGREGS, &dregs, "KVM_SET_DEBUGREGS");
#undef SET
	return 0;
}

static int check_mmio(const struct vm_parts *p, int d, const struct snap_mmio *m, size_t len,
		      struct sm_error *err)
{
	struct virtio_mmio *t = p->virtio[d];
	if (len != sizeof(*m))
		return sm_error_set(err, EBADMSG, "mmio %d: %zu bytes", d, len);
	int r = hdr_check(&m->h, SNAP_MAGIC_MMIO, sizeof(*m), "mmio", err);
	if (r < 0)
		return r;
	if (m->device_id != t->ops->device_id || m->num_queues != t->ops->num_queues ||
	    m->base != p->virtio_base[d])
		return sm_error_set(err, EBADMSG,
				    "mmio %d: device %u with %u queues at 0x%llx, "
				    "this VM has %u with %u at 0x%llx",
				    d, m->device_id, m->num_queues, (unsigned long long)m->base,
				    t->ops->device_id, t->ops->num_queues,
				    (unsigned long long)p->virtio_base[d]);
	if (m->reserved || m->status > 0xff || m->isr > 3 || m->dev_features_sel > 1 ||
	    m->drv_features_sel > 1)
		return sm_error_set(err, EBADMSG, "mmio %d: bad register values", d);
	uint64_t offered = t->ops->features | (1ULL << VIRTIO_F_VERSION_1_BIT);
	if (m->drv_features & ~offered)
		return sm_error_set(err, EBADMSG, "mmio %d: driver features not offered", d);
	for (uint32_t q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		const struct snap_vq *v = &m->vq[q];
		struct virtq vq = {
			.size = v->size,
			.max_size = t->vq[q].max_size,
			.desc_gpa = v->desc_gpa,
			.avail_gpa = v->avail_gpa,
			.used_gpa = v->used_gpa,
		};
		if (v->ready > 1 || v->broken > 1 || v->max_size != t->vq[q].max_size ||
		    (q >= m->num_queues && (v->ready || v->size)))
			return sm_error_set(err, EBADMSG, "mmio %d queue %u: bad values", d, q);
		if (v->ready &&
		    (v->size == 0 || (v->size & (v->size - 1)) || v->size > v->max_size))
			return sm_error_set(err, EBADMSG, "mmio %d queue %u: bad size %u", d, q,
					    v->size);
		if (v->ready && virtq_validate(&vq, p->mem, err) < 0)
			return sm_error_wrap(err, "mmio %d queue %u", d, q);
	}
	return 0;
}

static void load_mmio(struct virtio_mmio *t, const struct snap_mmio *m)
{
	pthread_mutex_lock(&t->lock);
	t->status = m->status;
	t->dev_features_sel = m->dev_features_sel;
	t->drv_features_sel = m->drv_features_sel;
	t->queue_sel = m->queue_sel;
	t->drv_features = m->drv_features;
	t->isr = m->isr;
	t->config_generation = m->config_generation;
	t->shm_sel = m->shm_sel;
	for (int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		const struct snap_vq *v = &m->vq[q];
		struct virtq *vq = &t->vq[q];
		vq->desc_gpa = v->desc_gpa;
		vq->avail_gpa = v->avail_gpa;
		vq->used_gpa = v->used_gpa;
		vq->size = v->size;
		vq->last_avail = v->last_avail;
		vq->used_idx = v->used_idx;
		vq->ready = (int)v->ready;
		vq->broken = (int)v->broken;
	}
	pthread_mutex_unlock(&t->lock);
}

static int check_dev(const struct vm_parts *p, int d, const struct snap_dev *s, size_t len,
		     struct sm_error *err)
{
	if (len != sizeof(*s))
		return sm_error_set(err, EBADMSG, "device %d: %zu bytes", d, len);
	int r = hdr_check(&s->h, SNAP_MAGIC_DEV, sizeof(*s), "device", err);
	if (r < 0)
		return r;
	if (s->device_id != p->virtio[d]->ops->device_id || s->reserved)
		return sm_error_set(err, EBADMSG, "device %d: bad id or reserved field", d);
	if (s->device_id == SNAP_DEV_VSOCK && p->vsock &&
	    s->guest_cid != virtio_vsock_guest_cid(p->vsock))
		return sm_error_set(err, EBADMSG, "device %d: guest CID %llu, this VM has %llu", d,
				    (unsigned long long)s->guest_cid,
				    (unsigned long long)virtio_vsock_guest_cid(p->vsock));
	if (s->device_id != SNAP_DEV_VSOCK && s->guest_cid)
		return sm_error_set(err, EBADMSG, "device %d: reserved field set", d);
	return 0;
}

int vm_snapshot_load(struct vm *vm, struct fmt_reader *rd, struct sm_error *err)
{
	struct vm_parts p;
	vm_get_parts(vm, &p);
	int r;
	/* Read and check everything before touching KVM. */
	void *vms = NULL, *mmio[VM_PARTS_MAX_VIRTIO] = {0}, *dev[VM_PARTS_MAX_VIRTIO] = {0};
	void **vcpu = calloc((size_t)p.ncpus, sizeof(void *));
	size_t *vcpu_len = calloc((size_t)p.ncpus, sizeof(size_t));
	struct virtio_vsock_saved *vs = calloc(1, sizeof(*vs));
	size_t len;
	if (!vcpu || !vcpu_len || !vs) {
		r = sm_error_set(err, ENOMEM, "out of memory");
		goto out;
	}
	r = read_section(rd, FMT_SEC_VMSTATE, 0, &vms, &len, err);
	if (r == 0)
		r = check_vmstate(vms, len, err);
	for (int d = 0; r == 0 && d < p.n_virtio; d++) {
		r = read_section(rd, FMT_SEC_MMIO, (uint32_t)d, &mmio[d], &len, err);
		if (r == 0)
			r = check_mmio(&p, d, mmio[d], len, err);
		if (r < 0 || p.virtio[d]->ops->device_id == SNAP_DEV_FS)
			continue; /* its records are read below */
		r = read_section(rd, FMT_SEC_DEVICE, (uint32_t)d, &dev[d], &len, err);
		if (r == 0)
			r = check_dev(&p, d, dev[d], len, err);
	}
	for (int d = 0; r == 0 && d < p.n_virtio; d++)
		if (p.virtio[d]->ops->device_id == SNAP_DEV_VSOCK && p.vsock)
			r = vm_snapshot_vsock_read(rd, (uint32_t)d, vs, err);
	if (r > 0)
		r = 0;
	for (int i = 0; r == 0 && i < p.ncpus; i++)
		r = read_section(rd, FMT_SEC_VCPU, (uint32_t)i, &vcpu[i], &vcpu_len[i], err);
	/* The fresh FUSE server and DAX session get their state before the
	 * guest runs (nothing has kicked the worker yet). No KVM involved. */
	for (int d = 0; r == 0 && d < p.n_virtio; d++) {
		if (p.virtio[d]->ops->device_id != SNAP_DEV_FS)
			continue;
		r = p.fs && d == p.n_virtio - 1
			    ? vm_snapshot_fs_load(p.fs, (uint32_t)d, rd, err)
			    : sm_error_set(err, EINVAL, "device %d: unexpected virtio-fs", d);
	}
	if (r < 0)
		goto out;

	r = load_vmstate(&p, vms, err);
	for (int i = 0; r == 0 && i < p.ncpus; i++)
		r = load_vcpu(&p, &p.vcpus[i], vcpu[i], vcpu_len[i], err);
	for (int d = 0; r == 0 && d < p.n_virtio; d++)
		load_mmio(p.virtio[d], mmio[d]);
	for (int d = 0; r == 0 && d < p.n_virtio; d++) {
		struct virtio_mmio *t = p.virtio[d];
		if (t->ops->device_id != SNAP_DEV_VSOCK || !p.vsock)
			continue;
		pthread_mutex_lock(&t->lock);
		int e;
		if (vs->kept) {
			/* The kept connection gets a new host end; the guest's
			 * other sockets get an RST each. */
			e = virtio_vsock_restore(p.vsock, vs, p.kept_conn);
			if (e < 0)
				r = sm_error_set(err, -e,
						 "vsock: cannot restore the kept connection");
		} else {
			/* Guest sockets referred to host connections that are
			 * gone: TRANSPORT_RESET makes the guest reset them
			 * (listeners stay). */
			e = virtio_vsock_send_reset(p.vsock);
			if (e < 0 && e != -ENODEV)
				r = sm_error_set(err, -e,
						 "vsock: cannot send the transport reset event");
		}
		pthread_mutex_unlock(&t->lock);
	}
	/* Serve whatever the guest had queued for virtio-fs at capture. */
	if (r == 0 && p.fs)
		virtio_fs_resume(p.fs);
out:
	free(vms);
	for (int d = 0; d < VM_PARTS_MAX_VIRTIO; d++) {
		free(mmio[d]);
		free(dev[d]);
	}
	free(vs);
	for (int i = 0; vcpu && i < p.ncpus; i++)
		free(vcpu[i]);
	free(vcpu);
	free(vcpu_len);
	return r < 0 ? sm_error_wrap(err, "restore") : 0;
}
