"""Scorers: one small module per answer format, each with its extraction rule in the docstring.

``gsm8k`` (number after "The final answer is:"), ``nlu`` (first answer token), ``exact`` (exact
match after strip), ``safety`` (refusal keywords on the response), ``humaneval`` (pass@k).
Classification metrics live in ``classification`` (accuracy, f1, matthews, pearson, spearman).
"""
