"""Loupe's command line for everything that needs the store: ``loupe worker``, ``loupe demo``.

The detection core's own commands (fit, score, benchmark) stay in ``python -m adcore``.
"""
