#!/usr/bin/env bash
# Runs a command against a fresh moto server (DynamoDB + SQS emulator) on a free
# 127.0.0.1 port, with the standard AWS variables pointing at it, and stops the server
# afterwards — also when the command fails or is interrupted.
#
#   scripts/with-emulator.sh cargo test --workspace
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/venv.sh"

port="$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log="$root/target/moto-$port.log"
mkdir -p "$root/target"
"$root/.venv/bin/python" "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
stop() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; }
trap stop EXIT INT TERM

for _ in $(seq 1 100); do
    if "$root/.venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$moto_pid" 2>/dev/null; then
        echo "moto_server exited; its log ($log):" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.2
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export WFS_REQUIRE_EMULATOR=1
echo "emulator: moto on $AWS_ENDPOINT_URL (log: $log)" >&2
"$@"
