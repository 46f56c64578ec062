"""Rules and lists a fraud team writes itself (issue 21): pure logic apart from I/O.

- :mod:`rules.names`: the whitelist, every name a rule may use and its type;
- :mod:`rules.syntax`: the rule language, parsed into an AST with types checked, and printed back;
- :mod:`rules.compile`: an AST to a plain Python callable (closures, never ``eval``);
- :mod:`rules.reference`: a slow tree-walking interpreter the compiled forms are tested against;
- :mod:`rules.vector`: an AST evaluated over columns at once (NumPy), for the backtest;
- :mod:`rules.lists`: named lists, their in-process form, CSV import;
- :mod:`rules.decisions`: the precedence of rules over the model, as one pure function;
- :mod:`rules.ruleset`: a whole ruleset compiled for the flow (per payment, indexed);
- I/O: :mod:`rules.store` (MySQL), :mod:`rules.loader` (the flow's poller),
  :mod:`rules.backtest`, and the command ``python -m rules``.
"""
