"""The rule language: text -> a typed AST, and the AST -> its one canonical text.

A rule is an action, ``if``, a condition, and an optional priority (default 100)::

    decline if card_count_1h >= 5 and amount_eur > 200 priority 10

Grammar (EBNF; keywords are lower case, ``#`` starts nothing: there are no comments)::

    rule       = action "if" condition [ "priority" INTEGER ] ;
    action     = "decline" | "review" | "allow" ;
    condition  = and { "or" and } ;
    and        = not { "and" not } ;
    not        = "not" not | test ;
    test       = sum [ ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) sum
                     | [ "not" ] "in" ( LIST | "(" literal { "," literal } ")" )
                     | "starts" "with" ( LIST | STRING )
                     | "is" [ "not" ] "missing" ] ;
    sum        = product { ( "+" | "-" ) product } ;
    product    = unary { ( "*" | "/" ) unary } ;
    unary      = "-" unary | atom ;
    atom       = NUMBER | STRING | NAME | "(" condition ")" ;
    literal    = NUMBER | STRING ;
    NAME       = a field, feature or fraud_probability (rules.names) ;
    LIST       = "@" name of a list ;
    NUMBER     = digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ] ;
    STRING     = '"' ... '"' or "'" ... "'" (backslash escapes the quote and itself) ;

Types are checked while parsing: arithmetic and ``<``/``>`` take numbers; ``==``/``!=`` take two
numbers or two strings, and a string literal compared with a field (``==``, ``!=``, ``in (...)``,
``starts with``) must be a value that field can hold (:data:`rules.names.DOMAINS`: ``country ==
"fr"`` never matches, so it is refused); ``and``/``or``/``not`` take conditions; ``in @list`` takes
the field of the list's kind (``card_id in @blocked_cards``, ``country in @high_risk_countries``)
and ``starts with @list`` a BIN-prefix list (``card_id starts with @risky_bins``). A refused rule
raises :class:`RuleSyntaxError`, which names the line, the column, what was expected and what came,
quoting at most a short excerpt. A rule is at most :data:`MAX_RULE_CHARS` characters both as typed
and in its canonical text (:func:`to_text`, what is stored), so every stored rule parses again.

**Semantics of missing values** (one definition, shared by every evaluator and tested against the
reference interpreter, :mod:`rules.reference`): a value is *missing* when an optional field is
absent (``device_id``, ``latitude``, ``longitude``), when a feature is absent or not a finite
number, or when arithmetic has no finite result (a division by zero, an overflow). Arithmetic on
a missing value is missing; every comparison with a missing value is false, ``!=`` included, and
so are ``in`` and ``starts with``; ``x is missing`` tests for it. ``not`` is plain negation:
``not device_id == "d-1"`` holds for a payment without a device.

>>> rule = parse("review if amount_eur>1000 and (country=='NG' or card_country_unusual==1)")
>>> print(to_text(rule))
review if amount_eur > 1000 and (country == "NG" or card_country_unusual == 1) priority 100
>>> parse("decline if amount_eur == 'big'")
Traceback (most recent call last):
    ...
rules.syntax.RuleSyntaxError: line 1, column 26: expected a number to compare with `amount_eur` ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from rules.names import BOOL, DOMAINS, LIST_FIELDS, NUMBER, PREFIX_KINDS, STRING, TYPES, Type

Action = Literal["decline", "review", "allow"]
ACTIONS: Final = ("decline", "review", "allow")
DEFAULT_PRIORITY: Final = 100
MAX_PRIORITY: Final = 1_000_000
MAX_RULE_CHARS: Final = 4000
MAX_DEPTH: Final = 48  # nesting of the AST (parentheses, chains of and/or/not, arithmetic)
MAX_STRING_CHARS: Final = 200
MAX_VALUES: Final = 1000  # literals in one `in (...)`
MAX_NUMBER: Final = 1e15  # amounts stop at 10**12 minor units
EXCERPT_CHARS: Final = 40

KEYWORDS: Final = frozenset(
    {"and", "or", "not", "in", "starts", "with", "is", "missing", "if", "priority", *ACTIONS}
)
NAME_PATTERN: Final = r"[A-Za-z_][A-Za-z0-9_]{0,63}"


# ---------------------------------------------------------------------------- the AST


@dataclass(frozen=True, slots=True)
class Num:
    value: float  # finite, 0 <= value <= MAX_NUMBER (a minus sign is Neg)


@dataclass(frozen=True, slots=True)
class Str:
    value: str


@dataclass(frozen=True, slots=True)
class Name:
    name: str  # a key of rules.names.TYPES


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Arith:
    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Compare:
    op: Literal["==", "!=", "<", "<=", ">", ">="]
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class InList:
    operand: Expr  # the Name of the list kind's field
    list_name: str


@dataclass(frozen=True, slots=True)
class InValues:
    operand: Expr
    values: tuple[Num, ...] | tuple[Str, ...]


@dataclass(frozen=True, slots=True)
class StartsWith:
    operand: Expr
    prefix: str  # a literal prefix


@dataclass(frozen=True, slots=True)
class StartsWithList:
    operand: Expr  # card_id
    list_name: str  # a BIN-prefix list


@dataclass(frozen=True, slots=True)
class IsMissing:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: Literal["and", "or"]
    left: Expr
    right: Expr


Expr = (
    Num | Str | Name | Neg | Arith | Compare | InList | InValues | StartsWith | StartsWithList
    | IsMissing | Not | BoolOp
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    condition: Expr
    priority: int = DEFAULT_PRIORITY


def names_in(node: Expr) -> set[str]:
    """The field, feature and probability names ``node`` reads."""
    found: set[str] = set()
    stack: list[object] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            found.add(n.name)
        elif isinstance(n, Num | Str):
            continue
        else:
            stack.extend(getattr(n, f) for f in ("operand", "left", "right") if hasattr(n, f))
    return found


def lists_in(node: Expr) -> set[str]:
    """The lists ``node`` looks up."""
    found: set[str] = set()
    stack: list[object] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, InList | StartsWithList):
            found.add(n.list_name)
        if not isinstance(n, Num | Str | Name):
            stack.extend(getattr(n, f) for f in ("operand", "left", "right") if hasattr(n, f))
    return found


# ---------------------------------------------------------------------------- errors


class RuleSyntaxError(ValueError):
    """A refused rule: where (line, column, offset), what was expected, what came."""

    def __init__(self, source: str, offset: int, expected: str, got: str) -> None:
        self.offset = offset
        self.line = source.count("\n", 0, offset) + 1
        self.column = offset - (source.rfind("\n", 0, offset) + 1) + 1
        self.expected = expected
        start = max(0, offset - EXCERPT_CHARS // 2)
        excerpt = source[start : start + EXCERPT_CHARS].replace("\n", " ")
        excerpt = (
            ("..." if start else "")
            + excerpt
            + ("..." if start + EXCERPT_CHARS < len(source) else "")
        )
        super().__init__(
            f"line {self.line}, column {self.column}: expected {expected[:160]}, got "
            f"{got[:60]} near {_quote(excerpt)}"
        )


def _quote(text: str) -> str:
    return '"' + "".join(c if c.isprintable() else "?" for c in text).replace('"', "'") + '"'


# ---------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # number, string, name, keyword, list, op, end
    text: str
    offset: int
    value: object = None


_TOKEN = re.compile(
    r"""(?P<space>[ \t\r\n]+)
      | (?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<list>@[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|,)
      | (?P<quote>["'])
    """,
    re.VERBOSE,
)


def describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the rule"
    if token.kind == "string":
        return "a string"
    return f"`{token.text[:30]}`"


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(source):
        m = _TOKEN.match(source, at)
        if m is None:
            char = source[at]
            shown = char if char.isprintable() else f"U+{ord(char):04X}"
            raise RuleSyntaxError(
                source, at, "a name, a number, a string or an operator", f"`{shown}`"
            )
        kind = m.lastgroup or ""
        if kind == "quote":
            token = _string(source, at)
            tokens.append(token)
            at = token.offset + len(token.text)
            continue
        text = m.group()
        if kind == "number":
            value = float(text)
            if not math.isfinite(value) or value > MAX_NUMBER:
                raise RuleSyntaxError(
                    source, at, f"a number of at most {MAX_NUMBER:.0e}", f"`{text[:30]}`"
                )
            tokens.append(Token("number", text, at, value))
        elif kind == "name":
            if len(text) > 64:
                raise RuleSyntaxError(
                    source, at, "a name of at most 64 characters", f"`{text[:30]}...`"
                )
            tokens.append(Token("keyword" if text in KEYWORDS else "name", text, at))
        elif kind == "list":
            if len(text) > 65:
                raise RuleSyntaxError(
                    source, at, "a list name of at most 64 characters", f"`{text[:30]}...`"
                )
            tokens.append(Token("list", text, at, text[1:]))
        elif kind == "op":
            tokens.append(Token("op", text, at))
        at = m.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


def _string(source: str, start: int) -> Token:
    quote = source[start]
    chars: list[str] = []
    at = start + 1
    while True:
        if at >= len(source):
            raise RuleSyntaxError(
                source, start, f"a closing {quote} for the string", "the end of the rule"
            )
        c = source[at]
        if c == quote:
            break
        if c == "\\":
            nxt = source[at + 1] if at + 1 < len(source) else ""
            if nxt not in ('"', "'", "\\"):
                raise RuleSyntaxError(source, at, "\\\\, \\\" or \\' in a string", f"`\\{nxt}`")
            chars.append(nxt)
            at += 2
            continue
        if not c.isprintable():
            raise RuleSyntaxError(source, at, "printable characters in a string", f"U+{ord(c):04X}")
        chars.append(c)
        at += 1
        if len(chars) > MAX_STRING_CHARS:
            raise RuleSyntaxError(
                source, start, f"a string of at most {MAX_STRING_CHARS} characters", "a longer one"
            )
    return Token("string", source[start : at + 1], start, "".join(chars))


# ---------------------------------------------------------------------------- the parser


@dataclass(frozen=True, slots=True)
class _Typed:
    node: Expr
    type: Type
    depth: int
    offset: int


def parse(source: str, lists: Mapping[str, str] | None = None, *, stored: bool = False) -> Rule:
    """The rule ``source`` as a typed AST; ``lists``: every list a rule may name -> its kind.
    ``stored``: a rule read back from storage (the flow's loader, a rollback), which skips the
    check that only guards new text (a literal its field can never hold), so a rule stored
    before that check still loads.

    Raises :class:`RuleSyntaxError` for anything else.
    """
    if not isinstance(source, str):
        raise TypeError(f"a rule is text; got {type(source).__name__}")
    if len(source) > MAX_RULE_CHARS:
        raise RuleSyntaxError(
            source,
            MAX_RULE_CHARS,
            f"a rule of at most {MAX_RULE_CHARS} characters",
            f"{len(source)} characters",
        )
    rule = _Parser(source, tokenize(source), lists or {}, literals=not stored).rule()
    # What is stored and loaded is the canonical text: it must parse again. It can be longer
    # than what was typed (1e15 is 1000000000000000; a quote in a string is escaped; the
    # priority is always written), so its length is what the limit bounds.
    canonical = len(to_text(rule))
    if canonical > MAX_RULE_CHARS:
        raise RuleSyntaxError(
            source,
            len(source),
            f"a rule of at most {MAX_RULE_CHARS} characters as stored (its canonical text: "
            "numbers written out in full, `priority` included)",
            f"{canonical} characters",
        )
    return rule


def parse_condition(source: str, lists: Mapping[str, str] | None = None) -> Expr:
    """Just a condition (what follows ``if``), for tools that ask for one."""
    parser = _Parser(source, tokenize(source), lists or {})
    typed = parser.condition()
    parser.need_bool(typed, "a condition")
    parser.expect_end()
    return typed.node


class _Parser:
    def __init__(
        self,
        source: str,
        tokens: list[Token],
        lists: Mapping[str, str],
        *,
        literals: bool = True,
    ) -> None:
        self.source = source
        self.tokens = tokens
        self.at = 0
        self.lists = lists
        self.literals = literals  # refuse a literal its field can never hold
        self.nest = 0  # open parentheses, `not`s and unary minuses around the current token

    # -- helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def fail(self, expected: str, token: Token | None = None) -> RuleSyntaxError:
        token = token or self.token
        return RuleSyntaxError(self.source, token.offset, expected, describe(token))

    def is_(self, kind: str, text: str | None = None) -> bool:
        t = self.token
        return t.kind == kind and (text is None or t.text == text)

    def take(self, kind: str, text: str | None = None, expected: str = "") -> Token:
        if not self.is_(kind, text):
            raise self.fail(expected or (f"`{text}`" if text else kind))
        token = self.token
        self.at += 1
        return token

    def expect_end(self) -> None:
        if not self.is_("end"):
            raise self.fail("`and`, `or`, `priority` or the end of the rule")

    def deeper(self, depth: int, offset: int) -> int:
        if depth > MAX_DEPTH:
            raise RuleSyntaxError(
                self.source,
                offset,
                f"at most {MAX_DEPTH} levels of nesting",
                "more (split the rule)",
            )
        return depth

    def need_bool(self, typed: _Typed, what: str) -> None:
        if typed.type != BOOL:
            raise RuleSyntaxError(self.source, typed.offset, what, f"a {typed.type}")

    def need_number(self, typed: _Typed, what: str) -> None:
        if typed.type != NUMBER:
            raise RuleSyntaxError(self.source, typed.offset, what, f"a {typed.type}")

    # -- rule
    def rule(self) -> Rule:
        action = self.token
        if not (action.kind == "keyword" and action.text in ACTIONS):
            raise self.fail("an action: `decline`, `review` or `allow`")
        self.at += 1
        self.take("keyword", "if", "`if` after the action")
        condition = self.condition()
        self.need_bool(condition, "a condition (a comparison, a test or their combination)")
        priority = DEFAULT_PRIORITY
        if self.is_("keyword", "priority"):
            self.at += 1
            token = self.take("number", expected=f"a whole number from 0 to {MAX_PRIORITY}")
            if not re.fullmatch(r"[0-9]{1,7}", token.text) or int(token.text) > MAX_PRIORITY:
                raise self.fail(f"a whole number from 0 to {MAX_PRIORITY}", token)
            priority = int(token.text)
        self.expect_end()
        return Rule(action.text, condition.node, priority)  # type: ignore[arg-type]

    # -- conditions
    def condition(self) -> _Typed:
        left = self.conjunction()
        while self.is_("keyword", "or"):
            op = self.take("keyword")
            right = self.conjunction()
            left = self.boolop("or", left, right, op)
        return left

    def conjunction(self) -> _Typed:
        left = self.negation()
        while self.is_("keyword", "and"):
            op = self.take("keyword")
            right = self.negation()
            left = self.boolop("and", left, right, op)
        return left

    def boolop(self, op: str, left: _Typed, right: _Typed, token: Token) -> _Typed:
        self.need_bool(left, f"a condition before `{op}`")
        self.need_bool(right, f"a condition after `{op}`")
        depth = self.deeper(max(left.depth, right.depth) + 1, token.offset)
        return _Typed(BoolOp(op, left.node, right.node), BOOL, depth, left.offset)  # type: ignore[arg-type]

    def enter(self, token: Token) -> None:
        self.nest += 1
        self.deeper(self.nest, token.offset)

    def negation(self) -> _Typed:
        if self.is_("keyword", "not"):
            token = self.take("keyword")
            self.enter(token)
            inner = self.negation()
            self.nest -= 1
            self.need_bool(inner, "a condition after `not`")
            d = self.deeper(inner.depth + 1, token.offset)
            return _Typed(Not(inner.node), BOOL, d, token.offset)
        return self.test()

    def test(self) -> _Typed:
        left = self.sum()
        t = self.token
        if t.kind == "op" and t.text in ("==", "!=", "<", "<=", ">", ">="):
            self.at += 1
            right = self.sum()
            typed = self.compare(t, left, right)
        elif self.is_("keyword", "in") or (
            self.is_("keyword", "not")
            and self.tokens[self.at + 1].kind == "keyword"
            and self.tokens[self.at + 1].text == "in"
        ):
            negated = self.is_("keyword", "not")
            self.at += 2 if negated else 1
            typed = self.membership(left, t)
            if negated:
                typed = _Typed(
                    Not(typed.node), BOOL, self.deeper(typed.depth + 1, t.offset), typed.offset
                )
        elif self.is_("keyword", "starts"):
            self.at += 1
            self.take("keyword", "with", "`with` after `starts`")
            typed = self.prefix(left, t)
        elif self.is_("keyword", "is"):
            self.at += 1
            negated = self.is_("keyword", "not")
            if negated:
                self.at += 1
            self.take(
                "keyword", "missing", "`missing` after `is`" + ("" if negated else " or `is not`")
            )
            if left.type == BOOL:
                raise RuleSyntaxError(
                    self.source,
                    left.offset,
                    "a number or a string before `is missing`",
                    "a condition",
                )
            d = self.deeper(left.depth + 1, t.offset)
            typed = _Typed(IsMissing(left.node), BOOL, d, left.offset)
            if negated:
                typed = _Typed(Not(typed.node), BOOL, self.deeper(d + 1, t.offset), left.offset)
        else:
            return left
        nxt = self.token
        if (nxt.kind == "op" and nxt.text in ("==", "!=", "<", "<=", ">", ">=")) or (
            nxt.kind == "keyword" and nxt.text in ("in", "starts", "is")
        ):
            raise self.fail(
                "`and`, `or` or the end: comparisons do not chain (write `a < b and b < c`)"
            )
        return typed

    def compare(self, op: Token, left: _Typed, right: _Typed) -> _Typed:
        if left.type == BOOL or right.type == BOOL:
            bad = left if left.type == BOOL else right
            raise RuleSyntaxError(
                self.source,
                bad.offset,
                f"a number or a string on each side of `{op.text}`",
                "a condition (use `and`/`or`, or parentheses)",
            )
        if op.text in ("<", "<=", ">", ">="):
            for side in (left, right):
                if side.type != NUMBER:
                    raise RuleSyntaxError(
                        self.source,
                        side.offset,
                        f"numbers on each side of `{op.text}` "
                        "(strings compare with == and != only)",
                        f"a {side.type}",
                    )
        elif left.type != right.type:
            raise RuleSyntaxError(
                self.source,
                right.offset,
                f"a {left.type} to compare with {self.shown(left)}",
                f"a {right.type}",
            )
        self.possible(left, right)
        self.possible(right, left)
        d = self.deeper(max(left.depth, right.depth) + 1, op.offset)
        return _Typed(Compare(op.text, left.node, right.node), BOOL, d, left.offset)  # type: ignore[arg-type]

    def possible(self, field: _Typed, literal: _Typed | Token, *, prefix: bool = False) -> None:
        """Refuse a string literal the field compared with can never hold (it never matches:
        ``country == "fr"``, ``channel == "web"``); ``prefix``: after ``starts with``."""
        if not self.literals or not isinstance(field.node, Name) or field.node.name not in DOMAINS:
            return
        if isinstance(literal, Token):
            value, offset = str(literal.value), literal.offset
        elif isinstance(literal.node, Str):
            value, offset = literal.node.value, literal.offset
        else:
            return
        domain = DOMAINS[field.node.name]
        if not (domain.starts if prefix else domain.holds)(value):
            raise RuleSyntaxError(
                self.source,
                offset,
                f"{'the start of ' if prefix else ''}{domain.what}, a value "
                f"`{field.node.name}` can hold (any other never matches)",
                _quote(value[:30] + ("..." if len(value) > 30 else "")),
            )

    def shown(self, typed: _Typed) -> str:
        if isinstance(typed.node, Name):
            return f"`{typed.node.name}` (a {typed.type})"
        return f"the {typed.type} on the left"

    def membership(self, left: _Typed, at: Token) -> _Typed:
        if self.is_("list"):
            token = self.take("list")
            name = str(token.value)
            kind = self.known_list(token)
            if kind in PREFIX_KINDS:
                raise RuleSyntaxError(
                    self.source,
                    token.offset,
                    f"`card_id starts with @{name}` (@{name} holds BIN prefixes)",
                    "`in`",
                )
            self.list_operand(left, kind, name, "in")
            return _Typed(
                InList(left.node, name), BOOL, self.deeper(left.depth + 1, at.offset), left.offset
            )
        if left.type == BOOL:
            raise RuleSyntaxError(
                self.source, left.offset, "a number or a string before `in`", "a condition"
            )
        open_ = self.take("op", "(", "a list (`@name`) or `(` and values after `in`")
        values: list[Num | Str] = []
        while True:
            t = self.token
            if t.kind == "number" and left.type == NUMBER:
                values.append(Num(float(t.value)))  # type: ignore[arg-type]
            elif t.kind == "string" and left.type == STRING:
                self.possible(left, t)
                values.append(Str(str(t.value)))
            else:
                raise self.fail(
                    f"a {left.type} (the values of `in (...)` are "
                    f"{left.type}s like {self.shown(left)})"
                )
            self.at += 1
            if len(values) > MAX_VALUES:
                raise self.fail(f"at most {MAX_VALUES} values in `in (...)`; use a list")
            if self.is_("op", ","):
                self.at += 1
                continue
            self.take("op", ")", "`,` or `)`")
            break
        d = self.deeper(left.depth + 1, open_.offset)
        return _Typed(InValues(left.node, tuple(values)), BOOL, d, left.offset)  # type: ignore[arg-type]

    def prefix(self, left: _Typed, at: Token) -> _Typed:
        if self.is_("list"):
            token = self.take("list")
            name = str(token.value)
            kind = self.known_list(token)
            if kind not in PREFIX_KINDS:
                raise RuleSyntaxError(
                    self.source,
                    token.offset,
                    f"a BIN-prefix list after `starts with` (@{name} is a {kind} list: use `in`)",
                    f"`@{name}`",
                )
            self.list_operand(left, kind, name, "starts with")
            return _Typed(
                StartsWithList(left.node, name),
                BOOL,
                self.deeper(left.depth + 1, at.offset),
                left.offset,
            )
        token = self.take(
            "string", expected="a string or a BIN-prefix list (`@name`) after `starts with`"
        )
        if left.type != STRING:
            raise RuleSyntaxError(
                self.source, left.offset, "a string before `starts with`", f"a {left.type}"
            )
        self.possible(left, token, prefix=True)
        return _Typed(
            StartsWith(left.node, str(token.value)),
            BOOL,
            self.deeper(left.depth + 1, at.offset),
            left.offset,
        )

    def known_list(self, token: Token) -> str:
        name = str(token.value)
        kind = self.lists.get(name)
        if kind is None:
            known = ", ".join(f"@{n}" for n in sorted(self.lists)[:8]) or "none"
            more = "" if len(self.lists) <= 8 else f" and {len(self.lists) - 8} more"
            raise RuleSyntaxError(
                self.source, token.offset, f"a known list ({known}{more})", f"`@{name[:40]}`"
            )
        return kind

    def list_operand(self, left: _Typed, kind: str, name: str, how: str) -> None:
        field = LIST_FIELDS[kind]
        if not (isinstance(left.node, Name) and left.node.name == field):
            raise RuleSyntaxError(
                self.source,
                left.offset,
                f"`{field}` before `{how} @{name}` (a {kind} list)",
                f"a {left.type}" if not isinstance(left.node, Name) else f"`{left.node.name}`",
            )

    # -- arithmetic
    def sum(self) -> _Typed:
        left = self.product()
        while self.is_("op", "+") or self.is_("op", "-"):
            op = self.take("op")
            right = self.product()
            left = self.arith(op, left, right)
        return left

    def product(self) -> _Typed:
        left = self.unary()
        while self.is_("op", "*") or self.is_("op", "/"):
            op = self.take("op")
            right = self.unary()
            left = self.arith(op, left, right)
        return left

    def arith(self, op: Token, left: _Typed, right: _Typed) -> _Typed:
        self.need_number(left, f"a number before `{op.text}`")
        self.need_number(right, f"a number after `{op.text}`")
        d = self.deeper(max(left.depth, right.depth) + 1, op.offset)
        return _Typed(Arith(op.text, left.node, right.node), NUMBER, d, left.offset)  # type: ignore[arg-type]

    def unary(self) -> _Typed:
        if self.is_("op", "-"):
            token = self.take("op")
            self.enter(token)
            inner = self.unary()
            self.nest -= 1
            self.need_number(inner, "a number after `-`")
            return _Typed(
                Neg(inner.node), NUMBER, self.deeper(inner.depth + 1, token.offset), token.offset
            )
        return self.atom()

    def atom(self) -> _Typed:
        t = self.token
        if t.kind == "number":
            self.at += 1
            return _Typed(Num(float(t.value)), NUMBER, 1, t.offset)  # type: ignore[arg-type]
        if t.kind == "string":
            self.at += 1
            return _Typed(Str(str(t.value)), STRING, 1, t.offset)
        if t.kind == "name":
            kind = TYPES.get(t.text)
            if kind is None:
                raise self.fail(
                    "a field, a feature or fraud_probability (see the README's rule names)"
                )
            self.at += 1
            return _Typed(Name(t.text), kind, 1, t.offset)
        if t.kind == "op" and t.text == "(":
            self.at += 1
            self.enter(t)
            inner = self.condition()
            self.take("op", ")", "`)`")
            self.nest -= 1
            return _Typed(inner.node, inner.type, inner.depth, t.offset)
        if t.kind == "list":
            raise self.fail("a value; a list comes after `in` or `starts with`")
        raise self.fail("a number, a string, a name or `(`")


# ---------------------------------------------------------------------------- the printer

_PREC = {
    "or": 1,
    "and": 2,
    "not": 3,
    "test": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "neg": 7,
    "atom": 8,
}


def _prec(node: Expr) -> int:
    if isinstance(node, BoolOp):
        return _PREC[node.op]
    if isinstance(node, Not):
        return (
            _PREC["test"]
            if isinstance(node.operand, InList | InValues | IsMissing)
            else _PREC["not"]
        )
    if isinstance(node, Compare | InList | InValues | StartsWith | StartsWithList | IsMissing):
        return _PREC["test"]
    if isinstance(node, Arith):
        return _PREC[node.op]
    if isinstance(node, Neg):
        return _PREC["neg"]
    return _PREC["atom"]


def number_text(value: float) -> str:
    """The canonical text of a number literal (parses back to the same float)."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def string_text(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrap(node: Expr, at_least: int) -> str:
    text = expr_text(node)
    return f"({text})" if _prec(node) < at_least else text


def expr_text(node: Expr) -> str:
    """The canonical text of an expression: single spaces, double quotes, minimal parentheses."""
    if isinstance(node, Num):
        return number_text(node.value)
    if isinstance(node, Str):
        return string_text(node.value)
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Neg):
        return "-" + _wrap(node.operand, _PREC["neg"])
    if isinstance(node, Arith | BoolOp):
        p = _prec(node)
        return f"{_wrap(node.left, p)} {node.op} {_wrap(node.right, p + 1)}"
    if isinstance(node, Compare):
        return f"{_wrap(node.left, 5)} {node.op} {_wrap(node.right, 5)}"
    if isinstance(node, InList):
        return f"{_wrap(node.operand, 5)} in @{node.list_name}"
    if isinstance(node, InValues):
        return f"{_wrap(node.operand, 5)} in ({', '.join(expr_text(v) for v in node.values)})"
    if isinstance(node, StartsWith):
        return f"{_wrap(node.operand, 5)} starts with {string_text(node.prefix)}"
    if isinstance(node, StartsWithList):
        return f"{_wrap(node.operand, 5)} starts with @{node.list_name}"
    if isinstance(node, IsMissing):
        return f"{_wrap(node.operand, 5)} is missing"
    if isinstance(node, Not):
        inner = node.operand
        if isinstance(inner, InList):
            return f"{_wrap(inner.operand, 5)} not in @{inner.list_name}"
        if isinstance(inner, InValues):
            values = ", ".join(expr_text(v) for v in inner.values)
            return f"{_wrap(inner.operand, 5)} not in ({values})"
        if isinstance(inner, IsMissing):
            return f"{_wrap(inner.operand, 5)} is not missing"
        return "not " + _wrap(inner, _PREC["not"])
    raise TypeError(f"not a rule expression: {type(node).__name__}")


def to_text(rule: Rule) -> str:
    """The canonical text of ``rule``: ``parse(to_text(r)) == r`` for every rule ``parse`` makes."""
    return f"{rule.action} if {expr_text(rule.condition)} priority {rule.priority}"
