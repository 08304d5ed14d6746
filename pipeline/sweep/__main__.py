"""`python -m pipeline.sweep`: Hydra's sweeps (pipeline.sweep.runner; docs/sweeps.md)."""

from pipeline.common import stops

if __name__ == "__main__":
    stops.starting("pipeline.sweep")  # Ctrl-C while the sweep's modules import: exit 130
    from pipeline.sweep import runner

    runner.command()
