"""The dead-letter topic is checked at start, on the real broker
(``dataflows/output_topics.py``)."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from dataflows.output_topics import OutputTopicError, require_topics
from dataflows.payments_topic import PaymentsTopicError, require_append_time, timestamp_type
from dataflows.topic_configs import TopicDescribeError, describe_topic
from settings.config import Config
from test_data.ports import free_ports
from tests.flowrun import BROKERS

pytestmark = pytest.mark.integration


def config_on(topics: dict[str, str]) -> Config:
    return msgspec.structs.replace(Config.from_env({}), kafka_brokers=BROKERS, **topics)


def test_existing_topics_pass_even_just_created(topics: dict[str, str]) -> None:
    require_topics(config_on(topics))


def test_a_missing_dead_letter_topic_stops_the_start_and_is_not_created(
    topics: dict[str, str],
) -> None:
    missing = f"test-{uuid.uuid4().hex[:8]}-never-created"
    with pytest.raises(OutputTopicError) as caught:
        require_topics(config_on(topics | {"dead_letters_topic": missing}), settle=2.0)
    said = str(caught.value)
    assert (
        f"Kafka topic {missing!r} (PAYSCORE_DEAD_LETTERS_TOPIC) cannot be described on {BROKERS}"
    ) in said
    assert "Unknown topic or partition" in said and "create it with ops/create_topics.py" in said
    listed = AdminClient({"bootstrap.servers": BROKERS}).list_topics(timeout=30).topics
    assert missing not in listed  # describing it did not create it


def test_the_payments_topic_is_described_by_the_same_helper_missing_or_just_created(
    topics: dict[str, str],
) -> None:
    """``dataflows/payments_topic.py`` reads the timestamp type through
    ``dataflows/topic_configs.py`` too: a topic created just before passes, a missing one is
    asked for again for ``settle`` seconds, then refused naming the variable, never created."""
    config = config_on(topics)
    assert timestamp_type(config, topics["payments_topic"]) == "LogAppendTime"
    missing = f"test-{uuid.uuid4().hex[:8]}-no-payments"
    with pytest.raises(PaymentsTopicError) as caught:
        timestamp_type(config, missing, settle=2.0)
    said = str(caught.value)
    assert f"payments topic {missing!r} (PAYSCORE_PAYMENTS_TOPIC) on {BROKERS}" in said
    assert "Unknown topic or partition" in said and "create it with ops/create_topics.py" in said
    listed = AdminClient({"bootstrap.servers": BROKERS}).list_topics(timeout=30).topics
    assert missing not in listed


def test_a_broker_that_does_not_answer_is_an_error_not_a_start_that_hangs() -> None:
    nobody = f"127.0.0.1:{free_ports(1)}"
    admin = AdminClient({"bootstrap.servers": nobody})
    with pytest.raises(TopicDescribeError):
        describe_topic(admin, "payments", timeout=2.0, settle=0.0)


@pytest.mark.parametrize("policy", ["delete", None], ids=["delete", "broker_default"])
def test_a_decisions_topic_without_compaction_stops_the_start_naming_the_remedy(
    topics: dict[str, str], policy: str | None
) -> None:
    """A decisions topic made by hand, without ``cleanup.policy=compact`` (last round: the flow
    ran on it without a word, and retention deleted decisions a consumer keeps by key)."""
    name = f"test-{uuid.uuid4().hex[:8]}-decisions-uncompacted"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    settings = {"cleanup.policy": policy} if policy else {}
    admin.create_topics([NewTopic(name, num_partitions=1, config=settings)])[name].result(30)
    try:
        with pytest.raises(OutputTopicError) as caught:
            require_topics(config_on(topics | {"decisions_topic": name}))
        said = str(caught.value)
        assert f"Kafka topic {name!r} (PAYSCORE_DECISIONS_TOPIC)" in said
        assert "cleanup.policy=delete" in said and "expected compact" in said
        assert "ops/create_topics.py" in said
    finally:
        admin.delete_topics([name])[name].result(timeout=30)


def test_a_decisions_topic_compacted_and_deleted_passes(topics: dict[str, str]) -> None:
    """``compact,delete`` keeps each key's last decision for the retention: the operator's
    choice, accepted."""
    name = f"test-{uuid.uuid4().hex[:8]}-decisions-both"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    new = NewTopic(name, num_partitions=1, config={"cleanup.policy": "compact,delete"})
    admin.create_topics([new])[name].result(30)
    try:
        require_topics(config_on(topics | {"decisions_topic": name}))
    finally:
        admin.delete_topics([name])[name].result(timeout=30)


@pytest.mark.parametrize("field", ["payments_topic", "labels_topic"])
@pytest.mark.parametrize("policy", ["compact", "compact,delete"])
def test_a_compacted_payments_or_labels_topic_stops_the_start(
    topics: dict[str, str], field: str, policy: str
) -> None:
    """A payments or labels topic made compacted (the decisions topic's setting copied): the
    broker keeps only the last message of each key (a card), and deletes a card's earlier
    payments or labels before the flow reads them, between offsets, where the deleted-unread
    check (the oldest offset left) sees nothing; the flow ran on it without a word."""
    name = f"test-{uuid.uuid4().hex[:8]}-{field.split('_')[0]}-compacted"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    settings = {"cleanup.policy": policy, "message.timestamp.type": "LogAppendTime"}
    admin.create_topics([NewTopic(name, num_partitions=1, config=settings)])[name].result(30)
    try:
        config = config_on(topics | {field: name})
        check = require_append_time if field == "payments_topic" else require_topics
        with pytest.raises((OutputTopicError, PaymentsTopicError)) as caught:
            check(config)
        said = str(caught.value)
        assert f"Kafka topic {name!r} (PAYSCORE_{field.upper()})" in said, said
        assert f"cleanup.policy={policy}" in said and "expected delete" in said, said
    finally:
        admin.delete_topics([name])[name].result(timeout=30)


def test_a_topic_whose_cleanup_policy_is_not_described_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broker (or an account) that leaves ``cleanup.policy`` out of a topic's description:
    the start names the missing setting, not a policy "unknown" or the timestamp type."""
    import dataflows.output_topics as output_topics
    import dataflows.payments_topic as payments_topic

    monkeypatch.setattr(output_topics, "admin_client", lambda config: None)
    monkeypatch.setattr(output_topics, "describe_topic", lambda *args, **kwargs: {})
    with pytest.raises(OutputTopicError, match=r"did not say its cleanup\.policy"):
        require_topics(Config())
    described = {"message.timestamp.type": type("Entry", (), {"value": "LogAppendTime"})()}
    monkeypatch.setattr(payments_topic, "topic_entries", lambda *args, **kwargs: described)
    with pytest.raises(PaymentsTopicError, match=r"cannot read cleanup\.policy of the payments"):
        require_append_time(Config())
