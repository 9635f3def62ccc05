"""What a run trains the adapter for, as a strategy: the causal-LM head (supervised fine-tuning on
prompt/response rows) or a classification head (``--head classification``: label rows, the head
trained in full and saved with the adapter through PEFT's ``modules_to_save``).

Each head loads its model and data, builds its batches and computes its loss sum; the loop,
optimizer and schedule are shared (``trainer.py``). The flags say which options apply, so the
config checks ask the head instead of comparing its name. Torch is imported where it is used: the
config (and ``lorikit --help``) reads the flags only.
"""

from __future__ import annotations

from typing import ClassVar

from ..utils.registry import Registry


class TrainingHead:
    name: ClassVar[str] = ""
    unit: ClassVar[str] = ""  # what the loss is averaged over, as logged per step
    rate: ClassVar[str] = ""  # the throughput shown
    trains_head: ClassVar[bool] = False  # the head trains in full (a float32 copy when --dtype auto)
    needs_labels: ClassVar[bool] = False  # --num-labels applies
    early_stopping: ClassVar[bool] = True  # --eval-every (dev loss) applies
    from_adapter: ClassVar[bool] = True  # --mask / --from (starts from an existing adapter) apply
    shares_prefix: ClassVar[bool] = True  # --shared-prefix applies (loss.py)

    def load_model(self, cfg):
        from ..models import load_model

        return load_model(cfg.model, dtype=cfg.dtype, load_in_4bit=cfg.load_in_4bit)

    def attach_options(self, model) -> dict:
        """``attach_adapter``'s options for this head (task type, modules saved with the adapter)."""
        return {}

    def num_labels(self, cfg) -> int | None:
        return None


class CausalLMHead(TrainingHead):
    name = "causal-lm"
    unit = "tokens"
    rate = "tok/s"

    def load_data(self, cfg, tokenizer, seed: int):
        from ..data import load_examples, tokenize
        from ..data.templates import apply_template
        from ..errors import LorikitError

        examples = load_examples(cfg.data, cfg.format, limit=cfg.limit, n_builtin=cfg.builtin_rows, seed=seed)
        examples = apply_template(cfg.template, tokenizer, examples)
        tokenized = [tokenize(tokenizer, e, cfg.max_length, cfg.max_prompt_length) for e in examples]
        if not any(any(label != -100 for label in t.labels) for t in tokenized):
            raise LorikitError(f"{cfg.data}: no response tokens left after truncation (raise --max-length)")
        return examples, tokenized

    def loss_sum(self, cfg, model, batch):
        from .loss import sft_loss_sum

        return sft_loss_sum(model, batch, cfg.logits == "supervised", cfg.shared_prefix)[0]

    def make_batch(self, cfg, items, pad_id):
        from ..data import collate

        batch = collate(items, pad_id)
        return batch, int((batch["labels"][:, 1:] != -100).sum())


class ClassificationHead(TrainingHead):
    name = "classification"
    unit = "examples"
    rate = "ex/s"
    trains_head = True
    needs_labels = True
    early_stopping = False
    from_adapter = False
    shares_prefix = False

    def load_model(self, cfg):
        from ..models import load_model

        return load_model(cfg.model, head="classification", num_labels=cfg.num_labels, dtype=cfg.dtype,
                          load_in_4bit=cfg.load_in_4bit)

    def attach_options(self, model) -> dict:
        from .classification import head_modules

        return {"task_type": "SEQ_CLS", "modules_to_save": head_modules(model)}

    def num_labels(self, cfg) -> int | None:
        return cfg.num_labels

    def load_data(self, cfg, tokenizer, seed: int):
        from .classification import load_classification_data

        data = load_classification_data(cfg.data, tokenizer, cfg.num_labels, cfg.max_length, cfg.limit, seed=seed)
        return data, data

    def loss_sum(self, cfg, model, batch):
        from .classification import classification_loss_sum

        return classification_loss_sum(model, batch, cfg.num_labels)[0]

    def make_batch(self, cfg, items, pad_id):
        from .classification import collate_classification

        return collate_classification(items, pad_id, cfg.num_labels), len(items)


HEADS: Registry = Registry("training head")
for _head in (CausalLMHead(), ClassificationHead()):
    HEADS.add(_head.name, _head)
