"""A study's results from its per-item outcomes: the outcomes file, the run-level table, the
report (``table.md``, ``study.json``, figures) and the checks. Below the pipeline: the
``study-table`` stage calls it; ``lorikit.study`` (config, recipe, ``run_study``) sits above."""
