# Shared by the snap_*.sh e2e tests: locate the tools and the kernel (via
# vm_common.sh), keep the memory cache private to the test, and bake a
# snapshot into $snap with an optional warm-up command ($1).
# Usage (sourced): . snap_common.sh BUILD_DIR
. "$(dirname "${BASH_SOURCE[0]}")/vm_common.sh" "$1"
smrestore="$build/tools/smrestore"
smsnap="$build/tools/smsnap"
[ -x "$smrestore" ] || { echo "snap e2e: $smrestore not built" >&2; exit 1; }
export SM_CACHE="$work/cache"
snap="$work/snap.smsnap"

bake() { # bake [WARMUP]
	local warm=()
	[ $# -gt 0 ] && warm=(--warmup "$1")
	if ! "$smrun" --kernel "$kernel" --console "$work/bake-console" --timing \
		--snapshot-out "$snap" "${warm[@]}" >"$work/bake-out" 2>"$work/bake-err"; then
		echo "FAIL: bake" >&2
		cat "$work/bake-err" >&2
		tail -n 30 "$work/bake-console" >&2 || true
		exit 1
	fi
	cat "$work/bake-err" >&2
}
