from __future__ import annotations

import functools

import pytest

import buildable
from xpkit.config.build import build, resolve_interpolations
from xpkit.config.targets import register, registered
from xpkit.errors import BuildError


def test_hydra_nodes_build_bottom_up() -> None:
    model = build({
        "_target_": "buildable.Model",
        "encoder": {"_target_": "buildable.Encoder", "depth": 18, "width": 2},
        "heads": [{"_target_": "buildable.Decoder", "layers": [1, 2]},
                  {"_target_": "buildable.make_encoder", "depth": 3}],
        "extra": {"a": 1.5},
    })  # fmt: skip
    assert isinstance(model, buildable.Model)
    assert model.encoder.depth == 18 and model.encoder.width == 2
    assert isinstance(model.heads[0], buildable.Decoder) and model.heads[1].depth == 3


def test_jsonargparse_nodes_and_plain_containers() -> None:
    built = build({
        "model": {"class_path": "buildable.Encoder", "init_args": {"depth": 4}},
        "data": [{"class_path": "buildable.Data", "init_args": {"path": "/d", "shapes": [8, 8]}}],
        "seed": 3,
    })  # fmt: skip
    assert built["model"].depth == 4 and built["seed"] == 3
    assert built["data"][0].path == "/d"


def test_partial_allows_missing_required_but_checks_given() -> None:
    trainer = build({
        "_target_": "buildable.Trainer",
        "model": {"_target_": "buildable.Encoder", "depth": 1},
        "optimizer": {"_target_": "buildable.Optimizer", "_partial_": True, "lr": 0.1},
    })  # fmt: skip
    assert isinstance(trainer.optimizer, functools.partial)
    assert trainer.optimizer(params=[1.0]).lr == 0.1
    with pytest.raises(
        BuildError, match=r"1 problem in config:\n  lr: expected float, got str 'fast'"
    ):
        build({"_target_": "buildable.Optimizer", "_partial_": True, "lr": "fast"})


def test_registered_names() -> None:
    @register("tiny-encoder")
    def tiny(depth: int = 1) -> buildable.Encoder:
        return buildable.Encoder(depth)

    assert build({"_target_": "tiny-encoder", "depth": 2}).depth == 2
    assert "tiny-encoder" in registered()
    with pytest.raises(BuildError, match="already registered"):
        register("tiny-encoder")(buildable.Encoder)
    with pytest.raises(BuildError, match="close matches: tiny-encoder"):
        build({"_target_": "tiny-encodr"})


def test_interpolation_keeps_types_and_formats_text() -> None:
    resolved = resolve_interpolations({
        "model": {"dim": 64, "name": "net-${model.dim}", "copy": "${model.dim}"},
        "head": {"dim": "${model.dim}", "layers": ["${model.dim}", 2]},
    })  # fmt: skip
    assert resolved["model"]["name"] == "net-64"
    assert resolved["head"]["dim"] == 64 and resolved["head"]["layers"] == [64, 2]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"a": "${b.c}"}, r"a: '\$\{b.c\}' refers to b.c, which does not exist"),
        ({"a": "${b}", "b": "${a}"}, r"interpolation cycle a -> b -> a"),
        ({"a": "x${a}"}, r"interpolation cycle"),
        ({"a": {"c": "${.b}"}, "b": 1}, r"a.c: '\$\{.b\}' refers to a.b, which does not exist"),
        ({"a": {"b": "${...x}"}}, r"goes above the root"),
        (
            {"x": "???", "m": {"_target_": "buildable.Encoder", "depth": "${x}"}},
            r"m.depth: '\$\{x\}' refers to x, which is \?\?\? \(a mandatory value\)",
        ),
    ],
    ids=["missing", "cycle", "self", "relative-missing", "above-root", "to-mandatory"],
)
def test_bad_interpolations(spec: dict[str, object], message: str) -> None:
    with pytest.raises(BuildError, match=message):
        build(spec)


def test_all_type_errors_are_reported_together_with_paths() -> None:
    spec = {
        "_target_": "buildable.Model",
        "encoder": {"_target_": "buildable.Encoder", "depth": "18", "act": "tanh", "widht": 2.0},
        "heads": [{"_target_": "buildable.Decoder", "layers": [1, "two"]}, {"_target_": "buildable.Optimizer", "lr": 0.1, "params": []}],
        "extra": {"a": "x"},
        "name": True,
    }  # fmt: skip
    with pytest.raises(BuildError) as caught:
        build(spec, source="cfg.yaml")
    text = str(caught.value)
    assert text.startswith("7 problems in config in cfg.yaml:")
    for fragment in [
        "encoder.depth: expected int, got str '18'",
        "encoder.act: expected Literal['relu', 'gelu'], got str 'tanh'",
        "encoder.widht: unknown argument 'widht' for buildable.Encoder (did you mean 'width'?)",
        "heads[0].layers: expected list[int], got list [1, 'two']",
        "heads[1]: expected Module, got buildable.Optimizer (a Optimizer)",
        "extra: expected dict[str, float] | None, got dict {'a': 'x'}",
        "name: expected str, got bool True",
    ]:
        assert fragment in text, text


def test_nothing_is_constructed_when_validation_fails() -> None:
    with pytest.raises(BuildError, match="missing required argument 'depth'"):
        build({"first": {"_target_": "buildable.Exploding", "value": 1},
               "second": {"_target_": "buildable.Encoder"}})  # fmt: skip


def test_int_is_accepted_for_float_and_bool_is_not_an_int() -> None:
    assert build({"_target_": "buildable.Optimizer", "params": [1, 2.5], "lr": 1}).lr == 1
    with pytest.raises(BuildError, match="lr: expected float, got bool True"):
        build({"_target_": "buildable.Optimizer", "params": [], "lr": True})


def test_optional_union_tuple_and_kwargs() -> None:
    assert build({"_target_": "buildable.Decoder", "layers": [], "dropout": None}).dropout is None
    assert build({"_target_": "buildable.Data", "path": "p", "shapes": [1, 2]}).shapes == (1, 2)
    with pytest.raises(BuildError, match=r"shapes: expected tuple\[int, int\]"):
        build({"_target_": "buildable.Data", "path": "p", "shapes": [1, 2, 3]})
    flexible = build({"_target_": "buildable.Flexible", "name": "n", "a": 1, "b": 2})
    assert flexible.options == {"a": 1, "b": 2}
    with pytest.raises(BuildError, match="b: expected int, got str 'x'"):
        build({"_target_": "buildable.Flexible", "name": "n", "b": "x"})


def test_strict_mode_and_unannotated_parameters() -> None:
    with pytest.raises(BuildError, match="parameter 'size' has no type hint"):
        build({"_target_": "buildable.Untyped", "size": 3})
    with pytest.warns(UserWarning, match="parameter 'size' has no type hint"):
        built = build({"_target_": "buildable.Untyped", "size": 3}, strict=False)
    assert built.size == 3 and built.device is None


def test_constructor_errors_name_path_and_target() -> None:
    with pytest.raises(
        BuildError, match=r"model: buildable.Exploding\(...\) raised ValueError: cannot use 3"
    ) as caught:
        build({"model": {"_target_": "buildable.Exploding", "value": 3}})
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("buildable.Encodr", r"'buildable' has no attribute 'Encodr'; close matches: Encoder"),
        ("buildabel.Encoder", r"no module named 'buildabel'; did you mean buildable\?"),
        (
            "buildable.NOT_CALLABLE",
            r"target 'buildable.NOT_CALLABLE' is a int, not a class or function",
        ),
        ("encoder", r"unknown target 'encoder': not a registered name"),
        ("buildable:Encoder.nope", r"'Encoder' has no attribute 'nope'"),
    ],
    ids=["attribute", "module", "not-callable", "bare-name", "colon-form"],
)
def test_bad_targets(target: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        build({"m": {"_target_": target}})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"_target_": 3}, r"_target_: must be a dotted name like pkg.module.Class, or a class"),
        (
            {"_target_": "buildable.Encoder", "depth": 1, "_recurse_": False},
            r"'_recurse_' is not a Hydra key \(they are _target_, _args_, _partial_, _recursive_, _convert_\)",
        ),
        ({"_target_": "buildable.Encoder", "_args_": 3}, r"_args_: must be a list, got 3"),
        (
            {"_target_": "buildable.Encoder", "depth": 1, "_convert_": "allofit"},
            r"_convert_: must be one of none, partial, object, all, got 'allofit'",
        ),
        (
            {"_target_": "buildable.Encoder", "_recursive_": "no"},
            r"_recursive_: must be true or false",
        ),
        (
            {"_target_": "buildable.Encoder", "_partial_": "yes"},
            r"_partial_: must be true or false",
        ),
        (
            {"class_path": "buildable.Encoder", "depth": 3},
            r"unexpected key\(s\) depth beside class_path",
        ),
    ],
    ids=[
        "target-type",
        "reserved",
        "args-type",
        "convert-mode",
        "recursive-type",
        "partial-type",
        "class-path-extra",
    ],
)
def test_malformed_nodes(spec: dict[str, object], message: str) -> None:
    with pytest.raises(BuildError, match=message):
        build(spec)
