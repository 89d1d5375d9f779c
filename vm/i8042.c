/* SPDX-License-Identifier: Apache-2.0 */
/* Just enough of the i8042 keyboard controller for the guest to reset the
 * machine (reboot=k, and panic=-1 through it): command 0xfe on port 0x64. */
#include <string.h>

#include "vm_internal.h"

#define I8042_CMD_RESET 0xfe

void vm_i8042_io(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len, int is_write,
		 void *opaque)
{
	struct vm *vm = opaque;
	(void)vcpu;
	if (!is_write) {
		memset(data, 0, len); /* no data, input buffer empty */
		return;
	}
	if (off == 4 && len == 1 && data[0] == I8042_CMD_RESET)
		vm_request_stop(vm, VM_STOP_RESET, NULL);
}
