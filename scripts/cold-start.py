#!/usr/bin/env python3
"""Size of each function's release `bootstrap` and the time from process start to its first
handled event.

Each binary is started the way Lambda starts it: with AWS_LAMBDA_RUNTIME_API pointing at a
local Runtime API (served here) that hands out one event from events/ and records when the
response (or error) comes back. The functions talk to the moto emulator given by
AWS_ENDPOINT_URL (tables and queues made by `wfs setup-local`), so the figure includes
building the SDK clients and the event's real calls.

    eval "$(scripts/emulator.sh start 4599)"
    eval "$(cargo run -q -p wfs-cli -- setup-local --prefix cold)"
    cargo build --release -p daily_scanner_v2 -p scheduler_v2 -p executor_v2 -p definition_sync
    .venv/bin/python scripts/cold-start.py [--runs 5] [--memory-mb 256]

Prints one line per function: size, time to the Runtime API's first `next` (init), time to
the first handled event (median and max over the runs).
"""
import argparse
import http.server
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FUNCTIONS = [
    ("daily_scanner_v2", "daily_scanner_v2.json"),
    ("scheduler_v2", "scheduler_v2.json"),
    ("executor_v2", "executor_v2.json"),
    ("definition_sync", "definition_sync.json"),
]


class RuntimeApi(http.server.ThreadingHTTPServer):
    """One invocation: the first `next` gets the event, later ones wait until shutdown."""

    def __init__(self, event: bytes):
        super().__init__(("127.0.0.1", 0), Handler)
        self.event = event
        self.served = False
        self.first_next = None
        self.done = None
        self.outcome = None
        self.finished = threading.Event()

    def handle_error(self, request, client_address):
        # The binary is killed while its next `next` waits: a broken pipe is expected.
        pass


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        api: RuntimeApi = self.server
        if not self.path.endswith("/invocation/next"):
            self.send_error(404)
            return
        if api.served:
            api.finished.wait(30)
            self.send_error(503)
            return
        api.served = True
        api.first_next = time.monotonic()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", "cold-start-1")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
        self.send_header(
            "Lambda-Runtime-Invoked-Function-Arn",
            "arn:aws:lambda:us-east-1:123456789012:function:cold-start",
        )
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(api.event)))
        self.end_headers()
        self.wfile.write(api.event)

    def do_POST(self):
        api: RuntimeApi = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if "/invocation/" in self.path and api.done is None:
            api.done = time.monotonic()
            api.outcome = ("ok" if self.path.endswith("/response") else "error", body[:300])
            api.finished.set()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def run_once(binary: pathlib.Path, event: bytes, memory_mb: int):
    api = RuntimeApi(event)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": binary.parent.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/cold-start",
            "AWS_LAMBDA_LOG_STREAM_NAME": "cold-start",
        }
    )
    start = time.monotonic()
    proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not api.finished.wait(60):
            raise RuntimeError(f"{binary}: no response within 60 s")
    finally:
        proc.kill()
        proc.wait()
        api.shutdown()
    return (api.first_next - start) * 1000, (api.done - start) * 1000, api.outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
    args = parser.parse_args()
    if "AWS_ENDPOINT_URL" not in os.environ:
        print("AWS_ENDPOINT_URL is not set: start the emulator first (see --help)", file=sys.stderr)
        return 2
    print(f"{'function':<18} {'bootstrap':>10} {'init p50':>9} {'first event p50':>16} {'max':>8}  outcome")
    for name, event_file in FUNCTIONS:
        binary = pathlib.Path(args.target_dir) / "release" / name
        if not binary.exists():
            print(f"{binary} is missing: cargo build --release -p {name}", file=sys.stderr)
            return 2
        event = (ROOT / "events" / event_file).read_bytes()
        inits, firsts, outcome = [], [], None
        for _ in range(args.runs):
            init_ms, first_ms, outcome = run_once(binary, event, args.memory_mb)
            inits.append(init_ms)
            firsts.append(first_ms)
        size_mb = binary.stat().st_size / 1_048_576
        print(
            f"{name:<18} {size_mb:>8.1f}MB {statistics.median(inits):>7.1f}ms "
            f"{statistics.median(firsts):>14.1f}ms {max(firsts):>6.1f}ms  {outcome[0]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
