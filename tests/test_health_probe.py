"""``python -m dataflows.health``: one line and a status, whatever answers on the port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dataflows.health import check, main


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


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["99999"], "argument port: expected a port from 1 to 65535"),  # was "not live", 1
        (["-1"], "argument port: expected a port from 1 to 65535"),
        (["3030", "--max-lag", "nan"], "argument --max-lag: expected a finite number"),
        (["3030", "--max-lag=-5"], "argument --max-lag: expected a finite number"),
        (["3030", "--max-lag", "inf"], "argument --max-lag: expected a finite number"),
    ],
)
def test_a_port_or_lag_out_of_range_is_a_usage_error_not_a_verdict(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port out of range was "not live" (status 1): an orchestrator restarts a healthy
    process for a typo. ``--max-lag nan`` passed every lag (ready though 5,000 behind), a
    negative one none. Each is a usage error now (status 2)."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err
