/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
#include <stddef.h>

struct abi_fact {
	const char *name;
	size_t value;
};

extern const struct abi_fact abi_kernel_facts[];
extern const struct abi_fact abi_ours_facts[];
