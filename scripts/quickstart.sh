#!/bin/bash
# README's first command: set up everything, then run the main job on the
# embedded default image as far as the pipeline exists today.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "$@"
exec scripts/demo.sh
