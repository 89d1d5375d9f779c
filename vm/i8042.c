/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal i8042 keyboard controller (ports 0x60 and 0x64), Firecracker
 * style: enough for Linux to find the controller at once (self-test, read
 * and write of the command byte) instead of timing out for half a second,
 * and for the guest to reset the machine with command 0xfe (reboot=k, and
 * panic=-1 through it). No keyboard is attached. */
#include <string.h>

#include "vm_internal.h"

#define STATUS_OBF	0x01 /* output buffer full: data for the guest */
#define STATUS_SYS	0x04 /* system flag: self-test passed */
#define STATUS_UNLOCKED 0x10 /* keyboard not inhibited */

#define CMD_READ_CTR  0x20
#define CMD_WRITE_CTR 0x60
#define CMD_AUX_TEST  0xa9
#define CMD_SELF_TEST 0xaa
#define CMD_KBD_TEST  0xab
#define CMD_WRITE_OUT 0xd1
#define CMD_WRITE_AUX 0xd4
#define CMD_RESET     0xfe

void vm_i8042_init(struct vm_i8042 *k, struct vm *vm)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->vm = vm;
	k->ctr = 0x45; /* kbd interrupt, system flag, translate */
}

static void push(struct vm_i8042 *k, uint8_t v)
{
	if (k->out_n < (int)sizeof(k->out))
		k->out[k->out_n++] = v;
}

void vm_i8042_io(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len, int is_write,
		 void *opaque)
{
	struct vm_i8042 *k = opaque;
	(void)vcpu;
	if (len != 1 || (off != 0 && off != 4)) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	int reset = 0;
	pthread_mutex_lock(&k->lock);
	if (!is_write) {
		if (off == 4) {
			data[0] = (uint8_t)((k->out_n ? STATUS_OBF : 0) | STATUS_SYS |
					    STATUS_UNLOCKED);
		} else if (k->out_n) {
			data[0] = k->out[0];
			memmove(k->out, k->out + 1, (size_t)--k->out_n);
		} else {
			data[0] = 0;
		}
	} else if (off == 4) {
		k->pending = 0;
		switch (data[0]) {
		case CMD_READ_CTR:
			push(k, k->ctr);
			break;
		case CMD_WRITE_CTR:
		case CMD_WRITE_OUT:
		case CMD_WRITE_AUX:
			k->pending = data[0];
			break;
		case CMD_SELF_TEST:
			push(k, 0x55);
			break;
		case CMD_KBD_TEST:
		case CMD_AUX_TEST:
			push(k, 0x00);
			break;
		case CMD_RESET:
			reset = 1;
			break;
		default:
			break; /* enable/disable ports and the like: nothing to do */
		}
	} else {
		if (k->pending == CMD_WRITE_CTR)
			k->ctr = data[0];
		else if (!k->pending)
			push(k, 0xfe); /* a keyboard command: "resend", no keyboard here */
		k->pending = 0;
	}
	pthread_mutex_unlock(&k->lock);
	if (reset)
		vm_request_stop(k->vm, VM_STOP_RESET, NULL);
}
