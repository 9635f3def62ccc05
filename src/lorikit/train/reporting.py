"""Where per-step training metrics go besides ``train_log.jsonl``: ``--report_to`` (as in
``transformers.TrainingArguments``): ``tensorboard`` (event files, works offline), ``wandb``
(honours ``WANDB_MODE``, e.g. ``offline``), ``mlflow`` (honours ``MLFLOW_TRACKING_URI``; a local
``mlruns/`` by default) or ``none`` (default).

Tags and folders are ``transformers.Trainer``'s, so dashboards overlay: ``train/loss``,
``train/learning_rate``, ``train/grad_norm`` (and lorikit's ``train/tokens`` or ``train/examples``,
``train/seconds``), event files in ``--logging-dir``, default ``<out>/runs/<Mon DD_HH-MM-SS>_<host>``
(``<out>`` then holds ``runs/`` while the run goes on; the final adapter is written around it).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from ..errors import UsageError

logger = logging.getLogger(__name__)
REPORTERS = ("none", "tensorboard", "wandb", "mlflow")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
# record key -> tag after "train/" (transformers' names where it has one)
SCALARS = {"loss": "loss", "lr": "learning_rate", "grad_norm": "grad_norm", "tokens": "tokens",
           "examples": "examples", "seconds": "seconds"}


def check_report_to(targets: list[str]) -> None:
    """Unknown names and missing packages are refused before the run starts."""
    for name in targets:
        if name not in REPORTERS:
            raise UsageError(f"--report-to {name!r}: unknown (choose from {', '.join(REPORTERS)})")
        if name != "none" and importlib.util.find_spec(_PACKAGES[name]) is None:
            raise UsageError(f"--report-to {name}: the {_PACKAGES[name]} package is not installed "
                             f"(pip install {_PACKAGES[name]})")
    if "none" in targets and len(targets) > 1:
        raise UsageError("--report-to none: cannot be combined with other targets")


def default_logging_dir(out: str) -> Path:
    """``<out>/runs/<Mon DD_HH-MM-SS>_<host>``: transformers' (and PyTorch's) default run folder."""
    import socket
    from datetime import datetime

    return Path(out) / "runs" / f"{datetime.now().strftime('%b%d_%H-%M-%S')}_{socket.gethostname()}"


def interval_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One logged record for the steps ``records`` (as ``logging_steps`` in transformers): the last
    step's step, lr and grad norm, the mean loss and the summed tokens/examples and seconds."""
    if len(records) == 1:
        return dict(records[0])
    merged = dict(records[-1])
    merged["loss"] = sum(r["loss"] for r in records) / len(records)
    for key in ("tokens", "examples", "seconds"):
        if key in merged:
            merged[key] = sum(r[key] for r in records)
    return merged


def logged_records(log: list[dict[str, Any]], every: int) -> list[dict[str, Any]]:
    """What ``--log-every N`` writes: one record per N steps, and one for the steps after the last N."""
    return [interval_record(log[i:i + every]) for i in range(0, len(log), every)]


class Reporter:
    """Fan out each step's record to the chosen trackers."""

    def __init__(self, targets: list[str], logging_dir: str | Path, run_name: str, config: dict[str, Any]):
        self.sinks: list[Any] = []
        self.logging_dir = Path(logging_dir)
        for name in targets:
            if name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(log_dir=str(self.logging_dir))
                writer.add_text("lorikit/config", f"```\n{config}\n```")
                self.sinks.append(("tensorboard", writer))
            elif name == "wandb":
                import wandb

                self.sinks.append(("wandb", wandb.init(name=run_name, dir=str(self.logging_dir), config=config,
                                                       reinit=True)))
            elif name == "mlflow":
                import mlflow

                mlflow.start_run(run_name=run_name)
                mlflow.log_params({k: str(v)[:250] for k, v in config.items()})
                self.sinks.append(("mlflow", mlflow))

    def log(self, record: dict[str, Any]) -> None:
        step = int(record["step"])
        values = {f"train/{tag}": float(record[k]) for k, tag in SCALARS.items() if record.get(k) is not None}
        for kind, sink in self.sinks:
            if kind == "tensorboard":
                for key, value in values.items():
                    sink.add_scalar(key, value, step)
            elif kind == "wandb":
                sink.log(values, step=step)
            else:
                sink.log_metrics({k.replace("/", "_"): v for k, v in values.items()}, step=step)

    def close(self) -> None:
        for kind, sink in self.sinks:
            if kind == "tensorboard":
                sink.close()
            elif kind == "wandb":
                sink.finish()
            else:
                sink.end_run()
        self.sinks = []
