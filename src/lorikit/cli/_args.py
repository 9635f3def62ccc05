"""Turn a dataclass config into argparse options: each field's ``metadata['help']`` is its help."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any

from ..utils.validate import finite_float


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                       group: str | None = None) -> None:
    target = parser.add_argument_group(group) if group else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        kwargs: dict[str, Any] = {"dest": f.name, "help": f"{help_text} (default: {default})",
                                  "default": argparse.SUPPRESS}
        origin = typing.get_origin(kind)
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        base = args[0] if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args else kind
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base is dict or typing.get_origin(base) is dict:
            kwargs["type"] = json_object
            kwargs["metavar"] = "JSON"
        elif typing.get_origin(base) in (list, tuple):
            kwargs["nargs"] = "+"
            kwargs["type"] = _parse_type(typing.get_args(base)[0])
        elif base in (int, float, str):
            kwargs["type"] = _parse_type(base)
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        names = [flag] + list(f.metadata.get("aliases", ()))
        target.add_argument(*names, **kwargs)


def json_object(text: str) -> dict:
    """argparse type of a dict field: a JSON object (``'{"min_lr_rate": 0.1}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
    return value


def _parse_type(kind):
    return finite_float if kind is float else kind  # --lr nan is refused by the parser


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)
