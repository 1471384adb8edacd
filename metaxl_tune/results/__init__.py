"""The MLflow record of runs and searches, and reading it back: tracking, ranking, report, analysis.

May import common, config, data, model and train.
"""
