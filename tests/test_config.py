from dataclasses import dataclass, field
from typing import Literal

import pytest

from convmem.config import from_dict, load_config, to_dict
from convmem.errors import ConfigError


@dataclass
class Inner:
    lr: float = 5e-5
    steps: int = 1
    mode: Literal["sentence", "surprise"] = "sentence"


@dataclass
class Outer:
    name: str = "run"
    methods: list[str] = field(default_factory=lambda: ["none", "window"])
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_yaml_and_dotted_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ninner:\n  lr: 1.0e-4\n")
    cfg = load_config(Outer, p, ["inner.steps=3", "methods=[dpm]", "limit=7", "inner.mode=surprise"])
    assert cfg == Outer(name="x", methods=["dpm"], limit=7, inner=Inner(lr=1e-4, steps=3, mode="surprise"))
    assert to_dict(cfg)["inner"] == {"lr": 1e-4, "steps": 3, "mode": "surprise"}


@pytest.mark.parametrize(
    "data,msg",
    [
        ({"inner": {"lrr": 1}}, r"inner\.lrr: unknown key \(known: lr, mode, steps\)"),
        ({"inner": {"steps": "two"}}, r"inner\.steps: expected an integer, got 'two'"),
        ({"inner": {"steps": True}}, r"inner\.steps: expected an integer"),
        ({"inner": {"mode": "stride"}}, r"inner\.mode: expected one of \['sentence', 'surprise'\]"),
        ({"methods": "dpm"}, r"methods: expected a list"),
        ({"methods": ["dpm", 3.5]}, r"methods\[1\]: expected a string"),
        ({"inner": 3}, r"inner: expected a mapping"),
    ],
)
def test_bad_keys_and_types_are_named(data, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(Outer, data)


def test_exponent_without_dot_is_a_number(tmp_path):
    # YAML 1.1 reads 1e-3 (and JSON's 5e-05, e.g. a saved config.json) as strings
    p = tmp_path / "c.json"
    p.write_text('{"inner": {"lr": 5e-05}}')
    assert load_config(Outer, p).inner.lr == 5e-5
    assert load_config(Outer, None, ["inner.lr=1e-3"]).inner.lr == 1e-3
    with pytest.raises(ConfigError, match=r"inner\.lr: expected a number, got '1e-3x'"):
        load_config(Outer, None, ["inner.lr=1e-3x"])


def test_override_errors(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(Outer, None, ["inner.steps"])
    with pytest.raises(ConfigError, match=r"name: expected a string, got \{'x': 1\}"):
        load_config(Outer, None, ["name.x=1"])
    with pytest.raises(ConfigError, match=r"name: is not a section"):
        load_config(Outer, None, ["name=a", "name.x=1"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
