"""``python -m providers.sandbox``: run the four emulated APIs until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from providers.sandbox.server import Sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m providers.sandbox",
        description="Loopback emulator of Mixin, Twilio Conversations, HighLevel and Microsoft Graph.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="first port: mixin N, twilio N+1, highlevel N+2, msgraph N+3 (default: free ports)",
    )
    parser.add_argument("--seed", help="derive keys, ids and tokens from this (default: random)")
    parser.add_argument(
        "--slow-seconds", type=float, default=25.0, help="how long the 'slow' trigger holds a reply"
    )
    parser.add_argument(
        "--drip-seconds", type=float, default=1.0, help="the pause between the bytes of a 'drip' reply"
    )
    parser.add_argument("--credentials-out", type=Path, help="write the credentials JSON here (mode 0600)")
    parser.add_argument(
        "--variants", action="store_true", help="also write twilio-api-key and highlevel-oauth credentials"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request on stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        stream=sys.stderr,
    )
    sandbox = Sandbox(
        args.host, args.port, seed=args.seed, slow_seconds=args.slow_seconds, drip_seconds=args.drip_seconds
    )
    try:
        sandbox.start()
    except OSError as exc:
        print(f"Could not start the sandbox: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if args.credentials_out:
            # Written before the URLs are printed: whoever waits for the URLs finds the file ready.
            data = json.dumps(sandbox.credentials(variants=args.variants), indent=2) + "\n"
            fd = os.open(args.credentials_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(data)
        for name, url in sandbox.urls.items():
            print(f"{name} {url}", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
