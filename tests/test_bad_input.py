"""Failures a user can cause, run for real as the user runs them (a command, a stage as DVC
runs it, `dvc exp run`): each is one line saying what was wrong and what to do, exit 1, and no
traceback (issue 25). The module's own tests check the same messages in process."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from pipeline import config
from pipeline.training import engine, model

from .helpers.project import copy_project, sh
from .helpers.stage import Stage

LOGGED = re.compile(r"\d\d:\d\d:\d\d (\S+: error: .*)")  # entry.setup's format, less the time


def errors(done: subprocess.CompletedProcess) -> list[str]:
    """The error lines a command logged, without their time; none of them a traceback."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    return [m.group(1) for line in output.splitlines() if (m := LOGGED.fullmatch(line))]


def command(folder, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=folder, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "value, shown", [("inf", "inf"), ("nan", "nan"), ("0", "0.0"), ("-0.1", "-0.1")]
)
def test_a_learning_rate_that_is_not_a_positive_finite_number(tmp_path, value, shown):
    done = command(tmp_path, "pipeline.config", f"train.learning_rate={value}")
    assert done.returncode == 1
    assert errors(done) == [
        f"pipeline: error: {config.CONF_DIR} with overrides ['train.learning_rate={value}']: "
        f"train.learning_rate must be a finite number > 0, got {shown} "
        "(for example train.learning_rate=0.001)"
    ]
    assert not (tmp_path / "params.yaml").exists()


def test_a_model_too_large_to_train_is_refused_before_xla_runs_out(tmp_path):
    """Not XLA's 48 lines of RESOURCE_EXHAUSTED, nor the kernel's OOM killer."""
    done = Stage(tmp_path, "model.hidden_units=100000000").run("train")
    assert done.returncode == 1
    (line,) = errors(done)
    assert re.fullmatch(
        re.escape(
            "pipeline: error: model=dense (model.hidden_units=100000000, model.activation=relu) "
            "needs about 992.4 GB to train (79,500,000,010 parameters, batches of 32), more than "
            "the "
        )
        + r"\d+\.\d [kMGT]?B"
        + re.escape(" this machine has free: choose fewer hidden units (model.hidden_units)"),
        line,
    ), line
    assert not (tmp_path / "models" / "model.keras").exists()


@pytest.fixture
def trained(tiny_cfg, tiny_data, tmp_path):
    """A tiny trained model saved where `--model` finds it."""
    net, _ = engine.train(tiny_cfg, *tiny_data, verbose=0)
    model.save(net, tmp_path / "model.keras")
    return tmp_path / "model.keras"


def test_predict_refuses_nan_and_out_of_range_files_and_predicts_the_rest(tmp_path, trained):
    digits = np.zeros((2, 28, 28), dtype=np.float32)
    digits[:, 4:20, 10:14] = 255
    np.save(tmp_path / "good.npy", digits)
    digits[0, 0, :3] = [np.nan, np.inf, -np.inf]
    np.save(tmp_path / "nan.npy", digits)
    digits[0, 0, :3] = [300, -2, 0]
    np.save(tmp_path / "bright.npy", digits)
    expected = "expected finite numbers from 0 to 255, or from 0 to 1"

    done = command(
        tmp_path, "pipeline.predict", "nan.npy", "good.npy", "bright.npy", "--model", trained.name
    )

    assert done.returncode == 1
    assert errors(done) == [
        "__main__: error: nan.npy: 3 of 1568 values cannot be pixels (1 NaN, 2 infinite; "
        f"found -inf to inf): {expected}",
        "__main__: error: bright.npy: 2 of 1568 values cannot be pixels (2 outside 0-255; "
        f"found -2 to 300): {expected}",
        "pipeline: error: 2 of 3 inputs could not be read (see above)",
    ]
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["good.npy[0]", "good.npy[1]"]
    assert "nan%" not in done.stdout

    alone = command(tmp_path, "pipeline.predict", "nan.npy", "--model", trained.name)
    assert alone.returncode == 1 and alone.stdout == ""
    assert errors(alone)[1:] == ["pipeline: error: 1 of 1 inputs could not be read (see above)"]


RESTORE = (
    "params.yaml holds it (a hand edit, or a failed dvc exp run -S): recompose it from conf/ "
    "with `python -m pipeline.config`"
)
BAD_SEED = (
    "pipeline: error: params.yaml: train.seed: Value 'abc' of type 'str' could not be "
    f"converted to Integer (for example train.seed=42); {RESTORE}"
)


def test_a_bad_value_left_in_params_yaml_says_how_to_restore_it(tmp_path):
    stage = Stage(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text().replace("seed: 42", "seed: abc"))
    for done in (stage.run("train"), stage.run("config", "--check")):
        assert done.returncode == 1
        assert errors(done) == [BAD_SEED]


def test_a_failed_dvc_exp_run_dash_s_says_how_to_restore_params_yaml(tmp_path):
    """DVC writes the composed params.yaml before the stages run and leaves it when one fails
    (2 s: check_params fails first). The line says how to get it back, and that works."""
    project = tmp_path / "project"
    env = copy_project(project)

    done = subprocess.run(
        ["dvc", "exp", "run", "-S", "train.seed=abc"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode != 0
    assert errors(done) == [BAD_SEED]
    assert "seed: abc" in (project / "params.yaml").read_text()
    sh(project, env, sys.executable, "-m", "pipeline.config")
    restored = sh(project, env, "git", "status", "--porcelain")
    assert restored == "", "python -m pipeline.config did not give back the committed file"
