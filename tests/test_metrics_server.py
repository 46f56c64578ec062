"""The flow's metrics server: its address and port, and what stops the flow at start."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from dataflows.cluster_shape import ClusterShapeError, require_cluster_shape
from dataflows.metrics_server import (
    MetricsServerError,
    ProcessIdError,
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


def test_a_pod_name_without_an_ordinal_is_refused_naming_the_variables() -> None:
    """Bytewax's Helm chart names the pods '<statefulset>-<n>'; a pod of a Deployment (a hash
    suffix) or a StatefulSet renamed gave a bare 'invalid literal for int() with base 10'."""
    environ = {"BYTEWAX_POD_NAME": "payscore-7d9f-x" * 20, "BYTEWAX_STATEFULSET_NAME": "payscore"}
    with pytest.raises(ProcessIdError) as refused:
        process_id(["run.py", "dataflows.scoring:flow"], environ)
    said = str(refused.value)
    assert (
        said.startswith("BYTEWAX_POD_NAME is 'payscore-7d9f-x")
        and "BYTEWAX_STATEFULSET_NAME" in said
    )
    assert "expected the pod name to be the StatefulSet's name, '-' and the pod's ordinal" in said
    assert "('payscore-0')" in said and "BYTEWAX_PROCESS_ID" in said
    assert len(said) < 600  # the names are bounded
    with pytest.raises(ClusterShapeError, match=r"^BYTEWAX_POD_NAME is 'payscore-7d9f"):
        require_cluster_shape(["run.py", "dataflows.scoring:flow"], environ)
    ordinal = {"BYTEWAX_POD_NAME": "payscore-3", "BYTEWAX_STATEFULSET_NAME": "payscore"}
    assert process_id(["run.py", "dataflows.scoring:flow"], ordinal) == 3


def test_a_process_id_variable_that_is_no_number_is_refused_naming_it() -> None:
    with pytest.raises(ProcessIdError, match=r"^BYTEWAX_PROCESS_ID is 'one', which is no number"):
        process_id(["run.py", "dataflows.scoring:flow"], {"BYTEWAX_PROCESS_ID": "one"})
