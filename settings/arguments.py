"""Types for the command lines' numeric arguments: a number in a range, or the parser refuses it.

Unchecked, numbers reached MySQL or the code as they came: ``python -m rules ... --limit -5`` a
``LIMIT -5`` (a syntax error, a traceback), retrain's ``--min-frauds -1`` an AssertionError and
``--label-delay-days 1e300`` an OverflowError, ``--tolerance nan`` a gate that never compares
true, train's ``--epochs 0`` a version that learned nothing, written and signed. With
:func:`within` as its ``type`` argparse refuses such a value with status 2 and says what it
expected.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="p", exit_on_error=False)
>>> _ = parser.add_argument("--limit", type=within(int, 1, 10_000, of="rows"))
>>> parser.parse_args(["--limit", "25"]).limit
25
>>> try:
...     parser.parse_args(["--limit", "-5"])
... except argparse.ArgumentError as exc:
...     print(exc)
argument --limit: expected a whole number of rows from 1 to 10,000; got '-5'
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

REFUSAL_CHARS = 500  # of a refusal of the parser, quoting what came


def within(
    kind: type[int] | type[float], low: float, high: float, *, above: bool = False, of: str = ""
) -> Callable[[str], float]:
    """An argument's type: a finite number of ``kind`` from ``low`` (excluded if ``above``) to
    ``high``, of ``of`` (a noun for the message: "rows"); refused by the parser (status 2)
    otherwise, naming the range and the text it got (its first 40 characters)."""

    def number(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (low < value if above else low <= value) or not value <= high:
            name, form = ("whole number", ",.0f") if kind is int else ("number", ",.10g")
            noun = f" of {of}" if of else ""
            raise argparse.ArgumentTypeError(
                f"expected a {name}{noun} {'above' if above else 'from'} {low:{form}} "
                f"{'and at most' if above else 'to'} {high:{form}}; got {text[:40]!r}"
            )
        return value

    return number


class Parser(argparse.ArgumentParser):
    """The command lines' parser: argparse's, with its refusals bounded (it quotes the value it
    refuses whole: ``invalid choice: '…'`` of 100,000 characters, ``invalid int value`` of 5,000
    digits, ``unrecognized arguments: …``). Its subcommands' parsers are ones too.

    >>> parser = Parser(prog="p")
    >>> _ = parser.add_argument("--role", choices=("analyst", "viewer"))
    >>> try:
    ...     parser.parse_args(["--role", "a" * 100_000])
    ... except SystemExit as exc:
    ...     print(exc.code)
    2
    """

    def error(self, message: str) -> NoReturn:
        super().error(_bounded(message))


def _bounded(text: str) -> str:
    """``text`` cut to about :data:`REFUSAL_CHARS` (head and tail kept, the cut said), every
    character printable (escaped where not). settings imports nothing of payscore, so not
    ``features.bounded``, which does the same for input in the flow.

    >>> shown = _bounded("got '" + "x" * 10_000 + "\\n'")
    >>> len(shown), shown[395:430], shown[-4:]
    (466, 'xxxxx …[9,568 characters cut]… xxxx', "x\\\\n'")
    """
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    head, tail = REFUSAL_CHARS - 100, 40
    if len(text) > head + tail + 40:
        text = f"{text[:head]} …[{len(text) - head - tail:,} characters cut]… {text[-tail:]}"
    return text
