"""The producer and history commands, with a fake Kafka producer; pacing with a fake clock."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from features.contract import FraudLabel, LabelDecoder, Payment, PaymentDecoder
from test_data import generate, produce
from test_data.generator import SimulationSpec, simulate
from test_data.produce import Outgoing, from_samples, from_simulation, record_timestamp, send
from test_data.rate import TokenBucket
from test_data.samples import SampleMessage, load_samples

SAMPLES = Path(__file__).resolve().parents[1] / "test_data" / "samples"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeProducer:
    """Acknowledges on poll/flush like librdkafka; fails the keys it is told to."""

    config: dict[str, Any] = field(default_factory=dict)
    topics: tuple[str, ...] = ("payments", "fraud-labels")
    fail_keys: frozenset[bytes] = frozenset()
    buffer_errors: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    _pending: list[tuple[Any, Any, Any]] = field(default_factory=list)

    def list_topics(self, timeout: float | None = None) -> Any:
        return SimpleNamespace(topics={t: SimpleNamespace(error=None) for t in self.topics})

    def produce(self, topic, value=None, key=None, on_delivery=None, timestamp=None):
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError("Local: Queue full")
        self.sent.append({"topic": topic, "value": value, "key": key, "timestamp": timestamp})
        msg = SimpleNamespace(topic=lambda: topic, key=lambda: key)
        error = "Broker: Message size too large" if key in self.fail_keys else None
        self._pending.append((on_delivery, error, msg))

    def poll(self, timeout: float = 0) -> int:
        pending, self._pending = self._pending, []
        for callback, error, msg in pending:
            callback(error, msg)
        return len(pending)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


# -- pacing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "n"), [(10.0, 50), (1000.0, 5000), (25_000.0, 50_000)])
def test_token_bucket_paces_to_the_rate(rate, n):
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock)
    for _ in range(n):
        clock.sleep(bucket.take())
    assert clock.now == pytest.approx((n - bucket.capacity) / rate, rel=0.01)


def test_token_bucket_lets_an_oversleeper_catch_up():
    clock = FakeClock()
    bucket = TokenBucket(100.0, burst=10.0, clock=clock)
    clock.sleep(1.0)  # a long pause fills the bucket, no more
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    assert bucket.take() == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0.0}, "rate must be > 0 events per second; got 0.0"),
        ({"rate": 5.0, "burst": 0.5}, "burst must be >= 1 event; got 0.5"),
    ],
)
def test_token_bucket_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TokenBucket(**kwargs)


# -- sources -----------------------------------------------------------------------------------


def test_simulated_records_are_keyed_by_card_and_stamped_with_event_time():
    sim = simulate(SimulationSpec(seed=4, days=2, cards=60, merchants=20, fraud_rate=0.05))
    events = list(sim.stream)
    records = list(from_simulation(events, "p", "l"))
    assert len(records) == len(events)
    for event, record in zip(events, records, strict=True):
        assert record.key == event.card_id.encode()
        if isinstance(event, Payment):
            assert (record.topic, record.event) == ("p", "payment")
            assert record.timestamp_ms == int(event.event_time.timestamp() * 1000)
            assert PaymentDecoder().decode(record.value) == event
        else:
            assert isinstance(event, FraudLabel)
            assert (record.topic, record.event) == ("l", "label")
            assert record.timestamp_ms == int(event.reported_at.timestamp() * 1000)
            assert LabelDecoder().decode(record.value) == event
    assert all(r.timestamp_ms is None for r in from_simulation(events, "p", "l", "now"))


def test_file_records_keep_the_exact_bytes_and_pick_timestamps():
    messages = load_samples(SAMPLES / "payments.jsonl")
    records = list(from_samples(messages, "p", "l"))
    assert [r.value for r in records] == [m.value for m in messages]
    for message, record in zip(messages, records, strict=True):
        if message.kind == "valid":
            event_time = PaymentDecoder().decode(message.value).event_time
            assert record.timestamp_ms == int(event_time.timestamp() * 1000)
        else:
            assert record.timestamp_ms is None  # the producer's clock


@pytest.mark.parametrize(
    ("value", "event", "expected"),
    [
        (b'{"event_time": "2026-03-02T09:30:00+01:00"}', "payment", 1772440200000),
        (b'{"reported_at": "2026-03-02T08:30:00Z"}', "label", 1772440200000),
        (b'{"reported_at": "2026-03-02T08:30:00Z"}', "payment", None),
        (b'{"event_time": "2026-03-02T09:30:00"}', "payment", None),
        (b"not json", "payment", None),
    ],
)
def test_record_timestamp(value, event, expected):
    message = SampleMessage(key=None, value=value, kind="valid", event=event)
    assert record_timestamp(message) == expected


# -- sending -----------------------------------------------------------------------------------


def _records(n: int, key: bytes = b"c-1") -> list[Outgoing]:
    return [Outgoing("payments", key, b"x" * 10, 1_000 + i, "payment") for i in range(n)]


def test_send_reports_messages_bytes_and_rate():
    clock = FakeClock()
    producer = FakeProducer()
    report = send(
        _records(400), producer, rate=100.0, progress=False, clock=clock, sleep=clock.sleep
    )
    assert report.ok
    assert (report.messages, report.payments, report.labels) == (400, 400, 0)
    assert report.bytes == 400 * (10 + 3)
    assert report.delivered == 400
    assert report.rate == pytest.approx(100.0, rel=0.02)
    assert [s["timestamp"] for s in producer.sent] == [1_000 + i for i in range(400)]
    assert re.match(
        r"produced 400 messages \(400 payments, 0 labels\), 5,200 bytes", report.summary()
    )


def test_send_waits_out_a_full_queue():
    producer = FakeProducer(buffer_errors=3)
    report = send(_records(5), producer, progress=False)
    assert report.ok
    assert len(producer.sent) == 5


def test_send_reports_delivery_errors():
    producer = FakeProducer(fail_keys=frozenset({b"bad"}))
    report = send(_records(3) + _records(2, key=b"bad"), producer, progress=False)
    assert not report.ok
    assert (report.delivered, report.failed) == (3, 2)
    assert report.errors == ["payments key=b'bad': Broker: Message size too large"] * 2
    assert "2 failed" in report.summary()


# -- the commands ------------------------------------------------------------------------------


def _run(argv: list[str], producer: FakeProducer, environ: dict[str, str] | None = None) -> int:
    def make(config: dict[str, Any]) -> FakeProducer:
        producer.config = config
        return producer

    return produce.main([*argv, "--no-progress"], environ=environ or {}, make_producer=make)


def test_produce_sends_sample_files_to_their_topics(capsys):
    producer = FakeProducer()
    files = [str(SAMPLES / "payments.jsonl"), str(SAMPLES / "labels.jsonl")]
    assert _run(["--file", files[0], "--file", files[1]], producer) == 0
    payments = load_samples(files[0])
    labels = load_samples(files[1])
    assert [s["value"] for s in producer.sent] == [m.value for m in payments + labels]
    assert [s["topic"] for s in producer.sent] == ["payments"] * len(payments) + [
        "fraud-labels"
    ] * len(labels)
    assert producer.config["bootstrap.servers"] == "127.0.0.1:9092"
    assert producer.config["enable.idempotence"] is True
    out = capsys.readouterr().out
    assert f"produced {len(payments) + len(labels)} messages" in out


def test_produce_simulates_with_topics_from_the_environment(capsys):
    producer = FakeProducer(topics=("pay", "lab"))
    environ = {"PAYSCORE_PAYMENTS_TOPIC": "pay", "PAYSCORE_LABELS_TOPIC": "lab"}
    argv = ["--simulate", "--days", "1", "--cards", "80", "--merchants", "20", "--limit", "50"]
    assert _run(argv, producer, environ) == 0
    assert len(producer.sent) == 50
    assert {s["topic"] for s in producer.sent} <= {"pay", "lab"}
    assert "produced 50 messages" in capsys.readouterr().out


def test_produce_with_extra_settings_and_payments_only():
    producer = FakeProducer(topics=("bench",))
    argv = ["--simulate", "--days", "1", "--cards", "50", "--merchants", "20", "--no-labels"]
    argv += ["--payments-topic", "bench", "-X", "linger.ms=5", "--timestamps", "now"]
    assert _run(argv, producer) == 0
    assert producer.config["linger.ms"] == "5"
    assert all(s["topic"] == "bench" and s["timestamp"] is None for s in producer.sent)


def test_produce_refuses_a_simulation_stamped_in_the_future(capsys, monkeypatch):
    monkeypatch.setattr(produce, "now_ms", lambda: 1_772_400_000_000)  # 2026-03-01T21:20Z
    producer = FakeProducer()
    argv = ["--simulate", "--days", "1", "--cards", "20", "--merchants", "10"]
    assert _run(argv, producer) == 2
    err = capsys.readouterr().err
    assert "the broker refuses records over an hour ahead of its clock" in err
    assert producer.sent == []
    assert _run([*argv, "--timestamps", "now"], producer) == 0


def test_produce_stops_when_a_topic_is_missing(capsys):
    producer = FakeProducer(topics=("payments",))
    assert _run(["--file", str(SAMPLES / "labels.jsonl")], producer) == 2
    assert "topic(s) 'fraud-labels' do not exist on 127.0.0.1:9092" in capsys.readouterr().err
    assert producer.sent == []


def test_produce_exits_non_zero_on_delivery_errors(capsys):
    key = load_samples(SAMPLES / "payments.jsonl")[0].key
    assert key is not None
    producer = FakeProducer(fail_keys=frozenset({key.encode()}))
    assert _run(["--file", str(SAMPLES / "payments.jsonl")], producer) == 1
    err = capsys.readouterr().err
    assert f"produce: delivery failed: payments key={key.encode()!r}" in err


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--simulate", "--days", "0"], {}, "SimulationSpec.days must lie in [1, 3660]; got 0"),
        (["--simulate"], {"PAYSCORE_TOPIC_PARTITIONS": "four"}, "PAYSCORE_TOPIC_PARTITIONS"),
        (["--file", "/nonexistent.jsonl"], {}, "cannot read /nonexistent.jsonl"),
    ],
)
def test_produce_refuses_bad_input(argv, environ, message, capsys):
    assert _run(argv, FakeProducer(), environ) == 2
    assert message in capsys.readouterr().err


def test_produce_stops_on_a_broken_file(tmp_path, capsys):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"kind": "valid", "key": null, "value": "{}"}\n{"kind": "odd"}\n')
    assert _run(["--file", str(path)], FakeProducer()) == 2
    assert f"{path}:2: not a sample envelope" in capsys.readouterr().err


def test_generate_writes_a_history(tmp_path, capsys):
    out = tmp_path / "history.jsonl"
    argv = ["--days", "2", "--cards", "100", "--merchants", "30", "--seed", "9"]
    assert generate.main([*argv, "--out", str(out), "--no-progress"]) == 0
    sim = simulate(SimulationSpec(seed=9, days=2, cards=100, merchants=30))
    messages = load_samples(out)
    assert len(messages) == sim.n_payments + sim.n_labels
    assert all(m.kind == "valid" for m in messages)
    payments = [m for m in messages if m.event == "payment"]
    decoded = [PaymentDecoder().decode(m.value) for m in payments]
    # Arrival order: event-time order but for the late ones.
    assert sorted(decoded, key=lambda p: p.transaction_id) == list(sim.payments())
    for message, payment in zip(payments, decoded, strict=True):
        assert message.key == payment.card_id
        assert message.scenario == sim.truth[payment.transaction_id]
        assert message.is_fraud == (message.scenario is not None)
    assert f"wrote {len(messages):,} messages" in capsys.readouterr().out


def test_history_replays_in_arrival_order(tmp_path):
    out = tmp_path / "history.jsonl"
    generate.main(["--days", "1", "--cards", "50", "--merchants", "20", "--out", str(out),
                   "--no-progress"])  # fmt: skip
    records = list(from_samples(load_samples(out), "p", "l"))
    sim = simulate(SimulationSpec(days=1, cards=50, merchants=20))
    assert records == list(from_simulation(sim.stream, "p", "l"))
