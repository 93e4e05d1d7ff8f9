#!/usr/bin/env bash
# Installs the real third-party parts that the demo and the tests drive, idempotently:
#   - a Python venv with the pinned PyPI parts (scripts/requirements.txt), cached under
#     $LAMBDAMESH_CACHE keyed on the hash of that file, linked as ./.venv (git-ignored);
#   - Debian packages the tests need, only when missing.
# Prints nothing on a warm cache except one line. Safe to run any number of times.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LAMBDAMESH_CACHE:-$HOME/.cache/lambdamesh}
mkdir -p "$cache"
# One setup at a time per cache (parallel test runs and demos share it).
exec 9>"$cache/setup.lock"
flock 9

req="$root/scripts/requirements.txt"
key=$(sha256sum "$req" | cut -c1-16)
venv="$cache/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "setup: creating Python venv $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
fi
ln -sfn "$venv" "$root/.venv"
# `lambdamesh` on the venv's PATH: a link to the binary cargo builds (the same default target
# dir as demo.sh and test.sh), so `source .venv/bin/activate` is all a shell needs. It dangles
# until the first build (`./scripts/demo.sh`, `./scripts/test.sh` or `cargo build -p lambdamesh`).
ln -sfn "${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}/debug/lambdamesh" "$venv/bin/lambdamesh"

# Debian packages: only what is missing (apt-get needs root; CI and developers run as root here).
# chromium + chromium-driver: the web UI's browser tests (crates/cli/tests/ui.rs) and screenshots.
# etcd-server/etcd-client: the HA store's tests, examples/ha and bench/ha.sh (docs/ha.md);
# protobuf-compiler: `protoc`, which the etcd client's build compiles etcd's protos with.
# haproxy: the load balancer in front of the replicas in crates/cli/tests/ha.rs and examples/ha.
# openssl: tests verify certificate chains with `openssl verify` (the CA, multi-dc, mesh tests).
need=()
for pkg in chromium chromium-driver etcd-server etcd-client protobuf-compiler haproxy openssl ${LAMBDAMESH_APT_PACKAGES:-}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing apt packages: ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "setup: ok (venv $venv)" >&2
