"""``python -m rules``: read and change rules and lists (every change a new ruleset version).

    python -m rules show                                   the rules now
    python -m rules check "decline if amount_eur > 5000"   parse against the lists, store nothing
    python -m rules add ID "RULE" [--by NAME] [--status shadow|active|disabled]
    python -m rules edit ID "RULE" [--by NAME]
    python -m rules status ID active|shadow|disabled [--by NAME]
    python -m rules lists                                  the lists and their sizes
    python -m rules list-create NAME KIND [--by NAME] [--description TEXT]
    python -m rules list-add NAME VALUE... [--by NAME] [--expires WHEN] [--reason TEXT]
    python -m rules list-remove NAME VALUE... [--by NAME]
    python -m rules list-show NAME [--after VALUE] [--limit N]
    python -m rules import NAME FILE.csv [--by NAME] [--skip-bad]
    python -m rules versions [--limit N]
    python -m rules diff FROM [TO]
    python -m rules rollback VERSION [--by NAME]
    python -m rules audit [--limit N]

Connects as the analysts' account (``PAYSCORE_ANALYST_MYSQL_URL``), never the review queue's:
it may change rules and lists as the review queue does, and nothing of the review queue's
sign-ins, sessions or verdicts (``storage/accounts.py``). A refused change prints why and exits
with status 2, storing nothing.

**Who made a change** is the operating system's user running the command (the login name of
the process's real user id, not ``$USER``, which anyone sets), as ``os:NAME``; ``--by ana``
adds the name the analyst gives, as ``ana@os:NAME``: the audit (``ruleset_audit.actor``, and
``created_by`` ... of the rows) names who typed it and who really ran it.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from rules.lists import future_expiry, parse_expiry
from rules.store import ImportRefusedError, NewEntry, RulesStore
from rules.syntax import parse, to_text
from settings.arguments import Parser, within
from settings.config import Config
from storage.engine import make_engine
from storage.refusals import refusing

# A name given with --by: no ':' or '@', which separate it from the OS user in the actor.
GIVEN_NAME = re.compile(r"\A[A-Za-z0-9_.\-]{1,40}\Z")
OS_USER_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")
OS_USER_LENGTH = 20


def os_user(uid: int | None = None) -> str:
    """The login name of ``uid`` (default: this process's real user id), from the user database;
    ``uidN`` when it has none. Characters an actor may not hold become ``_``; cut to 20."""
    uid = os.getuid() if uid is None else uid
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid{uid}"
    return OS_USER_CHARS.sub("_", name)[:OS_USER_LENGTH] or f"uid{uid}"


def actor(by: str | None, user: str) -> str:
    """Who a change is recorded as: ``os:USER``, or ``BY@os:USER`` when a name is given.

    >>> actor(None, "bob"), actor("ana", "bob")
    ('os:bob', 'ana@os:bob')
    """
    if by is None:
        return f"os:{user}"
    if not GIVEN_NAME.match(by):
        raise ValueError(f"--by: expected 1 to 40 characters of A-Z a-z 0-9 _ . -; got {by[:50]!r}")
    return f"{by}@os:{user}"


BY_HELP = "your name, recorded beside the OS user running the command"
MAX_CSV_BYTES = 256 * 1024 * 1024  # an import file: a list of a million card ids is about 20 MB
MOST_SHOWN = 10_000


def _limit(text: str) -> int:
    """A ``--limit``: a whole number of rows from 1 to 10,000 (-5 reached MySQL's ``LIMIT`` as
    a syntax error, a traceback; 10**23 an out-of-range one)."""
    return int(within(int, 1, MOST_SHOWN, of="rows")(text))


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m rules",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show")
    p = sub.add_parser("check")
    p.add_argument("rule")
    for name in ("add", "edit"):
        p = sub.add_parser(name)
        p.add_argument("rule_id")
        p.add_argument("rule")
        p.add_argument("--by", help=BY_HELP)
        if name == "add":
            p.add_argument("--status", default="shadow", choices=("active", "shadow", "disabled"))
    p = sub.add_parser("status")
    p.add_argument("rule_id")
    p.add_argument("status", choices=("active", "shadow", "disabled"))
    p.add_argument("--by", help=BY_HELP)
    sub.add_parser("lists")
    p = sub.add_parser("list-create")
    p.add_argument("name")
    p.add_argument("kind")
    p.add_argument("--by", help=BY_HELP)
    p.add_argument("--description", default="")
    p = sub.add_parser("list-add")
    p.add_argument("name")
    p.add_argument("values", nargs="+")
    p.add_argument("--by", help=BY_HELP)
    p.add_argument("--expires", default="")
    p.add_argument("--reason", default="")
    p = sub.add_parser("list-remove")
    p.add_argument("name")
    p.add_argument("values", nargs="+")
    p.add_argument("--by", help=BY_HELP)
    p = sub.add_parser("list-show")
    p.add_argument("name")
    p.add_argument("--after")
    p.add_argument("--limit", type=_limit, default=100)
    p = sub.add_parser("import")
    p.add_argument("name")
    p.add_argument("file", type=Path)
    p.add_argument("--by", help=BY_HELP)
    p.add_argument("--skip-bad", action="store_true", help="import the good rows, report the bad")
    p = sub.add_parser("versions")
    p.add_argument("--limit", type=_limit, default=20)
    p = sub.add_parser("diff")
    p.add_argument("since", type=int)
    p.add_argument("until", type=int, nargs="?")
    p = sub.add_parser("rollback")
    p.add_argument("version", type=int)
    p.add_argument("--by", help=BY_HELP)
    p = sub.add_parser("audit")
    p.add_argument("--limit", type=_limit, default=20)
    return parser


def run(args: argparse.Namespace, store: RulesStore) -> None:
    c = args.command
    if c == "show":
        for r in store.rules():
            print(f"{r.rule_id}\t{r.status}\tv{r.version}\t{r.text}")
    elif c == "check":
        print(to_text(parse(args.rule, store.snapshot().kinds())))
    elif c == "add":
        print(f"version {store.add_rule(args.rule_id, args.rule, by=args.by, status=args.status)}")
    elif c == "edit":
        print(f"version {store.edit_rule(args.rule_id, args.rule, by=args.by)}")
    elif c == "status":
        print(f"version {store.set_status(args.rule_id, args.status, by=args.by)}")
    elif c == "lists":
        for name, ref in sorted(store.snapshot().lists.items()):
            print(f"@{name}\t{ref.kind}\t{ref.entries} entries")
    elif c == "list-create":
        version = store.create_list(args.name, args.kind, by=args.by, description=args.description)
        print(f"version {version}")
    elif c == "list-add":
        expires = parse_expiry(args.expires)
        future_expiry(expires, datetime.now(UTC), args.expires)
        entries = [NewEntry(v, expires, args.reason) for v in args.values]
        print(f"version {store.add_entries(args.name, entries, by=args.by)}")
    elif c == "list-remove":
        print(f"version {store.remove_entries(args.name, args.values, by=args.by)}")
    elif c == "list-show":
        for e in store.entries(args.name, limit=args.limit, after=args.after):
            expires = e.expires_at.isoformat() + "Z" if e.expires_at else "-"
            print(f"{e.value}\t{expires}\t{e.added_by}\tv{e.added_in}\t{e.reason}")
    elif c == "import":
        result = store.import_csv(
            args.name, _csv_text(args.file), by=args.by, skip_bad=args.skip_bad
        )
        print(
            f"imported {result.imported} entries"
            + (f" as version {result.version}" if result.version else "")
        )
        if result.bad_count:
            print(f"{result.bad_count} bad rows skipped:\n{result.report}")
    elif c == "versions":
        for v in store.versions(args.limit):
            print(f"{v.version}\t{v.created_at:%Y-%m-%d %H:%M:%S}Z\t{v.created_by}\t{v.change}")
    elif c == "diff":
        print("\n".join(store.diff(args.since, args.until).lines()))
    elif c == "rollback":
        print(f"version {store.rollback(args.version, by=args.by)}")
    elif c == "audit":
        for a in store.audit(args.limit):
            when = f"{a.at:%Y-%m-%d %H:%M:%S}Z"
            print(f"{a.version}\t{when}\t{a.actor}\t{a.action}\t{a.target}\t{a.diff}")


def _csv_text(path: Path) -> str:
    """The text of a CSV file to import, or a ValueError naming the file and the first byte that
    is not UTF-8 (a spreadsheet's "CSV" in Latin-1 or UTF-16 came back as Python's bare
    ``'utf-8' codec can't decode byte 0xe9 in position 5``, naming no file)."""
    with path.open("rb") as file:  # no further than the bound: /dev/zero never ends
        data = file.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise ValueError(
            f"{str(path)[:300]}: more than {MAX_CSV_BYTES:,} bytes; expected a CSV file of at "
            f"most {MAX_CSV_BYTES:,} bytes (split it)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{str(path)[:300]}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start:,}); expected a CSV file in UTF-8 (a spreadsheet's 'CSV UTF-8')"
        ) from None


@refusing("python -m rules", "analyst")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if "by" in args:
            args.by = actor(args.by, os_user())
        config = Config.from_env(os.environ)
    except ValueError as exc:
        print(f"refused: {str(exc)[:2000]}", file=sys.stderr)
        return 2
    engine = make_engine(config.analyst_mysql_dsn)  # the analysts' account (storage/accounts.py)
    try:
        run(args, RulesStore(engine, patience=config.mysql_outage_seconds))
    except ImportRefusedError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"refused: {str(exc)[:2000]}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
