"""The flow's metrics server: its address and port, and what stops the flow at start."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from dataflows.metrics_server import (
    MetricsServerError,
    process_id,
    refuse_bytewax_api,
    serve_metrics,
)


def test_the_port_is_the_base_plus_the_process_id_on_loopback() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["run.py", "dataflows.scoring:flow", "-w", "1", "-i", "1", "-a", "a:1;b:2"]
    assert serve_metrics("127.0.0.1", port - 1, process_id(argv, {})) == port
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b"python_info" in body


def test_a_taken_port_stops_the_flow_with_what_to_do() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsServerError, match=rf"cannot serve metrics on 127.0.0.1:{port} "
                           r"\(PAYSCORE_METRICS_HOST=127.0.0.1, PAYSCORE_METRICS_PORT=\d+ \+ "
                           r"process 0\).*PAYSCORE_METRICS_PORT=0 for none"):  # fmt: skip
            serve_metrics("127.0.0.1", port, 0)


def test_port_zero_serves_nothing_and_ports_end_at_65535() -> None:
    assert serve_metrics("127.0.0.1", 0, 3) is None
    with pytest.raises(MetricsServerError, match="no metrics port 65536"):
        serve_metrics("127.0.0.1", 65535, 1)


@pytest.mark.parametrize("value", ["true", "1", "True", "yes", "false", "0", ""])
def test_bytewax_s_api_server_is_refused_for_any_value(value: str) -> None:
    # Bytewax 0.21.1 turns its API server on whenever the variable is set (review of issue 20).
    with pytest.raises(MetricsServerError, match=r"0\.0\.0\.0.*unset BYTEWAX_DATAFLOW_API_ENABLED"):
        refuse_bytewax_api({"BYTEWAX_DATAFLOW_API_ENABLED": value})


def test_bytewax_s_api_server_unset_is_fine_and_a_long_value_is_quoted_bounded() -> None:
    refuse_bytewax_api({"BYTEWAX_DATAFLOW_API_PORT": "3872"})  # only the switch counts
    refuse_bytewax_api({})
    with pytest.raises(MetricsServerError) as caught:
        refuse_bytewax_api({"BYTEWAX_DATAFLOW_API_ENABLED": "Z" * 100_000})
    assert str(caught.value).count("Z") <= 64 and "characters cut" in str(caught.value)


def test_the_process_id_is_read_from_an_abbreviated_option_as_bytewax_reads_it() -> None:
    assert (
        process_id(["run.py", "dataflows.scoring:flow", "--process", "1", "-a", "h:1;h:2"], {}) == 1
    )
