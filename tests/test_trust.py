"""No silent wrong results, no data loss (issue 14 §2–§4): each hostile input is a one-line error.

Every case in ``HOSTILE`` runs through the CLI in-process and checks the exit code, the single
``lorikit: error:`` line, the absence of a traceback and that nothing was written. The other tests
check outputs that must stay intact (inputs, foreign folders), modes and resume decisions.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save as st_save, save_file

from lorikit.cli import main

TINY = "tiny-random-llama"
TD = ["--model", TINY, "--data", "builtin:compare", "--builtin-rows", "8", "--batch-size", "2", "--max-steps", "1"]


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _copy(src: Path, dst: Path, cfg=None, tensors=None, meta=None) -> Path:
    shutil.copytree(src, dst)
    if cfg is not None:
        config = json.loads((dst / "adapter_config.json").read_text())
        cfg(config)
        (dst / "adapter_config.json").write_text(json.dumps(config))
    if tensors is not None:
        t = load_file(str(dst / "adapter_model.safetensors"))
        tensors(t)
        save_file(t, str(dst / "adapter_model.safetensors"))
    if meta is not None:
        (dst / "lorikit.json").write_text(json.dumps(meta))
    return dst


def _first_b(t: dict) -> str:
    return next(k for k in t if "lora_B" in k)


def _repack(src: Path, dst: Path, edit) -> Path:
    """A copy of a .lori file with ``edit(tensors, metadata)`` applied and the checksum recomputed."""
    from lorikit.adapters import pack_checks

    with safe_open(str(src), "pt") as fh:
        metadata = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    edit(tensors, metadata)
    metadata[pack_checks.CHECKSUM_KEY] = pack_checks.digest(tensors, metadata)
    dst.write_bytes(st_save(tensors, metadata=metadata))
    return dst


def _lzma_tensor(obj) -> torch.Tensor:
    import lzma

    import numpy as np

    data = lzma.compress(obj if isinstance(obj, bytes) else json.dumps(obj).encode())
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    good, bad, out = root / "good", root / "bad", root / "out"
    for d in (good, bad, out):
        d.mkdir()
    a = good / "a"
    assert main(["train", *TD, "--method", "lori-d", "--rank", "4", "--out", str(a)]) == 0
    assert main(["masks", str(a), "--sparsity", "0.9"]) == 0
    assert main(["pack", str(a), "--out", str(good / "a.lori")]) == 0
    nan = lambda t: t.__setitem__(_first_b(t), torch.full_like(t[_first_b(t)], float("nan")))  # noqa: E731
    _copy(a, bad / "nan", tensors=nan)
    _copy(a, bad / "inf", tensors=lambda t: t[_first_b(t)].__setitem__((0, 0), float("inf")))
    _copy(a, bad / "stray", cfg=lambda c: c.__setitem__("target_modules", ["q_proj", "v_proj"]))
    _copy(a, bad / "alpha-nan", cfg=lambda c: c.__setitem__("lora_alpha", float("nan")))
    _copy(a, bad / "alpha-text", cfg=lambda c: c.__setitem__("lora_alpha", "eight"))
    _copy(a, bad / "r-wrong", cfg=lambda c: c.__setitem__("r", 8))
    _copy(a, bad / "no-peft-type", cfg=lambda c: c.pop("peft_type"))
    _copy(a, bad / "meta-list", meta=[1, 2])
    _copy(a, bad / "meta-seed", meta={**json.loads((a / "lorikit.json").read_text()), "seed": "abc"})
    _copy(a, bad / "mask-empty")
    mask = torch.load(a / "masks/0.9_mask.pt")
    torch.save({k: torch.zeros_like(v) for k, v in mask.items()}, bad / "mask-empty/masks/0.9_mask.pt")
    lori = good / "a.lori"
    raw = bytearray(lori.read_bytes())
    raw[-10] ^= 0xFF  # one payload byte (the last tensor's data) flipped
    (bad / "flipped.lori").write_bytes(bytes(raw))

    def seed(t, m):
        m["seed"] = str(int(m["seed"]) + 1)

    with safe_open(str(lori), "pt") as fh:  # the same change, checksum left as it was
        meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
    seed(tensors, meta)
    (bad / "seed.lori").write_bytes(st_save(tensors, metadata=meta))
    index = json.loads(__import__("lzma").decompress(tensors["index"].numpy().tobytes()))
    huge = [[k, how, d, [200_000, 200_000] if how == "seeded" else s] for k, how, d, s in index]
    _repack(lori, bad / "bomb.lori", lambda t, m: t.__setitem__("index", _lzma_tensor(huge)))
    missing = [[f"extra.{k}", "stored", d, s] for k, _, d, s in index[:1]] + index
    _repack(lori, bad / "missing.lori", lambda t, m: t.__setitem__("index", _lzma_tensor(missing)))
    unknown = [[k, how, "float8" if how == "sparse" else d, s] for k, how, d, s in index]
    _repack(lori, bad / "dtype.lori", lambda t, m: t.__setitem__("index", _lzma_tensor(unknown)))
    _repack(lori, bad / "notlist.lori", lambda t, m: t.__setitem__("index", _lzma_tensor({"a": 1})))
    _repack(lori, bad / "ainit.lori", lambda t, m: m.__setitem__("a_init", "uniform"))
    files = {
        "gsm-empty.jsonl": '{"question": "q", "answer": "work #### \\n"}\n',
        "surrogate.jsonl": '{"instruction": "a\\ud800b", "output": "c"}\n',
        "dup.yaml": f"name: r\nworkdir: {out}/dup\nstages:\n  a: {{kind: train, model: {TINY}}}\n"
                    f"  a: {{kind: train, model: {TINY}, max_steps: 2}}\n",
        "typo.yaml": f"name: r\nworkdir: {out}/typo\ndefaults:\n  trian: {{max_steps: 1}}\n"
                     f"stages:\n  a: {{kind: train, model: {TINY}}}\n",
    }
    for name, text in files.items():
        (bad / name).write_text(text)
    return {"G": good, "B": bad, "O": out}


def fill(text: str, fx: dict[str, Path]) -> str:
    for key, path in fx.items():
        text = text.replace("{" + key + "}", str(path))
    return text


M = ["--method", "cat"]
HOSTILE = [
    # §2 silent wrong results
    ("merge-overflow", ["merge", "{G}/a", "{G}/a", *M, "--weights", "1e39", "1", "--out", "{O}/m"], 1,
     r"--out \S+/m: not written: adapter_model.safetensors tensor \S+ has non-finite values"),
    ("merge-weights-inf", ["merge", "{G}/a", "{G}/a", *M, "--weights", "inf", "1", "--out", "{O}/m"], 2,
     r"argument --weights: 'inf' is not a finite number"),
    ("merge-nan-adapter", ["merge", "{G}/a", "{B}/nan", *M, "--out", "{O}/m"], 1,
     r"nan/adapter_model.safetensors: tensor \S+lora_B.weight holds NaN or inf values"),
    ("eval-nan-adapter", ["eval", "--model", TINY, "--adapter", "{B}/inf", "--task", "builtin", "--data",
                          "builtin:compare", "--limit", "2", "--out", "{O}/e.json"], 1,
     r"inf/adapter_model.safetensors: tensor \S+ holds NaN or inf values"),
    ("eval-stray-modules", ["eval", "--model", TINY, "--adapter", "{B}/stray", "--task", "builtin", "--data",
                            "builtin:compare", "--limit", "2", "--out", "{O}/e.json"], 1,
     r"stray/adapter_config.json: the weights adapt modules that target_modules does not list \(model.layers"),
    ("merge-stray-modules", ["merge", "{B}/stray", "{G}/a", *M, "--out", "{O}/m"], 1,
     r"stray/adapter_config.json: the weights adapt modules that target_modules does not list"),
    ("merge-alpha-nan", ["merge", "{B}/alpha-nan", "{G}/a", *M, "--out", "{O}/m"], 1,
     r"alpha-nan/adapter_config.json: field 'lora_alpha' is nan, expected a finite number"),
    ("train-alpha-zero", ["train", *TD, "--alpha", "0", "--out", "{O}/t"], 2, r"--alpha 0.0: must be positive"),
    ("train-mask-all-false", ["train", *TD, "--method", "lori-s", "--mask", "{B}/mask-empty/masks/0.9_mask.pt",
                              "--out", "{O}/t"], 1, r"0.9_mask.pt: the mask keeps no entry \(every value is False\)"),
    ("train-gsm8k-empty-final", ["train", *TD[:2], "--data", "{B}/gsm-empty.jsonl", "--max-steps", "1", "--out",
                                 "{O}/t"], 1, r"gsm-empty.jsonl:1: field 'answer': final line '####' has no answer"),
    ("run-duplicate-stage", ["run", "{B}/dup.yaml"], 2, r"dup.yaml:5: duplicate key 'a' \(first given on line 4"),
    ("run-defaults-typo", ["run", "{B}/typo.yaml"], 2, r"typo.yaml:4: defaults for unknown stage kind 'trian' \(kinds: analyze, eval"),
    ("unpack-flipped-byte", ["unpack", "{B}/flipped.lori", "--out", "{O}/u"], 1,
     r"flipped.lori: (checksum mismatch|not a readable .lori file)"),
    ("unpack-changed-seed", ["unpack", "{B}/seed.lori", "--out", "{O}/u"], 1,
     r"seed.lori: checksum mismatch: the file was changed or damaged after packing"),
    ("unpack-size-bomb", ["unpack", "{B}/bomb.lori", "--out", "{O}/u"], 1,
     r"bomb.lori: the header claims \d+\.\d GiB of tensors, \d+\.\d GiB of memory to unpack, more than the 8.0 GiB allowed"),
    # §3 data loss
    ("merge-out-is-input", ["merge", "{G}/a", "{G}/a", *M, "--out", "{G}/a", "--overwrite"], 2,
     r"--out \S+/a: is the input \S+/a; write somewhere else"),
    ("merge-out-holds-input", ["merge", "{G}/a", "{G}/a", *M, "--out", "{G}", "--overwrite"], 2,
     r"--out \S+/good: holds the input \S+/a"),
    ("merge-out-foreign", ["merge", "{G}/a", "{G}/a", *M, "--out", "{B}", "--overwrite"], 2,
     r"--out \S+/bad: --overwrite replaces only a folder lorikit wrote, and this one was not"),
    ("train-out-holds-data", ["train", *TD[:2], "--data", "{B}/gsm-empty.jsonl", "--out", "{B}", "--overwrite"], 2,
     r"--out \S+/bad: holds the input \S+gsm-empty.jsonl"),
    # §4 tracebacks → one line
    ("merge-alpha-text", ["merge", "{B}/alpha-text", "{G}/a", *M, "--out", "{O}/m"], 1,
     r"field 'lora_alpha' is 'eight', expected a finite number"),
    ("merge-r-mismatch", ["merge", "{B}/r-wrong", "{G}/a", *M, "--out", "{O}/m"], 1,
     r"r-wrong/adapter_config.json: r is 8 for model\S+ but its lora_A has rank 4 \(fix 'r' or 'rank_pattern'\)"),
    ("eval-no-peft-type", ["eval", "--model", TINY, "--adapter", "{B}/no-peft-type", "--task", "builtin",
                           "--data", "builtin:compare", "--limit", "2"], 1, r"missing field 'peft_type'"),
    ("merge-meta-list", ["merge", "{B}/meta-list", "{G}/a", *M, "--out", "{O}/m"], 1,
     r"meta-list/lorikit.json: expected a JSON object, got list"),
    ("pack-meta-seed-text", ["pack", "{B}/meta-seed", "--out", "{O}/p.lori"], 1,
     r"meta-seed/lorikit.json: field 'seed' is 'abc', expected an integer"),
    ("unpack-missing-tensor", ["unpack", "{B}/missing.lori", "--out", "{O}/u"], 1,
     r"missing.lori: corrupt .lori file \(tensor extra.\S+ is missing\)"),
    ("unpack-unknown-dtype", ["unpack", "{B}/dtype.lori", "--out", "{O}/u"], 1,
     r"dtype.lori: corrupt .lori file \(unknown dtype 'float8'"),
    ("unpack-index-not-list", ["unpack", "{B}/notlist.lori", "--out", "{O}/u"], 1,
     r"notlist.lori: corrupt .lori file \(index is dict, expected a list\)"),
    ("unpack-a-init", ["unpack", "{B}/ainit.lori", "--out", "{O}/u"], 1,
     r"ainit.lori: corrupt .lori file \(header seed \S+ / a_init 'uniform' cannot regenerate A"),
    ("train-surrogate", ["train", *TD[:2], "--data", "{B}/surrogate.jsonl", "--max-steps", "1", "--out", "{O}/t"], 1,
     r"surrogate.jsonl:1: field 'instruction' is not valid text \(lone surrogate"),
    ("train-epochs-nan", ["train", *TD[:6], "--epochs", "nan", "--out", "{O}/t"], 2,
     r"argument --epochs: 'nan' is not a finite number"),
    ("train-lr-nan", ["train", *TD, "--lr", "nan", "--out", "{O}/t"], 2, r"argument --lr: 'nan' is not a finite number"),
    ("train-dropout", ["train", *TD, "--dropout", "1.5", "--out", "{O}/t"], 2, r"--dropout 1.5: must be ≥ 0 and < 1"),
    ("train-weight-decay-nan", ["train", *TD, "--weight-decay", "nan", "--out", "{O}/t"], 2,
     r"argument --weight-decay: 'nan' is not a finite number"),
    ("train-seed-2-64", ["train", *TD, "--seed", str(2**64), "--out", "{O}/t"], 2,
     r"--seed 18446744073709551616: must be between 0 and 2\^63-1"),
    ("train-device-missing-gpu", ["train", *TD, "--device", "cuda:7", "--out", "{O}/t"], 2,
     r"--device cuda:7: (CUDA is not available on this machine|no such GPU)"),
    ("generate-negative-temperature", ["generate", "--model", TINY, "--prompt", "hi", "--do-sample",
                                       "--temperature", "-1"], 2, r"--temperature -1.0: must be positive"),
    ("eval-negative-temperature", ["eval", "--model", TINY, "--task", "builtin", "--data", "builtin:compare",
                                   "--do-sample", "--temperature", "-1"], 2, r"--temperature -1.0: must be positive"),
    ("eval-out-folder", ["eval", "--model", TINY, "--task", "builtin", "--data", "builtin:compare", "--limit", "2",
                         "--out", "{O}", "--overwrite"], 2, r"--out \S+/out: is a folder; give a results file path"),
    ("eval-humaneval-timeout-nan", ["eval", "--model", TINY, "--task", "humaneval", "--allow-code-execution",
                                    "--timeout", "nan"], 2, r"argument --timeout: 'nan' is not a finite number"),
]


@pytest.mark.parametrize("argv,code,pattern", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_input(fx, capsys, argv, code, pattern):
    def snapshot():
        return {p: p.stat().st_size for root in fx.values() for p in root.rglob("*") if p.is_file()}

    before = snapshot()
    got = run_cli([fill(a, fx) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lorikit: error: ")]
    assert got == code, err
    assert len(lines) == 1 and re.search(pattern, lines[0]), err
    assert "Traceback" not in err
    assert snapshot() == before  # nothing written, nothing deleted, no temporary left


def test_hostile_cases_are_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs/errors.md").read_text()
    missing = [c[0] for c in HOSTILE if f"`{c[0]}`" not in doc]
    assert not missing, f"docs/errors.md lacks {missing}"


# ---- §3: --overwrite, --out ., leftovers, locks -----------------------------------------------------------
def test_overwrite_replaces_lorikit_folder_and_keeps_inputs(fx, tmp_path):
    out = tmp_path / "m"
    assert main(["merge", str(fx["G"] / "a"), str(fx["G"] / "a"), *M, "--out", str(out)]) == 0
    assert (out / ".lorikit-output").is_file()
    first = (out / "adapter_model.safetensors").read_bytes()
    assert main(["merge", str(fx["G"] / "a"), str(fx["G"] / "a"), *M, "--weights", "0.5", "0.5",
                 "--out", str(out), "--overwrite"]) == 0
    assert (out / "adapter_model.safetensors").read_bytes() != first
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["merge", str(fx["G"] / "a"), str(fx["G"] / "a"), *M, "--out", str(empty), "--overwrite"]) == 0


def test_out_dot_is_refused_and_leaves_nothing(fx, tmp_path, monkeypatch, capsys):
    work = tmp_path / "here"
    work.mkdir()
    monkeypatch.chdir(work)
    assert run_cli(["merge", str(fx["G"] / "a"), str(fx["G"] / "a"), *M, "--out", ".", "--overwrite"]) == 2
    assert "--out .: is the current folder or one above it" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["here"] and os.listdir(work) == []


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(fx, tmp_path):
    out = tmp_path / "m"
    for name in (".m.tmp-killed1", ".m.old-killed2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_model.safetensors").write_bytes(b"partial")
    (tmp_path / ".other.tmp-keep").mkdir()  # another output's temporary: not ours to remove
    assert main(["merge", str(fx["G"] / "a"), str(fx["G"] / "a"), *M, "--out", str(out)]) == 0
    assert sorted(os.listdir(tmp_path)) == [".other.tmp-keep", "m"]


def test_a_second_writer_to_the_same_out_is_refused(fx, tmp_path, capsys):
    out = tmp_path / "m"
    fd = os.open(tmp_path / ".m.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another run holds the lock
    try:
        assert run_cli(["merge", str(fx["G"] / "a"), str(fx["G"] / "a"), *M, "--out", str(out)]) == 1
    finally:
        os.close(fd)
    assert "another lorikit run is writing to it" in capsys.readouterr().err
    assert not out.exists()


def test_outputs_follow_the_umask(fx, tmp_path):
    old = os.umask(0o002)
    try:
        assert main(["merge", str(fx["G"] / "a"), str(fx["G"] / "a"), *M, "--out", str(tmp_path / "m")]) == 0
        assert main(["pack", str(fx["G"] / "a"), "--out", str(tmp_path / "a.lori")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o775
    for f in (tmp_path / "m").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o664, f
    assert stat.S_IMODE((tmp_path / "a.lori").stat().st_mode) == 0o664


# ---- §2: recipes notice changed outputs; generate reads only UTF-8 -----------------------------------------
def test_resume_redoes_a_stage_whose_output_changed(tmp_path):
    from lorikit.pipeline import load_recipe, plan_recipe, run_recipe

    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(f"name: r\nworkdir: {tmp_path}/w\nstages:\n  a: {{kind: train, model: {TINY}, "
                           f"data: 'builtin:compare', builtin_rows: 8, batch_size: 2, max_steps: 1, rank: 4}}\n")
    run_recipe(load_recipe(recipe_file), echo=lambda s: None)
    assert plan_recipe(load_recipe(recipe_file), resume=True)[0].status == "done"
    weights = tmp_path / "w/a/adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated since
    plan = plan_recipe(load_recipe(recipe_file), resume=True)[0]
    assert (plan.status, plan.action) == ("stale", "run")
    assert "adapter_model.safetensors changed since the stage wrote it" in plan.reason


def test_resume_falls_back_past_corrupt_checkpoints(tmp_path, capsys):
    out = tmp_path / "t"
    argv = ["train", *TD[:-2], "--max-steps", "3", "--save-every", "1", "--keep-checkpoints", "3", "--out", str(out)]
    assert main(argv) == 0
    shutil.rmtree(out)  # as if killed before the end: checkpoints 1 and 2 remain
    ckpt = tmp_path / "t.ckpt"
    (ckpt / "step-000002/optimizer.pt").write_bytes(b"")
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "step-000002: cannot restore checkpoint" in err and "falling back to step-000001" in err
    assert "resuming from" in err and "(step 1)" in err
    shutil.rmtree(out)
    for step in ckpt.glob("step-*"):
        (step / "trainable.safetensors").write_bytes(b"xx")  # nothing complete is left
    assert run_cli([*argv, "--resume"]) == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("lorikit: error: ")]
    assert len(lines) == 1 and "--resume: no complete checkpoint in" in lines[0]
    assert not out.exists()


def test_generate_refuses_non_utf8_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a\xffb\n")))
    assert run_cli(["generate", "--model", TINY, "--prompt", "-"]) == 2
    assert "--prompt -: standard input is not UTF-8 text (byte 0xff at offset 1)" in capsys.readouterr().err


def test_pack_round_trip_keeps_its_checksum(fx, tmp_path):
    assert main(["unpack", str(fx["G"] / "a.lori"), "--out", str(tmp_path / "u")]) == 0
    a, u = load_file(str(fx["G"] / "a/adapter_model.safetensors")), load_file(str(tmp_path / "u/adapter_model.safetensors"))
    assert a.keys() == u.keys() and all(torch.equal(a[k], u[k]) for k in a)


if __name__ == "__main__":  # print the "Trust" table of docs/errors.md from real runs
    import contextlib
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    class _Factory:
        def __init__(self, root):
            self.root = Path(root)

        def mktemp(self, name):
            (self.root / name).mkdir()
            return self.root / name

    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            paths = fx.__wrapped__(_Factory(tmp))
        print("| entry | command | exit | message |\n|---|---|---|---|")
        for case_id, argv, code, _ in HOSTILE:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                got = run_cli([fill(a, paths) for a in argv])
            message = [ln for ln in err.getvalue().splitlines() if ln.startswith("lorikit: error: ")][-1]
            shown = " ".join(argv)
            for path in paths.values():
                message = message.replace(str(path) + "/", "").replace(str(path), ".")
            shown = shown.replace("{G}/", "").replace("{B}/", "").replace("{O}/", "").replace("{G}", "good") \
                .replace("{B}", "bad")
            row = [f"`{case_id}`", f"`lorikit {shown}`", str(got), f"`` {message} ``" if "`" in message else f"`{message}`"]
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
