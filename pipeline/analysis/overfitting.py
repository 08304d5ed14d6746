"""Where overfitting starts in a run, read off its per-epoch validation curves. Pure: lists of
numbers in, epochs (1-based) out.

- the best epoch by validation loss (the first of its lowest values), and by validation
  accuracy (the first of its highest);
- the onset: the first epoch from which validation loss stays above its minimum by more than
  `TOLERANCE` (relative) to the end of the training. A loss that wobbles back near its
  minimum has not started overfitting yet; one that ends at its minimum never has (None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import pandas as pd

TOLERANCE = 0.02  # 2% above the lowest validation loss: past epoch-to-epoch noise here
KEPT = "weights_kept"  # a history column: 1 on the epoch whose weights the model holds


def kept(history: pd.DataFrame) -> pd.Series:
    """The history row of the epoch whose weights the model holds: the last one, or under
    early stopping the best."""
    if KEPT in history:
        return history.loc[history[KEPT] == 1].iloc[-1]
    return history.iloc[-1]


@dataclass(frozen=True)
class Located:
    best_val_loss_epoch: int
    best_val_accuracy_epoch: int | None
    overfitting_onset_epoch: int | None

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)


def onset(val_loss: Sequence[float], tolerance: float = TOLERANCE) -> int | None:
    """The first epoch from which validation loss stays above `(1 + tolerance)` times its
    minimum until the end; None when the last epoch is within that of the minimum."""
    ceiling = min(val_loss) * (1 + tolerance)
    start = None
    for epoch, loss in enumerate(val_loss, start=1):
        if loss <= ceiling:
            start = None
        elif start is None:
            start = epoch
    return start


def locate(
    val_loss: Sequence[float],
    val_accuracy: Sequence[float] | None = None,
    tolerance: float = TOLERANCE,
) -> Located:
    """The best epochs and the onset of overfitting of one run's validation curves."""
    if not val_loss:
        raise ValueError("no epochs: nothing to locate")
    best_accuracy = None
    if val_accuracy:
        best_accuracy = 1 + max(range(len(val_accuracy)), key=lambda i: (val_accuracy[i], -i))
    return Located(
        best_val_loss_epoch=1 + min(range(len(val_loss)), key=lambda i: (val_loss[i], i)),
        best_val_accuracy_epoch=best_accuracy,
        overfitting_onset_epoch=onset(val_loss, tolerance),
    )
