"""Recipes: a pipeline of named stages (train, analyze, ... — see ``kinds``) as YAML data, run in
dependency order with finished, unchanged stages skipped."""

from .recipe import Recipe, Stage, load_recipe, parse_recipe
from .runner import StagePlan, plan_recipe, run_recipe

__all__ = ["Recipe", "Stage", "StagePlan", "load_recipe", "parse_recipe", "plan_recipe", "run_recipe"]
