/* SPDX-License-Identifier: Apache-2.0 */
/* Legacy devices: the 8250 UART (output, THR-empty interrupt, IIR, loopback
 * MSR) and the i8042 controller (self-test, command byte). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>

#include "vm/vm_internal.h"

static int irq_level, irq_changes;
static void set_irq(void *ctx, int level)
{
	(void)ctx;
	irq_level = level;
	irq_changes++;
}

static uint8_t rd(void *dev, vm_io_fn fn, uint64_t off)
{
	uint8_t v = 0xaa;
	fn(NULL, off, &v, 1, 0, dev);
	return v;
}

static void wr(void *dev, vm_io_fn fn, uint64_t off, uint8_t v)
{
	fn(NULL, off, &v, 1, 1, dev);
}

static void test_uart(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	struct vm_serial s;
	vm_serial_init(&s, p[1], set_irq, NULL);
	irq_level = irq_changes = 0;
	assert_int_equal(rd(&s, vm_serial_io, 5) & 0x60, 0x60); /* THRE | TEMT */
	assert_int_equal(rd(&s, vm_serial_io, 2) & 0x0f, 0x01); /* no interrupt */
	/* Enabling the THR-empty interrupt raises the line at once. */
	wr(&s, vm_serial_io, 1, 0x02);
	assert_int_equal(irq_level, 1);
	assert_int_equal(rd(&s, vm_serial_io, 2) & 0x0f, 0x02); /* THRI, and clears it */
	assert_int_equal(irq_level, 0);
	assert_int_equal(rd(&s, vm_serial_io, 2) & 0x0f, 0x01);
	/* Each transmitted byte raises it again (edge per byte). */
	const char *msg = "hi\n";
	for (const char *c = msg; *c; c++) {
		wr(&s, vm_serial_io, 0, (uint8_t)*c);
		assert_int_equal(irq_level, 1);
		rd(&s, vm_serial_io, 2);
		assert_int_equal(irq_level, 0);
	}
	char buf[8] = {0};
	assert_int_equal(read(p[0], buf, sizeof(buf)), 3); /* flushed at newline */
	assert_string_equal(buf, "hi\n");
	/* Partial lines are flushed on demand. */
	wr(&s, vm_serial_io, 0, 'x');
	assert_int_equal(read(p[0], buf, sizeof(buf)), -1);
	vm_serial_flush(&s);
	assert_int_equal(read(p[0], buf, sizeof(buf)), 1);
	/* Divisor latch: DLL/DLM do not transmit. */
	wr(&s, vm_serial_io, 3, 0x80);
	wr(&s, vm_serial_io, 0, 0x0c);
	assert_int_equal(rd(&s, vm_serial_io, 0), 0x0c);
	wr(&s, vm_serial_io, 3, 0x03);
	assert_int_equal(read(p[0], buf, sizeof(buf)), -1);
	/* Loopback: MSR mirrors MCR (the classic 8250 probe). */
	wr(&s, vm_serial_io, 4, 0x10 | 0x0a);
	assert_int_equal(rd(&s, vm_serial_io, 6) & 0xf0, 0x90);
	/* Odd sizes are ignored. */
	uint32_t w = 0x41414141;
	vm_serial_io(NULL, 0, (uint8_t *)&w, 4, 1, &s);
	vm_serial_io(NULL, 0, (uint8_t *)&w, 4, 0, &s);
	assert_int_equal(w, 0);
	vm_serial_destroy(&s);
	close(p[0]);
	close(p[1]);
}

static void test_i8042(void **state)
{
	(void)state;
	struct vm_i8042 k;
	vm_i8042_init(&k, NULL);
	assert_int_equal(rd(&k, vm_i8042_io, 4) & 1, 0); /* nothing to read */
	wr(&k, vm_i8042_io, 4, 0xaa);			 /* self-test */
	assert_int_equal(rd(&k, vm_i8042_io, 4) & 1, 1);
	assert_int_equal(rd(&k, vm_i8042_io, 0), 0x55);
	assert_int_equal(rd(&k, vm_i8042_io, 4) & 1, 0);
	wr(&k, vm_i8042_io, 4, 0x20); /* read command byte */
	uint8_t ctr = rd(&k, vm_i8042_io, 0);
	wr(&k, vm_i8042_io, 4, 0x60); /* write command byte */
	wr(&k, vm_i8042_io, 0, (uint8_t)(ctr ^ 0x03));
	wr(&k, vm_i8042_io, 4, 0x20);
	assert_int_equal(rd(&k, vm_i8042_io, 0), ctr ^ 0x03);
	/* Keyboard commands get "resend": there is no keyboard. */
	wr(&k, vm_i8042_io, 0, 0xf2);
	assert_int_equal(rd(&k, vm_i8042_io, 0), 0xfe);
	/* The output buffer is bounded. */
	for (int i = 0; i < 100; i++)
		wr(&k, vm_i8042_io, 4, 0xaa);
	int n = 0;
	while ((rd(&k, vm_i8042_io, 4) & 1) && n < 1000) {
		rd(&k, vm_i8042_io, 0);
		n++;
	}
	assert_int_equal(n, (int)sizeof(k.out));
	/* Port 0x61..0x63 (offsets 1..3) are not ours: all ones. */
	assert_int_equal(rd(&k, vm_i8042_io, 1), 0xff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uart),
		cmocka_unit_test(test_i8042),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
