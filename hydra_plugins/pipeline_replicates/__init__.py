"""The project's Hydra sweeper (`hydra/sweeper=replicates`, conf/config.yaml's default): Hydra
loads sweepers from the `hydra_plugins` namespace package alone."""
