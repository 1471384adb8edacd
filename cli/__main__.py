"""`python -m metaxl_tune.cli` runs the command line (tests use it to avoid PATH lookups)."""

from .launch import main

main()
