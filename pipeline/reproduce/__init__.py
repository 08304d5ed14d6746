"""Reproduce a run: `python -m pipeline.reproduce RUN_ID`, and its verdict."""
