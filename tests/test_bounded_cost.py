"""Small hostile files cost bounded time and memory: regexes in adapter configs, YAML alias bombs,
recursive anchors and duplicated keys are refused (or matched) within seconds, with one clear line."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from lorikit.adapters import patterns
from lorikit.cli import main
from lorikit.errors import LorikitError, UsageError
from lorikit.utils.yamlfile import MAX_NODES, parse_yaml

TINY = "tiny-random-llama"


def billion_laughs(levels: int = 12) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def run(argv, capsys) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    code = main(argv)
    return code, capsys.readouterr().err.strip(), time.perf_counter() - t0


# ---- adapter-config regexes --------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    from lorikit.adapters.build import AdapterConfig
    from lorikit.train import TrainConfig, train

    out = tmp_path_factory.mktemp("a") / "a"
    return train(TrainConfig(out=str(out), model=TINY, data="builtin:compare", builtin_rows=16, batch_size=4,
                             max_steps=1, adapter=AdapterConfig(method="lori-d", rank=2, seed=0)))


def with_config(adapter: Path, dest: Path, **fields) -> Path:
    shutil.copytree(adapter, dest)
    config = json.loads((dest / "adapter_config.json").read_text())
    config.update(fields)
    (dest / "adapter_config.json").write_text(json.dumps(config))
    return dest


@pytest.mark.parametrize("field", ["target_modules", "rank_pattern"])
def test_backtracking_regex_from_the_issue_is_matched_in_bounded_time(adapter, tmp_path, capsys, field):
    """``([a-z_.0-9]+)*X`` made merge spin for minutes under Python's re."""
    value = "([a-z_.0-9]+)*X" if field == "target_modules" else {"([a-z_.0-9]+)*X": 4}
    bad = with_config(adapter, tmp_path / "bad", **{field: value})
    code, err, seconds = run(["merge", str(bad), str(adapter), "--method", "cat", "--out", str(tmp_path / "m")],
                             capsys)
    assert seconds < 10, seconds
    if field == "target_modules":  # the pattern matches no module: the weights adapt untargeted modules
        assert code == 1 and "target_modules does not list" in err, err
    else:  # the key matches nothing: every module keeps r
        assert code == 0, err


@pytest.mark.parametrize("field,value", [("target_modules", "(q_proj"), ("alpha_pattern", {"v_proj[": 4})])
def test_invalid_regex_is_a_clear_error(adapter, tmp_path, capsys, field, value):
    bad = with_config(adapter, tmp_path / "bad", **{field: value})
    code, err, _ = run(["merge", str(bad), str(adapter), "--method", "cat", "--out", str(tmp_path / "m")], capsys)
    assert code == 1 and f"field '{field}'" in err and "is not a valid regex" in err and "\n" not in err, err
    assert not (tmp_path / "m").exists()


def test_a_match_over_the_time_limit_is_refused(monkeypatch):
    """The regex package avoids most exponential backtracking; a polynomial one (each lazy group
    another power of the name's length) still meets the time limit."""
    monkeypatch.setattr(patterns, "MATCH_SECONDS", 0.01)
    name = "base_model.model.model.layers.0.self_attn.q_proj" * 4
    t0 = time.perf_counter()
    with pytest.raises(LorikitError, match=r"cfg.json: field 'target_modules': the regex .* takes over .* refused"):
        patterns.full_match(r"(?:\w|\.)*?(?:\w|\.)*?(?:\w|\.)*?(?:\w|\.)*?\d{9}", name, "cfg.json")
    assert time.perf_counter() - t0 < 1


# ---- YAML: one loader, bounded --------------------------------------------------------------
def test_alias_bomb_is_refused_before_it_is_built():
    t0 = time.perf_counter()
    with pytest.raises(UsageError, match=rf"bomb.yaml: refused: more than {MAX_NODES} values once its aliases"):
        parse_yaml(billion_laughs(), "bomb.yaml")  # 10^12 values once expanded
    assert time.perf_counter() - t0 < 2


def test_recursive_anchor_and_deep_nesting_are_refused():
    with pytest.raises(UsageError, match=r"r.yaml: refused: line \d+: an anchor that contains itself"):
        parse_yaml("a: &x [1, *x]\n", "r.yaml")
    with pytest.raises(UsageError, match=r"d.yaml: refused: nested (more than 100 levels|too) deep"):
        parse_yaml("a: " + "[" * 5000 + "]" * 5000 + "\n", "d.yaml")


def test_small_anchors_still_work():
    data = parse_yaml("base: &b {lr: 0.001, rank: 4}\nrun: {<<: *b, rank: 8}\nboth: [*b, *b]\n", "ok.yaml")
    assert data["run"] == {"lr": 0.001, "rank": 8} and data["both"] == [{"lr": 0.001, "rank": 4}] * 2


@pytest.mark.parametrize("command", ["train", "run", "study", "merge"])
def test_every_yaml_file_goes_through_the_bounded_loader(tmp_path, capsys, command):
    bomb = tmp_path / "bomb.yaml"
    if command == "run":
        bomb.write_text(billion_laughs() + "stages:\n  a: {kind: train, data: *a11}\n")
        argv = ["run", str(bomb), "--dry-run"]
    elif command == "train":
        bomb.write_text("x: " + billion_laughs().replace("\n", "\n  ").replace("a0:", "\n  a0:", 1))
        argv = ["train", "--config", str(bomb), "--out", str(tmp_path / "t")]
    elif command == "study":
        bomb.write_text(billion_laughs())
        argv = ["study", str(bomb)]
    else:
        bomb.write_text(billion_laughs())
        argv = ["merge", "--config", str(bomb), "--out", str(tmp_path / "m")]
    code, err, seconds = run(argv, capsys)
    assert code == 2 and "refused: more than" in err and "bomb.yaml" in err and "\n" not in err, err
    assert seconds < 10


@pytest.mark.parametrize("suffix,text", [(".yaml", "lr: 0.1\nmax_steps: 2\nlr: 0.2\n"),
                                         (".json", '{"lr": 0.1, "learning_rate": 0.2}'),
                                         (".json", '{"lr": 0.1, "lr": 0.2}')])
def test_train_config_refuses_a_setting_given_twice(tmp_path, capsys, suffix, text):
    cfg = tmp_path / f"c{suffix}"
    cfg.write_text(text)
    code, err, _ = run(["train", "--config", str(cfg), "--out", str(tmp_path / "t")], capsys)
    assert code == 2 and "duplicate key 'lr'" in err or "sets 'lr' a second time" in err, err
    assert not (tmp_path / "t").exists()


# ---- forged .lori headers: caps before any allocation ------------------------------------------
def repack(src: Path, dst: Path, index_edit=None, env_cap=None) -> Path:
    """A copy of ``src`` with its index edited and the checksum recomputed (integrity, not authenticity)."""
    import lzma

    import torch
    from safetensors import safe_open
    from safetensors.torch import save as st_save

    from lorikit.adapters import pack_checks

    with safe_open(str(src), "pt") as fh:
        metadata = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    index = json.loads(lzma.decompress(tensors["index"].numpy().tobytes()))
    index = index_edit(index)
    tensors["index"] = torch.frombuffer(bytearray(lzma.compress(json.dumps(index).encode())), dtype=torch.uint8)
    metadata[pack_checks.CHECKSUM_KEY] = pack_checks.digest(tensors, metadata)
    dst.write_bytes(st_save(tensors, metadata=metadata))
    return dst


@pytest.fixture(scope="module")
def packed(adapter, tmp_path_factory) -> Path:
    from lorikit.adapters.pack import pack_adapter

    out = tmp_path_factory.mktemp("p") / "a.lori"
    pack_adapter(adapter, out)
    return out


def test_seeded_a_with_one_more_column_is_refused(packed, tmp_path, capsys):
    def widen_one(index):
        seeded = next(e for e in index if e[1] == "seeded")
        seeded[3] = [seeded[3][0], seeded[3][1] + 1]
        return index

    forged = repack(packed, tmp_path / "wide.lori", widen_one)
    code, err, _ = run(["unpack", str(forged), "--out", str(tmp_path / "u")], capsys)
    assert code == 1 and re.search(r"layers\.\d+\.\S+lora_A\.weight has \d+ columns, \S+ of the same kind has \d+\)$",
                                   err), err
    assert not (tmp_path / "u").exists()


def test_seeded_a_with_another_rank_than_the_config_is_refused(packed, tmp_path, capsys):
    def rank_up(index):
        for e in index:
            if e[1] == "seeded":
                e[3] = [e[3][0] + 1, e[3][1]]
        return index

    forged = repack(packed, tmp_path / "rank.lori", rank_up)
    code, err, _ = run(["unpack", str(forged), "--out", str(tmp_path / "u")], capsys)
    assert code == 1 and "but the config's rank of" in err, err


def test_memory_cap_counts_what_unpacking_allocates_not_only_the_tensor_bytes(packed, tmp_path, capsys,
                                                                               monkeypatch):
    """Tensors of 0.5 cap pass a bytes-only check; unpacking them needs more than the cap."""
    from lorikit.adapters.pack import read_packed

    state, _ = read_packed(packed)
    tensor_bytes = sum(t.numel() * t.element_size() for t in state.tensors.values())
    monkeypatch.setenv("LORIKIT_MAX_UNPACK_BYTES", str(int(tensor_bytes * 1.5)))
    code, err, _ = run(["unpack", str(packed), "--out", str(tmp_path / "u")], capsys)
    assert code == 1 and "of memory to unpack, more than the" in err, err
    monkeypatch.setenv("LORIKIT_MAX_UNPACK_BYTES", str(tensor_bytes * 4))
    assert main(["unpack", str(packed), "--out", str(tmp_path / "u")]) == 0


def test_too_many_entries_or_elements_are_refused_before_allocating(packed, tmp_path, capsys, monkeypatch):
    many = repack(packed, tmp_path / "many.lori", lambda index: index * (100_000 // len(index) + 1))
    t0 = time.perf_counter()
    code, err, _ = run(["unpack", str(many), "--out", str(tmp_path / "u")], capsys)
    assert code == 1 and "more than the 100000 allowed" in err, err
    monkeypatch.setenv("LORIKIT_MAX_UNPACK_BYTES", str(2**60))
    huge = repack(packed, tmp_path / "huge.lori",
                  lambda index: [[k, h, d, [2**16, 2**16] if h == "seeded" else s] for k, h, d, s in index])
    code, err, _ = run(["unpack", str(huge), "--out", str(tmp_path / "u")], capsys)
    assert code == 1 and "elements, more than the 2147483647 a tensor may have" in err, err
    assert time.perf_counter() - t0 < 10
