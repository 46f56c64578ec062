"""The options of ``python -m bytewax.run`` as Bytewax itself reads them from the command line.

Several start checks need one of them (the process id, the workers, the addresses, the epoch
interval, the recovery directory) before Bytewax runs. Each used to parse the command line with
a parser of its own that knew only its option, some refusing abbreviations that Bytewax takes
(``--process 1`` is ``--process-id 1`` to Bytewax, and was process 0 to those checks). This
parser knows every option of ``bytewax.run`` 0.21.1 (``bytewax/run.py``, ``_create_arg_parser``
and ``_parse_args``) with Bytewax's abbreviation rules, so an abbreviation means here what it
means to Bytewax. Values stay text: each caller converts and reports its own option's mistakes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

# (short, long) of every option of ``python -m bytewax.run``.
OPTIONS = (
    ("-r", "--recovery-directory"),
    ("-s", "--snapshot-interval"),
    ("-b", "--backup-interval"),
    ("-w", "--workers-per-process"),
    ("-i", "--process-id"),
    ("-a", "--addresses"),
)


def bytewax_options(argv: Sequence[str]) -> argparse.Namespace:
    """The options given to ``python -m bytewax.run`` in ``argv`` (``sys.argv``: the first item
    is the program), as text, None where not given; abbreviated long options as Bytewax reads
    them.

    >>> bytewax_options(["run.py", "flow", "--process", "1", "--workers=2"]).process_id
    '1'
    """
    parser = argparse.ArgumentParser(add_help=False)  # abbreviations allowed, as Bytewax's
    for short, long in OPTIONS:
        parser.add_argument(short, long)
    known, _ = parser.parse_known_args(list(argv[1:]))
    return known
