"""``python -m review``: serve the review queue on ``PAYSCORE_REVIEW_HOST``:``PAYSCORE_REVIEW_PORT``
(127.0.0.1:8321), as its own MySQL account (``PAYSCORE_REVIEW_MYSQL_URL``) and with the flow's
Kafka and model settings (:mod:`settings.config`); client addresses from ``X-Forwarded-For`` of
``PAYSCORE_REVIEW_FORWARDED_ALLOW_IPS`` only."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from confluent_kafka import KafkaException
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from features.bounded import bounded
from model_state.signing import read_key
from review.app import create_app
from review.explain import Explainers
from review.publish import KafkaLabels
from review.security import session_key
from settings.arguments import Parser
from settings.config import Config
from storage.engine import describe, is_transient, make_engine
from storage.refusals import account_refusal, account_variable, missing_rights

log = logging.getLogger("review")


def main(argv: Sequence[str] | None = None) -> int:
    # It takes no argument: each was ignored (`python -m review --help` started the queue).
    Parser(
        prog="python -m review",
        description="Serve the review queue on PAYSCORE_REVIEW_HOST:PAYSCORE_REVIEW_PORT "
        "(127.0.0.1:8321) as the review account (PAYSCORE_REVIEW_MYSQL_URL); every setting is "
        "a PAYSCORE_* environment variable (README, Configuration). Users: python -m review.users.",
    ).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = Config.from_env(os.environ)
        key = session_key(Path(config.review_session_key_file))
        engine = make_engine(config.review_mysql_dsn, pool_size=4)
        model_key = read_key(Path(config.model_key_file))
    except (ValueError, OSError) as exc:
        print(f"review: cannot start: {exc}", file=sys.stderr)
        return 2
    unusable = cannot_listen(config.review_host, config.review_port)
    if unusable:
        engine.dispose()
        print(f"review: cannot start: {unusable}", file=sys.stderr)
        return 2
    refused = account_refused(engine)
    if refused:
        engine.dispose()
        print(f"review: cannot start: {refused}", file=sys.stderr)
        return 2
    try:
        publisher = KafkaLabels(config.kafka_client(), config.labels_topic)
        publisher.start()
    except (ValueError, KafkaException) as exc:  # started, and every verdict failed (502)
        engine.dispose()
        said = exc.args[0].str() if isinstance(exc, KafkaException) else str(exc)
        print(
            "review: cannot start: the Kafka client refuses the settings of "
            f"PAYSCORE_KAFKA_BROKERS={config.kafka_brokers[:200]!r} and "
            f"PAYSCORE_KAFKA_CONFIG_FILE={config.kafka_config_file[:200]!r}: "
            f"{bounded(said, 400)}",
            file=sys.stderr,
        )
        return 2
    app = create_app(
        engine,
        publisher,
        Explainers(Path(config.model_dir), model_key, engine),
        session_key=key,
        https_only=config.review_https_only,
        thresholds=(config.review_threshold, config.decline_threshold),
        backtest_seconds=config.review_backtest_seconds,
        backtests_at_once=config.review_backtests_at_once,
    )
    log.info("review queue on http://%s:%d/", config.review_host, config.review_port)
    try:
        uvicorn.run(
            app,
            host=config.review_host,
            port=config.review_port,
            # Behind a TLS proxy the client's address is in its X-Forwarded-For header:
            # trusted from the configured proxies only (sign-ins are limited per address).
            proxy_headers=bool(config.review_forwarded_allow_ips),
            forwarded_allow_ips=config.review_forwarded_allow_ips or None,
            server_header=False,
            log_level="info",
        )
    finally:
        publisher.close()
        engine.dispose()
    return 0


def cannot_listen(host: str, port: int) -> str | None:
    """Why the review queue cannot listen on ``host``:``port``, naming the settings; None if it
    can (a socket is bound there and closed again). uvicorn said ``[Errno -2] Name or service
    not known`` or ``address already in use`` and exited 3 or 1, naming neither setting."""
    where = f"PAYSCORE_REVIEW_HOST={host[:200]!r}, PAYSCORE_REVIEW_PORT={port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = found[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        why = getattr(exc, "strerror", None) or str(exc)
        return (
            f"cannot listen on {where}: {why}; expected an address of this host (127.0.0.1: "
            "this host only; 0.0.0.0: every interface) and a port no other program holds"
        )
    return None


def account_refused(engine: Engine) -> str | None:
    """Why the review queue's account cannot do its job, or None: checked at start, for a
    wrong account (another job's, in PAYSCORE_REVIEW_MYSQL_URL), a wrong password or a
    database without the schema served the pages and failed at every sign-in (a 500). MySQL
    out of reach now is not refused: the pages say so until it is back."""
    try:
        denied = missing_rights(engine, "review")
    except DBAPIError as exc:
        said = account_refusal(exc, "review")
        if said is None and not is_transient(exc):
            raise
        if said is None:
            log.warning("the review account's rights not checked at start: %s", describe(exc))
        return said
    if not denied:
        return None
    return (
        f"the account of {account_variable('review')} lacks rights the review queue uses on "
        f"{len(denied)} tables ({'; '.join(denied[:3])}{'; ...' if len(denied) > 3 else ''});"
        " expected the review account (not another job's), with the rights storage/accounts.py"
        " gives it: run `python -m storage.schema --create` as the admin account"
    )


if __name__ == "__main__":
    sys.exit(main())
