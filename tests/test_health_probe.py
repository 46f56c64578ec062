"""``python -m dataflows.health``: one line and a status, whatever answers on the port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dataflows.health import check


@pytest.fixture
def server() -> Iterator[tuple[ThreadingHTTPServer, list[bytes]]]:
    """A server on a free port answering ``/metrics`` with the body put in its list."""
    bodies: list[bytes] = [b""]

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(bodies[0])

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, bodies
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    "body",
    [b"<html>not metrics {{\n", b"\xff\xfe\x00 garbage", b'a_metric{label="x" 1\n'],
)
def test_a_port_that_answers_something_else_is_not_ready_in_one_line(
    server: tuple[ThreadingHTTPServer, list[bytes]], body: bytes
) -> None:
    """Another server on the port (a page of HTML, bytes): the probe was a traceback
    (ValueError, UnicodeDecodeError) instead of its one line; live it is, since it answered."""
    httpd, bodies = server
    bodies[0] = body
    port = httpd.server_address[1]
    ok, why = check("127.0.0.1", port, live_only=False, max_lag=None)
    assert not ok and why.startswith("not ready: ") and "did not answer Prometheus metrics" in why
    assert "\n" not in why and len(why) < 400
    assert check("127.0.0.1", port, live_only=True, max_lag=None)[0]


def test_metrics_with_a_model_are_ready(server: tuple[ThreadingHTTPServer, list[bytes]]) -> None:
    httpd, bodies = server
    bodies[0] = b'payscore_model_info{version="v00001"} 1\n'
    assert check("127.0.0.1", httpd.server_address[1], live_only=False, max_lag=None) == (
        True,
        "ready: scoring with v00001",
    )
