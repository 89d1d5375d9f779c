/* SPDX-License-Identifier: Apache-2.0 */
/* Port I/O and MMIO dispatch: ranges registered with one handler signature;
 * overlapping registrations are refused. */
#include <errno.h>
#include <string.h>

#include "sm/vm.h"

int vm_io_bus_register(struct vm_io_bus *bus, uint64_t base, uint64_t len, vm_io_fn fn,
		       void *opaque, struct sm_error *err)
{
	uint64_t end;
	if (len == 0 || sm_add_overflow(base, len, &end) || !fn)
		return sm_error_set(err, EINVAL, "bad I/O range 0x%llx+0x%llx",
				    (unsigned long long)base, (unsigned long long)len);
	if (bus->n >= VM_IO_MAX_RANGES)
		return sm_error_set(err, ENOSPC, "too many I/O ranges");
	for (int i = 0; i < bus->n; i++) {
		const struct vm_io_range *r = &bus->r[i];
		if (base < r->base + r->len && r->base < end)
			return sm_error_set(
				err, EEXIST, "I/O range 0x%llx+0x%llx overlaps 0x%llx+0x%llx",
				(unsigned long long)base, (unsigned long long)len,
				(unsigned long long)r->base, (unsigned long long)r->len);
	}
	bus->r[bus->n++] = (struct vm_io_range){base, len, fn, opaque};
	return 0;
}

int vm_io_bus_dispatch(const struct vm_io_bus *bus, struct vm_vcpu *vcpu, uint64_t addr,
		       uint8_t *data, uint32_t len, int is_write)
{
	for (int i = 0; i < bus->n; i++) {
		const struct vm_io_range *r = &bus->r[i];
		if (addr >= r->base && addr - r->base < r->len) {
			r->fn(vcpu, addr - r->base, data, len, is_write, r->opaque);
			return 1;
		}
	}
	if (!is_write)
		memset(data, 0xff, len);
	return 0;
}
