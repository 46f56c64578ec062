"""Make a model signing key, or sign model versions you trust (:mod:`model_state.signing`).

python -m model_state.sign --new-key PATH      create a key file (0600); fails if it exists
python -m model_state.sign --sign DIR/VERSION  sign a version you trust (e.g. made before
                                               signing existed) with the configured key
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import msgspec

from features.bounded import bounded
from model_state.artifact import METADATA_FILE, MODEL_FILE, ModelMetadata
from model_state.signing import new_key, read_key, sign
from settings.arguments import Parser
from settings.config import Config

REFUSED = 2  # storage.refusals.REFUSED: argparse's status for a bad argument


def command_key(command: str, path: Path) -> bytes:
    """:func:`read_key` for a command line: a key it cannot use (none, a directory, readable by
    others, not the key's hex) ends it with one line on standard error and status 2, not the
    traceback it was in ``retrain``, ``shadow promote`` and ``sign --sign``."""
    try:
        return read_key(path)
    except (OSError, ValueError) as exc:
        print(f"{command}: refused: {bounded(str(exc))}", file=sys.stderr)
        raise SystemExit(REFUSED) from None


COMMAND = "python -m model_state.sign"


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog=COMMAND, description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--new-key", type=Path, metavar="PATH")
    action.add_argument("--sign", type=Path, nargs="+", metavar="DIR/VERSION")
    args = parser.parse_args(argv)
    try:
        if args.new_key:
            new_key(args.new_key)
            print(f"wrote a new signing key to {args.new_key} (mode 0600)")
            return
        key = command_key(COMMAND, Path(Config.from_env(os.environ).model_key_file))
        _sign(args.sign, key)
    except (OSError, msgspec.DecodeError) as exc:  # a key that exists, a folder that does not
        print(f"{COMMAND}: refused: {bounded(str(exc))}", file=sys.stderr)
        raise SystemExit(REFUSED) from None


def _sign(folders: list[Path], key: bytes) -> None:
    for folder in folders:
        file = folder / METADATA_FILE
        metadata = msgspec.json.decode(file.read_bytes(), type=ModelMetadata)
        content = hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest()
        if content != metadata.content_hash:
            raise SystemExit(f"{folder}: model.pkl does not match its metadata's SHA-256")
        file.write_bytes(msgspec.json.format(msgspec.json.encode(sign(metadata, key))))
        print(f"signed {metadata.version} in {folder}")


if __name__ == "__main__":
    main()
