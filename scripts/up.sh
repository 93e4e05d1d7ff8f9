#!/usr/bin/env bash
# The README's first command: the seed's greeter migration (examples/greeter) on this machine.
# Installs what it needs (scripts/setup.sh: the pinned Envoy, awslambdaric, ...), builds
# lambdamesh and its Lambda extension, and runs `lambdamesh up examples/greeter`, which prints
# what to curl when everything is ready. Ctrl-C (or `lambdamesh down examples/greeter`) stops it.
# Another topology: ./scripts/up.sh examples/authentication
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cargo build --quiet -p lambdamesh -p lambdamesh-extension
export LAMBDAMESH_PYTHON="$root/.venv/bin/python"
echo "lambdamesh is $CARGO_TARGET_DIR/debug/lambdamesh (export PATH=\"$CARGO_TARGET_DIR/debug:\$PATH\" to type 'lambdamesh ...')"
exec "$CARGO_TARGET_DIR/debug/lambdamesh" up "${1:-examples/greeter}"
