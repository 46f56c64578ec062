"""Settings that must name something refuse an empty value at start, naming the variable and
what was expected (``settings/config.py`` ``REQUIRED``)."""

from __future__ import annotations

import pytest

from settings.config import REQUIRED, Config

EMPTY = ["", "  ", "\t"]


@pytest.mark.parametrize("field", sorted(REQUIRED))
@pytest.mark.parametrize("value", EMPTY)
def test_an_empty_setting_that_must_name_something_is_refused(field: str, value: str) -> None:
    """Before: an empty ``PAYSCORE_REVIEW_HOST`` served the review queue on every interface
    (asyncio binds "" to all); an empty model folder or key file was the working directory;
    empty brokers waited 30 s for a broker named nowhere."""
    variable = f"PAYSCORE_{field.upper()}"
    with pytest.raises(
        ValueError, match=f"invalid configuration: {variable}=.* is empty; expected"
    ):
        Config.from_env({variable: value})


@pytest.mark.parametrize("variable", ["PAYSCORE_KAFKA_BROKERS", "PAYSCORE_MYSQL_ACCOUNT_HOSTS"])
def test_a_list_of_nothing_but_commas_is_empty(variable: str) -> None:
    with pytest.raises(ValueError, match="is empty"):
        Config.from_env({variable: " , ,"})


def test_a_long_empty_value_is_quoted_bounded() -> None:
    """A hundred thousand commas: the error quoted them all (100,167 characters)."""
    with pytest.raises(ValueError, match="is empty") as refused:
        Config.from_env({"PAYSCORE_MYSQL_ACCOUNT_HOSTS": "," * 100_000})
    assert len(str(refused.value)) < 1_000


def test_explicit_values_stay_accepted() -> None:
    config = Config.from_env(
        {"PAYSCORE_REVIEW_HOST": "0.0.0.0", "PAYSCORE_MYSQL_ACCOUNT_HOSTS": "%"}
    )
    assert config.review_host == "0.0.0.0" and config.account_hosts == ["%"]


@pytest.mark.parametrize(
    "brokers",
    [
        "127.0.0.1:notaport",  # librdkafka connected to port 0
        "127.0.0.1:99999",  # librdkafka connected to port 34463 (99999 mod 65536): another one
        "127.0.0.1:0",
        "kafka",  # no port
        "a b:9092",
        "127.0.0.1:9092,:9092",
        "k" * 100_000 + ":x",
    ],
)
def test_a_broker_address_without_a_port_of_1_to_65535_is_refused(brokers: str) -> None:
    """Before: accepted, and librdkafka connected to a port the operator never named (a
    number past 65535 wrapped round: 99999 is 34463) or to none, and the flow and the tools
    waited for a broker named nowhere."""
    with pytest.raises(ValueError, match=r"PAYSCORE_KAFKA_BROKERS.*expected host:port") as refused:
        Config.from_env({"PAYSCORE_KAFKA_BROKERS": brokers})
    assert len(str(refused.value)) < 1_000


@pytest.mark.parametrize(
    "brokers",
    [
        "127.0.0.1:9092",
        "kafka-1.example:9092, kafka-2.example:9093",
        "[::1]:9092",
        "SASL_SSL://broker.example:9094",
    ],
)
def test_broker_addresses_with_ports_stay_accepted(brokers: str) -> None:
    assert Config.from_env({"PAYSCORE_KAFKA_BROKERS": brokers}).kafka_brokers == brokers


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("10.1.2.3/24", "host bits set; expected 10.1.2.0/24"),  # uvicorn: a literal, no network
        ("proxy.internal", "not an IP address or network"),  # never a client's address
        ("garbage/99", "not an IP address or network"),
        ("127.0.0.1, *", "'*' alone"),  # uvicorn trusts every address only for "*" alone
        ("10.0.0.1," + "x" * 100_000, "not an IP address or network"),
    ],
)
def test_a_proxy_address_uvicorn_would_never_match_is_refused(value: str, said: str) -> None:
    """Before: accepted; uvicorn takes an entry that is not an IP address or a network (strictly
    written) as a literal that no TCP client's address equals, so X-Forwarded-For was never
    trusted and every client counted as the proxy's address: one client's failed sign-ins
    locked every analyst out (review.throttle counts per address)."""
    with pytest.raises(ValueError, match="PAYSCORE_REVIEW_FORWARDED_ALLOW_IPS") as refused:
        Config.from_env({"PAYSCORE_REVIEW_FORWARDED_ALLOW_IPS": value})
    assert said in str(refused.value)
    assert len(str(refused.value)) < 1_000


@pytest.mark.parametrize(
    "value", ["", "*", "127.0.0.1", "10.0.0.0/8, 192.168.1.7", "::1, fd00::/8"]
)
def test_proxy_addresses_and_networks_stay_accepted(value: str) -> None:
    config = Config.from_env({"PAYSCORE_REVIEW_FORWARDED_ALLOW_IPS": value})
    assert config.review_forwarded_allow_ips == value
