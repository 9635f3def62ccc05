"""``lorikit generate``."""

from __future__ import annotations

import sys

from ..errors import UsageError
from ..eval.generation_config import GenerationConfig
from ._args import add_dataclass_args, dataclass_from_args


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text with a base model and optional adapter",
                       description="Batched generation (left padding, greedy unless --do-sample).")
    p.add_argument("--model", default="smollm2-135m", help="base model (default: smollm2-135m)")
    p.add_argument("--adapter", default=None, help="PEFT LoRA adapter folder or Hub id")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable); '-' reads stdin lines")
    p.add_argument("--template", choices=("none", "alpaca", "gsm8k", "chat"), default="none",
                   help="wrap each prompt in a training template; chat = the tokenizer's chat template, as "
                        "`train --template chat` trains (default: none, raw text)")
    add_dataclass_args(p, GenerationConfig, group="decoding")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..adapters.build import load_peft
    from ..data.templates import alpaca_prompt, chat_prompt, gsm8k_prompt
    from ..models import load_model
    from ..eval.generate import generate

    prompts = []
    for p in args.prompt:
        if p == "-":
            prompts.extend(line for line in _stdin_text().splitlines() if line.strip())
        else:
            prompts.append(p)
    if not prompts:
        raise UsageError("--prompt: give at least one prompt")
    cfg = dataclass_from_args(GenerationConfig, args)
    bundle = load_model(args.model)
    wrap = {"none": lambda s: s, "alpaca": alpaca_prompt, "gsm8k": gsm8k_prompt,
            "chat": lambda s: chat_prompt(bundle.tokenizer, s)}[args.template]
    model = load_peft(bundle.model, args.adapter) if args.adapter else bundle.model
    outputs = generate(model, bundle.tokenizer, [wrap(p) for p in prompts], cfg)
    for prompt, outs in zip(prompts, outputs):
        for text in outs:
            print(text.strip() if len(prompts) == 1 and len(outs) == 1 else f"### {prompt}\n{text.strip()}\n")
    return 0


def _stdin_text() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--prompt -: standard input is not UTF-8 text (byte {data[exc.start]:#04x} "
                         f"at offset {exc.start})") from None
