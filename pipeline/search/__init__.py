"""The search: Optuna proposes configurations from a space written in Hydra's override
grammar, successive halving over epochs goes on through the checkpoint cache, and seeds race
before a best is named."""
