"""How a search stops or survives: interrupts, the ending of a trial, fault lines, quiet output, storage.

May import no other part of search; below search, any layer.
"""
