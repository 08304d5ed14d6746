"""The benchmark's arithmetic (its runs are measured by `python -m bench`, never in tests)."""

from __future__ import annotations

import pytest

from bench import costs
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


def test_a_phase_is_timed_without_the_phases_inside_it(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(costs.time, "perf_counter", lambda: now[0])
    clock = costs.Clock()

    def inner():
        now[0] += 2

    def outer():
        now[0] += 1
        timed_inner()
        now[0] += 3

    timed_inner, timed_outer = clock.wrap("inner", inner), clock.wrap("outer", outer)
    clock.wrap(costs.JOB, lambda: None)()  # a job begins: its phases are its own
    timed_outer()
    timed_inner()
    assert clock.jobs[0] == {} and clock.jobs[1] == {"other": 0, "outer": 4, "inner": 4}
