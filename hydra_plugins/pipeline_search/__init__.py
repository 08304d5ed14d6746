"""The search as a Hydra sweeper (Hydra finds sweepers only under `hydra_plugins`)."""
