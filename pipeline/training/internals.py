"""The places where the pipeline leans on Keras beyond its public API, kept here (the third,
which must act before Keras is imported, in pipeline/common/imports.py), each guarded: where
the internal it relies on is gone, the code falls back to Keras' own (slower, or not
byte-stable) behaviour instead of breaking, and tests/test_internals.py fails with a message
that names the upgrade.

1. Keeping TensorFlow unimported on JAX (`without_tensorflow`): Keras imports TensorFlow
   whenever it is installed, on any backend, to save a model (keras-team/keras#18455). No
   public switch turns that off.
2. A `.keras` file whose bytes depend on the model alone (`stable`): Keras stamps the file
   with the time it was saved and numbers shared objects by memory address. No public option
   leaves those out.
3. A stage's Keras without its scikit-learn wrapper and image gallery
   (`pipeline.common.imports`): Keras imports both whenever they are installed, about a
   second of each process's start, and has no switch to leave them out.
4. Keras' fit on JAX with its steps scanned (pipeline/training/loop.py, `build_for_fit`): the
   build Keras' fit makes before its first epoch, and the order of digits it draws for it.
   Keras has no public way to run many steps as one call into the backend.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import keras
import numpy as np

KERAS_TESTED = "3.15.1"  # the version these internals were read from (constraints.txt)


def _lazy_tensorflow() -> Any:
    """Keras' lazily imported `tensorflow` module, or None where Keras no longer has it."""
    try:
        from keras.src.utils import module_utils
    except ImportError:
        return None
    lazy = getattr(module_utils, "tensorflow", None)
    return lazy if hasattr(lazy, "_available") else None


def without_tensorflow() -> None:
    """On another backend, in a process that has not imported TensorFlow: tell Keras it is not
    there. Saving a model otherwise imports it only to ask whether the model's config holds
    TensorFlow objects (`tf.TensorShape`), which a process without TensorFlow cannot have made.
    What is saved is the same bytes."""
    if keras.backend.backend() != "tensorflow" and "tensorflow" not in sys.modules:
        lazy = _lazy_tensorflow()
        if lazy is not None:
            lazy._available = False


# What Keras writes into a `.keras` zip that is not the model: the time it was saved
# (`date_saved` in metadata.json; the weights' zip entry's date, which `model.save` resets),
# and the ids of the objects its config shares (`shared_object_id`), which are memory addresses.
METADATA, CONFIG = "metadata.json", "config.json"
DATE_SAVED, SHARED = "date_saved", "shared_object_id"


def _renumbered(node: Any, numbers: dict[int, int]) -> Any:
    """`node` with each shared object's id replaced by its order of first appearance."""
    if isinstance(node, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1)
            if key == SHARED
            else _renumbered(value, numbers)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renumbered(item, numbers) for item in node]
    return node


def stable(name: str, content: bytes) -> bytes:
    """A `.keras` zip entry's bytes without what Keras writes that is not the model."""
    if name == METADATA:
        stamp = json.loads(content)
        stamp.pop(DATE_SAVED, None)
        return json.dumps(stamp).encode()
    if name == CONFIG:
        return json.dumps(_renumbered(json.loads(content), {})).encode()
    return content


# 4. Keras' fit, its steps scanned (pipeline/training/loop.py): the build fit makes before its
# first epoch, and the order of digits it draws for it.


def scannable() -> bool:
    """Whether this Keras has the build step `build_for_fit` calls; without it the engine
    trains with Keras' own `fit` (slower, the same numbers)."""
    needed = ("_symbolic_build", "_flatten_layers")
    return keras.backend.backend() == "jax" and all(hasattr(keras.Model, n) for n in needed)


def build_for_fit(net: keras.Model, batch: tuple, samples: int) -> None:
    """What Keras' fit does before its first epoch: build the model, its loss and metrics on a
    batch (`_symbolic_build`); where any needed building, its data iterator drew an order of
    the `samples` training digits to take that batch from, an order then thrown away: draw it
    too, so that each epoch's order is the one Keras' fit would draw."""
    compiled = (getattr(net, "_compile_metrics", None), getattr(net, "_compile_loss", None))
    parts = (*net._flatten_layers(), *compiled)
    unbuilt = any(part is not None and not part.built for part in parts)
    net._symbolic_build(data_batch=batch)
    if unbuilt:
        np.random.permutation(samples)
