"""CLI: ``python -m simulator --port 8765 [--host 127.0.0.1] [--think 1.5] [--rate 40]``."""

from __future__ import annotations

import argparse
import importlib.util

import uvicorn

from simulator.app import CONFIG, app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--think", type=float, default=CONFIG.think, help="default thinking delay, seconds")
    parser.add_argument("--rate", type=float, default=CONFIG.rate, help="default visible tokens per second")
    args = parser.parse_args(argv)
    CONFIG.think, CONFIG.rate = args.think, args.rate
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools",
        backlog=2048,
        timeout_keep_alive=30,
        # Stalled streams never finish on their own; don't let them block Ctrl-C/SIGTERM forever.
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
