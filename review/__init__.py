"""The analyst review queue: a small server-rendered web application beside the flow.

Analysts sign in, go through the payments the model sent to review (and declines on request),
open one to see why it scored as it did, and give a verdict. A verdict becomes a fraud label on
the labels topic, which the flow claims and learns like any other (:mod:`storage.labels`), and a
row of ``review_verdicts``. Analysts also write the rules and lists the flow applies, backtest
them and watch their hits (:mod:`review.rules_pages`). ``python -m review`` serves it; ``python
-m review.users`` adds users. Nothing here connects at import time.
"""
