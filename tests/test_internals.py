"""pipeline/training/internals.py and pipeline/common/imports.py: the Keras internals the
pipeline relies on are still there. Each test fails, naming the upgrade, the day a Keras
upgrade moves one; the code itself then falls back to Keras' own behaviour (slower, or not
byte-stable) rather than breaking."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import keras

from pipeline.training import internals, model


def test_keras_is_the_version_the_internals_were_read_from():
    assert keras.__version__ == internals.KERAS_TESTED, (
        f"Keras was upgraded from {internals.KERAS_TESTED} to {keras.__version__}: check the "
        "internals listed in pipeline/training/internals.py against it, then set KERAS_TESTED"
    )


def test_keras_still_has_its_lazy_tensorflow_module():
    lazy = internals._lazy_tensorflow()
    assert lazy is not None, (
        f"Keras {keras.__version__} no longer has keras.src.utils.module_utils.tensorflow"
        "._available: saving a model on JAX imports TensorFlow again (seconds per save); "
        "find Keras' new switch and update internals.without_tensorflow"
    )


def test_keras_still_stamps_what_the_rewrite_removes(tiny_cfg, tmp_path):
    net = model.build(tiny_cfg.model, tiny_cfg.train)
    net.save(tmp_path / "raw.keras")
    with zipfile.ZipFile(tmp_path / "raw.keras") as saved:
        names = saved.namelist()
        metadata = json.loads(saved.read(internals.METADATA))
    assert {internals.METADATA, internals.CONFIG} <= set(names), (
        f"Keras {keras.__version__} lays out a .keras file differently ({names}): update "
        "internals.stable, or a saved model's bytes may change from save to save"
    )
    assert internals.DATE_SAVED in metadata, (
        f"Keras {keras.__version__} no longer writes {internals.DATE_SAVED}: check what else "
        "it stamps, and update internals.stable"
    )


def test_the_rewrite_gives_the_same_bytes_for_the_same_model(tiny_cfg, tmp_path):
    net = model.build(tiny_cfg.model, tiny_cfg.train)
    model.save(net, tmp_path / "a.keras")
    model.save(net, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()


def _modules_after(code: str) -> dict:
    """What a fresh process holds after `code`: Keras' wrapper and gallery, sklearn, pyplot."""
    probe = (
        f"{code}\nimport json, sys\nfrom keras.src.visualization import plot_image_gallery\n"
        "from keras.src.wrappers import fixes\n"
        "print(json.dumps({'sklearn': 'sklearn' in sys.modules, "
        "'pyplot': 'matplotlib.pyplot' in sys.modules, "
        "'keras_has_sklearn': fixes.sklearn is not None, "
        "'keras_has_pyplot': plot_image_gallery.plt is not None}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_a_stage_imports_keras_without_its_sklearn_wrapper_and_gallery():
    found = _modules_after("import pipeline.train")
    assert not found["sklearn"] and not found["pyplot"], (
        f"Keras {keras.__version__} imports scikit-learn or pyplot from modules other than "
        f"those in pipeline/common/imports.py's KERAS_EXTRAS ({found}): each stage starts "
        "about a second later; find where and update KERAS_EXTRAS"
    )


def test_only_keras_goes_without_them():
    """The user's own imports of both work after the pipeline's; Keras imported first keeps
    its wrapper and gallery."""
    after = _modules_after("import pipeline.train, sklearn, matplotlib.pyplot")
    assert after == {
        "sklearn": True,
        "pyplot": True,
        "keras_has_sklearn": False,
        "keras_has_pyplot": False,
    }
    first = _modules_after("import keras, pipeline.train")
    assert first["keras_has_sklearn"] and first["keras_has_pyplot"]


def test_keras_still_builds_for_fit_as_the_scanned_fit_does(tiny_cfg):
    net = model.build(tiny_cfg.model, tiny_cfg.train)
    found = {name: hasattr(net, name) for name in ("_compile_metrics", "_compile_loss")}
    assert internals.scannable() and all(found.values()), (
        f"Keras {keras.__version__} no longer has Model._symbolic_build, _flatten_layers or "
        f"a compiled model's _compile_metrics/_compile_loss ({found}): the engine trains with "
        "Keras' own fit again (an epoch slower); read its fit and update "
        "internals.build_for_fit"
    )
