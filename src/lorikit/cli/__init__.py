"""The ``lorikit`` command line: a thin layer that parses arguments into typed configs and calls
the Python API. Each command lives in its own module with ``register(subparsers)``; errors become
one line on stderr (exit 2 for usage, 1 for runtime) unless ``--debug`` asks for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import LorikitError

# Module names under lorikit.cli, in the order commands appear in --help.
COMMANDS = ["demo", "train", "generate", "masks", "merge", "eval", "pack", "params", "osrm_stats",
            "osrm_transform", "analyze", "run"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2, like ours
        self.exit(2, f"lorikit: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lorikit", description="LoRA adapters with reduced cross-task interference "
                                                 "(LoRI, OSRM): train, mask, merge, evaluate.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"lorikit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("LORIKIT_DEBUG") == "1"
    try:
        result = args.func(args)
        return int(result or 0)
    except LorikitError as exc:
        if debug:
            raise
        # Under torchrun an error every rank agreed on is printed once, by rank 0.
        if not getattr(exc, "rank0_only", False) or os.environ.get("RANK", "0") == "0":
            print(f"lorikit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lorikit: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if debug:
            raise
        print("lorikit: error: out of memory", file=sys.stderr)
        return 1
