"""`python -m pipeline.config`: compose conf/ (with Hydra overrides) into params.yaml, or
`--check` the file as it is, as the check_params stage does. Exit 1 if the config is invalid,
with the reason in one line. The command of the package, which it imports once."""

from __future__ import annotations

from pathlib import Path

from pipeline import config
from pipeline.common import entry, files


def main(argv: list[str] | None = None) -> None:
    """Write or check params.yaml; a ConfigError saying why when it is invalid."""
    parser = entry.parser(
        "pipeline.config", "Compose conf/ (with Hydra overrides) into params.yaml, or --check it."
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.epochs=10")
    parser.add_argument("--output", default=config.PARAMS_FILE, type=Path)
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate the existing file (the check_params stage)",
    )
    args = parser.parse_args(argv)
    if args.check:
        config.load(args.output)
    else:
        files.write_text(args.output, config.dump(config.compose(args.overrides)))
    print(f"{args.output} is valid" if args.check else f"wrote {args.output}")  # noqa: T201


if __name__ == "__main__":
    entry.run(main)
