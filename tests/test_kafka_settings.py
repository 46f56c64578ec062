"""A Kafka settings file librdkafka refuses stops the start naming the file, the variable and
the setting (``dataflows/topic_configs.py``); no broker is needed: librdkafka refuses the
settings when the client is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflows.output_topics import require_topics
from dataflows.payments_topic import require_append_time
from settings.config import Config


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("securty.protocol=SASL_SSL", 'No such configuration property: "securty.protocol"'),
        ("security.protocol=SASL_SSH", "Invalid value"),
    ],
    ids=["misspelt_name", "bad_value"],
)
@pytest.mark.parametrize("check", [require_append_time, require_topics])
def test_a_settings_file_librdkafka_refuses_is_named_at_start(
    tmp_path: Path, line: str, says: str, check: object
) -> None:
    """It stopped the flow with a bare KafkaException (``KafkaError{code=_INVALID_ARG,...}``)
    naming neither the file nor the variable."""
    settings = tmp_path / "kafka.properties"
    settings.write_text(f"# the flow's account\n{line}\n")
    config = Config.from_env(
        {"PAYSCORE_KAFKA_CONFIG_FILE": str(settings), "PAYSCORE_KAFKA_BROKERS": "127.0.0.1:1"}
    )
    with pytest.raises(ValueError, match="librdkafka refuses the Kafka client settings") as caught:
        check(config)  # type: ignore[operator]
    said = str(caught.value)
    assert f"PAYSCORE_KAFKA_CONFIG_FILE={str(settings)!r}" in said, said
    assert says in said, said
