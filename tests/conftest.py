"""Shared fixtures. Integration fixtures talk to the real services of ``ops/services.sh``:
each test gets its own MySQL database and its own Kafka topics, dropped afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from model_state import artifact
from model_state.offline.train import train
from settings.config import Config
from storage.engine import make_engine
from test_data.chaos import scratch_database, scratch_topics
from test_data.spec import SimulationSpec
from tests.flowrun import key_for_tests

ROOT = Path(__file__).resolve().parent.parent
BASE = Config.from_env(os.environ)

# Property tests check what holds, never how fast: on a loaded CI machine (2 cores, shared) an
# example can take longer than hypothesis' 200 ms deadline, and data generation longer than its
# too_slow health check allows, which fail as DeadlineExceeded, Flaky or FailedHealthCheck
# though nothing is wrong. Loaded before the test modules are imported, so that every
# ``@settings(...)`` inherits it.
settings.register_profile("payscore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("payscore")


def pytest_configure(config: pytest.Config) -> None:
    """The key that signs the tests' model versions, made once before any test runs: under
    pytest-xdist (``ops/test.sh``) this runs in the controller before the workers start, so two
    workers never both create it (one would read it half written)."""
    if not hasattr(config, "workerinput"):
        key_for_tests()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A drill that restarts the services (``restarts_services``) must run alone: in one of
    several pytest-xdist workers it would pull the broker or the server from under the other
    workers' tests. It fails there, not run."""
    workers = getattr(item.config, "workerinput", {}).get("workercount", 1)
    if workers > 1 and item.get_closest_marker("restarts_services"):
        pytest.fail(
            f"{item.nodeid} restarts the services (marker restarts_services): not run in one of "
            f"{workers} pytest-xdist workers, where other tests would lose their broker or "
            "server; expected it run alone (ops/test.sh runs the drills after the rest: "
            "`pytest -m restarts_services`)",
            pytrace=False,
        )


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh database ``payscore_test_<random>`` with the schema, created as
    ``ops/services.sh`` creates the product's (same character set and collation), every account
    with the product's rights on it (``storage/accounts.py``); the flow's URL. Dropped after the
    test."""
    with scratch_database(BASE, "payscore_test") as url:
        yield url


@pytest.fixture
def database_config(mysql_url: str) -> Config:
    """The settings with every account's URL on the test's database."""
    database = make_url(mysql_url).database
    assert database
    return BASE.on_database(database)


def _engine(url: str, **options: bool) -> Iterator[Engine]:
    e = make_engine(url, **options)
    yield e
    e.dispose()


@pytest.fixture
def admin_engine(database_config: Config) -> Iterator[Engine]:
    """The test's database as the admin account (tables may be dropped and created)."""
    yield from _engine(database_config.mysql_admin_dsn)


@pytest.fixture
def engine(mysql_url: str) -> Iterator[Engine]:
    """An engine on the test's database as the flow's account, as the bulk sink has it
    (``local_infile`` on)."""
    yield from _engine(mysql_url, local_infile=True)


@pytest.fixture
def review_engine(database_config: Config) -> Iterator[Engine]:
    """The test's database as the review queue's account."""
    yield from _engine(database_config.review_mysql_dsn)


@pytest.fixture
def analyst_engine(database_config: Config) -> Iterator[Engine]:
    """The test's database as the analysts' command lines' account."""
    yield from _engine(database_config.analyst_mysql_dsn)


@pytest.fixture
def models_engine(database_config: Config) -> Iterator[Engine]:
    """The test's database as the model tools' account."""
    yield from _engine(database_config.models_mysql_dsn)


def fresh_topics(partitions: int) -> AbstractContextManager[dict[str, str]]:
    """Payments, labels and dead-letter topics of ``partitions`` each, deleted afterwards."""
    return scratch_topics(BASE.kafka_brokers, partitions, "test")


@pytest.fixture
def topics() -> Iterator[dict[str, str]]:
    """Fresh topics with the configured partition count (4)."""
    with fresh_topics(BASE.topic_partitions) as names:
        yield names


@pytest.fixture
def one_partition_topics() -> Iterator[dict[str, str]]:
    """Fresh topics of one partition each: one order for every key."""
    with fresh_topics(1) as names:
        yield names


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small pre-trained model, trained the way ``python -m model_state.train`` does."""
    folder = tmp_path_factory.mktemp("models")
    spec = SimulationSpec(seed=5, days=14, cards=800, merchants=160)
    train(spec, folder, key=key_for_tests(), validation_days=3, epochs=1)
    return folder


@pytest.fixture
def models(model_dir: Path, tmp_path: Path) -> Path:
    """A model folder of the test's own (the flow checkpoints its versions into it), starting
    from the session's pre-trained version: online versions never leak from one test's database
    into another test's flow."""
    folder = tmp_path / "models"
    folder.mkdir()
    for version in artifact.list_versions(model_dir):
        (folder / version).symlink_to(model_dir / version)
    return folder
