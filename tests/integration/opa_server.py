"""An HTTP server speaking OPA's REST Data API, evaluating with the embedded engine.

There is no OPA binary on the test machines; this server implements the part
of the API the gateway uses (``POST /v1/data/<path>`` with ``{"input": ...}``
answering ``{"result": ...}``, ``{}`` when undefined) so that the OPA backend
is exercised over real HTTP, including its failure modes.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from enforcer.policy.engine import EmbeddedEngine


class OPAServer:
    def __init__(self, policy_paths: list[Path]) -> None:
        # regorus engines are bound to the thread that made them; each handler thread gets its own.
        self._paths = policy_paths
        self._local = threading.local()
        EmbeddedEngine(policy_paths)  # fail fast on a broken policy
        self.mode = "normal"  # normal | slow | malformed | undefined | error
        self.delay = 2.0
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests += 1
                if server.mode == "down":  # a dying OPA: drop kept-alive connections without answering
                    self.close_connection = True
                    return None
                if not self.path.startswith("/v1/data/"):
                    return self._send(404, {"code": "not_found"})
                if server.mode == "slow":
                    time.sleep(server.delay)
                if server.mode == "error":
                    return self._send(500, {"code": "internal_error", "message": "boom"})
                if server.mode == "undefined":
                    return self._send(200, {})
                if server.mode == "malformed":
                    return self._send(200, {"result": {"action": "maybe", "reasons": "yes"}})
                rule = "data." + self.path[len("/v1/data/") :].strip("/").replace("/", ".")
                engine = server.thread_engine()
                engine.set_input_json(json.dumps(body.get("input")))
                result = json.loads(engine.eval_rule_as_json(rule))
                self._send(200, {"result": result} if result != "<undefined>" else {})

            def _send(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def thread_engine(self) -> Any:
        if not hasattr(self._local, "engine"):
            self._local.engine = EmbeddedEngine(self._paths)._engine
        return self._local.engine

    def stop(self) -> None:
        self.mode = "down"
        self.httpd.shutdown()
        self.httpd.server_close()
