"""The committed sample files and their envelope format."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contract import InvalidMessageError, LabelDecoder, PaymentDecoder
from test_data import make_samples
from test_data.samples import SampleMessage, dump_line, load_samples, parse_line, write_samples
from test_data.spec import SCENARIOS

SAMPLES = Path(__file__).resolve().parents[1] / "test_data" / "samples"
RECEIVED_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def payments() -> list[SampleMessage]:
    return load_samples(SAMPLES / "payments.jsonl")


@pytest.fixture(scope="module")
def labels() -> list[SampleMessage]:
    return load_samples(SAMPLES / "labels.jsonl")


def test_the_payment_sample_holds_about_200_valid_and_15_malformed(payments):
    valid = [m for m in payments if m.kind == "valid"]
    malformed = [m for m in payments if m.kind == "malformed"]
    assert 150 <= len(valid) <= 250
    assert 12 <= len(malformed) <= 20
    assert all(m.event == "payment" for m in payments)
    assert all(m.reason for m in malformed)
    assert len({m.reason for m in malformed}) == len(malformed)


def test_every_valid_payment_decodes_and_keys_by_card(payments):
    decoder = PaymentDecoder()
    for message in payments:
        if message.kind == "valid":
            payment = decoder.decode(message.value, received_at=RECEIVED_AT)
            assert message.key == payment.card_id


def test_every_malformed_payment_is_refused(payments):
    decoder = PaymentDecoder()
    for message in payments:
        if message.kind == "malformed":
            with pytest.raises(InvalidMessageError):
                decoder.decode(message.value, received_at=RECEIVED_AT)


def test_the_sample_has_a_couple_of_frauds_with_their_truth(payments):
    fraud = [m for m in payments if m.is_fraud]
    assert len(fraud) >= 2
    assert all(m.scenario in SCENARIOS for m in fraud)
    assert all(m.is_fraud is False for m in payments if m.kind == "valid" and not m.is_fraud)


def test_labels_reference_payments_in_the_sample(payments, labels):
    decode_payment, decode_label = PaymentDecoder(), LabelDecoder()
    sample = {
        p.transaction_id: (p, m)
        for m in payments
        if m.kind == "valid"
        for p in [decode_payment.decode(m.value)]
    }
    assert labels
    for message in labels:
        assert message.kind == "valid"
        assert message.event == "label"
        label = decode_label.decode(message.value, received_at=RECEIVED_AT)
        payment, payment_message = sample[label.transaction_id]
        assert label.card_id == payment.card_id == message.key
        assert label.reported_at > payment.event_time
        assert label.is_fraud == payment_message.is_fraud
    assert sorted(LabelDecoder().decode(m.value).reported_at for m in labels) == [
        LabelDecoder().decode(m.value).reported_at for m in labels
    ]


def test_the_samples_are_what_make_samples_writes(tmp_path):
    assert make_samples.main(["--out", str(tmp_path)]) == 0
    for name in ("payments.jsonl", "labels.jsonl"):
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), (
            f"{name} is stale: run `python -m test_data.make_samples`"
        )


# -- the envelope ------------------------------------------------------------------------------

messages = st.builds(
    SampleMessage,
    key=st.none() | st.text(max_size=20),
    value=st.none() | st.binary(max_size=64) | st.text(max_size=64).map(str.encode),
    kind=st.just("valid"),
    event=st.sampled_from(["payment", "label"]),
    is_fraud=st.none() | st.booleans(),
    scenario=st.none() | st.sampled_from(SCENARIOS),
) | st.builds(
    SampleMessage,
    key=st.none() | st.text(max_size=20),
    value=st.binary(max_size=64),
    kind=st.just("malformed"),
    reason=st.text(min_size=1, max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(message=messages)
def test_envelope_round_trip(message):
    line = dump_line(message)
    assert b"\n" not in line
    assert parse_line(line) == message


def test_non_utf8_values_travel_as_base64():
    line = dump_line(SampleMessage(key="c-1", value=b"\xff{", kind="malformed", reason="x"))
    assert b'"value_base64":"/3s="' in line


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"kind": "valid", "key": null}', 'exactly one of "value" and "value_base64"'),
        (
            b'{"kind": "valid", "key": null, "value": "", "value_base64": ""}',
            'exactly one of "value" and "value_base64"',
        ),
        (b'{"kind": "malformed", "key": null, "value": ""}', 'needs a "reason"'),
        (b'{"kind": "valid", "key": null, "value": "", "reason": "x"}', 'needs a "reason"'),
        (b'{"kind": "valid", "key": null, "value_base64": "%%%"}', "is not base64"),
        (b'{"kind": "valid", "key": null, "value": "", "extra": 1}', "unknown field `extra`"),
        (b'{"kind": "broken", "key": null, "value": ""}', "Invalid enum value 'broken'"),
        (b'{"kind": "valid", "value": ""}', "missing required field `key`"),
        (b"not json", "not a sample envelope"),
    ],
)
def test_bad_envelopes_are_refused_with_the_reason(line, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_line(line)


def test_a_bad_line_is_reported_with_its_file_and_number(tmp_path):
    path = tmp_path / "s.jsonl"
    good = SampleMessage(key=None, value=b"{}", kind="valid")
    write_samples(path, [good])
    with open(path, "ab") as f:
        f.write(b"\n{}\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: not a sample envelope")):
        load_samples(path)
