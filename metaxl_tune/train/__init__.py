"""One training run: the trainer (its epoch loop; batches, evaluation and outcome beside it), the
bi-level step (bilevel.py), checkpoints, metrics and data preparation.

May import common, config, data and model; never Ray or MLflow (tests/test_layers.py enforces it).
"""
