"""FSDP2 data-parallel training under torchrun: 2 CPU processes on gloo, tiny-random-llama."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorikit.adapters.build import AdapterConfig
from lorikit.train import TrainConfig, train

pytestmark = pytest.mark.distributed

SRC = str(Path(__file__).resolve().parents[1] / "src")
STEPS, SAVE_EVERY = 4, 2
# 26 rows, global batch 6 × 2 = 12: steps of 12, 12, 2 (epoch end), 12 rows. At step 3 each rank
# gets one row for its two micro-batches, so one of them is the empty, weight-0 pass.
TRAIN = dict(model="tiny-random-llama", data="builtin:compare", builtin_rows=64, limit=26, batch_size=6,
             grad_accum=2, lr=1e-2, max_steps=STEPS)
ADAPTER = dict(method="lori-d", rank=4, seed=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_args(out, train_kw=TRAIN, adapter_kw=ADAPTER, extra=()) -> list[str]:
    args = ["train", "--out", str(out)]
    for key, value in {**train_kw, **adapter_kw}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args + list(extra)


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "lorikit", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def tensors(folder) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def dist_run(tmp_path_factory):
    """One 2-process LoRI-D run with checkpoints kept (shared by the tests below)."""
    root = tmp_path_factory.mktemp("dist")
    out = root / "dist"
    proc = torchrun(cli_args(out, extra=["--save-every", str(SAVE_EVERY)]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_torchrun_adapter_matches_single_process(dist_run, tmp_path):
    single = train(TrainConfig(out=str(tmp_path / "single"), adapter=AdapterConfig(**ADAPTER), **TRAIN))
    a, b = tensors(single), tensors(dist_run)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5, msg=key)
    assert any(float(t.abs().max()) > 0 for k, t in b.items() if "lora_B" in k)  # it trained
    # the frozen A is LoRI's seeded projection, exactly, after the gather
    for key in a:
        if "lora_A" in key:
            assert torch.equal(a[key], b[key]), key
    # a stock PEFT load of the gathered adapter
    from peft import PeftModel

    from lorikit.models import load_model

    PeftModel.from_pretrained(load_model("tiny-random-llama").model, str(dist_run))
    # the intermediate adapter, gathered from the shards at step 2
    ckpt = tensors(dist_run / "checkpoint-2")
    assert ckpt.keys() == b.keys() and any(float(t.abs().max()) > 0 for k, t in ckpt.items() if "lora_B" in k)
    PeftModel.from_pretrained(load_model("tiny-random-llama").model, str(dist_run / "checkpoint-2"))


def test_resume_from_distributed_checkpoint_is_identical(dist_run, tmp_path):
    ckpt = Path(f"{dist_run}.ckpt")
    assert sorted(p.name for p in ckpt.iterdir()) == ["step-000002"]
    assert (ckpt / "step-000002" / ".metadata").is_file()  # torch.distributed.checkpoint layout
    # copy the checkpoint next to a fresh --out and continue from step 2
    out = tmp_path / "dist"
    shutil.copytree(ckpt, Path(f"{out}.ckpt"))
    proc = torchrun(cli_args(out, extra=["--save-every", str(SAVE_EVERY), "--resume"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("resuming from") == 1  # rank 0 only
    a, b = tensors(dist_run), tensors(out)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_world_size_not_dividing_the_batch_fails_fast_on_every_rank(tmp_path):
    out = tmp_path / "bad"
    t0 = time.time()
    proc = torchrun(cli_args(out, train_kw={**TRAIN, "batch_size": 3, "grad_accum": 1}), timeout=120)
    assert proc.returncode != 0
    message = "lorikit: error: --batch-size × --grad-accum = 3 is not divisible by the world size 2"
    assert proc.stderr.count(message) == 1, proc.stderr[-3000:]  # one line, from rank 0
    assert "exitcode  : 2" in proc.stderr  # every rank exits 2 (usage), none hangs
    assert time.time() - t0 < 110
    assert not out.exists()


def test_shared_prefix_is_refused_under_torchrun_on_every_rank(tmp_path):
    out = tmp_path / "shared"
    proc = torchrun(cli_args(out, extra=["--shared-prefix"]), timeout=120)
    assert proc.returncode != 0
    message = "lorikit: error: --shared-prefix: single process only (not under torchrun)"
    assert proc.stderr.count(message) == 1, proc.stderr[-3000:]
    assert "exitcode  : 2" in proc.stderr
    assert not out.exists()


def _agree_worker(rank: int, world: int, init_file: str, queue) -> None:
    import torch.distributed as dist

    from lorikit.errors import LorikitError
    from lorikit.train.distributed import AgreedError, Distributed

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    ctx = Distributed(torch.device("cpu"), rank, world)

    def only_rank_1_fails():
        if rank == 1:
            raise LorikitError("masks/b.safetensors: no such file")
        return "ok"

    try:
        ctx.agree(only_rank_1_fails)
        queue.put((rank, "no error"))
    except AgreedError as exc:
        queue.put((rank, f"{exc.exit_code} {exc}"))
    finally:
        ctx.close()


def test_error_on_one_rank_is_raised_on_every_rank(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_agree_worker, args=(r, 2, str(tmp_path / "init"), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert results == {0: "1 rank 1: masks/b.safetensors: no such file",
                       1: "1 rank 1: masks/b.safetensors: no such file"}


def test_bf16_mixed_precision_and_grad_checkpointing_under_fsdp(tmp_path):
    """bf16 compute (FSDP MixedPrecisionPolicy) with fp32 trainable weights, activation
    checkpointing on: the loss curve follows the single-process autocast run."""
    import json

    extra = ["--bf16", "--grad-checkpointing"]
    proc = torchrun(cli_args(tmp_path / "dist", extra=extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train(TrainConfig(out=str(tmp_path / "single"), adapter=AdapterConfig(**ADAPTER), bf16=True, **TRAIN))
    assert {t.dtype for t in tensors(tmp_path / "dist").values()} == {torch.float32}

    def losses(folder):
        return [json.loads(line)["loss"] for line in (Path(folder) / "train_log.jsonl").read_text().splitlines()]

    dist_losses, single_losses = losses(tmp_path / "dist"), losses(single)
    assert len(dist_losses) == STEPS
    for d, s in zip(dist_losses, single_losses):
        assert abs(d - s) < 5e-3, (dist_losses, single_losses)
    assert dist_losses[-1] < dist_losses[0]


@pytest.fixture(scope="module")
def lori_d_with_mask(tmp_path_factory):
    """A trained LoRI-D adapter (rank 4, seed 7) with a 0.9-sparsity mask in its masks/ folder."""
    from lorikit.adapters.masks import write_masks

    root = tmp_path_factory.mktemp("lori_d")
    out = train(TrainConfig(out=str(root / "d"), adapter=AdapterConfig(method="lori-d", rank=4, seed=7),
                            **{**TRAIN, "max_steps": 2}))
    write_masks(out, [0.9])
    return out


def test_lori_s_torchrun_matches_single_process_and_keeps_masked_entries_zero(lori_d_with_mask, tmp_path):
    from lorikit.adapters.masks import load_mask
    from lorikit.adapters.state import load_adapter

    mask = str(lori_d_with_mask / "masks" / "0.9_mask.pt")
    train_kw = {**TRAIN, "mask": mask}
    proc = torchrun(cli_args(tmp_path / "dist", train_kw=train_kw, adapter_kw={"method": "lori-s"}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train(TrainConfig(out=str(tmp_path / "single"), adapter=AdapterConfig(method="lori-s"), **train_kw))
    a, b = tensors(single), tensors(tmp_path / "dist")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5, msg=key)
    state = load_adapter(tmp_path / "dist")
    masks = load_mask(mask, state)
    trained = 0
    for name, module in state.modules().items():
        outside = module.B[~masks[name]]
        assert (outside.contiguous().view(torch.int32) == 0).all(), f"{name}: masked-out entry not exactly 0"
        trained += int((module.B[masks[name]] != 0).sum())
    assert trained > 0
    assert state.meta["method"] == "lori-s" and state.meta["seed"] == 7


def test_missing_mask_fails_on_every_rank_with_one_line(tmp_path):
    out = tmp_path / "s"
    proc = torchrun(cli_args(out, train_kw={**TRAIN, "mask": str(tmp_path / "nope.pt")},
                             adapter_kw={"method": "lori-s"}), timeout=120)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("lorikit: error:")]
    assert len(errors) == 1 and "nope.pt" in errors[0], proc.stderr[-3000:]
    assert proc.stderr.count("exitcode  : ") == 2 and "exitcode  : 0" not in proc.stderr
    assert not out.exists()
