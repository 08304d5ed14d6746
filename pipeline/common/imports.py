"""Keras imported without the optional parts the pipeline never uses: its scikit-learn wrapper
and its image gallery. Keras imports them only if it can (`try: import sklearn`, `try: import
matplotlib.pyplot`) and works without them, but where they are installed, as MLflow installs
them, they cost each stage's process about a second of its start (scikit-learn brings SciPy's
statistics; pyplot, a GUI backend's set-up): docs/performance.md.

`leave_out_keras_extras` makes those two imports, and only when made by those Keras modules,
find nothing. Anyone else's `import sklearn` or `import matplotlib.pyplot`, before or after,
is untouched; a process that imports Keras before the pipeline keeps Keras' wrapper and
gallery. This module imports nothing heavy: the package imports it before any module of
ours imports Keras. A Keras that moves these imports elsewhere just imports them again
(tests/test_internals.py then says so), never fails to import.
"""

from __future__ import annotations

import importlib.abc
import sys
from types import FrameType
from typing import Any

# module asked for: the Keras modules whose optional import of it is left out (Keras 3.15.1)
KERAS_EXTRAS = {
    "sklearn": frozenset(
        {
            "keras.src.wrappers.fixes",
            "keras.src.wrappers.sklearn_wrapper",
            "keras.src.wrappers.utils",
        }
    ),
    "matplotlib.pyplot": frozenset({"keras.src.visualization.plot_image_gallery"}),
}


def _importer() -> str:
    """The module whose import statement is being carried out: the first frame outside
    Python's import machinery."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("importlib"):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "") if frame is not None else ""


class _KerasExtrasAbsent(importlib.abc.MetaPathFinder):
    """A finder that answers "no such module" for Keras' optional imports, and defers every
    other import to the finders after it."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in KERAS_EXTRAS and _importer() in KERAS_EXTRAS[name]:
            raise ModuleNotFoundError(f"{name} left out of Keras by the pipeline", name=name)
        return None


def leave_out_keras_extras() -> None:
    """Install the finder, once, unless Keras is already imported (nothing left to save)."""
    if "keras" not in sys.modules and not any(
        isinstance(finder, _KerasExtrasAbsent) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _KerasExtrasAbsent())
