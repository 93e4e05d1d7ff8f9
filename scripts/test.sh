#!/usr/bin/env bash
# Runs every test: formatting, lints, the Rust test suites (unit, API, CLI, crash, real Envoy and
# runtimes), and the compatibility tests with independent clients (py-consul, boto3).
# Installs what it needs first (scripts/setup.sh); safe on a fresh machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
# CI builds a fresh clone once: incremental state would only fill the disk (it had grown to
# 27 GB in the shared target dir, and a full disk makes the linker die with a bus error).
if [[ "${CI:-}" == "true" ]]; then export CARGO_INCREMENTAL=0; fi
export LAMBDAMESH_PYTHON="$root/.venv/bin/python"
export PATH="$root/.venv/bin:$PATH"

step() { printf '\n== %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo deny (licenses, bans and duplicate versions, sources; deny.toml)"
# The advisories check needs the RustSec database from the network; these machines have none.
cargo deny --locked check licenses bans sources

step "cargo doc (no warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps --workspace

step "fuzz targets compile"
cargo check --quiet --manifest-path fuzz/Cargo.toml --bins

step "Rust tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final
else
  cargo test --workspace --no-fail-fast
fi

step "compatibility tests with independent clients (pytest)"
cargo build --quiet -p lambdamesh
LAMBDAMESH_BIN="$CARGO_TARGET_DIR/debug/lambdamesh" "$root/.venv/bin/python" -m pytest -q tests/compat

step "examples/authentication run by lambdamesh up, checked end to end (scripts/demo.sh with DEMO_CHECK=1)"
DEMO_CHECK=1 ./scripts/demo.sh
