/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include "sm/oci.h"

int oci_registry_pull(struct cache *c, const struct oci_ref *ref, const struct oci_pull_opts *opts,
		      struct oci_image *img, struct sm_error *err)
{
	(void)c;
	(void)opts;
	(void)img;
	return sm_error_set(err, ENOTSUP, "pulling from registry %s: not implemented yet",
			    ref->registry);
}
