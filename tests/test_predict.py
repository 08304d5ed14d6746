"""`python -m pipeline.predict`: pictures and arrays in, digits out, one error per bad file."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from pipeline import PipelineError, predict
from pipeline.tracking import registry, runs, store
from pipeline.training import engine

from .helpers.data import synthetic_digits


def _png(path, pixels: np.ndarray):
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def _digit(seed: int = 0) -> np.ndarray:
    """A 28x28 uint8 white-on-black 'digit': a thick stroke, away from the centre."""
    image = np.zeros((28, 28), dtype=np.uint8)
    image[4:20, 6 + seed : 10 + seed] = 255
    return image


def test_a_28x28_white_on_black_image_is_used_as_it_is():
    pixels = _digit()
    np.testing.assert_allclose(
        predict.from_image(Image.fromarray(pixels)), pixels.reshape(784) / 255
    )


def test_a_dark_digit_on_a_light_background_is_inverted():
    pixels = _digit()
    np.testing.assert_allclose(
        predict.from_image(Image.fromarray(255 - pixels)), pixels.reshape(784) / 255, atol=1e-6
    )


def test_a_large_photo_is_fitted_like_mnist_20x20_and_centred():
    big = np.full((300, 200), 250, dtype=np.uint8)  # black stroke on white, off-centre
    big[20:180, 10:50] = 5
    fitted = predict.from_image(Image.fromarray(big).convert("RGB")).reshape(28, 28)
    rows, columns = np.nonzero(fitted > predict.INK)
    assert rows.max() - rows.min() + 1 == 20, "the longer side is not 20 pixels"
    assert columns.max() - columns.min() + 1 == 5
    mass = fitted / fitted.sum()
    assert mass.sum(axis=1) @ np.arange(28) == pytest.approx(13.5, abs=0.6)
    assert mass.sum(axis=0) @ np.arange(28) == pytest.approx(13.5, abs=0.6)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("notes.png", lambda p: p.write_text("not a picture"), "not an image Pillow can read"),
        ("empty.png", lambda p: p.write_bytes(b""), "not an image Pillow can read"),
        ("tiny.png", lambda p: _png(p, _digit()[:5, :5]), "5x5 pixels"),
        ("blank.png", lambda p: _png(p, np.zeros((28, 28))), "the image is blank"),
        ("labels.npy", lambda p: np.save(p, np.arange(10)), "shape (10,) holds no 28x28 images"),
        ("labels.npz", lambda p: np.savez(p, y=np.arange(10)), "no array in it holds digit"),
        ("broken.npz", lambda p: p.write_bytes(b"PK\x03\x04 broken"), "cannot read it"),
        ("missing.png", lambda p: None, "no such file"),
    ],
)
def test_bad_inputs_say_which_file_and_what_is_wrong(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(predict.InputError, match=rf"{name}: .*{re.escape(message)}"):
        predict.read(path)


def test_arrays_in_npz_and_npy_are_read_with_0_255_scaled(tmp_path):
    images = np.stack([_digit(0), _digit(5)])
    np.savez(tmp_path / "mnist-like.npz", x_test=images, y_test=np.array([1, 1]))
    np.save(tmp_path / "flat.npy", images.reshape(2, 784) / 255)
    named = predict.read(tmp_path / "mnist-like.npz") + predict.read(tmp_path / "flat.npy")
    assert [name.rpartition("/")[2] for name, _ in named] == [
        "mnist-like.npz:x_test[0]",
        "mnist-like.npz:x_test[1]",
        "flat.npy[0]",
        "flat.npy[1]",
    ]
    np.testing.assert_allclose(named[0][1], named[2][1])
    assert max(x.max() for _, x in named) == 1.0


def _with(value: float, at: tuple = (0, 0, 0), dtype=np.float32) -> np.ndarray:
    """Two 0-255 digits, one value of them replaced."""
    images = np.stack([_digit(0), _digit(5)]).astype(dtype)
    images[at] = value
    return images


EXPECTED = "expected finite numbers from 0 to 255, or from 0 to 1"


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("nan.npy", lambda p: np.save(p, _with(np.nan)), "1 NaN; found 0 to 255"),
        ("inf.npy", lambda p: np.save(p, _with(np.inf)), "1 infinite; found 0 to inf"),
        ("bright.npy", lambda p: np.save(p, _with(1000.0)), "1 outside 0-255; found 0 to 1000"),
        ("negative.npy", lambda p: np.save(p, _with(-0.5)), "1 outside 0-255; found -0.5 to 255"),
        (
            "wide.npy",
            lambda p: np.save(p, _with(-1, dtype=np.int16)),
            "1 outside 0-255; found -1 to 255",
        ),
        (
            "float64.npy",
            lambda p: np.save(p, _with(1e300, dtype=np.float64)),
            "1 outside 0-255; found 0 to 1e+300",
        ),
        ("all-nan.npy", lambda p: np.save(p, np.full((28, 28), np.nan)), "784 NaN; found no"),
    ],
)
def test_values_no_image_has_are_refused_saying_how_many_and_the_range(
    tmp_path, name, make, message
):
    """Refused, not scaled by 1/255 into a digit the model would classify without a word."""
    path = tmp_path / name
    make(path)
    with pytest.raises(predict.InputError) as caught:
        predict.read(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert f"values cannot be pixels ({message}" in str(caught.value)
    assert str(caught.value).endswith(EXPECTED)


def test_a_bad_array_in_an_npz_refuses_the_file_naming_the_array(tmp_path):
    """Labels are skipped; an array of digit images holding NaN is not: it is an error."""
    path = tmp_path / "arrays.npz"
    np.savez(path, x_test=_with(np.nan, at=(1, 3, 3)), y_test=np.array([1, 1]))
    with pytest.raises(predict.InputError) as caught:
        predict.read(path)
    assert str(caught.value) == (
        f"{path}: array x_test: 1 of 1568 values cannot be pixels (1 NaN; found 0 to 255): "
        + EXPECTED
    )


def test_complex_arrays_are_refused_rather_than_cast(tmp_path):
    np.save(tmp_path / "complex.npy", np.zeros((28, 28), dtype=np.complex64))
    with pytest.raises(predict.InputError, match="dtype complex64: expected numbers"):
        predict.read(tmp_path / "complex.npy")


@pytest.fixture
def champion(tiny_cfg, tmp_path):
    """A tiny model trained on synthetic digits, registered as the champion."""
    net, history = engine.train(tiny_cfg, *synthetic_digits(400), verbose=0)
    with runs.start("exp"):
        registry.register("mnist", registry.log_model(net), 0.9, family="dense")
    return net


def test_predicts_each_good_input_and_reports_each_bad_one(
    champion, tmp_path, monkeypatch, capsys, caplog
):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the default registered name
    images, _ = synthetic_digits(3, seed=5)
    pixels = (images * 255).round().reshape(3, 28, 28)
    good = [_png(tmp_path / f"{i}.png", pixels[i]) for i in range(3)]
    (tmp_path / "bad.png").write_text("oops")
    with pytest.raises(PipelineError, match="1 of 4 inputs could not be read"):
        predict.main([str(good[0]), str(tmp_path / "bad.png"), str(good[1]), str(good[2])])
    lines = capsys.readouterr().out.splitlines()
    expected = champion.predict(pixels.reshape(3, 784) / 255, verbose=0)
    assert [line.split()[0] for line in lines] == [str(p) for p in good]
    assert [int(line.split()[1]) for line in lines] == expected.argmax(axis=1).tolist()
    assert "bad.png: not an image" in caplog.text


def test_an_unknown_model_says_how_to_get_one(tmp_path):
    with pytest.raises(store.TrackingError, match="train one with `dvc repro`"):
        predict.load("models:/nothing-here@champion")
    with pytest.raises(PipelineError, match="does not exist"):
        predict.load(str(tmp_path / "model.keras"))


def test_a_refused_file_is_reported_and_the_good_ones_still_predicted(
    champion, tmp_path, monkeypatch, capsys, caplog
):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "good.npy", _with(255.0))
    np.save(tmp_path / "nan.npy", _with(np.nan))
    with pytest.raises(PipelineError, match="^1 of 2 inputs could not be read"):
        predict.main([str(tmp_path / "nan.npy"), str(tmp_path / "good.npy")])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [f"{tmp_path}/good.npy[{i}]" for i in (0, 1)]
    assert "nan" not in " ".join(lines)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"error: {tmp_path}/nan.npy: 1 of 1568 values cannot be pixels (1 NaN; found 0 to "
        f"255): {EXPECTED}"
    ]
