"""The ``lorikit`` command line: a thin layer that parses arguments into typed configs and calls
the Python API. Each command lives in its own module with ``register(subparsers)``; errors become
one line on stderr (exit 2 for usage, 1 for runtime) unless ``--debug`` asks for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

from .._version import __version__
from ..errors import LorikitError
from ..utils.settings import did_you_mean
from .hf_flags import unknown_flag_message

# Module names under lorikit.cli, in the order commands appear in --help.
COMMANDS = ["demo", "study", "train", "train_many", "generate", "masks", "merge", "merge_search", "eval", "pack", "params", "osrm_stats",
            "osrm_transform", "analyze", "run", "push"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2, like ours
        self.exit(2, f"lorikit: error: {message}\n")

    def _check_value(self, action, value):  # a sub-command or a choice: say which one was meant
        if action.choices is not None and value not in action.choices:
            hint = did_you_mean(str(value), [str(c) for c in action.choices])
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint} "
                                                 f"(choose from {', '.join(map(repr, action.choices))})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lorikit", description="LoRA adapters with the methods proposed to reduce cross-task "
                                                 "interference (LoRI, OSRM): train, mask, merge, evaluate, study.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"lorikit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    parser.commands = sub.choices  # name -> subparser, for 'did you mean' on unknown flags
    return parser


def _close_progress_bars() -> None:
    """A failure inside a tqdm loop leaves its bar open mid-line; close it so the error starts a line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _error(message: str) -> None:
    _close_progress_bars()
    print(f"lorikit: error: {message}", file=sys.stderr)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (tests swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def show_library_log() -> None:
    """Library modules log (``logging``); the command line shows their INFO lines on stderr as
    ``lorikit: message``, as it shows its own errors. Installed once per process."""
    logger = logging.getLogger("lorikit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("lorikit: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so that every ``finally`` runs: the temporary output
    folder and the ``.NAME.lock`` beside --out are removed, as after Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    show_library_log()
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.error(unknown_flag_message(parser.commands.get(args.command, parser), extras))
    debug = args.debug or os.environ.get("LORIKIT_DEBUG") == "1"
    try:
        result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handlers below
        return int(result or 0)
    except LorikitError as exc:
        if debug:
            raise
        # Under torchrun an error every rank agreed on is printed once, by rank 0.
        if not getattr(exc, "rank0_only", False) or os.environ.get("RANK", "0") == "0":
            _error(str(exc))
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`lorikit run R --dry-run | head`): stop quietly, like other Unix tools;
        # point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # the file system said no (permission, disk full, not a folder): one line too
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        print("lorikit: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("lorikit: terminated", file=sys.stderr)
        return 143
    except MemoryError:
        if debug:
            raise
        _error("out of memory")
        return 1
