"""The next retrain held while the live one awaits its rollback verdict.

With :mod:`model_state.offline.rollback` alone, a live retrain's watch needs a label delay and
100 frauds of its own payments (a week and a day at full scale with every payment labelled, 30
days and more with frauds only), and the next weekly retrain comes first and supersedes it: the
watch ends undecided and the retrain that may have cost a week is never judged (issue 22 item 1,
README "A retrain judged again on the payments it scored"). The rule here, fixed before any run
of it:

- a retrain **due** (on the weekly schedule) while the live retrain's watch has no verdict is
  **held**: not fitted, not gated, not promoted; further due times while it is held are the same
  held retrain (at most one waits);
- when the watch gets its verdict (kept, or rolled back to the champion it replaced), the held
  retrain is fitted and gated **at once**, from whichever model is live after the verdict, on the
  labels mature at that time; the weekly schedule keeps its times (the next due time is the
  first scheduled time after that);
- a watch that never gets a verdict (its payments never hold enough frauds with final labels)
  holds the next retrain to the end: no time limit, so that no parameter is added;
- so at most one watch is pending at a time, and a retrain never goes live while the live one's
  watch is pending (no watch is superseded).

Pure logic: a :class:`Hold` is the schedule's state; the evaluation
(``python -m model_state.evaluate --rollback --rollback-hold``) tells it what happens.

>>> h = Hold().went_live("v3")
>>> h, fit = h.due(7.0)
>>> fit, h.held_since
(False, 7.0)
>>> h.decided("v3")
(Hold(watching=None, held_since=None), True)
"""

from __future__ import annotations

import msgspec


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    """The retrain schedule's state: the live retrain whose watch has no verdict yet, and when
    the retrain held back for it was first due."""

    watching: str | None = None
    held_since: float | None = None  # POSIX seconds; None: no retrain held

    @property
    def pending(self) -> bool:
        """A watch on the live retrain has no verdict yet."""
        return self.watching is not None

    def due(self, now: float) -> tuple[Hold, bool]:
        """A retrain is due at ``now``: the state after, and whether to fit it now (False: held,
        while a watch is pending)."""
        if not self.pending:
            return self, True
        since = now if self.held_since is None else self.held_since
        return msgspec.structs.replace(self, held_since=since), False

    def went_live(self, retrained: str) -> Hold:
        """An accepted retrain went live and is watched. A retrain never goes live while the
        live one's watch is pending (that one would be superseded undecided)."""
        if self.pending:
            raise ValueError(
                f"retrain hold: {retrained} went live while the watch on {self.watching} had "
                f"no verdict; expected no retrain promoted before that verdict"
            )
        return Hold(watching=retrained)

    def decided(self, retrained: str) -> tuple[Hold, bool]:
        """The watch on ``retrained`` got its verdict: the state after, and whether the held
        retrain is fitted now."""
        if retrained != self.watching:
            raise ValueError(
                f"retrain hold: a verdict on {retrained}, but the watch pending is on "
                f"{self.watching}; expected a verdict on the watched retrain only"
            )
        return Hold(), self.held_since is not None
