"""Keras' `fit` on JAX, its steps run by `jax.lax.scan`: the same updates in the same order, so
the same weights and history to the bit, and a steady epoch about a tenth sooner
(docs/performance.md#what-makes-it-fast).

Keras' own loop calls the backend once a batch, each call after slicing that batch out of the
training digits. Here an epoch's order is drawn as Keras draws it (`np.random.permutation`,
one draw an epoch, after one more for the build), and each call into the backend gathers its
`steps_per_execution` batches in that order and runs them as one scan of Keras' own
`train_step`, the JAX trainer's documented `train_step(state, data)`. What surrounds the steps
is Keras' fit's, in its order: the callbacks (a batch hook a call, as Keras calls them with
`steps_per_execution`), the metrics, validation by `evaluate`, early stopping's `stop_training`.
The train step's state is Keras' `(trainable, non-trainable, optimizer, metrics)` variables'
values, put back into the variables at each epoch's end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import keras
import numpy as np

from pipeline.training import internals

State = tuple[list, list, list, list]


def _variables(net: keras.Model) -> tuple[list, list, list, list]:
    """The variables whose values make the train step's state, in its order."""
    return (
        net.trainable_variables,
        net.non_trainable_variables,
        net.optimizer.variables,
        net.metrics_variables,
    )


def _state(net: keras.Model) -> State:
    return tuple([v.value for v in group] for group in _variables(net))  # type: ignore[return-value]


def _put_back(net: keras.Model, state: State) -> None:
    for group, values in zip(_variables(net), state, strict=True):
        for variable, value in zip(group, values, strict=True):
            variable.assign(value)


def _steps(net: keras.Model, batch_size: int) -> Callable:
    """One call into the backend: the batches whose digits `order` lists, in turn, each
    `batch_size` long but a shorter last one (`tail`), gathered there and run by a scan of
    Keras' train step. Returns the last step's logs and the state after it."""

    def step(state: State, batch: tuple) -> tuple[State, dict]:
        logs, state = net.train_step(state, batch)
        return state, logs

    @jax.jit
    def run(state: State, x: Any, y: Any, order: Any, tail: Any) -> tuple[dict, State]:
        logs: dict = {}
        if order.shape[0]:
            batches = order.reshape(-1, batch_size)
            state, stacked = jax.lax.scan(step, state, (x[batches], y[batches]))
            logs = jax.tree.map(lambda value: value[-1], stacked)
        if tail.shape[0]:
            state, logs = step(state, (x[tail], y[tail]))
        return logs, state

    return run


def _epoch(
    net: keras.Model,
    run: Callable,
    data: tuple,
    batch_size: int,
    calls: keras.callbacks.CallbackList,
) -> dict:
    """Train one epoch: Keras' order of the digits, `steps_per_execution` batches a call."""
    x, y = data
    whole = len(x) // batch_size * batch_size
    per_call = net.steps_per_execution * batch_size
    starts = range(0, whole, per_call) or range(1)  # fewer digits than a batch: the tail alone
    state, logs, step = _state(net), {}, 0
    for start in starts:
        calls.on_train_batch_begin(step)
        if start == 0:  # drawn as Keras' iterator draws it: once the first step has begun
            order = np.random.permutation(len(x)).astype(np.int32)
        stop = min(start + per_call, whole)
        tail = order[whole:] if start == starts[-1] else order[:0]  # with the last call
        logs, state = run(state, x, y, order[start:stop], tail)
        step += math.ceil((stop - start + len(tail)) / batch_size)
        calls.on_train_batch_end(step - 1, logs)
        if net.stop_training:
            break
    _put_back(net, state)
    return {name: float(value) for name, value in net.get_metrics_result().items()}


def _validated(net: keras.Model, validation: tuple, batch_size: int) -> dict:
    """Validation's metrics, as Keras' fit names them: `evaluate` on the held-out digits."""
    if not len(validation[0]):
        return {}
    tested = net.evaluate(*validation, batch_size=batch_size, verbose=0, return_dict=True)
    return {f"val_{name}": value for name, value in tested.items()}


def _split(net: keras.Model, x: np.ndarray, y: np.ndarray, batch: int, held_out: float) -> tuple:
    """Keras' `validation_split` (the last digits held out), the model built as Keras' fit
    builds it; both parts sliced on the host (a backend array's slice is one more XLA program
    to compile) and put on the device."""
    split = int(math.floor(len(x) * (1.0 - held_out)))
    internals.build_for_fit(net, (x[:batch], y[:batch]), split)
    return jax.device_put(((x[:split], y[:split]), (x[split:], y[split:])))


def fit(
    net: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    epochs: int,
    initial_epoch: int = 0,
    validation_split: float = 0.0,
    callbacks: list | None = None,
    verbose: int = 0,
) -> Any:
    """`net.fit(x, y, ...)` with these arguments, for a compiled model never trained before:
    on JAX its steps scanned, with the same weights, history and callbacks' calls; elsewhere
    Keras' own. Returns Keras' History."""
    if not internals.scannable():  # given tensors, Keras spares a copy a fit and a slice a batch
        tensors = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
        return net.fit(
            *tensors, batch_size, epochs, verbose, callbacks, validation_split,
            initial_epoch=initial_epoch,
        )  # fmt: skip
    train, validation = _split(net, x, y, batch_size, validation_split)
    params = {"verbose": verbose, "epochs": epochs, "steps": math.ceil(len(train[0]) / batch_size)}
    calls = keras.callbacks.CallbackList(callbacks, True, verbose != 0, net, **params)  # fit's
    run, logs = _steps(net, batch_size), {}
    net.stop_training = False
    calls.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        net.reset_metrics()
        calls.on_epoch_begin(epoch)
        logs = _epoch(net, run, train, batch_size, calls)
        logs |= _validated(net, validation, batch_size)  # after: it resets the metrics
        calls.on_epoch_end(epoch, logs)
        if net.stop_training:
            break
    if epochs > 0:
        net.optimizer.finalize_variable_values(net.trainable_weights)
    calls.on_train_end(logs=logs)
    return net.history
