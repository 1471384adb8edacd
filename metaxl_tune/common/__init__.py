"""Shared plumbing with no knowledge of MetaXL: names, paths, languages, terminal output, value origins.

Imports nothing of metaxl_tune: every other layer may import it.
"""
