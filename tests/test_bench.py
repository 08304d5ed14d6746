"""The benchmark's arithmetic (its runs are measured by `python -m bench`, never in tests)."""

from __future__ import annotations

import pytest

from bench.floor import flops_per_epoch
from bench.harness import timed


def test_work_per_epoch_of_the_notebooks_model():
    work = flops_per_epoch(60000)
    forward = 2 * 60000 * (784 * 512 + 512 * 10)
    assert work["rule_of_3"] == 3 * forward
    # Forward, weight gradients, and the input gradient of the last layer only.
    assert work["real"] == 2 * forward + 2 * 60000 * 512 * 10
    assert work["real"] / 1e9 == pytest.approx(98.2, abs=0.1)


def test_peak_memory_is_the_commands_own(tmp_path):
    grow = "x = bytearray(200 * 2**20); print('done')"
    _, small, _ = timed(["python3", "-c", "print('done')"], tmp_path, None)
    _, big, output = timed(["python3", "-c", grow], tmp_path, None)
    assert output.strip() == "done"
    assert small < 60 and 200 < big < 300
