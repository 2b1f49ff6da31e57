"""A stand-in for Mattermost's incoming webhooks: it takes what the suite posts and keeps it, one JSON per line.

    python -m tests.lab notifications                     print what it received (.lab/notifications/received.jsonl)
    python -m tests.lab notifications --log FILE          ... from FILE
    python -m tests.lab notifications serve --port 8065 --log FILE [--host H] [--key KEY] [--answer ok|500|...]

As Mattermost does: a POST of JSON with a non-empty ``text`` to ``/hooks/<key>`` is answered ``200 ok``
(``text/plain``); a body that is not such JSON, 400; another path, or another key than ``--key``, 404; any
other method, 405. ``--answer`` makes it misbehave for the suite's tests: ``500`` (an error page that quotes the
path asked, as some servers do: the key must not reach a warning), ``redirect`` (302 elsewhere), ``hang``
(answers nothing until it stops).

Standard library only and no import of the tests' package: the lab can run this file alone, with the rootfs'
python3, in a container. :class:`Receiver` is the same server for a test, on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ANSWERS = ("ok", "500", "redirect", "hang")
MAX_BODY = 1024 * 1024
# the lab's state folder (tests/lab/topology.py STATE), where the lab mounts the container's log folder
DEFAULT_LOG = Path(__file__).resolve().parents[2] / ".lab" / "notifications" / "received.jsonl"


class Receiver(ThreadingHTTPServer):
    """The webhook on ``(host, port)`` (port 0: any free one); what it took is in ``received`` and, one JSON per
    line, in ``log``. ``answer`` may be changed while it runs."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log: Path | None = None, key: str | None = None,
                 answer: str = "ok") -> None:
        super().__init__((host, port), _Handler)
        self.log, self.key, self.answer = log, key, answer
        self.received: list[dict[str, Any]] = []
        self.requests = 0  # every request, taken or not
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/hooks/{self.key or 'lab'}"

    def take(self, payload: dict[str, Any]) -> None:
        with self.lock:
            self.received.append(payload)
            if self.log is not None:
                self.log.parent.mkdir(parents=True, exist_ok=True)
                with self.log.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(payload, ensure_ascii=False, sort_keys=True) + "\n")

    def start(self) -> Receiver:
        self.thread = threading.Thread(target=self.serve_forever, name="mattermost-stand-in", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # a hanging answer ends too
        self.shutdown()
        self.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the log is the received messages, nothing else

    def _answer(self, status: int, text: str, content_type: str = "text/plain", **headers: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        with self.server.lock:
            self.server.requests += 1
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(size, MAX_BODY))
        answer = self.server.answer
        if answer == "hang":
            self.server.stopping.wait(120)
            self.close_connection = True
            return
        if answer == "redirect":
            return self._answer(302, "", Location="http://127.0.0.1:9/elsewhere")
        if answer == "500":
            error = {"id": "stand-in.error", "message": "failed", "request_path": self.path}
            return self._answer(500, json.dumps(error), "application/json")
        key = self.path.removeprefix("/hooks/")
        if not self.path.startswith("/hooks/") or (self.server.key is not None and key != self.server.key):
            return self._answer(404, "Unable to find the webhook.")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str) or not payload["text"]:
            return self._answer(400, "Unable to parse the incoming data: a JSON object with a text is expected.")
        self.server.take(payload)
        self._answer(200, "ok")

    def do_GET(self) -> None:
        self._answer(405, "Method Not Allowed")

    do_PUT = do_DELETE = do_GET


def show(log: Path) -> int:
    """Print what the receiver took, one JSON per line."""
    if not log.exists():
        print(f"no notification received ({log} does not exist)", file=sys.stderr)
        return 0
    sys.stdout.write(log.read_text(encoding="utf-8"))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab notifications",
                                description="The lab's stand-in Mattermost webhook: what it received, or serve it.")
    p.add_argument("--log", type=Path, default=DEFAULT_LOG, help=f"the received messages (default {DEFAULT_LOG})")
    sub = p.add_subparsers(dest="cmd")
    serve = sub.add_parser("serve", help="run the webhook until interrupted")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every one)")
    serve.add_argument("--port", type=int, default=8065, help="port (default 8065, Mattermost's)")
    serve.add_argument("--log", type=Path, default=None, dest="serve_log", help="where to append what it takes")
    serve.add_argument("--key", help="the webhook's key: only /hooks/KEY is taken (default: any key)")
    serve.add_argument("--answer", choices=ANSWERS, default="ok", help="how it answers (default ok)")
    args = p.parse_args(argv)
    if args.cmd != "serve":
        return show(args.log)
    receiver = Receiver(args.host, args.port, args.serve_log or args.log, args.key, args.answer)
    print(f"listening on {args.host}:{receiver.server_address[1]}, log {receiver.log}", flush=True)
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
