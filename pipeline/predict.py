"""Predict digits with a trained model, as the notebook does with `model.predict`.

    python -m pipeline.predict digit.png scans/*.png arrays.npz [--model MODEL]

MODEL is where the model comes from (default: `models:/<tracking.registered_model>@champion`,
the registry's best by validation accuracy):
  models:/mnist@champion, models:/mnist/3    a registry alias or version
  runs:/<run id>/model, or just <run id>                 the model a run logged
  models/model.keras                                     a saved file (the train stage's)

Images (PNG, or anything else Pillow reads) become what the model was trained on: 28x28
grayscale, white digit on black, in [0, 1]. A dark digit on a light background is inverted.
A larger image is fitted the way MNIST was made: the digit's bounding box scaled to 20x20 and
centred by its centre of mass in 28x28. An `.npy` holds images (N x 28 x 28, N x 784 or one
28 x 28), an `.npz` one or more such arrays (others, like labels, are skipped); 0-255 or
[0, 1], finite: a file holding NaN, infinities or values outside 0-255 is refused, the model
never saw such digits. Each input prints its predicted digit and probability; a file that
cannot be read or is refused prints its error and the others go on (the exit status is then
1, as it is when no file could be used).
"""

from __future__ import annotations

import argparse
import logging
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline import PipelineError, config
from pipeline.common import entry
from pipeline.common.mnist import SIDE
from pipeline.tracking import registry
from pipeline.training import model

log = logging.getLogger(__name__)

BOX = 20  # MNIST digits fit a 20x20 box inside them
MIN_SIDE = 8  # smaller than this, no digit can be read
MAX_SIDE = 4096
INK = 0.1  # brighter than this (after inversion) is part of the digit
_RUN_ID = re.compile(r"[0-9a-f]{32}")


class InputError(PipelineError):
    """One input cannot be turned into a digit image; the message says why."""


class ValuesError(InputError):
    """An array shaped as digit images holds values no image has: in an `.npz` it refuses
    the file, where an array of another shape (labels) is skipped."""


def _fit(gray: np.ndarray) -> np.ndarray:
    """A larger image, MNIST-style: the ink's bounding box scaled to fit 20x20, placed in
    28x28 with its centre of mass in the middle."""
    rows, columns = np.nonzero(gray > INK)
    crop = gray[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    scale = BOX / max(crop.shape)
    height, width = (max(1, round(side * scale)) for side in crop.shape)
    small = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.LANCZOS))
    small = np.clip(small, 0, 1)
    total = small.sum()
    centre_row = (small.sum(axis=1) @ np.arange(height)) / total
    centre_column = (small.sum(axis=0) @ np.arange(width)) / total
    top = int(np.clip(round(SIDE / 2 - 0.5 - centre_row), 0, SIDE - height))
    left = int(np.clip(round(SIDE / 2 - 0.5 - centre_column), 0, SIDE - width))
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    out[top : top + height, left : left + width] = small
    return out


def from_image(image: Image.Image) -> np.ndarray:
    """A digit picture as the model's input: 784 floats in [0, 1], white on black."""
    width, height = image.size
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise InputError(
            f"{width}x{height} pixels: a digit needs {SIDE}x{SIDE}, or anything "
            f"from {MIN_SIDE} to {MAX_SIDE} pixels a side to be fitted"
        )
    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:  # a dark digit on a light background
        gray = 1 - gray
    if not (gray > INK).any():
        raise InputError("the image is blank: no digit in it")
    if gray.shape != (SIDE, SIDE):
        gray = _fit(gray)
    return gray.reshape(SIDE * SIDE)


def _not_pixels(array: np.ndarray) -> str | None:
    """What no pixel is, said with how many and the range found: NaN, infinities, values
    outside 0-255 (which scaling would make a digit of without a word); None if all are."""
    values = array.ravel()
    numbers = values[~np.isnan(values)]
    nan, infinite = values.size - numbers.size, int(np.isinf(numbers).sum())
    outside = int(np.count_nonzero((numbers < 0) | (numbers > 255))) - infinite
    if not nan + infinite + outside:
        return None
    counts = ((nan, "NaN"), (infinite, "infinite"), (outside, "outside 0-255"))
    found = f"{numbers.min():g} to {numbers.max():g}" if numbers.size else "no number"
    return (
        f"{nan + infinite + outside} of {values.size} values cannot be pixels "
        f"({', '.join(f'{count} {what}' for count, what in counts if count)}; found {found}): "
        "expected finite numbers from 0 to 255, or from 0 to 1"
    )


def from_arrays(name: str, array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Images held in an array, as (name, 784 floats) pairs; InputError if it holds none."""
    if array.shape == (SIDE, SIDE):
        array = array[None]
    if array.ndim not in (2, 3) or array.shape[1:] not in ((SIDE, SIDE), (SIDE * SIDE,)):
        raise InputError(
            f"shape {array.shape} holds no {SIDE}x{SIDE} images (expected "
            f"N x {SIDE} x {SIDE}, N x {SIDE * SIDE} or {SIDE} x {SIDE})"
        )
    if array.dtype.kind not in "iuf" or len(array) == 0:  # complex would lose a part
        raise InputError(f"{len(array)} images of dtype {array.dtype}: expected numbers")
    if (wrong := _not_pixels(array)) is not None:
        raise ValuesError(wrong)
    flat = array.reshape(len(array), SIDE * SIDE).astype(np.float32)
    if flat.max(initial=0) > 1:  # 0-255, as mnist.npz stores them
        flat /= 255
    return [(f"{name}[{i}]", row) for i, row in enumerate(flat)]


def read(path: Path) -> list[tuple[str, np.ndarray]]:
    """One input file as (name, 784 floats) pairs; InputError naming what is wrong."""
    try:
        if path.suffix in (".npy", ".npz"):
            loaded = np.load(path, allow_pickle=False)
            if path.suffix == ".npy":
                return from_arrays(str(path), loaded)
            with loaded:
                found = []
                for key in loaded.files:
                    try:
                        found += from_arrays(f"{path}:{key}", loaded[key])
                    except ValuesError as err:
                        raise ValuesError(f"array {key}: {err}") from None
                    except InputError as err:
                        log.info("skipping %s:%s: %s", path, key, err)
            if not found:
                raise InputError("no array in it holds digit images")
            return found
        with Image.open(path) as image:
            return [(str(path), from_image(image))]
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise InputError(
            f"{path}: not an image Pillow can read (PNG, JPEG, ...), nor an .npy/.npz of arrays"
        ) from None
    except (OSError, ValueError, zipfile.BadZipFile, Image.DecompressionBombError) as err:
        raise InputError(f"{path}: cannot read it ({err})") from None


def load(spec: str):  # noqa: ANN201 - a keras.Model
    """The model from a path, a `models:/` or `runs:/` URI, or a bare run id."""
    if _RUN_ID.fullmatch(spec):
        spec = f"runs:/{spec}/{registry.MODEL_NAME}"
    if spec.startswith(("models:/", "runs:/")):
        return registry.load_model(spec)
    return model.load(Path(spec))


def _default_model() -> str:
    try:
        name = config.load().tracking.registered_model
    except config.ConfigError:  # not in the project folder: the default name
        name = config.from_conf().tracking.registered_model
    return f"models:/{name}@{registry.CHAMPION}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="images, .npy or .npz files")
    parser.add_argument("--model", help="registry URI, runs:/ URI, run id or .keras path")
    args = parser.parse_args(argv)
    named, failed = [], 0
    for path in args.inputs:
        try:
            named += read(path)
        except InputError as err:
            log.error("error: %s", err)
            failed += 1
    if named:
        net = load(args.model or _default_model())
        proba = net.predict(np.stack([x for _, x in named]), verbose=0)
        width = max(len(name) for name, _ in named)
        for (name, _), row in zip(named, proba, strict=True):
            print(f"{name:<{width}}  {row.argmax()}  {100 * row.max():5.1f}%")  # noqa: T201
    if failed:
        raise PipelineError(f"{failed} of {len(args.inputs)} inputs could not be read (see above)")


if __name__ == "__main__":
    entry.run(main)
