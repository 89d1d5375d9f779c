# Shared by the vm_*.sh e2e tests: locate smrun and the guest kernel.
# Usage (sourced): . vm_common.sh BUILD_DIR
set -euo pipefail
build=${1:?build directory}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
smrun="$build/tools/smrun"
[ -x "$smrun" ] || { echo "vm e2e: $smrun not built" >&2; exit 1; }
kernel=${SM_KERNEL:-$("$src/kernel/build.sh" --path)}
[ -f "$kernel" ] || { echo "vm e2e: no guest kernel at $kernel; run kernel/build.sh" >&2; exit 1; }
export SM_AGENT="$build/agent/sminit"
work=$(mktemp -d /tmp/sm-vm-e2e.XXXXXX)
trap 'rm -rf "$work"' EXIT
