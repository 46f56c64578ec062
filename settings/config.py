"""The one configuration object, read from ``PAYSCORE_*`` environment variables at the entry point.

Every setting has a default that matches the local services ``ops/services.sh`` starts, so a
fresh checkout runs with no environment at all. Values are converted and checked by msgspec:
``PAYSCORE_TOPIC_PARTITIONS=four`` fails at start-up with the variable's name in the message.

>>> Config.from_env({"PAYSCORE_TOPIC_PARTITIONS": "8"}).topic_partitions
8
>>> Config.from_env({"PAYSCORE_REVIEW_THRESHOLD": "0.95"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
ValueError: invalid configuration: PAYSCORE_REVIEW_THRESHOLD (0.95) must be below PAYSCORE_DECL...
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Literal, NoReturn

import msgspec
from msgspec import Meta
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "PAYSCORE_"

Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
Positive = Annotated[int, Meta(ge=1)]
# Seconds the flow turns into timers (a datetime ahead, a timedelta, a thread's wait): at most
# 2**31 - 1 ms (24.8 days), as librdkafka's message.timeout.ms. ``inf`` or 1e12 (an operator's
# "never") passed the start and stopped the flow at its first timer ("year 33715 is out of
# range", "cannot convert float infinity to integer"), naming no variable.
MAX_TIMER_SECONDS = 2_147_483
TimerSeconds = Annotated[float, Meta(gt=0, le=MAX_TIMER_SECONDS)]
# librdkafka returns at most 1,000,000 messages a poll; more stopped the flow at its first read.
MAX_KAFKA_BATCH = 1_000_000
# A Kafka topic name as the broker accepts it (Topic.java: legal characters, at most 249).
TopicName = Annotated[str, Meta(pattern=r"\A(?!\.\.?\Z)[A-Za-z0-9._\-]{1,249}\Z")]
# The flow's four topics: each its own (one topic for two of them would feed the flow its own
# output: dead letters read again as payments, without end).
TOPICS = ("payments_topic", "labels_topic", "dead_letters_topic", "decisions_topic")
# The decisions topic (ops/create_topics.py, the tests' scratch topics): compaction keeps the last
# decision of each transaction id; the broker's append time gives append-to-decision latency.
DECISIONS_TOPIC_SETTINGS = {"cleanup.policy": "compact", "message.timestamp.type": "LogAppendTime"}
# The payments topic (the same, and dataflows/payments_topic.py checks it at the flow's start):
# record times are the broker's, so producers cannot choose which payment of an id came first.
PAYMENTS_TOPIC_SETTINGS = {"message.timestamp.type": "LogAppendTime"}
# Settings that must name something: empty (``PAYSCORE_REVIEW_HOST=`` in an env file, a
# template's unset variable) they meant something else without a word. An empty review host
# served the review queue on every interface (asyncio binds "" to all of them); an empty model
# folder or key file was the working directory; empty brokers waited 30 s at start for a
# broker named nowhere; empty account hosts granted the accounts at no host.
REQUIRED = {
    "kafka_brokers": "one or more host:port, comma-separated",
    "mysql_account_hosts": "one or more hosts of the job accounts, comma-separated (% for any)",
    "model_dir": "the folder of the model versions",
    "model_key_file": "the file of the key that signs model versions",
    "review_host": "an address to listen on (127.0.0.1: this host only; 0.0.0.0: every "
    "interface, said explicitly)",
    "review_session_key_file": "the file of the key that signs session cookies",
    "metrics_host": "an address to serve metrics on (127.0.0.1: this host only)",
}
LISTS = frozenset({"kafka_brokers", "mysql_account_hosts"})


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the scoring flow and its tools; see the README's configuration table."""

    # Kafka
    kafka_brokers: str = "127.0.0.1:9092"
    # librdkafka settings (TLS, SASL, ...) for every Kafka client, one ``name=value`` a line.
    kafka_config_file: str = ""
    payments_topic: TopicName = "payments"
    labels_topic: TopicName = "fraud-labels"
    dead_letters_topic: TopicName = "payments-dead-letters"
    # Every stored payment's final decision, keyed by transaction id (compacted).
    decisions_topic: TopicName = "payscore-decisions"
    topic_partitions: Positive = 4
    # True: keep waiting for new messages (production). False: stop at the end of the topics.
    tail: bool = True
    # True: accept a CreateTime payments topic (its producers' clocks settle reused transaction
    # ids; dataflows/payments_topic.py). False: the flow refuses it at start.
    trust_producer_timestamps: bool = False
    # Messages one poll of one partition returns at most (see the README on event order).
    kafka_batch_size: Annotated[int, Meta(ge=1, le=MAX_KAFKA_BATCH)] = 1000
    # Milliseconds each epoch is held back so that every process closes it on one wall-clock
    # grid (dataflows/epochs.py); 0: each partition's own timer (Bytewax's behaviour).
    epoch_align_ms: Annotated[int, Meta(ge=0, le=1000)] = 20
    # How the card step snapshots a card at each epoch close (features/card.py): "fast" joins
    # the columns' buffers (about 1.6 KB an active card); "compact" writes each column in its
    # narrowest width (under 1 KB, about five times the CPU a snapshot). Either restores.
    card_snapshots: Literal["fast", "compact"] = "fast"
    # A diagnostic: every call the flow makes into its steps, sources and sinks, timed, one
    # file a process in this folder (dataflows/call_trace.py). Empty: none (production).
    call_trace_dir: str = ""
    # Bytes of a dead letter's key and value that go to the dead-letter topic at most; the rest
    # is cut (marked in a header). Keep it below the topic's max.message.bytes. At most what
    # librdkafka's message.max.bytes takes (10**9) less the room kept for headers (100,000).
    dead_letter_max_bytes: Annotated[int, Meta(ge=1024, le=999_900_000)] = 900_000
    # MySQL: one account per job, each with its own rights per table (storage/accounts.py).
    # The flow's account.
    mysql_url: str = "mysql+pymysql://payscore_flow:payscore_flow@127.0.0.1:3306/payscore"
    # The password, read from this file instead of the URL (which then carries none).
    mysql_password_file: str = ""
    # The review queue's account (python -m review): reads payments, records verdicts.
    review_mysql_url: str = (
        "mysql+pymysql://payscore_review:payscore_review@127.0.0.1:3306/payscore"
    )
    review_mysql_password_file: str = ""
    # The operators' model tools' account (model_state.retrain, .shadow, .train --from-mysql).
    models_mysql_url: str = (
        "mysql+pymysql://payscore_models:payscore_models@127.0.0.1:3306/payscore"
    )
    models_mysql_password_file: str = ""
    # The analysts' command lines' account (python -m rules, rules.backtest, review.explain):
    # rules and lists, reads of payments and versions; nothing of the review queue's sign-ins.
    analyst_mysql_url: str = (
        "mysql+pymysql://payscore_analyst:payscore_analyst@127.0.0.1:3306/payscore"
    )
    analyst_mysql_password_file: str = ""
    # The account that creates and alters tables, grants the others their rights
    # (storage.schema --create) and manages review users (review.users); no job uses it.
    mysql_admin_url: str = "mysql+pymysql://payscore_admin:payscore_admin@127.0.0.1:3306/payscore"
    mysql_admin_password_file: str = ""
    # The host part of every job account above ('user'@'host'), comma-separated: the schema
    # command grants each account's rights at each of these hosts.
    mysql_account_hosts: str = "127.0.0.1,localhost"
    # The server's unix socket: every URL above whose host is this host (127.0.0.1, localhost,
    # ::1) connects through it, without TLS unless the URL asks for TLS (ssl_ca, ...); a URL of
    # another host is used as it is. Empty: TCP as the URLs say.
    mysql_socket: str = ""
    # How long writes and label claims retry while MySQL is unavailable before the flow stops.
    # At most librdkafka's message.timeout.ms (2**31 - 1 ms, 24.8 days): the decisions topic's
    # producer waits that long, as the MySQL writes do.
    mysql_outage_seconds: Annotated[float, Meta(ge=0, le=MAX_TIMER_SECONDS)] = 300.0
    # Model
    model_dir: str = "model_state/versions"
    # The key that signs and authenticates model versions (model_state.signing); mode 0600.
    model_key_file: str = "model_state/model.key"
    review_threshold: Probability = 0.5
    decline_threshold: Probability = 0.9
    # Scorers look for a newer model version at most this often.
    model_refresh_seconds: TimerSeconds = 5.0
    # Processes look for a newer ruleset version (rules.loader) at most this often.
    rules_refresh_seconds: TimerSeconds = 5.0
    # A challenger set with `python -m model_state.shadow start` scores beside the champion.
    shadow: bool = True
    # The learner publishes a version every N labels, or this long after the first unpublished one.
    publish_every_labels: Positive = 500
    publish_seconds: TimerSeconds = 30.0
    # A label whose payment is not stored yet is retried this often, for this long.
    label_retry_seconds: TimerSeconds = 5.0
    label_wait_seconds: Annotated[float, Meta(ge=0)] = 600.0
    # The label join holds new labels until a card group has 500 or the oldest has been held
    # this long, then claims them in one transaction (dataflows.label_join); 0: at once.
    label_gather_seconds: Annotated[float, Meta(ge=0, le=60)] = 2.0
    # At most this many labels of a card group (of 16) wait for their payments; past it the
    # oldest is rejected as waiting_full (storage.labels, README "Configuration").
    label_waiting_max: Annotated[int, Meta(ge=1, le=1_000_000)] = 1000
    # A payment with no fraud report this many days after it is learned as legitimate (an
    # implicit negative), and its label is final: the retrain's gate compares on such payments.
    label_delay_days: Annotated[float, Meta(gt=0, le=36_500)] = 30.0  # a century at most
    # Negative downsampling: the share of legitimate labels learned (each at weight 1 / rate),
    # kept by a hash of the transaction id (model_state.label_kinds).
    legit_sample_rate: Annotated[float, Meta(gt=0, le=1)] = 0.1
    # Logs: the lowest level shown, and text or JSON lines (dataflows.logs).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Contract: how far an event may be ahead of the moment its record reached Kafka.
    max_future_skew_seconds: Annotated[int, Meta(ge=0, le=10**9)] = 300  # 31 years at most
    # The review queue (python -m review): where it listens, the key that signs its session
    # cookies (created, mode 0600, at first start), and whether cookies need HTTPS.
    review_host: str = "127.0.0.1"
    review_port: Annotated[int, Meta(ge=1, le=65535)] = 8321
    review_session_key_file: str = "review/session.key"
    review_https_only: bool = False
    # Proxies (comma-separated addresses or networks) whose X-Forwarded-For names the client:
    # sign-in limits count per client address. Empty: the socket's address counts.
    review_forwarded_allow_ips: str = ""
    # A backtest started from the review queue's pages is stopped after this many seconds;
    # each user runs one at a time, and at most review_backtests_at_once run together.
    review_backtest_seconds: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    review_backtests_at_once: Annotated[int, Meta(ge=1, le=16)] = 2
    # Metrics (Prometheus text at /metrics): process i of the flow listens on
    # metrics_host:metrics_port + i; port 0 serves none. 127.0.0.1 unless scraped from elsewhere.
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, Meta(ge=0, le=65535)] = 3030

    def __post_init__(self) -> None:
        if self.review_threshold >= self.decline_threshold:
            raise ValueError(
                f"{PREFIX}REVIEW_THRESHOLD ({self.review_threshold}) "
                f"must be below {PREFIX}DECLINE_THRESHOLD ({self.decline_threshold})"
            )
        named: dict[str, str] = {}
        for field in TOPICS:
            topic = getattr(self, field)
            if topic in named:
                raise ValueError(
                    f"{PREFIX}{field.upper()} and {PREFIX}{named[topic].upper()} both name "
                    f"the topic {topic!r}; expected four different topics (payments, labels, "
                    "dead letters, decisions): the flow would read its own output as input"
                )
            named[topic] = field
        for field in MYSQL_URLS:
            check_mysql_url(getattr(self, field), f"{PREFIX}{field.upper()}")
        check_brokers(self.kafka_brokers)
        check_proxies(self.review_forwarded_allow_ips)
        for field, expected in REQUIRED.items():
            value = getattr(self, field)
            if not value.strip() or (field in LISTS and not value.replace(",", "").strip()):
                raise ValueError(
                    f"{PREFIX}{field.upper()}={value[:40]!r} is empty; expected "
                    f"{expected} (unset it "
                    "for the default)"
                )

    @property
    def brokers(self) -> list[str]:
        return [b.strip() for b in self.kafka_brokers.split(",") if b.strip()]

    @property
    def kafka_settings(self) -> dict[str, str]:
        """What every Kafka client adds to ``bootstrap.servers``: the config file's settings."""
        if not self.kafka_config_file:
            return {}
        return read_properties(self.kafka_config_file, f"{PREFIX}KAFKA_CONFIG_FILE")

    def kafka_client(self, **extra: str) -> dict[str, str]:
        """A librdkafka configuration for a producer, consumer or admin client."""
        return {"bootstrap.servers": self.kafka_brokers, **self.kafka_settings, **extra}

    @property
    def mysql_dsn(self) -> str:
        """The SQLAlchemy URL the flow connects with: ``mysql_url``, with the password from
        ``mysql_password_file`` if one is set. Never log it."""
        return self._local(_dsn(self.mysql_url, self.mysql_password_file, "MYSQL"))

    @property
    def review_mysql_dsn(self) -> str:
        """The review queue's URL, as :attr:`mysql_dsn` is the flow's."""
        return self._local(
            _dsn(self.review_mysql_url, self.review_mysql_password_file, "REVIEW_MYSQL")
        )

    @property
    def models_mysql_dsn(self) -> str:
        """The model tools' URL, as :attr:`mysql_dsn` is the flow's."""
        return self._local(
            _dsn(self.models_mysql_url, self.models_mysql_password_file, "MODELS_MYSQL")
        )

    @property
    def analyst_mysql_dsn(self) -> str:
        """The analysts' command lines' URL, as :attr:`mysql_dsn` is the flow's."""
        return self._local(
            _dsn(self.analyst_mysql_url, self.analyst_mysql_password_file, "ANALYST_MYSQL")
        )

    @property
    def mysql_admin_dsn(self) -> str:
        """The admin account's URL, as :attr:`mysql_dsn` is the flow's."""
        return self._local(
            _dsn(self.mysql_admin_url, self.mysql_admin_password_file, "MYSQL_ADMIN")
        )

    def _local(self, url: str) -> str:
        """``url`` through :attr:`mysql_socket` when one is set and the URL names this host."""
        return over_socket(url, self.mysql_socket) if self.mysql_socket else url

    @property
    def account_hosts(self) -> list[str]:
        return [h.strip() for h in self.mysql_account_hosts.split(",") if h.strip()]

    def on_database(self, name: str) -> Config:
        """The same settings with every MySQL URL naming the database ``name`` (the tests'
        scratch databases)."""
        return msgspec.structs.replace(
            self,
            **{
                field: make_url(getattr(self, field))
                .set(database=name)
                .render_as_string(hide_password=False)
                for field in (
                    "mysql_url",
                    "review_mysql_url",
                    "models_mysql_url",
                    "analyst_mysql_url",
                    "mysql_admin_url",
                )
            },
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        """Build the config from ``PAYSCORE_<FIELD>`` variables; unknown ones are an error."""
        fields = set(cls.__struct_fields__)
        values: dict[str, str] = {}
        for name, value in environ.items():
            if not name.startswith(PREFIX):
                continue
            field = name[len(PREFIX) :].lower()
            # Only the upper-case spelling is the variable: another one was taken as the same
            # field, and with both set one won without a word.
            # (The whole name compared: a Unicode letter such as the Kelvin sign is upper case
            # and lower-cases to an ASCII one.)
            if field not in fields or name != PREFIX + field.upper():
                known = [PREFIX + f.upper() for f in sorted(fields)]
                near = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8)
                hint = f"did you mean {near[0]}? " if near else ""
                shown = name if len(name) <= 100 else f"{name[:100]}... ({len(name)} characters)"
                raise ValueError(
                    f"invalid configuration: unknown variable {shown}; {hint}known: "
                    + ", ".join(known)
                )
            values[field] = value
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            # "Expected `int`, got `str` - at `$.topic_partitions`" -> name the variable.
            text = str(exc)
            if " - at `$." in text:
                message, _, path = text.rpartition(" - at `$.")
                field = path.rstrip("`").split(".")[0]
                text = f"{PREFIX}{field.upper()}={values.get(field)!r}: {message}"
            raise ValueError(f"invalid configuration: {text}") from None


# The settings that name a MySQL server, account and database.
MYSQL_URLS = (
    "mysql_url",
    "review_mysql_url",
    "models_mysql_url",
    "analyst_mysql_url",
    "mysql_admin_url",
)
MYSQL_URL_FORM = "mysql+pymysql://user:password@host:port/database"
MAX_DATABASE_NAME = 64  # MySQL's longest identifier


def check_mysql_url(url: str, variable: str) -> URL:
    """``url`` parsed, or a ValueError naming ``variable``, what was expected and what came (the
    password hidden, bounded). Unchecked, a malformed URL stopped the flow and every command at
    its first connection with SQLAlchemy's or int()'s words (``invalid literal for int() with
    base 10: 'notaport'``), naming no variable, or with a message naming PAYSCORE_MYSQL_URL
    whichever variable held it.

    >>> check_mysql_url("mysql+pymysql://u:pw@db:3306/payscore", "PAYSCORE_MYSQL_URL").port
    3306
    >>> check_mysql_url("mysql://u:pw@db/payscore", "PAYSCORE_MYSQL_URL")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: PAYSCORE_MYSQL_URL names the driver 'mysql'; expected ...; got 'mysql://u:***@db/payscore'
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        # ValueError: int() of the port ("invalid literal for int() ...")
        problem = "has a port that is no number" if isinstance(exc, ValueError) else "is no URL"
        _refuse_url(url, variable, problem)
    if parsed.drivername != "mysql+pymysql":
        _refuse_url(url, variable, f"names the driver {parsed.drivername[:40]!r}")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        _refuse_url(url, variable, f"has the port {parsed.port}, outside 1 to 65535")
    if parsed.database is not None and len(parsed.database) > MAX_DATABASE_NAME:
        _refuse_url(
            url,
            variable,
            f"names a database of {len(parsed.database):,} characters "
            f"(MySQL's longest is {MAX_DATABASE_NAME})",
        )
    return parsed


def _cut(text: str, limit: int, keep: int, length: int | None = None) -> str:
    """``text`` if at most ``limit`` characters, else its first ``keep`` and its length (or
    ``length``, of the text it was made from): a setting quoted in a refusal stays short."""
    if len(text) <= limit:
        return text
    return f"{text[:keep]}... ({len(text) if length is None else length:,} characters)"


def _refuse_url(url: str, variable: str, problem: str) -> NoReturn:
    # The password (between the user's colon and the last @ of the authority) never shown.
    shown = _cut(re.sub(r"(://[^:/@]*:)[^/]*@", r"\1***@", url), 120, 100, len(url))
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
    raise ValueError(f"{variable} {problem}; expected {MYSQL_URL_FORM}; got {shown!r}")


# A bootstrap server: an optional listener name, a host (an IPv6 address in brackets) and a port.
_BROKER = re.compile(
    r"\A(?:[A-Za-z][A-Za-z0-9_+.-]*://)?(?:\[[0-9A-Fa-f:.]+\]|[^\s:/\[\],]+):([0-9]{1,5})\Z"
)


def check_brokers(brokers: str) -> None:
    """Each of the comma-separated ``brokers`` is ``host:port`` with a port from 1 to 65535, or
    a ValueError names the one that is not. librdkafka took ``host:notaport`` as port 0 and
    ``host:99999`` as port 34463 (the number modulo 65536): a broker the operator never named.

    >>> check_brokers("kafka-1:9092,[::1]:9093")
    >>> check_brokers("127.0.0.1:99999")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: PAYSCORE_KAFKA_BROKERS names '127.0.0.1:99999'; expected host:port with a port ...
    """
    for broker in (b.strip() for b in brokers.split(",")):
        found = _BROKER.match(broker)
        if broker and (found is None or not 1 <= int(found[1]) <= 65535):
            raise ValueError(
                f"{PREFIX}KAFKA_BROKERS names {_cut(broker, 80, 60)!r}; expected host:port with "
                "a port from 1 to 65535, comma-separated"
            )


def check_proxies(proxies: str) -> None:
    """``PAYSCORE_REVIEW_FORWARDED_ALLOW_IPS``: ``*`` alone, or IP addresses and networks
    (``10.0.0.0/8``), comma-separated; else a ValueError naming the entry. uvicorn takes any
    other entry (a host name, ``10.1.2.3/24`` with host bits set) as a literal that no TCP
    client's address equals, without a word: X-Forwarded-For was never trusted, and every
    client counted as the proxy's one address (one client's failed sign-ins locked all out).

    >>> check_proxies("10.0.0.0/8, ::1")
    >>> check_proxies("10.1.2.3/24")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: PAYSCORE_REVIEW_FORWARDED_ALLOW_IPS names '10.1.2.3/24', a network with host ...
    """
    variable = f"{PREFIX}REVIEW_FORWARDED_ALLOW_IPS"
    entries = [p.strip() for p in proxies.split(",") if p.strip()]
    if "*" in entries and len(entries) > 1:
        raise ValueError(
            f"{variable} names '*' with other entries; expected '*' alone (every address "
            "trusted: uvicorn reads it so only alone) or addresses and networks"
        )
    for entry in entries:
        shown = _cut(entry, 60, 40)
        if entry == "*":
            continue
        try:
            if "/" in entry:
                ipaddress.ip_network(entry)
            else:
                ipaddress.ip_address(entry)
        except ValueError as exc:
            if "/" in entry and "host bits set" in str(exc):
                network = ipaddress.ip_network(entry, strict=False)
                raise ValueError(
                    f"{variable} names {shown!r}, a network with host bits set; expected "
                    f"{network} (uvicorn would match no address with it)"
                ) from None
            raise ValueError(
                f"{variable} names {shown!r}: not an IP address or network; expected the "
                "proxies' addresses or networks (10.0.0.0/8), comma-separated, or '*' alone"
            ) from None


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# PyMySQL's options that ask for TLS; a URL with one of them keeps TLS over the socket too.
TLS_OPTIONS = frozenset(
    {"ssl_ca", "ssl_capath", "ssl_cert", "ssl_key", "ssl_verify_cert", "ssl_verify_identity"}
)


def over_socket(url: str, socket: str) -> str:
    """``url`` connecting through the unix ``socket`` if its host is this host; else unchanged.

    The host and port stay in the URL (``storage.engine`` checks that the server behind the
    socket listens on that port, so a socket of another server on this host is refused). TLS is
    turned off (PyMySQL would negotiate it unverified: "preferred") unless the URL asks for it.

    >>> over_socket("mysql+pymysql://u:p@127.0.0.1:3306/db", "/run/mysqld/mysqld.sock")
    'mysql+pymysql://u:p@127.0.0.1:3306/db?ssl_disabled=true&unix_socket=%2Frun%2Fmysqld%2Fmysqld.sock'
    >>> over_socket("mysql+pymysql://u:p@db.example:3306/db?ssl_ca=/ca.pem", "/s.sock")
    'mysql+pymysql://u:p@db.example:3306/db?ssl_ca=/ca.pem'
    """
    parsed = make_url(url)
    if parsed.host not in LOCAL_HOSTS or "unix_socket" in parsed.query:
        return url
    query = {"unix_socket": socket}
    if not TLS_OPTIONS & set(parsed.query) and "ssl_disabled" not in parsed.query:
        query["ssl_disabled"] = "true"
    return parsed.update_query_dict(query).render_as_string(hide_password=False)


def _dsn(url: str, password_file: str, name: str) -> str:
    """``url`` with the password read from ``password_file`` if one is set (the settings
    ``PAYSCORE_<name>_URL`` and ``PAYSCORE_<name>_PASSWORD_FILE``)."""
    if not password_file:
        return url
    parsed = make_url(url)
    if parsed.password:
        raise ValueError(
            f"invalid configuration: {PREFIX}{name}_PASSWORD_FILE is set and "
            f"{PREFIX}{name}_URL carries a password too; keep it in one place"
        )
    password = _read_secret(password_file, f"{PREFIX}{name}_PASSWORD_FILE")
    return parsed.set(password=password).render_as_string(hide_password=False)


def _read(path: str, variable: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as exc:
        raise ValueError(
            f"invalid configuration: {variable}={path!r} cannot be read: {exc.strerror}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"invalid configuration: {variable}={path!r} is not UTF-8 text: byte "
            f"{exc.object[exc.start]:#04x} at offset {exc.start} (expected a text file)"
        ) from None


def _read_secret(path: str, variable: str) -> str:
    """The first line of a secret file, without its line break."""
    text = _read(path, variable).splitlines()
    if not text or not text[0]:
        raise ValueError(f"invalid configuration: {variable}={path!r} is empty")
    return text[0]


def read_properties(path: str, variable: str) -> dict[str, str]:
    """``name=value`` lines (blank lines and ``#`` comments skipped), as librdkafka takes them."""
    settings = {}
    for number, line in enumerate(_read(path, variable).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(
                f"invalid configuration: {variable}={path!r} line {number}: expected "
                f"'name=value', got {line.split('=')[0][:40]!r}..."
            )
        settings[name.strip()] = value.strip()
    return settings
