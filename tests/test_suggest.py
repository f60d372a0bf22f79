"""The one did-you-mean hint shared by every unknown-name refusal."""

from __future__ import annotations

import pytest

from featdistill.config import ConfigError, check_key
from featdistill.suggest import did_you_mean
from featdistill.tasks.classification.models import build_classifier


def test_names_the_closest_choice() -> None:
    assert did_you_mean("cach_dir", ["bits", "cache_dir", "limit"]) == "; did you mean 'cache_dir'?"


def test_names_several_close_choices_closest_first() -> None:
    assert (
        did_you_mean("cach_dir", ["bits", "cache", "cache_dir"], many=3)
        == "; did you mean 'cache_dir' or 'cache'?"
    )
    hint = did_you_mean("layer9", ["layer1", "layer2", "layer3", "fc"], many=3)
    assert hint == "; did you mean 'layer3', 'layer2' or 'layer1'?"


def test_lists_the_valid_choices_when_none_is_close() -> None:
    assert did_you_mean("zzz", ["whole", "slide"]) == "; valid: whole, slide"
    assert did_you_mean("zzz", [f"k{i}" for i in range(25)]).endswith("k19 and 5 more")
    assert did_you_mean("zzz", ["a"], otherwise="see list_classifiers()") == "; see list_classifiers()"


def test_prefix_is_shown_but_not_compared() -> None:
    assert did_you_mean("lrr", ["lr", "seed"], prefix="train.") == "; did you mean 'train.lr'?"
    # 'train.' on both sides would make 'train.qq' look close to any 'train.xx'.
    assert did_you_mean("qq", ["xy"], prefix="train.") == "; valid: train.xy"


def test_every_product_refusal_uses_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'; did you mean 'train\.lr'\?$"):
        check_key("train.lrr")
    with pytest.raises(ValueError, match=r"unknown classifier 'resnt18'; did you mean 'resnet18'"):
        build_classifier("resnt18", 3)
