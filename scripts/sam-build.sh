#!/usr/bin/env bash
# `sam build` of every function (cargo-lambda, arm64) from a fresh clone, offline: installs
# SAM CLI, cargo-lambda and zig into the project venv (.venv) and the aarch64 Rust target,
# then builds into .aws-sam/build. No AWS account or credentials are needed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamp="$venv/.requirements-build"
start=$(date +%s)

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! cmp -s scripts/requirements-build.txt "$stamp"; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-build.txt
    cp scripts/requirements-build.txt "$stamp"
fi
# The toolchain pinned in rust-toolchain.toml, with the Lambda (Graviton) target.
rustup target add aarch64-unknown-linux-gnu

# cargo-lambda, and zig through `python3 -m ziglang`, are found on PATH via the venv.
export PATH="$venv/bin:$PATH"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-build-only}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-build-only}"
export AWS_EC2_METADATA_DISABLED=true
export SAM_CLI_TELEMETRY=0
sam --version
cargo lambda --version
sam build --beta-features "$@"

echo "sam build: $(( $(date +%s) - start ))s"
for f in .aws-sam/build/*/bootstrap; do
    printf '%10d bytes  %s\n' "$(stat -c %s "$f")" "$f"
done
