"""The commands' life cycle: options and presets, the driver lock, search, ablate, sync, compare, warm start.

The top of search: may import every subpackage of search.
"""
