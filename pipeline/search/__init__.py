"""The search: Optuna proposes configurations from a space written in Hydra's override
grammar, successive halving over epochs goes on through the checkpoint cache, and seeds race
before a best is named."""

OUTCOME = "search.json"  # in the sweep's folder: what the search did, for its report
SWEEPER = "hydra_plugins.pipeline_search.search_sweeper.SearchSweeper"  # hydra/sweeper=search
OWN = ["train.epochs", "train.seed"]  # what the search sets in each job: its rung, its seed
