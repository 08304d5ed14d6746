"""Sweeps: Hydra's jobs under one parent run, their findings, report, text and plots."""
