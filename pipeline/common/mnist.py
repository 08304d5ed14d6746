"""What MNIST is, written once: its arrays' names, the digits' shape, the classes, and the
fingerprint that names a copy by its arrays whatever zip holds them. Download, preprocess and
train all read it; none of them owns it, so editing one stage reruns only what depends on it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the config reads the shape; only a fingerprint needs NumPy
    import numpy as np

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")  # in mnist.npz, as Keras ships it
SIDE = 28  # pixels a side
INPUT_DIM = SIDE * SIDE  # the model's input: a digit as 784 floats
NUM_CLASSES = 10


def fingerprint(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the four arrays' bytes, C order, in ARRAY_KEYS order."""
    import numpy as np

    digest = hashlib.sha256()
    for key in ARRAY_KEYS:
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()
