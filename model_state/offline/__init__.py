"""What runs offline: training, retraining, evaluation, a bank's history, the handbook's
reference models. The flow (``dataflows/``) imports none of it; ``model_state/`` beside it holds
what the flow runs: artifacts and their signatures, the scorer, the online learner, the frozen
expansions it learns on. ``tests/test_layout.py`` checks the split."""
