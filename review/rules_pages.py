"""The review queue's pages for rules, lists, ruleset versions and backtests.

==================================  =========================================================
``GET /rules``, ``POST``            every rule (status, priority, action, text, version); a new
                                    rule (``rule_id``, ``text``, ``status``, shadow by default)
``GET /rules/{id}``                 one rule: its text to edit, its status, a backtest of its
                                    text (edited or not), its history
``POST /rules/{id}/text``           the rule's new text
``POST /rules/{id}/status``         ``status`` active|shadow|disabled
``POST /backtest``                  a backtest of a draft: ``text`` (with ``rule_id``) or
                                    ``scope=shadow`` (every shadow rule as if active), over
                                    ``since``/``until`` (UTC): a table and a chart per day
``GET /lists``, ``POST``            every list (kind, entries, description); a new list
``GET /lists/{name}``               its entries, ``q`` (a prefix) and ``after`` (the page)
``POST /lists/{name}/entries``      an entry: ``value``, ``expires_at`` (UTC), ``reason``
``POST /lists/{name}/remove``       remove entries: ``value`` (repeatable)
``POST /lists/{name}/import``       a CSV file (``csv``), ``skip_bad`` to import the good rows
``GET /versions``                   the newest ruleset versions and their audit rows
``GET /versions/{v}``               version ``v``: its rules, the diff from ``v - 1``, who, when
``POST /versions/{v}/rollback``     a new version equal to ``v``
``GET /rule-hits``                  hits per rule per day and precision on labelled payments:
                                    ``kind`` shadow (would have fired) or active (fired),
                                    ``since``/``until`` (UTC; default the 30 days up to the
                                    newest stored payment) (:mod:`rules.shadow_hits`)
==================================  =========================================================

Every page needs a live session; every POST the session's CSRF token; every change the
``analyst`` role (a viewer reads and backtests, and gets 403 on any change). Changes go through
:class:`rules.store.RulesStore`, which writes each as one new ruleset version and one audit row
naming the analyst (``ruleset_audit``, insert-only for the review account). A refused change
writes nothing and shows why: a rule the parser refuses is shown again with the parser's
message, which names the line and column. Every text from input is bounded when read
(:mod:`review.forms`) and escaped when shown (Jinja's autoescape).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from features.bounded import bounded
from review import forms, rules_queries
from review.backtests import BacktestBusyError, Backtests
from review.security import check_csrf
from review.users import User
from rules import backtest as backtests
from rules import shadow_hits
from rules.lists import MAX_REASON_CHARS, future_expiry
from rules.names import LIST_KINDS
from rules.ruleset import STATUSES, RuleSpec, check_rule_id
from rules.store import ImportRefusedError, NewEntry, RulesStore
from rules.syntax import MAX_RULE_CHARS, RuleSyntaxError, parse
from storage.svg_charts import line_chart
from storage.tables import scored_payments

ID_CHARS = 64
NONE: frozenset[str] = frozenset()  # no field may be given twice
MAX_CSV_BYTES = 32 * 1024 * 1024  # a list of a million card ids is about 20 MB
MAX_FORM_BYTES = 256 * 1024  # any other change's form (a removal of 1,000 entries fits)
MAX_REMOVED = 1000  # values removed by one form
CHART_RULES = 3  # rules drawn in a backtest's chart (most hits first), with the changes
HITS_CHART_RULES = 4  # rules drawn in the hits chart (most hits first)
HITS_DAYS = 30  # the hits pages' default range, up to the newest stored payment
DAY = timedelta(days=1)
COLORS = ("#1f5fa8", "#a40000", "#1d6b1d", "#8a5a00")

Page = Callable[..., Response]


class RulesPages:
    """The routes of the module, on the review application's ``page`` renderer."""

    def __init__(self, store: RulesStore, backtests_: Backtests, page: Page) -> None:
        self.store = store
        self.backtests = backtests_
        self.page = page

    # ------------------------------------------------------------------ helpers

    async def _bounded_form(
        self, request: Request, *, at_most: int = MAX_FORM_BYTES, repeatable: frozenset[str] = NONE
    ) -> Any:
        """The form, once its stated size allows it (refused before it is read), and its CSRF
        token checked; a field other than ``repeatable`` named twice is refused."""
        form = await forms.bounded_form(request, at_most, repeatable=repeatable)
        check_csrf(request, form)
        return form

    async def _change_form(
        self,
        request: Request,
        user: User,
        *,
        at_most: int = MAX_FORM_BYTES,
        repeatable: frozenset[str] = NONE,
    ) -> Any:
        """The form of a change, once its size, its CSRF token and the user's role allow it."""
        form = await self._bounded_form(request, at_most=at_most, repeatable=repeatable)
        if not user.may_decide:
            raise HTTPException(
                403, f"user {user.name} is a {user.role}: may not change rules or lists"
            )
        return form

    async def _write(self, change: Callable[[], Any]) -> Any:
        """A store change in the thread pool; a refused one is a 400 saying why."""
        try:
            return await run_in_threadpool(change)
        except ValueError as exc:
            raise HTTPException(400, str(exc)[:2000]) from None

    # ------------------------------------------------------------------ rules

    async def rules(self, request: Request, user: User) -> Response:
        return await self._rules_page(request, user)

    async def _rules_page(
        self,
        request: Request,
        user: User,
        status: int = 200,
        error: str | None = None,
        draft: dict[str, str] | None = None,
    ) -> Response:
        def read() -> tuple[list[Any], Any]:
            return self.store.rules(), self.store.snapshot()

        rules, snapshot = await run_in_threadpool(read)
        return self.page(
            request,
            "rules.html",
            status,
            user=user,
            rules=rules,
            snapshot=snapshot,
            statuses=STATUSES,
            error=error,
            draft=draft or {"rule_id": "", "text": "", "status": "shadow"},
            saved=forms.number(request.query_params, "saved"),
            max_rule_chars=MAX_RULE_CHARS,
        )

    async def add_rule(self, request: Request, user: User) -> Response:
        form = await self._change_form(request, user)
        rule_id = forms.text(form, "rule_id", at_most=ID_CHARS, required=True)
        text = forms.text(form, "text", at_most=MAX_RULE_CHARS, required=True)
        status = forms.choice(form, "status", STATUSES)
        try:
            version = await run_in_threadpool(
                lambda: self.store.add_rule(rule_id, text, by=user.name, status=status)
            )
        except ValueError as exc:  # the parser's message names the line and column
            draft = {"rule_id": rule_id, "text": text, "status": status}
            return await self._rules_page(request, user, 400, str(exc)[:2000], draft)
        return RedirectResponse(f"/rules/{rule_id}?saved={version}", status_code=303)

    async def rule(self, request: Request, user: User) -> Response:
        return await self._rule_page(request, user)

    async def _rule_page(
        self,
        request: Request,
        user: User,
        status: int = 200,
        error: str | None = None,
        text: str | None = None,
    ) -> Response:
        rule_id = request.path_params["rule_id"]

        def read() -> tuple[Any, list[Any], dict[str, Any]]:
            found = next((r for r in self.store.rules() if r.rule_id == rule_id), None)
            with self.store.engine.connect() as c:
                since, until = default_range(c)
                hits = {
                    kind: hits_view(c, since, until, kind, [rule_id])
                    for kind in ("active", "shadow")
                }
                return found, rules_queries.audit_of(c, target=rule_id), hits

        found, history, hits = await run_in_threadpool(read)
        if found is None:
            raise HTTPException(404, f"there is no rule {rule_id[:ID_CHARS]!r}")
        return self.page(
            request,
            "rule.html",
            status,
            user=user,
            rule=found,
            text=found.text if text is None else text,
            history=history,
            hits=hits,
            statuses=STATUSES,
            error=error,
            saved=forms.number(request.query_params, "saved"),
            max_rule_chars=MAX_RULE_CHARS,
        )

    async def rule_hits(self, request: Request, user: User) -> Response:
        args = request.query_params
        kind = forms.choice({"kind": args.get("kind") or "shadow"}, "kind", ("shadow", "active"))
        since, until = forms.when(args, "since"), forms.when(args, "until")

        def read() -> tuple[HitsView, dict[str, str]]:
            with self.store.engine.connect() as c:
                start, end = default_range(c)
                view = hits_view(c, since or start, until or end, kind, None)
            return view, {r.rule_id: r.status for r in self.store.rules()}

        try:
            view, statuses = await run_in_threadpool(read)
        except ValueError as exc:  # a reversed range, or too many days
            raise HTTPException(400, str(exc)[:500]) from None
        return self.page(
            request, "rule_hits.html", user=user, view=view, kind=kind, status_now=statuses
        )

    async def edit_rule(self, request: Request, user: User) -> Response:
        form = await self._change_form(request, user)
        rule_id = request.path_params["rule_id"]
        text = forms.text(form, "text", at_most=MAX_RULE_CHARS, required=True)
        try:
            version = await run_in_threadpool(
                lambda: self.store.edit_rule(rule_id, text, by=user.name)
            )
        except RuleSyntaxError as exc:
            return await self._rule_page(request, user, 400, str(exc)[:2000], text)
        except ValueError as exc:
            raise HTTPException(400, str(exc)[:2000]) from None
        return RedirectResponse(f"/rules/{rule_id}?saved={version}", status_code=303)

    async def set_status(self, request: Request, user: User) -> Response:
        form = await self._change_form(request, user)
        rule_id = request.path_params["rule_id"]
        status = forms.choice(form, "status", STATUSES)
        version = await self._write(lambda: self.store.set_status(rule_id, status, by=user.name))
        return RedirectResponse(f"/rules/{rule_id}?saved={version}", status_code=303)

    # ------------------------------------------------------------------ backtest

    async def backtest(self, request: Request, user: User) -> Response:
        """A backtest of a draft (any signed-in user: it writes nothing); its form bounded as a
        change's."""
        form = await self._bounded_form(request)
        scope = forms.choice(form, "scope", ("rule", "shadow"))
        since = forms.when(form, "since") or backtests.EARLIEST
        until = forms.when(form, "until") or backtests.LATEST
        if since >= until:
            raise HTTPException(400, f"since ({since}) must be before until ({until})")
        snapshot = await run_in_threadpool(self.store.snapshot)
        text = ""
        rule_id = "draft"
        if scope == "rule":
            text = forms.text(form, "text", at_most=MAX_RULE_CHARS, required=True)
            rule_id = forms.text(form, "rule_id", at_most=ID_CHARS) or "draft"
            try:
                check_rule_id(rule_id)
                parse(text, snapshot.kinds())
            except ValueError as exc:
                return self.page(
                    request, "backtest.html", 400, user=user, report=None, error=str(exc)[:2000],
                    scope=scope, rule_id=rule_id, text=text, since=since, until=until,
                    chart=None,
                )  # fmt: skip
            draft = [RuleSpec(rule_id, text, "active")]
        else:
            draft = [
                RuleSpec(r.rule_id, r.text, "active")
                for r in snapshot.rules
                if r.status == "shadow"
            ]
            if not draft:
                raise HTTPException(400, "there is no shadow rule to backtest")
        try:
            report = await self.backtests.run(user.name, draft, since=since, until=until)
        except BacktestBusyError as exc:
            response = self.page(request, "error.html", 429, user=user, status=429, detail=str(exc))
            response.headers["Retry-After"] = "5"
            return response
        except backtests.BacktestTimeoutError as exc:
            raise HTTPException(504, str(exc)[:2000]) from None
        except ValueError as exc:
            raise HTTPException(400, str(exc)[:2000]) from None
        drafted = {r.rule_id for r in draft}
        report.rules.sort(key=lambda r: r.rule_id not in drafted)  # the draft's rules first
        return self.page(
            request, "backtest.html", user=user, report=report, error=None, scope=scope,
            rule_id=rule_id, text=text, since=since, until=until, chart=backtest_chart(report),
            drafted=drafted,
        )  # fmt: skip

    # ------------------------------------------------------------------ lists

    async def lists(self, request: Request, user: User) -> Response:
        def read() -> tuple[Any, dict[str, str]]:
            with self.store.engine.connect() as c:
                return self.store.snapshot(), rules_queries.descriptions(c)

        snapshot, described = await run_in_threadpool(read)
        return self.page(
            request,
            "lists.html",
            user=user,
            snapshot=snapshot,
            described=described,
            kinds=LIST_KINDS,
            saved=forms.number(request.query_params, "saved"),
        )

    async def create_list(self, request: Request, user: User) -> Response:
        form = await self._change_form(request, user)
        name = forms.text(form, "name", at_most=ID_CHARS, required=True)
        kind = forms.choice(form, "kind", tuple(LIST_KINDS))
        description = forms.text(form, "description", at_most=MAX_REASON_CHARS)
        version = await self._write(
            lambda: self.store.create_list(name, kind, by=user.name, description=description)
        )
        return RedirectResponse(f"/lists/{name}?saved={version}", status_code=303)

    async def list_page(
        self, request: Request, user: User, status: int = 200, error: str | None = None,
        imported: Any = None,
    ) -> Response:  # fmt: skip
        name = request.path_params["name"]
        args = request.query_params
        prefix = forms.text(args, "q", at_most=ID_CHARS)
        after = forms.text(args, "after", at_most=ID_CHARS) or None

        def read() -> tuple[Any, dict[str, str], rules_queries.EntriesPage, list[Any]]:
            with self.store.engine.connect() as c:
                return (
                    self.store.snapshot(),
                    rules_queries.descriptions(c),
                    rules_queries.entries(c, name, prefix=prefix, after=after),
                    rules_queries.audit_of(c, target=name, limit=20),
                )

        snapshot, described, page, history = await run_in_threadpool(read)
        ref = snapshot.lists.get(name)
        if ref is None:
            raise HTTPException(404, f"there is no list @{name[:ID_CHARS]}")
        return self.page(
            request,
            "list.html",
            status,
            user=user,
            list_name=name,
            ref=ref,
            description=described.get(name, ""),
            page=page,
            prefix=prefix,
            history=history,
            error=error,
            imported=imported,
            saved=forms.number(args, "saved"),
            max_reason=MAX_REASON_CHARS,
        )

    async def list_view(self, request: Request, user: User) -> Response:
        return await self.list_page(request, user)

    async def add_entry(self, request: Request, user: User) -> Response:
        form = await self._change_form(request, user)
        name = request.path_params["name"]
        value = forms.text(form, "value", at_most=ID_CHARS, required=True)
        expires = forms.when(form, "expires_at")
        reason = forms.text(form, "reason", at_most=MAX_REASON_CHARS)
        given = forms.text(form, "expires_at", at_most=forms.SHOWN)
        try:
            future_expiry(expires, datetime.now(UTC), given, what="expires_at")
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        version = await self._write(
            lambda: self.store.add_entries(name, [NewEntry(value, expires, reason)], by=user.name)
        )
        return RedirectResponse(f"/lists/{name}?saved={version}", status_code=303)

    async def remove_entries(self, request: Request, user: User) -> Response:
        form = await self._change_form(request, user, repeatable=frozenset({"value"}))
        name = request.path_params["name"]
        values = [v.strip() for v in form.getlist("value") if isinstance(v, str) and v.strip()]
        if not values:
            raise HTTPException(400, "value: expected at least one entry to remove, got none")
        if len(values) > MAX_REMOVED or any(len(v) > ID_CHARS for v in values):
            raise HTTPException(
                400,
                f"value: expected at most {MAX_REMOVED} values of at most {ID_CHARS} characters",
            )
        version = await self._write(lambda: self.store.remove_entries(name, values, by=user.name))
        return RedirectResponse(f"/lists/{name}?saved={version}", status_code=303)

    async def import_csv(self, request: Request, user: User) -> Response:
        form = await self._change_form(request, user, at_most=MAX_CSV_BYTES + MAX_FORM_BYTES)
        name = request.path_params["name"]
        upload = form.get("csv")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "csv: expected a CSV file, got none")
        data = await upload.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            raise HTTPException(413, f"csv: expected at most {MAX_CSV_BYTES:,} bytes")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise HTTPException(400, f"csv: expected UTF-8 text; byte {exc.start} is not") from None
        skip_bad = form.get("skip_bad") == "1"
        try:
            result = await run_in_threadpool(
                lambda: self.store.import_csv(name, text, by=user.name, skip_bad=skip_bad)
            )
        except ImportRefusedError as exc:
            return await self.list_page(request, user, 400, error=str(exc)[:8000])
        except ValueError as exc:
            raise HTTPException(400, str(exc)[:2000]) from None
        return await self.list_page(request, user, imported=result)

    # ------------------------------------------------------------------ versions

    async def versions(self, request: Request, user: User) -> Response:
        def read() -> tuple[list[Any], list[Any]]:
            return self.store.versions(50), self.store.audit(50)

        versions, audit = await run_in_threadpool(read)
        return self.page(request, "versions.html", user=user, versions=versions, audit=audit)

    async def version(self, request: Request, user: User) -> Response:
        number = _version(request)

        def read() -> tuple[Any, list[str], list[Any], int]:
            snapshot = self.store.snapshot(number)
            with self.store.engine.connect() as c:
                audit = rules_queries.audit_of(c, version=number)
                newest = self.store.newest_version(c)
            return snapshot, self.store.diff(number - 1, number).lines(), audit, newest

        try:
            snapshot, diff, audit, newest = await run_in_threadpool(read)
        except ValueError as exc:
            raise HTTPException(404, str(exc)[:200]) from None
        return self.page(
            request,
            "version.html",
            user=user,
            snapshot=snapshot,
            diff=diff,
            audit=audit,
            newest=newest,
            saved=forms.number(request.query_params, "saved"),
        )

    async def rollback(self, request: Request, user: User) -> Response:
        await self._change_form(request, user)
        number = _version(request)
        version = await self._write(lambda: self.store.rollback(number, by=user.name))
        return RedirectResponse(f"/versions/{version}?saved={version}", status_code=303)


_VERSION = re.compile(r"\A[0-9]{1,18}\Z")


def _version(request: Request) -> int:
    """The ruleset version a path names: 1 to 18 digits, 404 otherwise (its text bounded)."""
    named = str(request.path_params["version"])
    if not _VERSION.match(named) or int(named) < 1:
        raise HTTPException(404, f"there is no ruleset version {bounded(named, 80)}")
    return int(named)


@dataclass(frozen=True)
class HitsView:
    """Rules' hits over a range, per rule (totals) and per day (a chart)."""

    since: datetime
    until: datetime
    totals: list[shadow_hits.RuleHits]
    chart: str | None


def default_range(connection: Connection) -> tuple[datetime, datetime]:
    """The :data:`HITS_DAYS` days (UTC) up to the day of the newest stored payment (an index
    look-up), or up to today when none is stored."""
    newest = connection.execute(select(func.max(scored_payments.c.event_time))).scalar()
    last = newest or datetime.now(UTC).replace(tzinfo=None)
    until = datetime(last.year, last.month, last.day) + DAY
    return until - HITS_DAYS * DAY, until


def hits_view(
    connection: Connection,
    since: datetime,
    until: datetime,
    kind: shadow_hits.Kind,
    rule_ids: Sequence[str] | None,
) -> HitsView:
    """Hits of ``kind`` per rule and day in [since, until) (naive UTC), for the pages."""
    rows = shadow_hits.hits_over_time(
        connection,
        since=since.replace(tzinfo=UTC),
        until=until.replace(tzinfo=UTC),
        kind=kind,
        rule_ids=rule_ids,
    )
    totals = shadow_hits.totals(rows, since=since.replace(tzinfo=UTC))
    if not rows:
        return HitsView(since, until, totals, None)
    first = datetime(since.year, since.month, since.day)
    days = [first + i * DAY for i in range(-(-(until - first) // DAY))]
    index = {day: i for i, day in enumerate(days)}
    ranked = sorted(totals, key=lambda t: (-t.hits, t.rule_id))[:HITS_CHART_RULES]
    series: dict[str, list[float]] = {t.rule_id: [0.0] * len(days) for t in ranked}
    for row in rows:
        if row.rule_id in series:
            day = row.period_start.replace(tzinfo=None)
            series[row.rule_id][index[day]] = row.hits
    chart = line_chart(
        [d.strftime("%Y-%m-%d") for d in days],
        series,
        COLORS,
        title=f"{'Shadow hits' if kind == 'shadow' else 'Payments decided'} per rule and day (UTC)",
    )
    return HitsView(since, until, totals, chart)


def backtest_chart(report: backtests.BacktestReport) -> str | None:
    """Per day: the hits of the draft's rules with the most hits, and the payments whose final
    decision would change."""
    if not report.daily:
        return None
    days = [d.day for d in report.daily]
    ranked = sorted(report.rules, key=lambda r: -r.hits)[:CHART_RULES]
    series: dict[str, list[float]] = {
        f"hits {r.rule_id}": [d.hits.get(r.rule_id, 0) for d in report.daily] for r in ranked
    }
    series["decisions changed"] = [d.changed for d in report.daily]
    return line_chart(days, series, COLORS, title="Backtest per day (UTC)")


Handler = Callable[[Request, User], Awaitable[Response]]


def range_text(moment: datetime) -> str:
    """A backtest bound as the form shows it (empty for the open ends)."""
    if moment in (backtests.EARLIEST, backtests.LATEST):
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M")
