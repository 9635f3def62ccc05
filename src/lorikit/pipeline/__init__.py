"""Recipes: a pipeline of named stages (train, analyze, ... — see ``kinds``) as YAML data, run in
dependency order with finished, unchanged stages skipped."""

from ..utils.lazy import lazy_exports

# public name -> the submodule defining it, imported on first use (PEP 562): the command line's
# --help and configs stay free of torch / transformers / PEFT
_EXPORTS = {
    "Recipe": "recipe", "Stage": "recipe", "load_recipe": "recipe", "parse_recipe": "recipe",
    "StagePlan": "runner", "plan_recipe": "runner", "run_recipe": "runner",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = ["Recipe", "Stage", "StagePlan", "load_recipe", "parse_recipe", "plan_recipe", "run_recipe"]
