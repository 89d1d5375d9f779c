/* SPDX-License-Identifier: Apache-2.0 */
/* A 16550-compatible UART at 0x3f8, output only: enough for the kernel
 * console and for user-space writes (the THR-empty interrupt drives the
 * tty layer). Output goes to a host fd, line-buffered. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vm_internal.h"

#define UART_IER_THRI 0x02
#define UART_LCR_DLAB 0x80
#define UART_MCR_LOOP 0x10
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_IIR_NONE 0x01
#define UART_IIR_THRI 0x02

void vm_serial_init(struct vm_serial *s, int out_fd, void (*set_irq)(void *, int), void *ctx)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	s->set_irq = set_irq;
	s->irq_ctx = ctx;
	s->mcr = 0x08; /* OUT2 */
}

static void flush_locked(struct vm_serial *s)
{
	size_t off = 0;
	while (s->out_fd >= 0 && off < s->buf_len) {
		ssize_t n = write(s->out_fd, s->buf + off, s->buf_len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	s->buf_len = 0;
}

void vm_serial_flush(struct vm_serial *s)
{
	pthread_mutex_lock(&s->lock);
	flush_locked(s);
	pthread_mutex_unlock(&s->lock);
}

void vm_serial_destroy(struct vm_serial *s)
{
	vm_serial_flush(s);
	pthread_mutex_destroy(&s->lock);
}

static void update_irq(struct vm_serial *s)
{
	int level = (s->ier & UART_IER_THRI) && s->thre_pending;
	if (level != s->line) {
		s->line = level;
		if (s->set_irq)
			s->set_irq(s->irq_ctx, level);
	}
}

static void out_byte(struct vm_serial *s, uint8_t c)
{
	if (s->out_fd < 0)
		return;
	s->buf[s->buf_len++] = (char)c;
	if (c == '\n' || s->buf_len == sizeof(s->buf))
		flush_locked(s);
}

void vm_serial_io(struct vm_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len, int is_write,
		  void *opaque)
{
	(void)vcpu;
	struct vm_serial *s = opaque;
	if (len != 1) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&s->lock);
	int dlab = s->lcr & UART_LCR_DLAB;
	uint8_t v = is_write ? data[0] : 0;
	switch (off) {
	case 0:
		if (dlab) {
			if (is_write)
				s->dll = v;
			else
				v = s->dll;
		} else if (is_write) {
			if (!(s->mcr & UART_MCR_LOOP))
				out_byte(s, v);
			s->thre_pending = 1; /* transmitted at once */
		} else {
			v = 0; /* no input */
		}
		break;
	case 1:
		if (dlab) {
			if (is_write)
				s->dlm = v;
			else
				v = s->dlm;
		} else if (is_write) {
			uint8_t old = s->ier;
			s->ier = v & 0x0f;
			if ((s->ier & UART_IER_THRI) && !(old & UART_IER_THRI))
				s->thre_pending = 1;
		} else {
			v = s->ier;
		}
		break;
	case 2:
		if (is_write) {
			s->iir_fifo = (v & 1) ? 0xc0 : 0;
		} else if ((s->ier & UART_IER_THRI) && s->thre_pending) {
			v = UART_IIR_THRI | s->iir_fifo;
			s->thre_pending = 0; /* reading IIR clears a THRE interrupt */
		} else {
			v = UART_IIR_NONE | s->iir_fifo;
		}
		break;
	case 3:
		if (is_write)
			s->lcr = v;
		else
			v = s->lcr;
		break;
	case 4:
		if (is_write)
			s->mcr = v & 0x1f;
		else
			v = s->mcr;
		break;
	case 5:
		if (!is_write)
			v = UART_LSR_THRE | UART_LSR_TEMT;
		break;
	case 6:
		if (!is_write) {
			if (s->mcr & UART_MCR_LOOP) {
				/* DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD */
				v = (uint8_t)(((s->mcr & 1) << 5) | ((s->mcr & 2) << 3) |
					      ((s->mcr & 4) << 4) | ((s->mcr & 8) << 4));
			} else {
				v = 0xb0; /* DCD, DSR, CTS */
			}
		}
		break;
	case 7:
		if (is_write)
			s->scr = v;
		else
			v = s->scr;
		break;
	}
	if (!is_write)
		data[0] = v;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}
