#!/usr/bin/env bash
# A long-running moto emulator for local work (the test command starts its own).
#
#   eval "$(scripts/emulator.sh start [PORT])"   # starts moto, prints the AWS_* exports
#   scripts/emulator.sh stop
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pidfile="$root/target/emulator.pid"
mkdir -p "$root/target"

case "${1:-}" in
start)
    port="${2:-4566}"
    "$root/scripts/venv.sh" >&2
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "emulator already running (pid $(cat "$pidfile")); scripts/emulator.sh stop first" >&2
        exit 1
    fi
    nohup "$root/.venv/bin/python" "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$root/target/emulator.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
        if "$root/.venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
            echo "moto on http://127.0.0.1:$port (pid $(cat "$pidfile"), log target/emulator.log)" >&2
            echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true"
            exit 0
        fi
        sleep 0.2
    done
    echo "moto did not start; see target/emulator.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
        echo "emulator stopped" >&2
    fi
    ;;
*)
    echo "usage: scripts/emulator.sh start [PORT] | stop" >&2
    exit 2
    ;;
esac
