"""Hugging Face spellings of ``lorikit train`` flags, and 'did you mean' for unknown flags.

Every long flag also answers to its underscore spelling (``--max_steps``), and the names of
``transformers.TrainingArguments`` / TRL's ``SFTConfig`` / ``peft.LoraConfig`` (``--learning_rate``,
``--lora_r``, ``--model_name_or_path``, ...) are aliases of the lorikit flag they mean
(``train.config_file.HF_ALIASES``), in both spellings ``HfArgumentParser`` accepts
(``--learning_rate``, ``--learning-rate``).
"""

from __future__ import annotations

import argparse

from ..train.config_file import HF_ALIASES
from ..utils.settings import did_you_mean


_GIVEN = "_lorikit_spelled"  # namespace attribute: setting -> (flag, value) that last set it
_ONCE: dict[type, type] = {}


def _once(base: type) -> type:
    """``base`` (an argparse action class) refusing a second spelling of its setting with another
    value: ``--out t --output_dir u`` is an error, not a silent last-wins (one flag repeated still
    is last-wins, as argparse has it)."""
    if base not in _ONCE:
        class Once(base):
            def __call__(self, parser, namespace, values, option_string=None):
                super().__call__(parser, namespace, values, option_string)
                given = namespace.__dict__.setdefault(_GIVEN, {})
                value, first = getattr(namespace, self.dest), given.get(self.dest)
                if first is not None and first[0] != option_string and first[1] != value:
                    parser.error(f"{option_string} {value!r} conflicts with {first[0]} {first[1]!r} "
                                 f"(two spellings of one setting; give it once)")
                given[self.dest] = (option_string, value)

        _ONCE[base] = Once
    return _ONCE[base]


def _actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def resume_value(text: str) -> bool | str:
    """``--resume_from_checkpoint [true|false|PATH]``: as ``transformers.Trainer``, a boolean resumes from
    the newest checkpoint of --output_dir, a path from that checkpoint."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    return text


class ResumeFromCheckpoint(argparse.Action):
    """HF's one flag for two lorikit settings: true/false is ``--resume``, a path ``--resume-from``."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, "resume_from" if isinstance(values, str) else "resume", values)


def _copy(parser, group, flag: str, action: argparse.Action, help_text: str) -> None:
    kwargs = {"dest": action.dest, "default": argparse.SUPPRESS, "help": help_text, "action": _once(type(action))}
    if flag.lstrip("-").replace("-", "_") == "resume_from_checkpoint":  # HF: a bare flag, true/false or a path
        kwargs.update(action=ResumeFromCheckpoint, nargs="?", const=True, type=resume_value,
                      metavar="true|false|PATH")
        kwargs["help"] = "= --resume (bare or true/false) or --resume-from PATH" if help_text != argparse.SUPPRESS \
            else help_text
    elif not isinstance(action, argparse.BooleanOptionalAction):
        kwargs.update(type=action.type, nargs=action.nargs, choices=action.choices, metavar=action.metavar)
    group.add_argument(flag, **kwargs)


def add_hf_spellings(parser: argparse.ArgumentParser) -> None:
    """Add HF/PEFT aliases (listed in --help) and underscore spellings (hidden) of every flag."""
    taken = set(parser._option_string_actions)
    actions = _actions_by_dest(parser)
    group = parser.add_argument_group("Hugging Face / PEFT spellings")
    for alias, dest in HF_ALIASES.items():
        if dest not in actions:
            continue
        main = actions[dest].option_strings[0]
        for flag, help_text in ((f"--{alias}", f"= {main}"), (f"--{alias.replace('_', '-')}", argparse.SUPPRESS)):
            if flag not in taken:
                _copy(parser, group, flag, actions[dest], help_text)
                taken.add(flag)
    for dest, action in actions.items():
        for option in list(action.option_strings):
            under = option.replace("-", "_").replace("__", "--", 1)
            if option.startswith("--") and under not in taken:
                _copy(parser, group, under, action, argparse.SUPPRESS)
                taken.add(under)
    for action in actions.values():  # the lorikit spellings check the others (and are checked by them)
        action.__class__ = _once(type(action))


def unknown_flag_message(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """'unrecognized argument --x (did you mean --y?)' for the first unknown flag of ``extras``."""
    flag = next((e for e in extras if e.startswith("-")), extras[0])
    known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    return f"unrecognized argument {flag}{did_you_mean(flag.split('=', 1)[0], known)}"
