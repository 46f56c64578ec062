"""What the README shows an operator is in the repository: every command it shows (in its code
blocks and inline: ``python -m X``, ``python benchmarks/Y.py``, ``bash ops/Z.sh``,
``evaluations/W.sh``) names a module or script that exists, and every flag it shows that command
with is in that command's ``--help``; every file it names under ``benchmarks/``, ``tests/``,
``ops/``, ``evaluations/``, ... exists (braces and ``<stream>`` expanded; git-ignored outputs
such as ``reports/`` left out); and every test it names (``tests/x.py::test_y``) is defined.

Fast: the README is parsed here, and every command's ``--help`` is printed in one child process
(``runpy``, nothing run but argparse's help), a few seconds in all."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Commands the README shows whose help is not argparse's or that would start at once.
NO_HELP: dict[str, str] = {}
# The handbook's six drawn streams, which the README writes as <stream>.
STREAMS = ("defaults", "drawn-1", "drawn-2", "drawn-3", "drawn-4", "drawn-5")
FOLDERS = (
    "benchmarks|tests|evaluations|ops|dataflows|features|storage|model_state|review|rules|"
    "settings|test_data|\\.ci"
)
PATH = re.compile(rf"(?<![\w./-])(?:{FOLDERS})/[\w./{{}},<>*$-]*[\w}}>*$/]")
COMMAND = re.compile(
    r"(?:python3? -m (?P<module>[A-Za-z_][\w.]*)"
    r"|python3? (?P<script>(?:benchmarks|evaluations|ops)/[\w./-]+\.py)"
    r"|bash (?P<bash>(?:ops|evaluations|benchmarks)/[\w./-]+\.sh)"
    r"|(?:^|(?<=\s))(?P<bare>(?:evaluations|benchmarks|ops)/[\w-]+\.(?:sh|py))"
    # a benchmark named without its folder, with flags (`bench_throughput.py --call-trace`)
    r"|(?:^|(?<=\s))(?P<short>\w+\.py)(?=\s+-))"
)
# Where a command's arguments end: a shell separator, a comment, an arrow to its output.
END = re.compile(r"\s(?:&&|\|\||;|\||->|#)(?:\s|$)|\s#")
FLAG = re.compile(r"(?:(?<=[\s\[(])|^)(--?[A-Za-z][\w-]*)")
TEST_NAME = re.compile(r"(tests/test_\w+\.py)::(\w+)")


@dataclass
class Command:
    target: str  # a module (dotted) or a script's path
    line: int
    words: list[str] = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        unquoted = re.sub(r"\"[^\"]*\"|'[^']*'", "ARG", " ".join(self.words))  # a value's own
        return [m.group(1) for m in FLAG.finditer(unquoted)]

    @property
    def first_word(self) -> str | None:
        """A subcommand, if the command shows one (``rules add``, ``model_state.shadow start``)."""
        if self.words and re.fullmatch(r"[a-z][a-z-]*", self.words[0]):
            return self.words[0]
        return None


def segments(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line, text, in a code block): each code block's command lines (continued over a trailing
    backslash) and each inline code span outside them (continued over line breaks)."""
    lines = text.split("\n")
    prose: list[str] = []
    in_block = False
    pending: tuple[int, str] | None = None
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            prose.append("")
            continue
        if not in_block:
            prose.append(line)
            continue
        prose.append("")
        start, joined = pending if pending else (number, "")
        joined += " " + line.strip()
        if joined.endswith("\\"):
            pending = (start, joined[:-1])
            continue
        pending = None
        yield start, joined.strip(), True
    flat = "\n".join(prose)
    # A code span opens with a run of backticks and closes with the next run of as many.
    for span in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", flat, re.DOTALL):
        number = flat.count("\n", 0, span.start()) + 1
        yield number, span.group(2).replace("\n", " ").replace("\\|", "/"), False


def commands(text: str) -> list[Command]:
    found: list[Command] = []
    for number, segment, _ in segments(text):
        starts = list(COMMAND.finditer(segment))
        for i, start in enumerate(starts):
            target = next(g for g in start.groups() if g)
            if start.group("short"):
                target = f"benchmarks/{target}"
            until = starts[i + 1].start() if i + 1 < len(starts) else len(segment)
            rest = segment[start.end() : until]
            cut = END.search(rest)
            rest = rest[: cut.start()] if cut else rest
            if start.group("bare") and target.endswith(".py") and not rest.split():
                continue  # a script named as a file, not run (its path is checked below)
            found.append(Command(target, number, rest.split()))
    return found


def expand(path: str) -> list[str]:
    """``a-{b,c}-<stream>.txt`` as the files it names; ``$s`` as a wildcard."""
    brace = re.search(r"\{([^{}]*)\}", path)
    if brace:
        return [
            p
            for alt in brace.group(1).split(",")
            for p in expand(path[: brace.start()] + alt + path[brace.end() :])
        ]
    if "<stream>" in path:
        return [p for s in STREAMS for p in expand(path.replace("<stream>", s))]
    return [re.sub(r"\$\w+", "*", path)]


def named_paths(text: str) -> Iterator[tuple[int, str]]:
    """Every path the README names, and the bare file names its code blocks' ``# -> ...``
    comments list after the first (``-> evaluations/a.txt, b.txt``, continued on ``#`` lines)."""
    in_block = arrow = False
    for number, line in enumerate(text.split("\n"), 1):
        for match in PATH.finditer(line):
            yield number, match.group(0).rstrip(".,;:")
        if line.lstrip().startswith("```"):
            in_block, arrow = not in_block, False
            continue
        comment = line.split("#", 1)[1] if in_block and "#" in line else ""
        if "->" in comment:
            arrow, listed = True, comment.split("->", 1)[1]
        elif arrow and line.lstrip().startswith("#"):
            listed = comment
        else:
            arrow, listed = False, ""
        for name in re.findall(r"(?<![\w/.{},<>-])([\w{},<>-]+\.txt)\b", listed):
            yield number, f"evaluations/{name}"


def ignored() -> list[str]:
    patterns = []
    for line in (ROOT / ".gitignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.rstrip("/"))
    return patterns


def is_ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path.rstrip("/")).parts
    return any(
        fnmatch.fnmatch("/".join(parts[: i + 1]), p) or fnmatch.fnmatch(parts[i], p)
        for p in patterns
        for i in range(len(parts))
    )


def missing_paths(text: str) -> list[str]:
    patterns = ignored()
    missing = []
    for number, shown in named_paths(text):
        for path in expand(shown):
            if is_ignored(path, patterns):
                continue
            if "*" in path:
                if not list(ROOT.glob(path)):
                    missing.append(f"README line {number}: {shown!r}: nothing matches {path}")
            elif not (ROOT / path).exists() and not (ROOT / f"{path}.txt").exists():
                # (an evaluation's --out FOLDER is kept as FOLDER.txt, the printout)
                missing.append(f"README line {number}: {shown!r}: no {path}")
    return missing


# Run in one child: each command's --help (and its subcommand's), printed as JSON.
HELP_PROBE = r"""
import contextlib, io, json, runpy, sys
from pathlib import Path
asked = json.loads(sys.argv[1])
helps = {}
def help_of(argv):
    out = io.StringIO()
    target = argv[0]
    sys.argv = [target, *argv[1:], "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if target.endswith(".py"):
                sys.path.insert(0, str(Path(target).parent))
                try:
                    runpy.run_path(target, run_name="__main__")
                finally:
                    sys.path.pop(0)
            else:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
        return "ran without exiting", out.getvalue()
    except SystemExit as done:
        return done.code, out.getvalue()
    except BaseException as exc:
        return f"{type(exc).__name__}: {exc}"[:300], out.getvalue()
for target, words in asked:
    code, text = help_of([target])
    helps[target] = [code, text]
    for word in words:
        if "{" in text and word in text:
            helps[f"{target} {word}"] = list(help_of([target, word]))
print(json.dumps(helps))
"""


def source_of(target: str) -> str | None:
    """The source of a script or of one of payscore's modules (None: another package's)."""
    if "/" in target:
        return (ROOT / target).read_text()
    if not (ROOT / target.split(".")[0]).is_dir():
        return None
    local = ROOT / target.replace(".", "/")
    for path in (local.with_suffix(".py"), local / "__main__.py"):
        if path.is_file():
            return path.read_text()
    return None


def parses_arguments(target: str) -> bool:
    """Whether ``--help`` is safe to ask: the command parses its arguments with argparse (one that
    ignores them would run whole, as ``ops/create_topics.py`` did)."""
    source = source_of(target)
    if source is None:
        return True
    # A command that hands its arguments on (``from model_state.offline.train import main``,
    # ``evaluate.main(sys.argv[1:])``): the modules it imports count too.
    for package, names in re.findall(r"^from ([\w.]+) import ([\w, ]+)$", source, re.M):
        for name in [package] + [f"{package}.{n.strip()}" for n in names.split(",")]:
            source += source_of(name) or ""
    return bool(re.search(r"ArgumentParser|\bParser\(|parse_args", source))


def helps_of(shown: list[Command]) -> dict[str, tuple[object, str]]:
    asked: dict[str, set[str]] = {}
    for command in shown:
        if command.target in NO_HELP or command.target.endswith(".sh"):
            continue
        if not parses_arguments(command.target):
            continue
        words = asked.setdefault(command.target, set())
        if command.first_word:
            words.add(command.first_word)
    done = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, json.dumps([[t, sorted(w)] for t, w in asked.items()])],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    return {k: (v[0], v[1]) for k, v in json.loads(last).items()}


def exists(target: str) -> bool:
    if "/" in target:
        return (ROOT / target).is_file()
    local = ROOT / target.replace(".", "/")
    if (ROOT / target.split(".")[0]).is_dir():
        return local.with_suffix(".py").is_file() or (local / "__main__.py").is_file()
    return importlib.util.find_spec(target) is not None


def problems(text: str) -> list[str]:
    """What the README shows and the repository lacks, one line each (empty: none)."""
    found: list[str] = []
    shown = commands(text)
    for command in shown:
        if not exists(command.target):
            found.append(f"README line {command.line}: no command {command.target}")
    helps = helps_of([c for c in shown if exists(c.target)])
    for command in shown:
        if not exists(command.target):
            continue
        if command.target.endswith(".sh"):
            if command.target.startswith("ops/"):
                script = (ROOT / command.target).read_text()
                through = helps.get("bytewax.run", (0, ""))[1]  # run_flow.sh passes these on
                for flag in command.flags:
                    if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", script + through):
                        found.append(
                            f"README line {command.line}: {command.target} takes no {flag}"
                        )
            continue
        if command.target in NO_HELP:
            continue
        if not parses_arguments(command.target):
            found.append(f"README line {command.line}: {command.target} parses no arguments")
            continue
        code, help_text = helps[command.target]
        if code != 0:
            found.append(
                f"README line {command.line}: {command.target} --help exited {code!r}"
                f" (expected 0): {help_text[-300:]!r}"
            )
            continue
        chosen = re.match(r"usage: \S+(?: -m \S+)? \[-h\]\s+\{([\w,-]+)\}", help_text)
        if chosen and command.first_word and command.first_word not in chosen.group(1).split(","):
            found.append(
                f"README line {command.line}: {command.target} has no subcommand "
                f"{command.first_word} (expected one of {chosen.group(1)})"
            )
            continue
        sub = helps.get(f"{command.target} {command.first_word}")
        if sub is not None and sub[0] == 0:
            help_text += sub[1]
        for flag in command.flags:
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text):
                found.append(
                    f"README line {command.line}: {command.target}"
                    f"{' ' + command.first_word if sub else ''} has no {flag} in its --help"
                )
    found += missing_paths(text)
    for number, line in enumerate(text.split("\n"), 1):
        for path, name in TEST_NAME.findall(line):
            source = ROOT / path
            if not source.is_file() or f"def {name}(" not in source.read_text():
                found.append(f"README line {number}: {path} defines no {name}")
    return found


def test_every_command_file_flag_and_test_the_readme_shows_is_in_the_repository() -> None:
    found = problems(README.read_text())
    assert found == [], "\n".join(found)


def test_the_check_reads_the_commands_it_must() -> None:
    """The parser finds what it must: a command in a code block continued over a backslash, one
    nested in evaluations/run.sh, an inline one with a subcommand, and the README's own."""
    text = (
        "```bash\n"
        "OMP_NUM_THREADS=1 .venv/bin/python -m model_state.evaluate --streams x \\\n"
        "    --size 500 --out evaluations/y   # -> evaluations/y.txt\n"
        "evaluations/run.sh n .venv/bin/python benchmarks/soak.py --cards 5 --seed 1\n"
        "```\n"
        'Run `python -m rules add ID "RULE" --by ana` or\n`python -m storage.report\n--html x`.\n'
    )
    got = [(c.target, c.line, c.first_word, c.flags) for c in commands(text)]
    assert got == [
        ("model_state.evaluate", 2, None, ["--streams", "--size", "--out"]),
        ("evaluations/run.sh", 4, "n", []),
        ("benchmarks/soak.py", 4, None, ["--cards", "--seed"]),
        ("rules", 6, "add", ["--by"]),
        ("storage.report", 7, None, ["--html"]),
    ]
    readme = commands(README.read_text())
    assert len(readme) > 100
    assert {"ops/quickstart.sh", "ops/test.sh", "storage.accounts"} <= {c.target for c in readme}


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        ("`python -m rules add x 'y' --by ana --bogus`", "rules add has no --bogus in its --help"),
        ("`python -m storage.no_such_module`", "no command storage.no_such_module"),
        ("`python -m rules remove-all --by ana`", "rules has no subcommand remove-all"),
        ("`benchmarks/bench_nothing.py`", "no benchmarks/bench_nothing.py"),
        ("`python benchmarks/flow_tweaks.py --x`", "benchmarks/flow_tweaks.py parses no arguments"),
        ("`bash ops/run_flow.sh 2 2 --no-such-flag`", "ops/run_flow.sh takes no --no-such-flag"),
        ("# -> evaluations/judge-{every,nope}-size500-<stream>.txt", "judge-nope-size500-defaults"),
        ("(`tests/test_accounts.py::test_nothing_here`)", "defines no test_nothing_here"),
        ("`python -m storage.accounts --retire x --no-flag`", "storage.accounts has no --no-flag"),
    ],
)
def test_a_broken_reference_is_caught(planted: str, expected: str) -> None:
    text = f"```bash\n{planted}\n```\n" if planted.startswith("#") else f"{planted}\n"
    found = problems(text)
    assert any(expected in line for line in found), found
