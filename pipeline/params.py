"""`python -m pipeline.config`: compose conf/ (with Hydra overrides) into params.yaml, or
`--check` the file as it is, as the check_params stage does. Exit 2 if the config is invalid."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import config, files


def main(argv: list[str] | None = None) -> int:
    """Write or check params.yaml; 0 when done, 2 (with the reason on stderr) when invalid."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.config",
        description="Compose conf/ (with Hydra overrides) into params.yaml, or --check it.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.epochs=10")
    parser.add_argument("--output", default=config.PARAMS_FILE, type=Path)
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate the existing file (the check_params stage)",
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            config.load(args.output)
        else:
            files.write_text(args.output, config.dump(config.compose(args.overrides)))
    except config.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)  # noqa: T201
        return 2
    print(f"{args.output} is valid" if args.check else f"wrote {args.output}")  # noqa: T201
    return 0
