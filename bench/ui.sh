#!/usr/bin/env bash
# Web UI benchmark (issue 20): page weight (bytes transferred on a cold first load) and time to
# the first full services table with 1,000 services, in headless chromium; see bench/ui_bench.py.
# Usage: bench/ui.sh [services=1000] [runs=5] (BUILD=debug to skip the release build).
# Record results in docs/benchmarks.md with the date, machine and load.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cd "$root"
profile=${BUILD:-release}
if [ "$profile" = release ]; then cargo build --quiet --release -p lambdamesh; else cargo build --quiet -p lambdamesh; fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg); $profile build; chromium $(chromium --version 2>/dev/null | awk '{print $2}'); date: $(date -u +%FT%H:%MZ)"
python3 "$root/bench/ui_bench.py" "$CARGO_TARGET_DIR/$profile/lambdamesh" "${1:-1000}" "${2:-5}"
