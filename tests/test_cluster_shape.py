"""Cluster shapes Bytewax cannot run are refused at the flow's start, naming the option
(``dataflows/cluster_shape.py``); on the real flow in ``tests/test_start_checks_integration.py``."""

from __future__ import annotations

import pytest

from dataflows.cluster_shape import ClusterShapeError, cluster_shape, require_cluster_shape

RUN = ["run.py", "dataflows.scoring:flow"]


@pytest.mark.parametrize(
    ("args", "environ", "said"),
    [
        (["-w", "0"], {}, "-w/--workers-per-process (or BYTEWAX_WORKERS_PER_PROCESS) is 0"),
        (["-w", "-1"], {}, "is -1; expected 1 or more worker threads"),
        ([], {"BYTEWAX_WORKERS_PER_PROCESS": "0"}, "is 0; expected 1 or more"),
        ([], {"BYTEWAX_WORKERS_PER_PROCESS": "two"}, "BYTEWAX_WORKERS_PER_PROCESS"),
        (["-i", "2", "-a", "h:1;h:2"], {}, "is 2, but -a names 2 processes (h:1;h:2); expected 0"),
        (["-i", "-1", "-a", "h:1;h:2"], {}, "is -1, but -a names 2"),
        (["-a", "h:1;h:2"], {"BYTEWAX_PROCESS_ID": "5"}, "is 5, but -a names 2"),
        ([], {"BYTEWAX_PROCESS_ID": "1", "BYTEWAX_ADDRESSES": "h:1"}, "is 1, but -a names 1"),
        (["-i", "0", "-a", "h:1;h:1"], {}, "names h:1 more than once"),
        (["-i", "0", "-a", "h:1;;h:2"], {}, "names an empty address"),
    ],
)
def test_a_shape_bytewax_cannot_run_is_refused_naming_the_option(
    args: list[str], environ: dict[str, str], said: str
) -> None:
    with pytest.raises(ClusterShapeError) as caught:
        require_cluster_shape([*RUN, *args], environ)
    assert said in str(caught.value)


@pytest.mark.parametrize(
    "args",
    [[], ["-w", "3"], ["-w", "2", "-i", "1", "-a", "h:1;h:2"], ["-i", "0", "-a", "h:1"]],
)
def test_shapes_bytewax_runs_pass(args: list[str]) -> None:
    require_cluster_shape([*RUN, *args], {})


def test_the_shape_is_read_as_bytewax_run_reads_it() -> None:
    assert cluster_shape([*RUN, "--workers-per-process=4"], {}) == (4, 0, [])
    environ = {"BYTEWAX_ADDRESSES": "a:1;b:2", "BYTEWAX_PROCESS_ID": "1"}
    assert cluster_shape(RUN, environ) == (1, 1, ["a:1", "b:2"])
    # Abbreviated long options, as Bytewax's parser takes them (it allows abbreviations).
    assert cluster_shape([*RUN, "--workers", "2", "--process", "1", "--addr", "a:1;b:2"], {}) == (
        2,
        1,
        ["a:1", "b:2"],
    )


def test_abbreviated_options_are_checked_too() -> None:
    with pytest.raises(ClusterShapeError, match=r"-w/--workers-per-process .* is 0"):
        require_cluster_shape([*RUN, "--workers", "0"], {})
    with pytest.raises(ClusterShapeError, match=r"-i/--process-id .* is 3"):
        require_cluster_shape([*RUN, "--process", "3", "--addresses", "a:1;b:2"], {})


def test_an_address_with_spaces_is_refused_bytewax_keeps_them() -> None:
    with pytest.raises(ClusterShapeError, match="spaces around it"):
        require_cluster_shape(RUN, {"BYTEWAX_ADDRESSES": "a:1; b:2", "BYTEWAX_PROCESS_ID": "1"})
