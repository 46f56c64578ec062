"""The review queue on the real MariaDB and Kafka: the queue's order, filters and pages; the
detail page; access (viewer, CSRF); a verdict as one label message, learned once."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urljoin

import msgspec
import pytest
from confluent_kafka import Producer
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from features.contract import FraudLabel, LabelDecoder
from model_state import artifact
from model_state.scorer import Scorer
from review import queries
from storage.labels import CLAIMED, REJECTED, ReadLabel, claim_labels
from storage.tables import fraud_labels, review_verdicts
from tests.flowrun import BROKERS, key_for_tests
from tests.reviewkit import (
    PASSWORD,
    START,
    add_users,
    app_for,
    features,
    payment_row,
    read_topic,
    signed_in,
    store,
    token,
)

pytestmark = pytest.mark.integration


def _mixed(n: int) -> list[dict]:
    decisions = ("review", "decline", "approve")
    return [
        payment_row(
            f"tx-{i:04d}",
            round((i * 37 % 100) / 100, 2),  # ties on purpose: the id breaks them
            decisions[i % 3],
            card=f"card-{i % 7}",
            merchant=f"m-{i % 4}",
            minutes=i,
        )
        for i in range(n)
    ]


def test_the_queue_is_ordered_filtered_and_paged_without_gaps_or_repeats(engine: Engine) -> None:
    rows = _mixed(240)
    store(engine, rows)
    where = queries.QueueFilter(
        decisions=("review", "decline"),
        since=START + timedelta(minutes=10),
        until=START + timedelta(minutes=200),
        merchant_id="m-1",
        limit=7,
    )
    expected = sorted(
        (
            (r["fraud_probability"], r["transaction_id"])
            for r in rows
            if r["decision"] in where.decisions
            and r["merchant_id"] == "m-1"
            and where.since <= r["event_time"] < where.until
        ),
        reverse=True,
    )
    seen = []
    with engine.connect() as c:
        page = queries.queue(c, where)
        pages = 1
        seen += [(r.fraud_probability, r.transaction_id) for r in page.rows]
        while page.next is not None:
            cursor = queries.Cursor.decode(page.next.encode())
            page = queries.queue(c, msgspec.structs.replace(where, after=cursor))
            seen += [(r.fraud_probability, r.transaction_id) for r in page.rows]
            pages += 1
    assert len(expected) > 20
    assert seen == expected
    assert pages == -(-len(expected) // 7)


def test_the_queue_reads_its_index_in_order(engine: Engine) -> None:
    store(engine, _mixed(3000))
    with engine.connect() as c:
        plain = queries.explain_queue(c, queries.QueueFilter())
        merchant = queries.explain_queue(c, queries.QueueFilter(merchant_id="m-2"))
    assert [p["key"] for p in plain] == ["ix_scored_payments_queue"], plain
    assert [p["key"] for p in merchant] == ["ix_scored_payments_merchant_queue"], merchant
    for plan in plain + merchant:
        assert "filesort" not in (plan["Extra"] or ""), plan


def test_a_check_that_nothing_was_published_reads_what_is_already_on_the_topic(
    topics: dict[str, str],
) -> None:
    """``read_topic(topic, 0)`` backs the checks that a refused request published nothing: a
    message already on the topic is read at once, not after a consumer group has formed (with
    no time given, the subscribing reader it replaced read nothing)."""
    producer = Producer({"bootstrap.servers": BROKERS})
    producer.produce(topics["labels_topic"], key=b"card-1", value=b"already there")
    assert producer.flush(30) == 0
    (message,) = read_topic(topics["labels_topic"], 0, settle=0, timeout=0)
    assert message.value() == b"already there"


def test_a_viewer_reads_but_has_no_verdict_form_and_a_verdict_post_is_refused(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    store(engine, [payment_row("tx-1", 0.7)])
    add_users(admin_engine)
    client = signed_in(app_for(review_engine, topics["labels_topic"], models), "victor")
    assert "tx-1" in client.get("/queue").text
    page = client.get("/payments/tx-1")
    assert page.status_code == 200
    assert 'id="verdict-form"' not in page.text
    refused = client.post(
        "/payments/tx-1/verdict", data={"verdict": "fraud", "csrf_token": token(page.text)}
    )
    assert refused.status_code == 403
    assert "victor is a viewer" in refused.text
    with review_engine.connect() as c:
        assert c.execute(select(review_verdicts)).all() == []
    assert read_topic(topics["labels_topic"], 1, timeout=3) == []


def test_a_post_without_the_sessions_csrf_token_is_refused(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    store(engine, [payment_row("tx-1", 0.7)])
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    client = signed_in(app, "alice")
    page = client.get("/payments/tx-1")
    assert 'id="verdict-form"' in page.text
    for data in ({"verdict": "fraud"}, {"verdict": "fraud", "csrf_token": "forged"}):
        refused = client.post("/payments/tx-1/verdict", data=data)
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.text
    # A sign-in without the token is refused as well, before the password is looked at.
    stranger = TestClient(app)
    login = stranger.post("/login", data={"name": "alice", "password": PASSWORD})
    assert login.status_code == 403
    with review_engine.connect() as c:
        assert c.execute(select(review_verdicts)).all() == []
    assert read_topic(topics["labels_topic"], 1, timeout=3) == []


def test_a_wrong_password_signs_nobody_in(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    add_users(admin_engine)
    client = TestClient(app_for(review_engine, topics["labels_topic"], models))
    login = client.get("/login")
    response = client.post(
        "/login", data={"name": "alice", "password": "wrong one!", "csrf_token": token(login.text)}
    )
    assert response.status_code == 401
    assert client.get("/queue").url.path == "/login"


def test_a_verdict_is_one_label_message_with_the_analyst_and_an_audit_row(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    version = artifact.list_versions(models)[-1]
    missing = "v00042"  # a version neither on disk nor in model_versions
    store(
        engine,
        [payment_row("tx-1", 0.7, version=version), payment_row("tx-2", 0.6, version=missing)],
    )
    add_users(admin_engine)
    client = signed_in(app_for(review_engine, topics["labels_topic"], models), "alice")
    page = client.get("/payments/tx-1")
    assert 'id="contributions"' in page.text  # recomputed with the version that scored it
    given = client.post(
        "/payments/tx-1/verdict",
        data={"verdict": "fraud", "note": "card holder denies it", "csrf_token": token(page.text)},
    )
    assert given.status_code == 200, given.text
    assert 'id="given"' in given.text

    messages = read_topic(topics["labels_topic"], 1)
    assert len(messages) == 1
    label = LabelDecoder().decode(messages[0].value())
    assert (label.transaction_id, label.card_id, label.is_fraud) == ("tx-1", "card-1", True)
    assert (label.analyst, label.note) == ("alice", "card holder denies it")
    assert messages[0].key() == b"card-1"
    with review_engine.connect() as c:
        (audit,) = c.execute(select(review_verdicts)).all()
    assert (audit.analyst, audit.is_fraud, audit.model_decision) == ("alice", True, "review")
    assert audit.model_probability == 0.7
    assert (audit.kafka_partition, audit.kafka_offset) == (
        messages[0].partition(),
        messages[0].offset(),
    )
    assert audit.delivery_error is None

    # A version that is nowhere: the page says so and shows the stored features.
    other = client.get("/payments/tx-2")
    assert 'id="unexplained"' in other.text
    assert f"model version {missing} is neither under" in other.text
    assert 'id="features"' in other.text


def test_a_verdict_given_twice_or_replayed_is_learned_once(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    store(engine, [payment_row("tx-1", 0.7)])
    add_users(admin_engine)
    client = signed_in(app_for(review_engine, topics["labels_topic"], models), "alice")
    for note in ("first look", "second look"):
        page = client.get("/payments/tx-1")
        response = client.post(
            "/payments/tx-1/verdict",
            data={"verdict": "fraud", "note": note, "csrf_token": token(page.text)},
        )
        assert response.status_code == 200, response.text
    messages = read_topic(topics["labels_topic"], 2)
    assert len(messages) == 2
    reads = [
        ReadLabel(LabelDecoder().decode(m.value()), m.partition(), m.offset()) for m in messages
    ]
    topic = topics["labels_topic"]
    with engine.begin() as c:
        first = claim_labels(c, topic, reads)
    assert [p.transaction_id for p in first.learnable] == ["tx-1"]
    assert [r.reason.partition(":")[0] for r in first.rejected] == ["duplicate"]
    with engine.begin() as c:  # a replay of both messages after a crash: nothing new
        again = claim_labels(c, topic, reads)
    assert again.replayed == 1
    assert len(again.learnable) == 1
    assert again.rejected == []
    with review_engine.connect() as c:
        ledger = c.execute(
            select(fraud_labels.c.status, fraud_labels.c.analyst).order_by(
                fraud_labels.c.kafka_partition, fraud_labels.c.kafka_offset
            )
        ).all()
        audits = c.execute(select(review_verdicts).order_by(review_verdicts.c.id)).all()
    assert sorted(ledger) == [(CLAIMED, "alice"), (REJECTED, "alice")]
    assert len(audits) == 2
    assert audits[0].earlier is None
    assert audits[1].earlier == "verdict #1 by alice: fraud"
    assert isinstance(reads[0].label, FraudLabel)


def test_a_label_naming_an_analyst_without_her_verdict_is_stored_and_shown_unverified(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    """Issue 20, item 8c: anyone who may write to the labels topic could credit a label to an
    analyst. Only a label that matches a recorded verdict names her; any other keeps the name as
    an unverified claim, is learned all the same, and is never shown as her verdict."""
    store(engine, [payment_row("tx-1", 0.7), payment_row("tx-2", 0.8), payment_row("tx-3", 0.9)])
    add_users(admin_engine)
    topic = topics["labels_topic"]
    client = signed_in(app_for(review_engine, topic, models), "alice")
    page = client.get("/payments/tx-1")
    given = client.post(
        "/payments/tx-1/verdict", data={"verdict": "fraud", "csrf_token": token(page.text)}
    )
    assert given.status_code == 200, given.text
    (message,) = read_topic(topic, 1)
    genuine = LabelDecoder().decode(message.value())
    forged = [  # alice gave no verdict on tx-2; her verdict on tx-1 said fraud, at another time
        msgspec.structs.replace(genuine, transaction_id="tx-2", note="in alice's name"),
        msgspec.structs.replace(genuine, is_fraud=False),
        msgspec.structs.replace(genuine, reported_at=genuine.reported_at + timedelta(seconds=1)),
    ]
    reads = [ReadLabel(genuine, message.partition(), message.offset())] + [
        ReadLabel(label, 99, offset) for offset, label in enumerate(forged)
    ]
    with engine.begin() as c:  # the flow's label join: it reads the recorded verdicts
        outcome = claim_labels(c, topic, reads)
    assert sorted(p.transaction_id for p in outcome.learnable) == ["tx-1", "tx-2"]
    with engine.connect() as c:
        rows = c.execute(
            select(
                fraud_labels.c.transaction_id,
                fraud_labels.c.is_fraud,
                fraud_labels.c.analyst,
                fraud_labels.c.unverified_analyst,
            ).order_by(fraud_labels.c.kafka_partition, fraud_labels.c.kafka_offset)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("tx-1", True, "alice", None),
        ("tx-2", True, None, "alice"),
        ("tx-1", False, None, "alice"),
        ("tx-1", True, None, "alice"),
    ]
    shown = client.get("/payments/tx-2").text
    assert "unverified: the message names alice" in shown
    assert '<td class="analyst">alice</td>' not in shown
    assert '<td class="analyst">alice</td>' in client.get("/payments/tx-1").text
    # A later verdict's record of what was known names the claim as a claim.
    page = client.get("/payments/tx-2")
    client.post("/payments/tx-2/verdict", data={"verdict": "fraud", "csrf_token": token(page.text)})
    with review_engine.connect() as c:
        earlier = c.execute(
            select(review_verdicts.c.earlier).where(review_verdicts.c.transaction_id == "tx-2")
        ).scalar_one()
    assert earlier.endswith("fraud, claimed (names alice, unverified)")
    assert " by alice" not in earlier


def test_an_approvals_reasons_are_computed_on_demand_on_its_page_and_in_the_queue(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    """Approvals are stored without reason codes; the pages compute them with the version that
    scored the payment, exactly as the scorer gives them, and say so."""
    version = artifact.list_versions(models)[-1]
    loaded = artifact.load(models, version, key=key_for_tests())
    expected = Scorer(
        loaded.model, version, review=1.0, decline=1.0,
        positive_weight=loaded.metadata.positive_weight,
    ).reasons([features(123.45)])[0]  # fmt: skip
    assert expected, "the test payment must have some reason to show"
    store(
        engine,
        [
            payment_row("tx-a", 0.1, "approve", version=version),
            payment_row("tx-b", 0.05, "approve", version="v00042", minutes=1),  # nowhere
            payment_row("tx-r", 0.7, "review", version=version, minutes=2),
        ],
    )
    add_users(admin_engine)
    client = signed_in(app_for(review_engine, topics["labels_topic"], models), "victor")
    page = client.get("/payments/tx-a").text
    shown = (
        f'<td id="reasons">{", ".join(expected)} <span class="on-demand" id="reasons-on-demand">'
    )
    assert shown in page
    assert f"computed on demand with model version {version}" in page
    stored = client.get("/payments/tx-r").text
    assert '<td id="reasons">amount_eur</td>' in stored  # stored, shown as stored
    missing = client.get("/payments/tx-b").text
    assert 'id="reasons-unavailable"' in missing
    assert "model version v00042 could not compute them" in missing

    queue = client.get("/queue?decision=approve&decision=review").text
    cells = re.findall(r'<td class="reasons">(.*?)</td>', queue)
    assert cells[0] == "amount_eur"  # tx-r, highest probability first
    assert cells[1].startswith(f'{", ".join(expected)} <span class="on-demand"')
    assert "(on demand)" in cells[1]
    assert "not computed" in cells[2]


def test_error_pages_quote_input_only_bounded(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    """A 12,000-character decision filter or transaction id and a 40,000-character verdict come
    back in the 400/404 pages cut, with features.bounded's marker (review 20, finding 8); a
    500,000-character one is past the form's size, refused unread (413)."""
    store(engine, [payment_row("tx-1", 0.7)])
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    alice = signed_in(app, "alice")
    csrf = token(alice.get("/payments/tx-1").text)
    huge = "Z" * 12_000  # fits uvicorn's request line (h11: 16 KiB)
    pages = {
        "decision": alice.get(f"/queue?decision={huge}"),
        "path": alice.get(f"/payments/{huge}"),
        "verdict": alice.post(
            "/payments/tx-1/verdict", data={"verdict": "Z" * 40_000, "csrf_token": csrf}
        ),
        "decisions": alice.get("/queue?" + "&".join(f"decision=Z{i}" for i in range(2_000))),
        # past the verdict form's size (review.forms.VERDICT_FORM_BYTES): refused unread
        "verdict_huge": alice.post(
            "/payments/tx-1/verdict", data={"verdict": "Z" * 500_000, "csrf_token": csrf}
        ),
    }
    statuses = {k: r.status_code for k, r in pages.items()}
    assert statuses == {
        "decision": 400, "path": 404, "verdict": 400, "decisions": 400, "verdict_huge": 413
    }, statuses  # fmt: skip
    quoted = {k: r.text.count("Z") for k, r in pages.items()}
    assert all(n <= 64 for n in quoted.values()), quoted
    assert all("characters cut" in pages[k].text for k in ("decision", "path", "verdict"))
    assert "1,997 more" in pages["decisions"].text


@pytest.mark.parametrize("txn", ["..", ".", "tx:1.."])
def test_a_payment_whose_id_a_browser_resolves_away_opens_and_takes_a_verdict(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
    txn: str,
) -> None:
    """The contract lets a transaction id be ``..`` or ``.``: the queue linked
    ``/payments/..``, which a browser resolves to ``/`` (its verdict form posted to
    ``/verdict``), so the payment could be neither opened nor decided. Each link is followed
    here as a browser resolves it (``urljoin``)."""
    store(engine, [payment_row(txn, 0.7)])
    add_users(admin_engine)
    client = signed_in(app_for(review_engine, topics["labels_topic"], models), "alice")
    queue = client.get("/queue").text
    link = re.search(r'<a class="payment" href="([^"]+)">', queue)
    assert link is not None, queue[:2000]
    page = client.get(urljoin("http://testserver/queue", html.unescape(link[1])))
    assert page.status_code == 200 and 'id="verdict-form"' in page.text, page.text[:500]
    action = re.search(r'<form method="post" action="([^"]+)" id="verdict-form">', page.text)
    assert action is not None
    given = client.post(
        urljoin(str(page.url), html.unescape(action[1])),
        data={"verdict": "fraud", "csrf_token": token(page.text)},
    )
    assert given.status_code == 200 and 'id="given"' in given.text, given.text[:500]
    (message,) = read_topic(topics["labels_topic"], 1)
    assert LabelDecoder().decode(message.value()).transaction_id == txn


def test_query_parameters_a_page_shows_back_are_checked_and_bounded(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    """Before: ``/payments/tx-1?given=<any text>`` showed "Verdict #<the text> recorded and sent
    as a label." (12,000 characters of it, or a forged notice), and ``/queue?merchant=<12,000
    characters>`` put them into the filter's field, the next page's link and the query. Now
    ``given`` is a verdict number or refused (400), and the merchant an identifier's length at
    most or refused, each refusal quoting the value bounded."""
    store(engine, [payment_row("tx-1", 0.7)])
    add_users(admin_engine)
    alice = signed_in(app_for(review_engine, topics["labels_topic"], models), "alice")
    huge = "Z" * 12_000
    pages = {
        "given": alice.get(f"/payments/tx-1?given={huge}"),
        "given_text": alice.get("/payments/tx-1?given=ZZ%20was%20approved%20by%20the%20bank"),
        "merchant": alice.get(f"/queue?merchant={huge}"),
    }
    statuses = {k: r.status_code for k, r in pages.items()}
    assert statuses == {"given": 400, "given_text": 400, "merchant": 400}, statuses
    quoted = {k: r.text.count("Z") for k, r in pages.items()}
    assert all(n <= 64 for n in quoted.values()), quoted
    assert "recorded and sent as a label" not in pages["given_text"].text
    assert "given" in pages["given"].text and "merchant" in pages["merchant"].text
    # What a page of its own links to stays accepted.
    assert alice.get("/payments/tx-1?given=17").status_code == 200
    assert "Verdict #17 recorded" in alice.get("/payments/tx-1?given=17").text
    assert alice.get("/queue?merchant=m-1").status_code == 200
    assert alice.get("/queue?merchant=").status_code == 200


def test_a_form_field_given_twice_is_refused_and_nothing_is_published(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    """``verdict=fraud&verdict=legitimate``: before, the last value won without a word (a
    verdict of "legitimate" recorded and published as a label). A message on Kafka naming a
    key twice is refused (``tests/test_hostile.py``); a form naming a field twice is too, 400,
    naming the field, and nothing is stored or published."""
    store(engine, [payment_row("tx-1", 0.7)])
    add_users(admin_engine)
    alice = signed_in(app_for(review_engine, topics["labels_topic"], models), "alice")
    csrf = token(alice.get("/payments/tx-1").text)
    twice = alice.post(
        "/payments/tx-1/verdict",
        content=f"verdict=fraud&verdict=legitimate&csrf_token={csrf}".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert twice.status_code == 400, twice.text[-500:]
    assert "verdict" in twice.text and "2 times" in twice.text
    notes = alice.post(
        "/payments/tx-1/verdict",
        content=f"verdict=fraud&note=a&note=b&csrf_token={csrf}".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert notes.status_code == 400 and "note" in notes.text
    with review_engine.connect() as c:
        assert c.execute(select(review_verdicts)).all() == []
    assert read_topic(topics["labels_topic"], 1, timeout=3) == []
    one = alice.post("/payments/tx-1/verdict", data={"verdict": "fraud", "csrf_token": csrf})
    assert one.status_code == 200 and "Verdict #" in one.text
