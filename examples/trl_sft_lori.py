"""LoRI with TRL's `SFTTrainer`: LoRI-D on a task, masks from it, then LoRI-S.

    python examples/trl_sft_lori.py --out runs/trl-lori                          # tiny model, ~20 s on CPU
    python examples/trl_sft_lori.py --model smollm2-135m --data my.jsonl --steps 200 --out runs/x

A prompt/completion dataset (TRL trains on the completion only); the PeftModel comes from
`get_lori_model`, so pass no `peft_config` to SFTTrainer. Writes <out>/lori-d and <out>/lori-s:
stock PEFT adapters with lorikit.json.
"""

import argparse
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

import lorikit
from lorikit.integrations import LoriCallback, extract_masks, get_lori_model, save_mask


def train(model, tokenizer, dataset, out: Path, steps: int, lr: float) -> None:
    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4, learning_rate=lr,
                     lr_scheduler_type="constant", logging_steps=1, save_steps=max(1, steps // 2),
                     report_to="none", max_length=128, use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[LoriCallback()])
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
    dataset = Dataset.from_list([{"prompt": e.prompt, "completion": e.response} for e in examples])
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        task_type="CAUSAL_LM")

    bundle = lorikit.load_model(a.model)
    model = get_lori_model(bundle.model, config, method="lori-d", task=a.data)  # seed from the task name
    train(model, bundle.tokenizer, dataset, out / "lori-d", a.steps, lr=1e-2)
    mask = extract_masks(model, a.sparsity)
    mask_path = save_mask(mask.masks, out / "lori-d" / "masks" / f"{a.sparsity}_mask.pt", overwrite=True)
    print(f"mask keeps {mask.kept_fraction:.1%} of B")

    # LoRI-S reuses the LoRI-D adapter's seed (its A): the mask file lies in that adapter's folder.
    model = get_lori_model(lorikit.load_model(a.model).model, config, method="lori-s", mask=mask_path)
    train(model, bundle.tokenizer, dataset, out / "lori-s", a.steps, lr=1e-2)
    print(f"adapters written to {out / 'lori-d'} and {out / 'lori-s'}")


if __name__ == "__main__":
    main()
