"""`python -m pipeline.search SPACE...`: a search (docs/sweeps.md), which is a Hydra sweep
with `hydra/sweeper=search` (hydra_plugins/pipeline_search, conf/hydra/sweeper/search.yaml):

    python -m pipeline.search 'model.dropout=interval(0, 0.5)' 'train.optimizer=choice(sgd, adam)'
    python -m pipeline.search search=mlp hydra.sweeper.trials=60   # a space kept in conf/search/
"""

import sys

from pipeline.common import stops

if __name__ == "__main__":
    stops.starting("pipeline.search")  # Ctrl-C while the modules import: exit 130
    from pipeline.sweep import runner

    asks = {"--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"} & set(sys.argv)
    mode = [] if asks else ["--multirun"]  # Hydra takes one of them: `--info plugins` alone
    sys.argv[1:] = [*mode, "hydra/sweeper=search", *sys.argv[1:]]
    runner.command()
