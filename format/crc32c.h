/* SPDX-License-Identifier: Apache-2.0 */
/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
 * part of a snapshot file. Hardware (SSE4.2) when available, else tables. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: crc is the previous result (0 to start). Standard CRC32C:
 * fmt_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t fmt_crc32c(uint32_t crc, const void *data, size_t len);

/* The portable table-driven implementation, for tests. */
uint32_t fmt_crc32c_sw(uint32_t crc, const void *data, size_t len);
