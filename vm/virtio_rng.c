/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-rng (device id 4): one request queue filled from getrandom(). */
#include <errno.h>
#include <sys/random.h>

#include "sm/vm.h"

static void rng_notify(void *dev, uint32_t qidx)
{
	struct virtio_rng *rng = dev;
	struct virtio_mmio *t = rng->t;
	struct virtq *q = virtio_mmio_queue(t, qidx);
	struct virtq_elem e;
	int pushed = 0;
	while (q && virtq_pop(q, t->mem, &e) == 1) {
		uint32_t written = 0;
		for (int i = 0; i < e.n_in; i++) {
			uint8_t *p = e.in[i].p;
			uint32_t left = e.in[i].len;
			while (left) {
				ssize_t n = getrandom(p, left, 0);
				if (n < 0) {
					if (errno == EINTR)
						continue;
					break;
				}
				p += n;
				left -= (uint32_t)n;
				written += (uint32_t)n;
			}
		}
		virtq_push(q, t->mem, e.head, written);
		pushed = 1;
	}
	if (pushed)
		virtio_mmio_signal_used(t);
}

const struct virtio_dev_ops virtio_rng_ops = {
	.name = "virtio-rng",
	.device_id = 4,
	.features = 0,
	.num_queues = 1,
	.queue_max = 256,
	.config_len = 0,
	.queue_notify = rng_notify,
};
