import pytest

from featdistill.config import ConfigError, apply_overrides, load_config, parse_config

MINIMAL = {"data": {"name": "synthetic", "root": "-"}, "model": {"student": "resnet8"}}


def test_minimal_config_gets_defaults():
    cfg = parse_config(MINIMAL)
    assert cfg.task == "classification" and cfg.train.optimizer == "sgd" and cfg.data.batch_size == 128


def test_unknown_key_names_itself_and_closest_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'; did you mean 'train\.lr'\?"):
        parse_config({**MINIMAL, "train": {"lrr": 0.1}})


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"'train\.epochs' expects int, got 'ten' \(str\)"):
        parse_config({**MINIMAL, "train": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"'train\.amp' expects 'none' or 'bf16' or 'fp16'"):
        parse_config({**MINIMAL, "train": {"amp": "fp8"}})


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"missing required config key 'data\.root'"):
        parse_config({"data": {"name": "cifar10"}, "model": {"student": "resnet8"}})


def test_ints_accepted_for_floats_and_overrides_parsed_as_yaml():
    tree = apply_overrides(
        dict(MINIMAL), ["train.lr=1", "distill.pairs=[[layer3, layer3]]", "train.amp=bf16"]
    )
    cfg = parse_config(tree)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.distill.pairs == [["layer3", "layer3"]]
    with pytest.raises(ConfigError, match="expects key=value"):
        apply_overrides({}, ["train.lr"])


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: !!python/object/apply:os.system ['echo unsafe']\n")
    with pytest.raises(ConfigError, match="refused YAML tag"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_with_overrides_returns_a_new_validated_config():
    cfg = parse_config({"data": {"name": "synthetic", "root": "-"}, "model": {"student": "resnet8"}})
    changed = cfg.with_overrides({"train.lr": 0.05, "distill.alpha": "auto", "output.dir": "runs/x"})
    assert (changed.train.lr, changed.distill.alpha, changed.output.dir) == (0.05, "auto", "runs/x")
    assert (cfg.train.lr, cfg.distill.alpha, cfg.output.dir) == (0.1, None, "runs/default")  # unchanged
    with pytest.raises(ConfigError, match=r"did you mean 'train\.lr'"):
        cfg.with_overrides({"train.lrr": 0.05})
    with pytest.raises(ConfigError, match=r"'train\.lr' expects float"):
        cfg.with_overrides({"train.lr": "fast"})
