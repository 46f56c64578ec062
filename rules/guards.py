"""Which rules of a ruleset fire for a payment, at a cost of a few C-level calls for most payments:
the **guards**.

Each rule's condition is split into its top-level ``and`` terms and one of them becomes the
rule's guard, a necessary condition tested for all rules at once (:func:`choose_guard`):

- ``field in @list``, ``card_id starts with @list`` (preferred): per field (per prefix length),
  one byte of a bitmap of the hashes of every list on it;
- ``name > 100`` (``>=``, ``<``, ``<=``; on floats ``v >= c`` is ``v > c'`` with ``c'`` the
  float just below ``c``): per name, only the smallest threshold (the largest for ``<``) is
  compared, and a bisection finds the rules when one holds;
- ``name == "text"``, ``name == 3``, ``name in (...)``: one dict per name.

**What a payment costs.** The values are read once per source, in one C-level call each: every
feature a threshold names (``operator.itemgetter`` over the feature dict), the payment's fields
(``attrgetter``), the probability as it is. Each group is then tested in one C-level ``map``:
``any(map(gt, values, bounds))`` for the thresholds (a name with only ``<`` guards is compared
with +inf there, never true), ``any(map(contains, tables, values))`` for the equalities, and for
the lists ``any(map(getitem, bitmaps, map(and_, map(hash, values), masks)))``: a bitmap holds a
byte per slot of ``hash & mask`` (16 slots per entry, so a value on no list passes it with
probability at most 1/16), and only a value that passes it is looked up in each list's set of
hashes. Only a rule whose guard holds is then evaluated whole (its compiled closure,
:mod:`rules.compile`), which also applies the missing-value semantics (a NaN or infinite value
may pass a guard; the rule's own term then says no) and the lists' expiries. A rule with no such
term (a top-level ``or``, a ``not``, ``latitude > x``) is evaluated whole for every payment.

Flags, the hour, the channel and the currency are poor guards (true for many payments): one is
used only when a rule has no other term. So is the model's probability, which is above a
rule's threshold for many more payments than an amount or a count is above its.

**What a batch costs** (:meth:`Guards.candidates`, for ``Ruleset.decide_batch``): the same
guards tested in NumPy over the whole batch. Per source, one C-level read a payment into one
matrix (the features' values, the fields' values, the fields' hashes); every name's smallest
threshold compared at once over the matrix, then, only for the names some payment passes (in a
small batch, a few of the many), a ``searchsorted`` of the payments that pass; per list field, its
bitmap indexed by the column of hashes. Only the payments with a rule whose guard holds are then
visited, one by one, and only those rules evaluated whole. Values are compared as floats, exact
for integers below 2**53 (an amount is at most 10**12); a payment with a larger number has every
rule evaluated whole.

A feature absent from the dict or a value of the wrong type (``KeyError``, ``TypeError``;
``ValueError`` from NumPy) makes the caller go payment by payment, and for that payment evaluate
every rule whole (:meth:`rules.ruleset.Ruleset.fired`). The indexed
evaluation is property-tested against every rule evaluated whole and against the reference
interpreter (``tests/test_rules_eval.py``).
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from itertools import chain, repeat
from operator import and_, contains, getitem, gt, lt
from typing import Any, Final

import numpy as np

from rules.compile import CompiledRule
from rules.decisions import Fired
from rules.hashes import SortedHashes
from rules.lists import ListIndex
from rules.names import CONTRACT_FIELDS, NUMBER, OPTIONAL, PROBABILITY, TYPES
from rules.syntax import BoolOp, Compare, Expr, InList, InValues, Name, Num, StartsWithList, Str

FiredOf = Callable[[Any, Mapping[str, float], float], list[Fired]]
_FLIP: Final = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}
SLOTS_PER_ENTRY: Final = 16  # a list's bitmap: a value on no list passes with p <= 1/16
MIN_SLOTS: Final = 1 << 12

# Names with a few common values (flags, the hour, the channel, the currency), and the model's
# probability: a term on them holds for many payments, so it is a guard only when a rule has no
# other.
POOR_GUARDS: Final = frozenset(
    {"is_night", "is_weekend", "hour_of_day", "card_merchant_new_30d", "card_country_unusual",
     "channel", "currency", PROBABILITY}
)  # fmt: skip


def conjuncts(node: Expr) -> list[Expr]:
    if isinstance(node, BoolOp) and node.op == "and":
        return [*conjuncts(node.left), *conjuncts(node.right)]
    return [node]


def choose_guard(term: Expr) -> tuple[int, tuple[Any, ...]] | None:
    """(preference, key) if ``term`` can be a guard; lower preference is better: a list, then
    an upper threshold (large amounts, high counts are rare), a lower one, a string equality or
    set, a number equality; any of them on a name of :data:`POOR_GUARDS` last."""
    found: tuple[int, tuple[Any, ...]] | None = None
    if isinstance(term, InList | StartsWithList) and isinstance(term.operand, Name):
        found = 0, ("list", term.operand.name, term.list_name)
    elif isinstance(term, InValues) and isinstance(term.operand, Name):
        rank = 3 if TYPES[term.operand.name] != NUMBER else 4
        found = rank, ("eq", term.operand.name, tuple(v.value for v in term.values))
    elif isinstance(term, Compare):
        left, right, op = term.left, term.right, term.op
        if isinstance(left, Num | Str) and isinstance(right, Name):
            left, right, op = right, left, _FLIP.get(op, op)
        if isinstance(left, Name) and isinstance(right, Num | Str):
            if op == "==":
                rank = 3 if isinstance(right, Str) else 4
                found = rank, ("eq", left.name, (right.value,))
            elif op != "!=" and TYPES[left.name] == NUMBER:
                rank = 1 if op in (">", ">=") else 2
                found = rank, ("cmp", left.name, op, float(right.value))  # type: ignore[arg-type]
    if found is not None and found[1][1] in POOR_GUARDS:
        return found[0] + 10, found[1]
    return found


def guard_of(rule: CompiledRule) -> tuple[Any, ...] | None:
    """The key of ``rule``'s guard (its best term), or None: evaluate it whole every time."""
    terms = conjuncts(rule.rule.condition)
    best = min(
        ((g[0], i, g[1]) for i, t in enumerate(terms) if (g := choose_guard(t)) is not None),
        default=None,
    )
    if best is None:
        return None
    key = best[2]
    if key[1] in OPTIONAL and key[0] == "cmp":
        return None  # latitude > x: the value may be None, which no C-level test takes
    if key[1] == PROBABILITY and key[0] == "eq":
        return None  # the probability is no attribute nor key: one rare case fewer
    return key


def _tuple_getter(keys: Sequence[str], how: Callable[..., Any]) -> Callable[[Any], tuple[Any, ...]]:
    """A C-level getter of ``keys`` (``operator.itemgetter`` or ``attrgetter``), always a tuple."""
    if not keys:
        return lambda x: ()
    if len(keys) == 1:
        one = how(keys[0])
        return lambda x: (one(x),)
    return how(*keys)


Group = tuple[list[float], list[CompiledRule]]  # thresholds sorted, and their rules


class Thresholds:
    """The threshold guards on the names of one source, read in one call: the names with ``<``
    guards first, then those with ``>`` guards (a name with both is read twice)."""

    def __init__(
        self,
        below: dict[str, list[tuple[float, CompiledRule]]],
        above: dict[str, list[tuple[float, CompiledRule]]],
    ) -> None:
        self.names = [*sorted(below), *sorted(above)]
        self.below = [_group(below[n]) for n in sorted(below)]
        self.above = [_group(above[n]) for n in sorted(above)]
        self.low = tuple(keys[-1] for keys, _ in self.below)
        self.high = (math.inf,) * len(self.below) + tuple(keys[0] for keys, _ in self.above)
        # the batch's form: a bound for every name read (-inf, +inf: never passes)
        self.low_all = np.array(self.low + (-math.inf,) * len(self.above), dtype=float)
        self.high_all = np.array(self.high, dtype=float)

    def hits(self, values: Sequence[float]) -> list[CompiledRule]:
        """The rules whose guard holds for ``values`` (read in :attr:`names` order)."""
        out: list[CompiledRule] = []
        for v, bound, (keys, rules) in zip(values, self.low, self.below, strict=False):
            if v < bound:
                out += rules[bisect_right(keys, v) :]
        n = len(self.below)
        for v, bound, (keys, rules) in zip(values[n:], self.high[n:], self.above, strict=True):
            if v > bound:
                out += rules[: bisect_left(keys, v)]
        return out


def _group(found: list[tuple[float, CompiledRule]]) -> Group:
    ordered = sorted(found, key=lambda cr: cr[0])
    return [c for c, _ in ordered], [r for _, r in ordered]


def _slots(hashes: Collection[int]) -> np.ndarray:
    if isinstance(hashes, SortedHashes):
        return hashes.array()
    return np.fromiter(hashes, np.int64, len(hashes))


def bitmap(sets: Sequence[Collection[int]]) -> tuple[bytearray, int]:
    """A byte per slot ``hash & mask``, 1 where a hash of one of ``sets`` falls: at least
    :data:`SLOTS_PER_ENTRY` slots per hash (a power of two), and the mask."""
    wanted = max(MIN_SLOTS, SLOTS_PER_ENTRY * sum(len(s) for s in sets))
    size = 1 << (wanted - 1).bit_length()
    mask = size - 1
    flags = bytearray(size)
    view = np.frombuffer(flags, np.uint8)
    for hashes in sets:
        view[_slots(hashes) & mask] = 1
    return flags, mask


class ListGuards:
    """The list guards on a payment's fields (exact lists) or on ``card_id``'s prefixes (prefix
    lists): per field or prefix length, a bitmap of every list's hashes and the lists."""

    def __init__(
        self, entries: dict[Any, list[tuple[Collection[int], list[CompiledRule]]]]
    ) -> None:
        self.keys = sorted(entries, key=str)
        self.lists = [entries[k] for k in self.keys]
        made = [bitmap([hashes for hashes, _ in entries[k]]) for k in self.keys]
        self.bitmaps = tuple(b for b, _ in made)
        self.arrays = tuple(np.frombuffer(b, np.uint8) for b in self.bitmaps)  # same memory
        self.masks = tuple(m for _, m in made)

    def hits(self, values: Sequence[Any]) -> list[CompiledRule]:
        """The rules whose list holds the value (``values`` in :attr:`keys` order)."""
        out: list[CompiledRule] = []
        for v, flags, mask, lists in zip(values, self.bitmaps, self.masks, self.lists, strict=True):
            h = hash(v)
            if flags[h & mask]:
                for hashes, rules in lists:
                    if h in hashes:
                        out += rules
        return out


class PrefixGuards:
    """``card_id starts with @list`` guards: per prefix length a bitmap of the hashes of every
    list's prefixes of that length; on a pass, each list is looked up as
    :meth:`ListIndex.contains` does (its lengths in order, the first hit)."""

    def __init__(self, by_list: list[tuple[ListIndex, list[CompiledRule]]]) -> None:
        lengths: dict[int, list[Collection[int]]] = {}
        for index, _ in by_list:
            for n, hashes in index.by_length:
                lengths.setdefault(n, []).append(hashes)
        self.lengths = sorted(lengths)
        self.slices = tuple(slice(0, n) for n in self.lengths)
        made = [bitmap(lengths[n]) for n in self.lengths]
        self.bitmaps = tuple(b for b, _ in made)
        self.arrays = tuple(np.frombuffer(b, np.uint8) for b in self.bitmaps)
        self.masks = tuple(m for _, m in made)
        self.by_list = [(index.by_length, rules) for index, rules in by_list]

    def hits(self, value: str) -> list[CompiledRule]:
        out: list[CompiledRule] = []
        for by_length, rules in self.by_list:
            for n, hashes in by_length:
                if n <= len(value) and hash(value[:n]) in hashes:
                    out += rules
                    break
        return out


class Guards:
    """Every rule's guard, grouped by source (see the module): :attr:`fired` for one payment,
    :meth:`flagged` for a batch at once."""

    def __init__(self, rules: Sequence[CompiledRule], lists: Mapping[str, ListIndex]) -> None:
        above: dict[str, dict[str, list[tuple[float, CompiledRule]]]] = {"f": {}, "p": {}, "q": {}}
        below: dict[str, dict[str, list[tuple[float, CompiledRule]]]] = {"f": {}, "p": {}, "q": {}}
        equal: dict[str, dict[str, dict[Any, list[CompiledRule]]]] = {"f": {}, "p": {}}
        exact: dict[str, dict[str, list[CompiledRule]]] = {}  # field -> list -> rules
        prefix: dict[str, list[CompiledRule]] = {}  # list -> rules
        self.whole: list[CompiledRule] = []
        for r in rules:
            key = guard_of(r)
            if key is None:
                self.whole.append(r)
                continue
            kind, name = key[0], key[1]
            source = "q" if name == PROBABILITY else "p" if name in CONTRACT_FIELDS else "f"
            if kind == "list":
                if lists[key[2]].by_length:
                    prefix.setdefault(key[2], []).append(r)
                else:
                    exact.setdefault(name, {}).setdefault(key[2], []).append(r)
            elif kind == "eq":
                table = equal[source].setdefault(name, {})
                for value in dict.fromkeys(key[2]):
                    table.setdefault(value, []).append(r)
            else:
                _, _, op, c = key
                if op in (">", ">="):
                    c = c if op == ">" else math.nextafter(c, -math.inf)
                    above[source].setdefault(name, []).append((c, r))
                else:
                    c = c if op == "<" else math.nextafter(c, math.inf)
                    below[source].setdefault(name, []).append((c, r))
        self.on_features = Thresholds(below["f"], above["f"])
        self.on_fields = Thresholds(below["p"], above["p"])
        self.on_q = Thresholds(below["q"], above["q"])
        self.f_equal = sorted(equal["f"])
        self.f_tables = tuple(equal["f"][n] for n in self.f_equal)
        self.p_equal = sorted(equal["p"])
        self.p_tables = tuple(equal["p"][n] for n in self.p_equal)
        self.on_lists = ListGuards(
            {
                field: [(lists[name].hashes, guarded) for name, guarded in sorted(by.items())]
                for field, by in exact.items()
            }
        )
        self.on_prefixes = PrefixGuards(
            [(lists[name], guarded) for name, guarded in sorted(prefix.items())]
        )
        # the batch's form of the equalities on fields: a bitmap of their values' hashes
        made = [bitmap([list(map(hash, table))]) for table in self.p_tables]
        self.p_equal_bitmaps = tuple(np.frombuffer(b, np.uint8) for b, _ in made)
        self.p_equal_masks = tuple(m for _, m in made)
        self.rules = tuple(rules)
        self._read_features = _tuple_getter(self.on_features.names, operator.itemgetter)
        self._read_fields = _tuple_getter(self.on_fields.names, operator.attrgetter)
        self._read_f_equal = _tuple_getter(self.f_equal, operator.itemgetter)
        self._hashed = sorted({*self.p_equal, *self.on_lists.keys})  # fields read to be hashed
        self._read_hashed = _tuple_getter(self._hashed, operator.attrgetter)
        self.fired: FiredOf = self._compile_fired()

    def _compile_fired(self) -> FiredOf:
        """``fired(payment, features, probability)``: the rules that fire, by their guards.
        Raises KeyError or TypeError for a feature absent or not a number."""
        on_features, on_fields, on_q = self.on_features, self.on_fields, self.on_q
        read_features = _tuple_getter(on_features.names, operator.itemgetter)
        f_low, f_high = on_features.low, on_features.high
        read_fields = _tuple_getter(on_fields.names, operator.attrgetter)
        p_low, p_high = on_fields.low, on_fields.high
        q_low = on_q.low[0] if on_q.below else -math.inf
        q_high = on_q.high[-1] if on_q.above else math.inf
        q_names = len(on_q.names)
        read_f_equal = _tuple_getter(self.f_equal, operator.itemgetter)
        f_tables = self.f_tables
        read_p_equal = _tuple_getter(self.p_equal, operator.attrgetter)
        p_tables = self.p_tables
        on_lists, on_prefixes = self.on_lists, self.on_prefixes
        read_list_fields = _tuple_getter(on_lists.keys, operator.attrgetter)
        bitmaps, masks = on_lists.bitmaps, on_lists.masks
        read_card = operator.attrgetter("card_id")
        slices, p_bitmaps, p_masks = on_prefixes.slices, on_prefixes.bitmaps, on_prefixes.masks
        whole = tuple(self.whole)

        def fired(p: Any, f: Mapping[str, float], q: float) -> list[Fired]:
            candidates: list[CompiledRule] = []
            if f_high:
                values = read_features(f)
                if any(map(lt, values, f_low)) or any(map(gt, values, f_high)):
                    candidates += on_features.hits(values)
            if p_high:
                values = read_fields(p)
                if any(map(lt, values, p_low)) or any(map(gt, values, p_high)):
                    candidates += on_fields.hits(values)
            if q < q_low or q > q_high:
                candidates += on_q.hits((q,) * q_names)
            if f_tables:
                values = read_f_equal(f)
                if any(map(contains, f_tables, values)):
                    for v, table in zip(values, f_tables, strict=True):
                        candidates += table.get(v, ())
            if p_tables:
                values = read_p_equal(p)
                if any(map(contains, p_tables, values)):
                    for v, table in zip(values, p_tables, strict=True):
                        candidates += table.get(v, ())
            if bitmaps:
                values = read_list_fields(p)
                if any(map(getitem, bitmaps, map(and_, map(hash, values), masks))):
                    candidates += on_lists.hits(values)
            if slices:
                card = read_card(p)
                cuts = map(getitem, (card,) * len(slices), slices)
                if any(map(getitem, p_bitmaps, map(and_, map(hash, cuts), p_masks))):
                    candidates += on_prefixes.hits(card)
            hits = [r.fired for r in candidates if r.condition(p, f, q)] if candidates else []
            for r in whole:
                if r.condition(p, f, q):
                    hits.append(r.fired)
            return hits

        return fired

    def candidates(
        self,
        payments: Sequence[Any],
        features: Sequence[Mapping[str, float]],
        probabilities: Sequence[float],
    ) -> dict[int, list[CompiledRule]]:
        """For a batch, in NumPy over the whole batch: the rules whose guard holds, for each
        payment (by position) that has any: the same rules :attr:`fired` evaluates for it, or
        more (every rule where a number is beyond 2**53, which floats may round). Raises
        KeyError, TypeError or ValueError where a value is absent or not a number."""
        n = len(payments)
        found: dict[int, list[CompiledRule]] = {}

        def add(rows: np.ndarray, rules_of: Callable[[int, int], list[CompiledRule]]) -> None:
            for k, i in enumerate(rows.tolist()):
                more = rules_of(k, i)
                if more:
                    found.setdefault(i, []).extend(more)

        inexact = np.zeros(n, dtype=bool)
        sources = (
            (self.on_features, features, self._read_features),
            (self.on_fields, payments, self._read_fields),
        )
        for on, rows, read in sources:
            if not on.names:
                continue
            values = _matrix(map(read, rows), n, len(on.names))
            inexact |= (np.abs(values) >= INEXACT).any(1)
            # Every name's bound at once; only the columns some payment passes are visited (in
            # a small batch, a few of the many names).
            passing = ((values < on.low_all) | (values > on.high_all)).any(0)
            first = len(on.below)
            for j in np.flatnonzero(passing).tolist():
                column = values[:, j]
                if j < first:
                    keys, rules = on.below[j]
                    hit = np.flatnonzero(column < on.low[j])
                    cuts = np.searchsorted(keys, column[hit], side="right").tolist()
                    add(hit, lambda k, i, rules=rules, cuts=cuts: rules[cuts[k] :])
                else:
                    keys, rules = on.above[j - first]
                    hit = np.flatnonzero(column > on.high[j])
                    cuts = np.searchsorted(keys, column[hit], side="left").tolist()
                    add(hit, lambda k, i, rules=rules, cuts=cuts: rules[: cuts[k]])
        if self.on_q.names:
            q = np.fromiter(probabilities, dtype=float, count=n)
            inexact |= np.abs(q) >= INEXACT
            for keys, rules in self.on_q.below:
                hit = np.flatnonzero(q < keys[-1])
                cuts = np.searchsorted(keys, q[hit], side="right").tolist()
                add(hit, lambda k, i, rules=rules, cuts=cuts: rules[cuts[k] :])
            for keys, rules in self.on_q.above:
                hit = np.flatnonzero(q > keys[0])
                cuts = np.searchsorted(keys, q[hit], side="left").tolist()
                add(hit, lambda k, i, rules=rules, cuts=cuts: rules[: cuts[k]])
        if self.f_equal:
            values = _matrix(map(self._read_f_equal, features), n, len(self.f_equal))
            for j, table in enumerate(self.f_tables):
                hit = np.flatnonzero(np.isin(values[:, j], np.fromiter(table, dtype=float)))
                add(hit, lambda k, i, j=j, table=table: table.get(features[i][self.f_equal[j]], []))
        if self._hashed:
            width = len(self._hashed)
            hashes = np.fromiter(
                map(hash, chain.from_iterable(map(self._read_hashed, payments))),
                dtype=np.int64,
                count=n * width,
            ).reshape(n, width)
            for j, (name, table) in enumerate(zip(self.p_equal, self.p_tables, strict=True)):
                column = hashes[:, self._hashed.index(name)]
                hit = np.flatnonzero(self.p_equal_bitmaps[j][column & self.p_equal_masks[j]])
                add(
                    hit,
                    lambda k, i, name=name, table=table: table.get(getattr(payments[i], name), []),
                )
            on = self.on_lists
            for j, lists in enumerate(on.lists):
                column = hashes[:, self._hashed.index(on.keys[j])]
                hit = np.flatnonzero(on.arrays[j][column & on.masks[j]])
                picked = column[hit].tolist()
                add(hit, lambda k, i, lists=lists, picked=picked: _listed(picked[k], lists))
        on_prefixes = self.on_prefixes
        if on_prefixes.lengths:
            cards = list(map(_CARD, payments))
            passed = np.zeros(n, dtype=bool)
            for cut, bits, mask in zip(
                on_prefixes.slices, on_prefixes.arrays, on_prefixes.masks, strict=True
            ):
                hashes = np.fromiter(map(hash, map(getitem, cards, repeat(cut))), np.int64, n)
                passed |= bits[hashes & mask].view(bool)
            add(np.flatnonzero(passed), lambda k, i: on_prefixes.hits(cards[i]))
        if self.whole:
            for i in range(n):
                found.setdefault(i, []).extend(self.whole)
        for i in np.flatnonzero(inexact).tolist():
            found[i] = list(self.rules)
        return found


def _listed(h: int, lists: list[tuple[Collection[int], list[CompiledRule]]]) -> list[CompiledRule]:
    out: list[CompiledRule] = []
    for hashes, rules in lists:
        if h in hashes:
            out += rules
    return out


_CARD: Final = operator.attrgetter("card_id")
INEXACT: Final = float(2**53)  # from here on, an integer may not be a float exactly


def _matrix(rows: Iterable[tuple[Any, ...]], n: int, k: int) -> np.ndarray:
    return np.fromiter(chain.from_iterable(rows), dtype=float, count=n * k).reshape(n, k)
