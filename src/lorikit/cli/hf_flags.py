"""Hugging Face spellings of ``lorikit train`` flags, and 'did you mean' for unknown flags.

Every long flag also answers to its underscore spelling (``--max_steps``), and the names of
``transformers.TrainingArguments`` / ``peft.LoraConfig`` (``--learning_rate``, ``--lora_r``, ...)
are aliases of the lorikit flag they mean (``train.config_file.HF_ALIASES``).
"""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..train.config_file import HF_ALIASES
from ..utils.settings import did_you_mean


_SPELLING = "@"


def merge_spellings(args: argparse.Namespace) -> None:
    """Fold the values given under other spellings into their setting; refuse two different values."""
    given: dict[str, str] = {}
    for key in [k for k in vars(args) if _SPELLING not in k]:
        given[key] = "--" + key.replace("_", "-")
    for key in [k for k in vars(args) if _SPELLING in k]:
        dest, flag = key.split(_SPELLING, 1)
        value = getattr(args, key)
        delattr(args, key)
        if dest in given and getattr(args, dest) != value:
            raise UsageError(f"{flag} {value!r} conflicts with {given[dest]} {getattr(args, dest)!r} "
                             f"(two spellings of one setting; give it once)")
        setattr(args, dest, value)
        given[dest] = flag


def _actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def _copy(parser, group, flag: str, action: argparse.Action, help_text: str) -> None:
    # A spelling stores under its own name: two spellings of one setting with different values
    # (--out t --output_dir u) are a conflict, found by merge_spellings, not a silent last-wins.
    kwargs = {"dest": f"{action.dest}{_SPELLING}{flag}", "default": argparse.SUPPRESS, "help": help_text}
    if isinstance(action, argparse.BooleanOptionalAction):
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs.update(type=action.type, nargs=action.nargs, choices=action.choices, metavar=action.metavar)
    group.add_argument(flag, **kwargs)


def add_hf_spellings(parser: argparse.ArgumentParser) -> None:
    """Add HF/PEFT aliases (listed in --help) and underscore spellings (hidden) of every flag."""
    taken = set(parser._option_string_actions)
    actions = _actions_by_dest(parser)
    group = parser.add_argument_group("Hugging Face / PEFT spellings")
    for alias, dest in HF_ALIASES.items():
        flag = f"--{alias}"
        if dest in actions and flag not in taken:
            main = actions[dest].option_strings[0]
            _copy(parser, group, flag, actions[dest], f"= {main}")
            taken.add(flag)
    for dest, action in actions.items():
        for option in list(action.option_strings):
            under = option.replace("-", "_").replace("__", "--", 1)
            if option.startswith("--") and under not in taken:
                _copy(parser, group, under, action, argparse.SUPPRESS)
                taken.add(under)


def unknown_flag_message(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """'unrecognized argument --x (did you mean --y?)' for the first unknown flag of ``extras``."""
    flag = next((e for e in extras if e.startswith("-")), extras[0])
    known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    return f"unrecognized argument {flag}{did_you_mean(flag.split('=', 1)[0], known)}"
