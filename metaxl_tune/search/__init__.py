"""Hyperparameter search with Ray Tune and Optuna, as subpackages from the bottom up:
faults < space < execution < records < driver (each imports only those before it).

May import every layer below search (common, config, data, model, train, results).
"""
