#!/usr/bin/env bash
# The README's local Lambda run, scripted: moto, tables and queues, sample definitions,
# `cargo lambda watch`, then `cargo lambda invoke` with every file in events/. Fails if
# any invoke fails. Installs cargo-lambda and zig into the project venv on first use.
#
#   scripts/lambda-smoke.sh [EMULATOR_PORT] [LAMBDA_PORT]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
emulator_port="${1:-4566}"
lambda_port="${2:-9000}"

scripts/venv.sh
[ -x .venv/bin/cargo-lambda ] || .venv/bin/pip install --quiet --disable-pip-version-check cargo-lambda ziglang
export PATH="$root/.venv/bin:$PATH"

watch_pid=""
cleanup() {
    [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null || true
    scripts/emulator.sh stop
}
trap cleanup EXIT INT TERM

eval "$(scripts/emulator.sh start "$emulator_port")"
eval "$(cargo run -q -p wfs-cli -- setup-local --prefix "smoke-$$")"
cargo run -q -p wfs-cli -- definitions put events/sample-definitions.json

cargo build -q -p daily_scanner_v2 -p scheduler_v2 -p executor_v2 -p definition_sync
cargo lambda watch -A 127.0.0.1 -P "$lambda_port" >target/lambda-watch.log 2>&1 &
watch_pid=$!
for _ in $(seq 1 150); do
    (echo >"/dev/tcp/127.0.0.1/$lambda_port") 2>/dev/null && break
    sleep 0.2
done

invoke() {
    echo "== cargo lambda invoke $1 --data-file events/$2"
    cargo lambda invoke "$1" -A 127.0.0.1 -P "$lambda_port" --data-file "events/$2"
    echo
}
invoke daily_scanner_v2 daily_scanner_v2.json
invoke daily_scanner_v2 daily_scanner_v2_backfill.json
invoke scheduler_v2 scheduler_v2.json
invoke executor_v2 executor_v2.json
invoke definition_sync definition_sync.json
echo "all invocations succeeded (function logs: target/lambda-watch.log)"
