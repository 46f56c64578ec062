"""The queue's page cursor and filters: whatever a client sends, a page (200) or a clear refusal
(400), never a server error. ``?after=nan~x`` once reached MySQL and gave a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from review.queries import Cursor
from tests.reviewkit import add_users, app_for, payment_row, signed_in, store

MALFORMED = [
    "nan~x",
    "NaN~tx-1",
    "inf~x",
    "-inf~x",
    "1e309~x",
    "-1e309~x",
    "-0.5~x",
    "1.5~x",
    "0.5",
    "0.5~",
    "~x",
    "~",
    "",
    "0x1p-2~x",
    "1_0~x",
    " 0.5~x",
    "0.5~x y",
    "0.5~" + "x" * 65,
    "0.5~tx\n",
    "0.5~ü",
    "0.5~x~y",
    "\x00~x",
]

# What any client may type into a query string (no lone surrogates: they cannot be sent).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=120)
CURSOR_LIKE = st.builds(
    lambda p, sep, t: f"{p}{sep}{t}",
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e309", "-0", "0", "1", "0.5", "1e-320"]),
        ANY_TEXT,
    ),
    st.sampled_from(["~", "~~", "", "%7E"]),
    st.one_of(st.from_regex(r"\A[A-Za-z0-9_.:\-]{1,70}\Z"), ANY_TEXT),
)


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_cursor_is_a_value_error_that_quotes_it(text: str) -> None:
    with pytest.raises(ValueError, match="page cursor") as refused:
        Cursor.decode(text)
    assert len(str(refused.value)) < 300


@settings(max_examples=300)
@given(probability=st.floats(0.0, 1.0), transaction_id=st.from_regex(r"\A[A-Za-z0-9_.:\-]{1,64}\Z"))
def test_a_cursor_the_queue_made_reads_back_as_itself(
    probability: float, transaction_id: str
) -> None:
    cursor = Cursor(probability, transaction_id)
    assert Cursor.decode(cursor.encode()) == cursor


@settings(max_examples=500)
@given(text=st.one_of(CURSOR_LIKE, ANY_TEXT))
def test_any_text_decodes_to_a_cursor_in_range_or_is_refused(text: str) -> None:
    try:
        cursor = Cursor.decode(text)
    except ValueError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert message.startswith("page cursor ")
        return
    assert 0.0 <= cursor.probability <= 1.0
    assert 1 <= len(cursor.transaction_id) <= 64


@pytest.mark.integration
def test_the_queue_answers_any_cursor_or_filter_with_a_page_or_a_400(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    store(engine, [payment_row(f"tx-{i}", i / 10, minutes=i) for i in range(1, 9)])
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    client = signed_in(app, "alice", raise_server_exceptions=False)
    seen: set[int] = set()

    def ask(params: dict[str, str]) -> None:
        response = client.get("/queue", params=params)
        assert response.status_code in (200, 400), (params, response.status_code)
        if response.status_code == 400:
            assert "queue filter:" in response.text
        seen.add(response.status_code)

    for text in [t for t in MALFORMED if t]:  # an empty `after` is the first page
        response = client.get("/queue", params={"after": text})
        assert response.status_code == 400, (text, response.status_code)
        assert "page cursor" in response.text

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        after=st.one_of(CURSOR_LIKE, ANY_TEXT),
        since=st.one_of(st.none(), ANY_TEXT, st.sampled_from(["0001-01-01T00:00", "9999-12-31"])),
        merchant=st.one_of(st.none(), ANY_TEXT),
        decision=st.one_of(st.none(), st.sampled_from(["review", "decline", "x"]), ANY_TEXT),
    )
    def any_request(
        after: str, since: str | None, merchant: str | None, decision: str | None
    ) -> None:
        params = {"after": after}
        for name, value in (("since", since), ("merchant", merchant), ("decision", decision)):
            if value is not None:
                params[name] = value
        ask(params)

    any_request()
    assert seen == {200, 400}
