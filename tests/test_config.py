"""The schema: params.yaml is conf/ composed, and every bad value is refused by name."""

from __future__ import annotations

import pytest
import yaml

from pipeline import config
from pipeline.config import ConfigError, Loss, Optimizer
from pipeline.config import __main__ as command

from .helpers import ROOT


def test_params_yaml_is_what_conf_composes_to():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == config.compose(), "params.yaml is stale: run `make params`"


def test_defaults_are_the_notebooks():
    cfg = config.load(ROOT / "params.yaml")
    assert (cfg.model.hidden_units, cfg.model.activation.value) == (512, "relu")
    assert cfg.train.optimizer is Optimizer.rmsprop and cfg.train.learning_rate == 0.001
    assert cfg.train.loss is Loss.categorical_crossentropy
    assert (cfg.train.epochs, cfg.train.batch_size) == (5, 128)
    assert cfg.data.url == "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"


def test_overrides_are_applied_and_typed():
    cfg = config.validate(
        config.compose(
            [
                "train.epochs=10",
                "train.batch_size=64",
                "train.loss=sparse_categorical_crossentropy",
            ]
        ),
        "x",
    )
    assert (cfg.train.epochs, cfg.train.batch_size) == (10, 64)
    assert cfg.train.loss is Loss.sparse_categorical_crossentropy


@pytest.mark.parametrize(
    "override, key, says",
    [
        ("train.epochs=abc", "train.epochs", "could not be converted to Integer"),
        ("train.batch_size=32.5", "train.batch_size", "could not be converted to Integer"),
        ("train.learning_rate=fast", "train.learning_rate", "could not be converted to Float"),
        ("train.epochs=0", "train.epochs", "must be >= 1, got 0"),
        ("train.epochs=-1", "train.epochs", "must be >= 1, got -1"),
        ("train.batch_size=0", "train.batch_size", "must be >= 1, got 0"),
        ("train.learning_rate=0", "train.learning_rate", "must be a finite number > 0, got 0"),
        ("train.learning_rate=-0.1", "train.learning_rate", "must be a finite number > 0"),
        ("train.learning_rate=inf", "train.learning_rate", "finite number > 0, got inf"),
        ("train.learning_rate=1e400", "train.learning_rate", "finite number > 0, got inf"),
        ("train.learning_rate=nan", "train.learning_rate", "finite number > 0, got nan"),
        ("train.early_stopping.min_delta=inf", "min_delta", "a finite number >= 0, got inf"),
        ("train.validation_split=1", "train.validation_split", "must be in [0, 1)"),
        ("train.validation_split=-0.1", "train.validation_split", "must be in [0, 1)"),
        ("model.hidden_units=0", "model.hidden_units", "must be >= 1"),
        ("train.optimizer=adagrad", "train.optimizer", "one of [rmsprop, adam, adamw, sgd]"),
        ("data.sha256=abc", "data.sha256", "64 lowercase hex digits"),
        ("+typo=5", "typo", "unknown key 'typo'; known keys: data, model, train, tracking"),
        ("+train.epocs=5", "train.epocs", "known keys under train: epochs, batch_size"),
        ("train.train_sample=-1", "train.train_sample", "must be >= 0, got -1"),
        ("train.early_stopping.patience=0", "train.early_stopping.patience", "must be >= 1"),
        ("train.early_stopping.min_delta=-0.01", "min_delta", "must be a finite number >= 0"),
        ("train.early_stopping.monitor=loss", "train.early_stopping.monitor", "val_loss, val_acc"),
    ],
)
def test_bad_values_are_refused_naming_the_key(override, key, says):
    with pytest.raises(ConfigError) as caught:
        config.compose([override])
    assert key in str(caught.value) and says in str(caught.value)


def test_early_stopping_without_validation_digits_is_refused():
    with pytest.raises(ConfigError) as caught:
        config.compose(["train.early_stopping.enabled=true", "train.validation_split=0"])
    assert str(caught.value).endswith(
        ": train.early_stopping.enabled=true monitors validation, but "
        "train.validation_split=0 holds no digits back: set train.validation_split (for "
        "example train.validation_split=0.1), or train.early_stopping.enabled=false"
    )


def test_unknown_key_without_plus_is_refused_by_hydra():
    with pytest.raises(ConfigError, match="train.epocs"):
        config.compose(["train.epocs=5"])


def test_range_error_suggests_a_fix():
    with pytest.raises(ConfigError, match=r"for example train\.batch_size=128"):
        config.compose(["train.batch_size=0"])


def test_hand_edited_params_yaml_is_refused_before_any_work(tmp_path):
    params = tmp_path / "params.yaml"
    plain = config.compose()
    plain["train"]["epochs"] = "five"
    params.write_text(yaml.safe_dump(plain))
    with pytest.raises(ConfigError, match=f"{params}: train.epochs"):
        config.load(params)


@pytest.mark.parametrize(
    "text, says",
    [
        ("train: [unclosed", "is not valid YAML"),
        ("- a list\n- not sections\n", "expected a mapping of config sections"),
    ],
)
def test_unreadable_params_yaml_says_how_to_regenerate(tmp_path, text, says):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    with pytest.raises(ConfigError, match=says) as caught:
        config.load(params)
    assert "python -m pipeline.config" in str(caught.value)


def test_missing_params_yaml_says_how_to_create_it(tmp_path):
    with pytest.raises(ConfigError, match="not found.*python -m pipeline.config"):
        config.load(tmp_path / "params.yaml")


def test_config_main_writes_params_and_refuses_bad_overrides(tmp_path, capsys):
    out = tmp_path / "params.yaml"
    command.main(["train.epochs=7", "--output", str(out)])
    assert config.load(out).train.epochs == 7
    before = out.read_text()
    with pytest.raises(ConfigError, match="train.epochs must be >= 1"):
        command.main(["train.epochs=0", "--output", str(out)])
    assert out.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


def test_config_check_refuses_a_key_no_stage_reads(tmp_path, capsys):
    out = tmp_path / "params.yaml"
    command.main(["--check", "--output", str(ROOT / "params.yaml")])
    assert "params.yaml is valid" in capsys.readouterr().out
    plain = config.compose()
    plain["typo"] = 5
    out.write_text(yaml.safe_dump(plain))
    with pytest.raises(ConfigError, match="unknown key 'typo'"):
        command.main(["--check", "--output", str(out)])


def test_flatten_gives_every_leaf_as_a_dotted_param():
    flat = config.flatten(config.from_conf())
    assert flat["train.epochs"] == 5 and flat["train.optimizer"] == "rmsprop"
    assert flat["data.fingerprint"] == config.from_conf().data.fingerprint
    assert not any(isinstance(value, dict) for value in flat.values())


def test_dvc_yaml_params_exist_in_the_config():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    composed = config.compose()
    for name, stage in stages.items():
        for param in stage.get("params", []):
            if isinstance(param, dict):  # a whole file: `- params.yaml:`
                assert list(param) == ["params.yaml"], f"stage {name}: {param}"
                continue
            node = composed
            for part in param.split("."):
                assert part in node, f"stage {name} lists param {param}, not in conf/"
                node = node[part]


def test_the_schema_holds_no_values_only_types_and_bounds():
    """conf/ is the one place a value is written: a default in the schema would be a second."""
    import dataclasses

    from omegaconf import MISSING

    for section in dataclasses.fields(config.Config):
        assert section.default is MISSING, section.name
        value = config.from_conf().__dict__[section.name]
        if not dataclasses.is_dataclass(value):
            continue  # a top-level value (`replicates`): its default is checked above
        for item in dataclasses.fields(value):
            assert item.default is MISSING, f"{section.name}.{item.name} has a default here"


def test_a_key_missing_from_params_yaml_is_named(tmp_path):
    params = tmp_path / "params.yaml"
    plain = config.compose()
    del plain["train"]["seed"]
    params.write_text(yaml.safe_dump(plain))
    says = r"train\.seed is missing \(for example train\.seed=42\); regenerate"
    with pytest.raises(ConfigError, match=says):
        config.load(params)


def test_a_range_error_takes_its_example_from_conf(tmp_path):
    """The example is conf/'s own value, whatever params.yaml holds."""
    params = tmp_path / "params.yaml"
    plain = config.compose(["model.hidden_units=64"])
    plain["model"]["hidden_units"] = 0
    params.write_text(yaml.safe_dump(plain))
    with pytest.raises(ConfigError, match=r"got 0 \(for example model\.hidden_units=512\)"):
        config.load(params)


def test_an_infinite_learning_rate_in_params_yaml_is_refused_with_an_example(tmp_path):
    """YAML's `.inf` is a float: no type check stops it, the bound does."""
    path = tmp_path / "params.yaml"
    path.write_text(config.dump(config.compose()).replace("rate: 0.001", "rate: .inf"))
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert str(caught.value).startswith(
        f"{path}: train.learning_rate must be a finite number > 0, got inf "
        "(for example train.learning_rate=0.001); "
    )


def test_a_bad_value_in_params_yaml_says_how_to_recompose_it(tmp_path):
    """What a failed `dvc exp run -S train.seed=abc` leaves: the stages after it all refuse
    params.yaml, so the one line says where the value is and how to get the file back."""
    path = tmp_path / "params.yaml"
    path.write_text(config.dump(config.compose()).replace("seed: 42", "seed: abc"))
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert str(caught.value) == (
        f"{path}: train.seed: Value 'abc' of type 'str' could not be converted to Integer "
        f"(for example train.seed=42); {path} holds it (a hand edit, or a failed dvc exp "
        "run -S): recompose it from conf/ with `python -m pipeline.config`"
    )
    command.main(["--output", str(path)])  # the advice, followed
    assert config.load(path).train.seed == 42


def test_a_bad_override_on_the_command_line_names_no_file_to_recompose():
    with pytest.raises(ConfigError) as caught:
        config.compose(["train.seed=abc"])
    assert str(caught.value).endswith(
        "train.seed: Value 'abc' of type 'str' could not be converted to Integer "
        "(for example train.seed=42)"
    )


def test_a_value_for_a_config_group_is_one_line_not_hydras_traceback():
    with pytest.raises(ConfigError, match=r"cannot compose .*\['train=5'\]: Config group"):
        config.compose(["train=5"])


def test_the_model_family_picks_its_own_schema_and_says_what_it_takes():
    convnet = config.validate(config.compose(["model=convnet"]), "test")
    assert (convnet.model.family, convnet.model.filters) == ("convnet", [32, 64])
    with pytest.raises(
        config.ConfigError, match=r"model.family must be one of dense, convnet, got 'resnet'"
    ):
        config.compose(["model.family=resnet"])
    older = config.compose()
    del older["model"]["family"]  # a params.yaml from before families
    with pytest.raises(config.ConfigError, match=r"none is given \(pick one with model=dense"):
        config.validate(older, "params.yaml")
    with pytest.raises(config.ConfigError, match=r"unknown key 'model.hidden_units'.*filters"):
        config.compose(["model=convnet", "+model.hidden_units=5"])
    with pytest.raises(
        config.ConfigError,
        match=r"model.kernel_size must be >= 1, got 0 \(for example model.kernel_size=3\)",
    ):
        config.compose(["model=convnet", "model.kernel_size=0"])
    with pytest.raises(
        config.ConfigError, match=r"shrink the 28x28 digit to nothing \(sides \[13, 5, 1, -1\]\)"
    ):
        config.compose(["model=convnet", "model.filters=[8,8,8,8]"])
