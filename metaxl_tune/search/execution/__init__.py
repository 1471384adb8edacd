"""The Ray side of a search: the local cluster, resource fit, and the trainable that runs one trial.

Within search, may import search.faults and search.space.
"""
