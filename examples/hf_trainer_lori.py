"""LoRI with a plain `transformers.Trainer`: LoRI-D on a task, masks from it, then LoRI-S.

    python examples/hf_trainer_lori.py --out runs/hf-lori                       # tiny model, ~20 s on CPU
    python examples/hf_trainer_lori.py --model smollm2-135m --data my.jsonl --steps 200 --out runs/x

Writes <out>/lori-d and <out>/lori-s: stock PEFT adapters (`PeftModel.from_pretrained` loads them)
with lorikit.json; <out>/lori-d/masks/0.9_mask.pt is the LoRI-S mask (reference format).
"""

import argparse
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import Trainer, TrainingArguments

import lorikit
from lorikit.integrations import LoriCallback, extract_masks, get_lori_model, save_mask


def tokenize(tokenizer, prompt: str, response: str, max_length: int = 128) -> dict:
    """Prompt + response + EOS; the loss covers the response and EOS only."""
    p = tokenizer(prompt, add_special_tokens=False).input_ids
    r = tokenizer(response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    ids = (p + r)[:max_length]
    return {"input_ids": ids, "labels": ([-100] * len(p) + r)[:max_length]}


def collate(rows: list[dict], pad_id: int) -> dict:
    width = max(len(r["input_ids"]) for r in rows)
    pad = lambda seq, v: seq + [v] * (width - len(seq))  # noqa: E731
    return {"input_ids": torch.tensor([pad(r["input_ids"], pad_id) for r in rows]),
            "labels": torch.tensor([pad(r["labels"], -100) for r in rows]),
            "attention_mask": torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in rows])}


def train(model, tokenizer, rows, out: Path, steps: int, lr: float) -> None:
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=lr, lr_scheduler_type="constant", logging_steps=1,
                             save_steps=max(1, steps // 2), report_to="none", remove_unused_columns=False,
                             use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=lambda b: collate(b, tokenizer.pad_token_id), callbacks=[LoriCallback()])
    trainer.train()
    trainer.save_model()  # stock PEFT adapter; LoriCallback already wrote lorikit.json here


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-random-llama")
    ap.add_argument("--data", default="builtin:arithmetic")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    out = Path(a.out)
    examples = lorikit.load_examples(a.data, limit=a.rows)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        task_type="CAUSAL_LM")

    bundle = lorikit.load_model(a.model)
    rows = [tokenize(bundle.tokenizer, e.prompt, e.response) for e in examples]
    # LoRI-D: A frozen and seeded from the task name, B dense.
    model = get_lori_model(bundle.model, config, method="lori-d", task=a.data)
    train(model, bundle.tokenizer, rows, out / "lori-d", a.steps, lr=1e-2)
    mask = extract_masks(model, a.sparsity)
    mask_path = save_mask(mask.masks, out / "lori-d" / "masks" / f"{a.sparsity}_mask.pt", overwrite=True)
    print(f"mask keeps {mask.kept_fraction:.1%} of B")

    # LoRI-S: the mask file lies in the LoRI-D adapter's folder, so its seed (its A) is reused.
    model = get_lori_model(lorikit.load_model(a.model).model, config, method="lori-s", mask=mask_path)
    train(model, bundle.tokenizer, rows, out / "lori-s", a.steps, lr=1e-2)
    print(f"adapters written to {out / 'lori-d'} and {out / 'lori-s'}")


if __name__ == "__main__":
    main()
