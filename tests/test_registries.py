"""The adapter-method and initialisation registries: every entry is reachable from the command line,
documented in docs/methods.md and exercised by at least one other test; and the registries answer
what the rest of lorikit asks them (validation, continual learning, regenerable A, counts)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

from lorikit.adapters.build import AdapterConfig
from lorikit.adapters.inits import INITS, data_init_names, get_init, seeded_init_names
from lorikit.adapters.methods import (METHODS, continual_method, find_method, get_method, method_names,
                                      regenerable_a)
from lorikit.adapters.seeded import module_seed, seeded_projection
from lorikit.cli import build_parser
from lorikit.errors import UsageError
from lorikit.train.config import SUBCONFIGS, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "methods.md").read_text()
OTHER_TESTS = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != Path(__file__).name)


def used_in_tests(setting: str, name: str) -> bool:
    """Some test (a block between blank-line pairs of another test file) names both ``setting`` and ``"name"``."""
    return any(setting in block and f'"{name}"' in block for block in OTHER_TESTS.split("\n\n\n"))


def option(command: str, flag: str) -> argparse.Action:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return next(a for a in sub._actions if flag in a.option_strings)


def choices(command: str, flag: str) -> tuple:
    return tuple(option(command, flag).choices)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, flags=re.M)}


def section(markdown: str, anchor: str) -> str:
    parts = re.split(r"^## ", markdown, flags=re.M)
    return next(p for p in parts if anchors("## " + p.splitlines()[0]) == {anchor})


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_is_reachable_documented_and_tested(name):
    assert name in choices("train", "--method")
    assert name in choices("params", "--method")
    assert name in anchors(DOC), f"docs/methods.md has no section #{name}"
    used = re.search(rf"""(method\s*=\s*|"--method",\s*|method:\s*)["']?{re.escape(name)}["'\s,)]""", OTHER_TESTS)
    assert used, f"no test trains or counts method {name}"
    assert f"{name} ({METHODS[name].summary})" in option("train", "--method").help
    assert (ROOT / "src/lorikit/adapters/methods" / f"{name.replace('-', '_')}.py").is_file()
    assert METHODS[name].title and METHODS[name].paper, f"{name}: register its title and paper (docs table, card)"


@pytest.mark.parametrize("name", list(INITS))
def test_every_init_is_reachable_documented_and_tested(name):
    init = INITS[name]
    flag = "--a-init" if init.seeded else "--init"
    assert name in choices("train", flag)
    assert f"`{name}`" in section(DOC, "initialisations"), f"docs/methods.md#initialisations lacks {name}"
    setting = "a_init" if init.seeded else "init="
    assert used_in_tests(setting, name) or used_in_tests(f'"{flag}"', name), f"no test uses init {name}"
    if not init.seeded:
        assert init.config_field in SUBCONFIGS, f"{name}: settings field {init.config_field!r} is no sub-config"
    assert init.title, f"{name}: register its title (docs/methods.md's table)"


def test_docs_tables_of_methods_and_inits_are_generated_from_the_registries():
    from lorikit.train.doc_table import generated, rewrite

    assert rewrite(DOC) == DOC, "run: python -m lorikit.train.doc_table docs/methods.md"
    for name, entry in [*METHODS.items(), *INITS.items()]:
        assert entry.title in generated() and entry.paper in generated(), name


def test_a_trained_adapters_card_cites_its_methods_paper_from_the_registry():
    from lorikit.adapters.card import card_text

    for name, method in METHODS.items():
        assert f"| paper | {method.title}: {method.paper} |" in card_text({"method": name}, {})
    merged = card_text({"method": "merge:ties", "merge": {"paper": "TIES-Merging: Yadav et al. 2023"}}, {})
    assert "| paper | TIES-Merging: Yadav et al. 2023 |" in merged  # a merge cites its merge method
    assert "| paper |" not in card_text({"method": "merge:linear", "merge": {}}, {})


def test_choices_are_the_registries_in_order():
    assert choices("train", "--method") == method_names() == choices("params", "--method")
    assert choices("train", "--a-init") == seeded_init_names()
    assert choices("train", "--init") == ("default", *data_init_names())


def test_unknown_names_are_one_line_usage_errors():
    choices = re.escape(", ".join(METHODS))  # lora, lori-d, lori-s
    with pytest.raises(UsageError, match=rf"^--method 'dora': unknown \(did you mean 'lora'\?\) \(choose from {choices}\)$"):
        get_method("dora")
    with pytest.raises(UsageError, match=r"^--init 'eva': unknown"):
        get_init("eva")
    assert find_method("merge:cat") is None and find_method(None) is None


def test_continual_learning_picks_the_method_by_mask():
    assert continual_method(with_mask=False).name == "lori-d"
    assert continual_method(with_mask=True).name == "lori-s"
    assert TrainConfig(out="o", from_adapter="p").train_method.name == "lori-d"
    assert TrainConfig(out="o", from_adapter="p", mask="m.pt").train_method.name == "lori-s"
    with pytest.raises(UsageError, match="--method lori-d with --mask: a mask trains sparse B, use --method lori-s"):
        TrainConfig(out="o", from_adapter="p", mask="m.pt", adapter=AdapterConfig(method="lori-d"))


def test_regenerable_a_only_for_seeded_methods_and_inits():
    assert regenerable_a({"method": "lori-d", "seed": 3}) == (3, "kaiming")
    assert regenerable_a({"method": "lori-s", "seed": 3, "a_init": "gaussian"}) == (3, "gaussian")
    assert regenerable_a({"method": "lori-d", "seed": 3, "a_init": "osrm"}) is None
    assert regenerable_a({"method": "lora", "seed": 3}) is None
    assert regenerable_a({"method": "lori-d"}) is None and regenerable_a(None) is None


def test_trainable_counts_follow_each_method():
    a, b = [8 * 64, 8 * 32], [96 * 8, 64 * 8]
    assert get_method("lora").trainable_count(a, b, 0.9, "global") == sum(a) + sum(b)
    assert get_method("lori-d").trainable_count(a, b, 0.9, "global") == sum(b)
    assert get_method("lori-s").trainable_count(a, b, 0.9, "global") == int((1 - 0.9) * sum(b)) == 127
    assert get_method("lori-s").trainable_count(a, b, 0.9, "module") == sum(int((1 - 0.9) * x) for x in b) == 127


def test_seeded_inits_draw_what_their_docstrings_say():
    # the built-ins, first and in this order (an added init registers after them)
    assert seeded_init_names()[:2] == ("kaiming", "gaussian") and data_init_names() == ("osrm",)
    k = seeded_projection(5, "m", 64, 4096, "kaiming")
    g = seeded_projection(5, "m", 64, 4096, "gaussian")
    assert k.abs().max() <= 1 / 4096 ** 0.5 and k.std().item() == pytest.approx((1 / 4096) ** 0.5 / 3 ** 0.5, rel=0.02)
    assert g.std().item() == pytest.approx(1 / 64 ** 0.5, rel=0.02)
    gen = torch.Generator().manual_seed(module_seed(5, "m"))
    assert torch.equal(get_init("gaussian").draw(gen, 64, 4096), g)


def test_flat_keys_route_to_the_sub_configs_and_back():
    cfg = TrainConfig.from_flat(out="o", method="lori-d", rank=8, seed=3, init="osrm", osrm_stats="s", task="t",
                                osrm_mode="cov", max_steps=2)
    assert (cfg.adapter.method, cfg.adapter.rank, cfg.adapter.seed) == ("lori-d", 8, 3)
    assert (cfg.osrm.osrm_stats, cfg.osrm.task, cfg.osrm.osrm_mode, cfg.max_steps) == ("s", "t", "cov", 2)
    flat = cfg.flat()
    assert flat["osrm_stats"] == "s" and flat["init"] == "osrm" and "adapter" not in flat and "osrm" not in flat
    assert cfg.adapter.seed == 3 and cfg.run_seed.value == 3  # nothing rewritten


def test_every_data_driven_init_brings_its_settings_subconfig():
    from dataclasses import fields

    from lorikit.adapters.inits import data_init_names, get_init
    from lorikit.train.config import SUBCONFIGS, TrainConfig

    own = {f.name: f for f in fields(TrainConfig)}
    for name in data_init_names():
        init = get_init(name)
        assert SUBCONFIGS[init.config_field] is init.settings, name
        assert init.config_field in own, f"TrainConfig needs a field {init.config_field}: {init.settings.__name__}"


def test_every_registry_is_one_registry_type():
    from lorikit.eval.tasks import TASKS
    from lorikit.merge.registry import methods as merge_methods
    from lorikit.pipeline.kinds import registered_kinds
    from lorikit.models.loading import MODEL_HEADS
    from lorikit.train.heads import HEADS
    from lorikit.utils.registry import Registry

    for table in (METHODS, INITS, HEADS, MODEL_HEADS, TASKS, merge_methods(), registered_kinds()):
        assert isinstance(table, Registry) and table.names() == tuple(table)
    with pytest.raises(ValueError, match="already registered"):
        INITS.add("kaiming", INITS["kaiming"])
    with pytest.raises(UsageError, match=r"^--head 'mlm': unknown \(choose from causal-lm, classification\)$"):
        HEADS.lookup("mlm", "--head")
    # merge methods answer to their PEFT / mergekit spellings, and an alias cannot be taken twice
    assert merge_methods().find("DARE_TIES") is merge_methods()["dare-ties"]
    with pytest.raises(ValueError, match="alias 'ties-svd' is already another entry's"):
        merge_methods().add("x-ties", merge_methods()["ties"], aliases=("ties_svd",))
    assert "x-ties" not in merge_methods()


@pytest.mark.parametrize("head", ["causal-lm", "classification"])
def test_every_training_head_loads_its_own_model_class(head):
    """Each training head has a model head of its name, which builds the matching transformers class."""
    from lorikit.models import load_model
    from lorikit.models.loading import MODEL_HEADS
    from lorikit.train.heads import HEADS

    assert set(HEADS) == set(MODEL_HEADS)
    model = load_model("tiny-random-llama", head=head, num_labels=3).model
    if head == "classification":
        assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.num_labels == 3
        assert model.score.out_features == 3
    else:
        assert type(model).__name__ == "LlamaForCausalLM"
    with pytest.raises(UsageError, match=r"^--head 'mlm': unknown \(choose from causal-lm, classification\)$"):
        load_model("tiny-random-llama", head="mlm")
