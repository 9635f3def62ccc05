"""Scorers: turn predictions and references into task metrics."""
