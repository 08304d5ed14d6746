"""The compute floor of one training epoch: the floating-point work of the notebook's model,
at the most matrix-multiply throughput this machine gives either Keras backend."""

from __future__ import annotations

import statistics
import time

MODEL = (784, 512, 10)
TRAIN_SAMPLES = 60000


def flops_per_epoch(samples: int, layers: tuple[int, ...] = MODEL) -> dict[str, float]:
    """Floating-point work of one epoch of a Dense stack: the forward pass, plus the backward
    pass's weight gradients and the input gradients of every layer but the first ('real
    work'), and the common 3x-forward rule."""
    pairs = list(zip(layers, layers[1:], strict=False))
    forward = sum(2 * samples * a * b for a, b in pairs)
    input_grads = sum(2 * samples * a * b for a, b in pairs[1:])
    return {"real": 2 * forward + input_grads, "rule_of_3": 3 * forward}


def matmul_gflops(size: int = 4096, reps: int = 5) -> float:
    """Measured float32 matrix-multiply throughput: the faster of TensorFlow's and JAX's, the
    most this machine gives either backend."""
    import jax
    import tensorflow as tf

    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    on_jax = jax.jit(lambda x, y: x @ y)
    x, y = jax.numpy.asarray(a.numpy()), jax.numpy.asarray(b.numpy())
    products = (lambda: tf.linalg.matmul(a, b).numpy(), lambda: on_jax(x, y).block_until_ready())
    best = []
    for product in products:
        product()  # warm up
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            product()
            times.append(time.perf_counter() - started)
        best.append(statistics.median(times))
    return 2 * size**3 / min(best) / 1e9


def compute_floor() -> dict[str, float]:
    """One epoch's work and the seconds it takes at this machine's matrix-multiply peak."""
    work = flops_per_epoch(TRAIN_SAMPLES)
    peak = matmul_gflops()
    return {
        "matmul_gflops": peak,
        "gflop_real": work["real"] / 1e9,
        "gflop_rule_of_3": work["rule_of_3"] / 1e9,
        "floor_s": work["real"] / 1e9 / peak,
    }
