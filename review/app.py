"""The review application: Starlette routes rendering Jinja2 templates.

==========================  ======================================================
``GET /login``, ``POST``    sign in (name and password; 429 while locked out)
``POST /logout``            sign out (ends the session in MySQL)
``GET /queue``              the queue: ``decision`` (repeatable), ``since``, ``until``
                            (event time, UTC), ``merchant``, ``after`` (page cursor)
``GET /payments/{id}``      one payment: features, contributions and reason codes (an
                            approval's computed on demand), card, labels
``POST /payments/{id}/verdict``  an analyst's verdict (``verdict`` fraud|legitimate, ``note``)
``/rules``, ``/lists``, ``/versions``, ``/backtest``  rules, lists, ruleset versions and
                            backtests (:mod:`review.rules_pages`)
==========================  ======================================================

Every page but the sign-in needs a live session (:mod:`review.sessions`, checked in MySQL on
every request); every POST needs the session's CSRF token (:mod:`review.security`); a verdict
needs the ``analyst`` role (a viewer gets 403). Sign-ins are limited per account, client
address and device, and audited (:mod:`review.signin`). Database work runs in Starlette's
thread pool, with the engine of :func:`create_app`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from jinja2 import StrictUndefined
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from features.bounded import bounded
from features.contract import minor_unit_digits
from model_state.offline.shadow import Comparison, compare
from review import forms, queries, sessions, signin, throttle
from review.backtests import Backtests, Runner
from review.explain import Explainers, Explanation, feature_values, reasons_shown
from review.forms import moment, quoted
from review.publish import LabelPublisher
from review.rules_pages import RulesPages, range_text
from review.security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Devices,
    check_csrf,
    csrf_token,
    session_token,
    sign_in,
)
from review.sessions import SessionPolicy
from review.users import User
from review.verdicts import PaymentNotFoundError, give_verdict
from rules.backtest import backtest
from rules.store import RulesStore
from storage.rows import reasons_on_demand, utc_naive

TEMPLATES = Path(__file__).resolve().parent / "templates"
IDENTIFIER_CHARS = 64  # a merchant id's longest (features.contract.Identifier)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def percent(probability: float) -> str:
    return "n/a" if math.isnan(probability) else f"{probability * 100:.2f} %"


def money(amount_minor: int, currency: str) -> str:
    digits = minor_unit_digits(currency)
    return f"{amount_minor / 10**digits:,.{digits}f} {currency}"


def utc_now() -> datetime:
    """Now, as MySQL keeps times: naive UTC."""
    return utc_naive(datetime.now(UTC))


def client_address(request: Request) -> str:
    """The client's address: the socket's, or a trusted proxy's ``X-Forwarded-For`` (uvicorn's
    ``forwarded_allow_ips``, ``PAYSCORE_REVIEW_FORWARDED_ALLOW_IPS``)."""
    return request.client.host[:64] if request.client else "unknown"


class Review:
    """The application's parts, shared by its routes."""

    def __init__(
        self,
        engine: Engine,
        publisher: LabelPublisher,
        explainers: Explainers,
        devices: Devices,
        thresholds: tuple[float, float] = (0.5, 0.9),
        *,
        login_policy: throttle.Policy = throttle.POLICY,
        session_policy: SessionPolicy = sessions.SESSION,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.thresholds = thresholds  # review, decline: the flow's
        self.engine = engine
        self.publisher = publisher
        self.explainers = explainers
        self.devices = devices
        self.login_policy = login_policy
        self.session_policy = session_policy
        self.clock = clock
        self.templates = Jinja2Templates(
            env=jinja2.Environment(
                loader=jinja2.FileSystemLoader(TEMPLATES),
                autoescape=True,
                undefined=StrictUndefined,
            )
        )
        self.templates.env.filters.update(
            percent=percent, money=money, range_text=range_text, payment_url=payment_url
        )

    def page(self, request: Request, name: str, http_status: int = 200, **context: Any) -> Response:
        context = {"user": None, "error": None, **context}
        context |= {"csrf_field": CSRF_FIELD, "csrf_token": csrf_token(request)}
        response = self.templates.TemplateResponse(request, name, context, status_code=http_status)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def user(self, request: Request) -> User | None:
        """The user of the request's session if it is live (its last request now)."""
        token = session_token(request)
        if token is None:
            return None

        def look_up() -> User | None:
            with self.engine.begin() as connection:
                return sessions.current(connection, token, self.clock(), self.session_policy)

        user = await run_in_threadpool(look_up)
        if user is None:
            request.session.pop("sid", None)
        return user

    # -- routes --------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self.page(request, "login.html", error=None)

    async def login(self, request: Request) -> Response:
        form = await forms.bounded_form(request, forms.SIGN_IN_FORM_BYTES)
        check_csrf(request, form)
        # Every attempt counts and is audited, an empty one too (no account has an empty name).
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        device = self.devices.trusted(request, name)
        now = self.clock()
        attempt = await run_in_threadpool(
            lambda: signin.attempt(
                self.engine,
                name,
                password,
                address=client_address(request),
                device=device,
                now=now,
                policy=self.login_policy,
            )
        )
        if attempt.locked_until is not None:
            wait = max(1, math.ceil((attempt.locked_until - now).total_seconds()))
            response = self.page(
                request,
                "login.html",
                429,
                error="Too many failed sign-ins for this name or from this address: try again "
                f"after {attempt.locked_until:%H:%M} UTC, or ask an administrator to unlock it.",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        if attempt.user is None or attempt.token is None:
            return self.page(request, "login.html", 401, error="Unknown name or wrong password.")
        await self._end_session(request, "replaced")
        sign_in(request, attempt.token)
        redirect = RedirectResponse("/queue", status_code=303)
        if device is None:
            self.devices.give(redirect, attempt.user.name)
        return redirect

    async def logout(self, request: Request) -> Response:
        check_csrf(request, await forms.bounded_form(request, forms.SIGN_IN_FORM_BYTES))
        await self._end_session(request, "logout")
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def _end_session(self, request: Request, reason: str) -> None:
        token = session_token(request)
        if token is None:
            return

        def end() -> None:
            with self.engine.begin() as connection:
                sessions.end(connection, token, self.clock(), reason)

        await run_in_threadpool(end)

    async def shadow(self, request: Request, user: User) -> Response:
        """Champion and challenger side by side (``python -m model_state.shadow compare``)."""
        review, decline = self.thresholds

        def read() -> Comparison | str:
            try:
                return compare(self.engine, review=review, decline=decline)
            except SystemExit as exc:  # no challenger, or nothing shadowed yet: say so
                return str(exc)

        found = await run_in_threadpool(read)
        if isinstance(found, str):
            return self.page(request, "shadow.html", user=user, comparison=None, why=found)
        return self.page(request, "shadow.html", user=user, comparison=found, why=None)

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/queue", status_code=303)

    async def queue(self, request: Request, user: User) -> Response:
        args = request.query_params
        # A merchant id is at most an identifier's length (the contract's): a longer one was
        # shown back whole in the filter's field and the next page's link, and queried.
        merchant = forms.text(args, "merchant", at_most=IDENTIFIER_CHARS)
        try:
            where = queries.QueueFilter(
                decisions=tuple(args.getlist("decision")) or ("review",),
                since=moment(args.get("since")),
                until=moment(args.get("until")),
                merchant_id=merchant or None,
                after=queries.Cursor.decode(args["after"]) if args.get("after") else None,
            )
        except ValueError as exc:
            raise HTTPException(400, f"queue filter: {exc}") from None

        def read() -> tuple[queries.QueuePage, dict[str, Any]]:
            with self.engine.connect() as connection:
                page = queries.queue(connection, where)
                on_demand = [
                    r.transaction_id
                    for r in page.rows
                    if reasons_on_demand(r.decision, r.reason_codes)
                ]
                return page, queries.stored_reasons(connection, on_demand)

        page, stored = await run_in_threadpool(read)
        reasons = await run_in_threadpool(
            reasons_shown,
            self.explainers,
            page.rows,
            {txid: row.features for txid, row in stored.items()},
        )
        next_url = None
        if page.next is not None:
            kept = [(k, v) for k, v in args.multi_items() if k != "after"]
            next_url = "/queue?" + urlencode([*kept, ("after", page.next.encode())])
        return self.page(
            request,
            "queue.html",
            user=user,
            where=where,
            rows=page.rows,
            reasons=reasons,
            next_url=next_url,
            decisions=queries.DECISIONS,
            args=args,
        )

    async def payment(self, request: Request, user: User) -> Response:
        transaction_id = payment_id(request)

        def read() -> dict[str, Any] | None:
            with self.engine.connect() as connection:
                row = queries.payment(connection, transaction_id)
                if row is None:
                    return None
                return {
                    "payment": row,
                    "card": queries.card_history(connection, row.card_id),
                    "labels": queries.labels_of(connection, transaction_id),
                    "verdicts": queries.verdicts_of(connection, transaction_id),
                }

        found = await run_in_threadpool(read)
        if found is None:
            raise HTTPException(
                404, f"no scored payment with transaction id {quoted(transaction_id)}"
            )
        row = found["payment"]
        explanation = await run_in_threadpool(
            self.explainers.explain, row.model_version, dict(row.features)
        )
        reasons = await run_in_threadpool(
            reasons_shown, self.explainers, [row], {row.transaction_id: row.features}
        )
        return self.page(
            request,
            "payment.html",
            user=user,
            explanation=explanation if isinstance(explanation, Explanation) else None,
            unexplained=None if isinstance(explanation, Explanation) else explanation.why,
            features=feature_values(row.features),
            reasons=reasons[row.transaction_id],
            # The verdict just given (verdict() redirects here with its number): a number or
            # refused; any text was shown as "Verdict #<text> recorded and sent as a label."
            given=forms.number(request.query_params, "given", at_least=1),
            **found,
        )

    async def verdict(self, request: Request, user: User) -> Response:
        form = await forms.bounded_form(request, forms.VERDICT_FORM_BYTES)
        check_csrf(request, form)
        if not user.may_decide:
            raise HTTPException(403, f"user {user.name} is a {user.role}: may not give verdicts")
        choice = form.get("verdict")
        if choice not in ("fraud", "legitimate"):
            raise HTTPException(
                400, f"verdict: expected 'fraud' or 'legitimate', got {quoted(choice)}"
            )
        note = str(form.get("note", "")).strip()
        if len(note) > 2000:
            raise HTTPException(400, f"note: expected at most 2000 characters, got {len(note)}")
        transaction_id = payment_id(request)
        try:
            given = await run_in_threadpool(
                lambda: give_verdict(
                    self.engine,
                    self.publisher,
                    user,
                    transaction_id,
                    is_fraud=choice == "fraud",
                    note=note or None,
                )
            )
        except PaymentNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        if given.error is not None:
            raise HTTPException(502, f"verdict #{given.id} recorded, label not sent: {given.error}")
        page = payment_url(transaction_id)
        return RedirectResponse(
            f"{page}{'&' if '?' in page else '?'}given={given.id}", status_code=303
        )


Handler = Callable[[Request, User], Awaitable[Response]]


def _signed_in(review: Review, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        user = await review.user(request)
        if user is None:
            if request.method != "GET":
                raise HTTPException(403, "not signed in")
            return RedirectResponse("/login", status_code=303)
        return await handler(request, user)

    return endpoint


# Path segments a browser resolves away (WHATWG URL: ``.``, ``..`` and their ``%2e`` spellings):
# the contract lets a transaction id be one (``[A-Za-z0-9_.:-]{1,64}``), and the queue's link
# ``/payments/..`` took the analyst to ``/``, its verdict form posted to ``/verdict``: the
# payment could be neither opened nor decided in a browser.
DOT_SEGMENTS = frozenset({".", ".."})


def payment_url(transaction_id: str, then: str = "") -> str:
    """The page of a payment (``then``: ``/verdict``, its verdict form's target): the id in the
    path, or in the query when the path would lose it."""
    if transaction_id in DOT_SEGMENTS:
        return f"/payment{then}?{urlencode({'id': transaction_id})}"
    return f"/payments/{quote(transaction_id, safe='')}{then}"


def payment_id(request: Request) -> str:
    """The transaction id a payment's page or verdict names (path, or ``?id=``)."""
    named = request.path_params.get("transaction_id")
    return str(named) if named is not None else request.query_params.get("id", "")


def create_app(
    engine: Engine,
    publisher: LabelPublisher,
    explainers: Explainers,
    *,
    session_key: str,
    https_only: bool = False,
    thresholds: tuple[float, float] = (0.5, 0.9),
    login_policy: throttle.Policy = throttle.POLICY,
    session_policy: SessionPolicy = sessions.SESSION,
    clock: Callable[[], datetime] = utc_now,
    backtest_seconds: float = 60.0,
    backtests_at_once: int = 2,
    backtest_runner: Runner = backtest,
) -> Starlette:
    """The application on ``engine`` (the review account's); backtests read the same database
    as the same account, each in a new interpreter stopped after ``backtest_seconds``."""
    review = Review(
        engine,
        publisher,
        explainers,
        Devices(session_key, https_only=https_only),
        thresholds,
        login_policy=login_policy,
        session_policy=session_policy,
        clock=clock,
    )

    rules = RulesPages(
        RulesStore(engine),
        Backtests(
            engine.url.render_as_string(hide_password=False),
            timeout=backtest_seconds,
            at_once=backtests_at_once,
            runner=backtest_runner,
        ),
        review.page,
    )

    def signed(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return _signed_in(review, handler)

    async def error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        # Every error page's text is bounded, whatever a handler put in it (review of issue 20).
        detail = bounded(str(exc.detail))
        return review.page(
            request, "error.html", exc.status_code, status=exc.status_code, detail=detail
        )

    app = Starlette(
        routes=[
            Route("/", review.home),
            Route("/login", review.login_form, methods=["GET"]),
            Route("/login", review.login, methods=["POST"]),
            Route("/logout", review.logout, methods=["POST"]),
            Route("/queue", _signed_in(review, review.queue), methods=["GET"]),
            Route("/shadow", _signed_in(review, review.shadow), methods=["GET"]),
            Route(
                "/payments/{transaction_id}",
                _signed_in(review, review.payment),
                methods=["GET"],
            ),
            Route(
                "/payments/{transaction_id}/verdict",
                _signed_in(review, review.verdict),
                methods=["POST"],
            ),
            # A transaction id "." or "..": its page and verdict by query (see payment_url).
            Route("/payment", _signed_in(review, review.payment), methods=["GET"]),
            Route("/payment/verdict", _signed_in(review, review.verdict), methods=["POST"]),
            Route("/rules", signed(rules.rules), methods=["GET"]),
            Route("/rules", signed(rules.add_rule), methods=["POST"]),
            Route("/rules/{rule_id}", signed(rules.rule), methods=["GET"]),
            Route("/rules/{rule_id}/text", signed(rules.edit_rule), methods=["POST"]),
            Route("/rules/{rule_id}/status", signed(rules.set_status), methods=["POST"]),
            Route("/backtest", signed(rules.backtest), methods=["POST"]),
            Route("/lists", signed(rules.lists), methods=["GET"]),
            Route("/lists", signed(rules.create_list), methods=["POST"]),
            Route("/lists/{name}", signed(rules.list_view), methods=["GET"]),
            Route("/lists/{name}/entries", signed(rules.add_entry), methods=["POST"]),
            Route("/lists/{name}/remove", signed(rules.remove_entries), methods=["POST"]),
            Route("/lists/{name}/import", signed(rules.import_csv), methods=["POST"]),
            Route("/rule-hits", signed(rules.rule_hits), methods=["GET"]),
            Route("/versions", signed(rules.versions), methods=["GET"]),
            # {version}, not {version:int}: Starlette's int() of 5,000 digits raised while
            # routing (Python's limit on digits), a 500 before any sign-in; _version checks it.
            Route("/versions/{version}", signed(rules.version), methods=["GET"]),
            Route("/versions/{version}/rollback", signed(rules.rollback), methods=["POST"]),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=session_key,
                session_cookie=SESSION_COOKIE,
                max_age=int(session_policy.absolute.total_seconds()),
                same_site="strict",
                https_only=https_only,
            )
        ],
        exception_handlers={HTTPException: error},
    )
    app.state.review = review
    return app
