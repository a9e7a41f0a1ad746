"""moto's server with AWS's atomicity where the tests rely on it.

`moto_server` handles each request on its own thread without a lock, so two conditional
writes to one DynamoDB item can both pass their condition, and two receives can hand out
one SQS message twice — neither happens on AWS. This launcher serves the same moto
application but runs DynamoDB requests, and SQS requests other than long polls, one at a
time. Long polls (WaitTimeSeconds > 0) stay concurrent: a long poll holding the lock
would keep out the send it waits for.

    python scripts/moto_server.py -H 127.0.0.1 -p PORT
"""

import argparse
import io
import json
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

DYNAMODB = threading.Lock()
SQS = threading.Lock()


def serialized(app):
    def handle(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB"):
            with DYNAMODB:
                return list(app(environ, start_response))
        if target.startswith("AmazonSQS"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            long_poll = False
            if target.endswith(".ReceiveMessage"):
                try:
                    long_poll = int(json.loads(body or b"{}").get("WaitTimeSeconds", 0)) > 0
                except (ValueError, AttributeError):
                    long_poll = False
            if not long_poll:
                with SQS:
                    return list(app(environ, start_response))
        return app(environ, start_response)

    return handle


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialized(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
