"""xp.build against Hydra's own instantiate (the real hydra-core and omegaconf): the same
objects for Hydra's documented forms, given as dicts and as the DictConfig that
`@hydra.main` hands over; and the cases where xpkit deliberately differs."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

import pytest

import buildable
from xpkit.config.build import build
from xpkit.errors import BuildError

omegaconf = pytest.importorskip("omegaconf")
hydra_utils = pytest.importorskip("hydra.utils")
OmegaConf = omegaconf.OmegaConf

P = "buildable.Point"
POINT_1_2 = {"_target_": P, "x": 1, "y": 2}


def same(a: Any, b: Any) -> bool:
    """Equal results: partials by function and arguments, containers item by item."""
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        return a.func is b.func and list(a.args) == list(b.args) and a.keywords == b.keywords
    if OmegaConf.is_config(a):  # Hydra's result with _convert_ none: objects inside
        a = OmegaConf.to_container(a, structured_config_mode=omegaconf.SCMode.INSTANTIATE)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# (config, positional arguments of the call, keyword arguments of the call, expected)
AGREE = {
    "class": (POINT_1_2, (), {}, buildable.Point(1, 2)),
    "nested": (
        {"_target_": "buildable.Pair", "left": POINT_1_2, "right": {"_target_": P, "x": 3}},
        (),
        {},
        buildable.Pair(buildable.Point(1, 2), buildable.Point(3)),
    ),
    "partial": (
        {"_target_": P, "_partial_": True, "x": 1},
        (),
        {},
        functools.partial(buildable.Point, x=1),
    ),
    "partial+missing": (
        {"_target_": P, "_partial_": True, "x": "???", "y": 2},
        (),
        {},
        functools.partial(buildable.Point, y=2),
    ),
    "args": ({"_target_": "buildable.total", "_args_": [1, 2, 3], "offset": 0.5}, (), {}, 6.5),
    "args-of-nodes": (
        {
            "_target_": "buildable.total",
            "_args_": [{"_target_": "buildable.total", "_args_": [1, 2]}, 3],
        },
        (),
        {},
        6,
    ),
    "positional-only": (
        {"_target_": "buildable.PositionalOnly", "_args_": [1, 2]},
        (),
        {},
        buildable.PositionalOnly(1, 2),
    ),
    "call-args-replace-_args_": (
        {"_target_": "buildable.PositionalOnly", "_args_": [1, 2]},
        (3, 4),
        {},
        buildable.PositionalOnly(3, 4),
    ),
    "call-kwargs": ({"_target_": P, "x": 1}, (), {"y": 5}, buildable.Point(1, 5)),
    "call-kwargs-interpolated": (
        {"_target_": P, "x": 200, "y": "${x}"},
        (),
        {"x": 7},
        buildable.Point(7, 7),
    ),
    "call-kwargs-partial": (
        {"_target_": P, "y": 2},
        (),
        {"_partial_": True},
        functools.partial(buildable.Point, y=2),
    ),
    "toplevel-list": (
        [POINT_1_2, {"_target_": P, "x": 3}],
        (),
        {},
        [buildable.Point(1, 2), buildable.Point(3)],
    ),
    "none": (None, (), {}, None),
    "empty-list": ([], (), {}, []),
    "empty-dict": ({}, (), {}, {}),
    "data-around-nodes": (
        {"seed": 3, "points": [POINT_1_2]},
        (),
        {},
        {"seed": 3, "points": [buildable.Point(1, 2)]},
    ),
    "interpolation": (
        {"dim": 4, "p": {"_target_": P, "x": "${dim}"}},
        (),
        {},
        {"dim": 4, "p": buildable.Point(4)},
    ),
    "relative-sibling": (
        {"p": {"_target_": P, "x": 5, "y": "${.x}"}},
        (),
        {},
        {"p": buildable.Point(5, 5)},
    ),
    "relative-parent": (
        {"dim": 99, "model": {"dim": 8, "p": {"_target_": P, "x": "${..dim}"}}},
        (),
        {},
        {"dim": 99, "model": {"dim": 8, "p": buildable.Point(8)}},
    ),
    "interpolated-node": (
        {"base": POINT_1_2, "copy": "${base}"},
        (),
        {},
        {"base": buildable.Point(1, 2), "copy": buildable.Point(1, 2)},
    ),
    "resolver-env": (
        {"_target_": "buildable.Holder", "inner": "${oc.env:XP_TEST_HYDRA}"},
        (),
        {},
        buildable.Holder("from-env"),
    ),
    "resolver-default": (
        {"_target_": "buildable.Holder", "inner": "${oc.env:XP_NOT_SET,fallback}"},
        (),
        {},
        buildable.Holder("fallback"),
    ),
    "resolver-custom": ({"_target_": P, "x": "${xp_twice:4}"}, (), {}, buildable.Point(8)),
    "not-recursive": (
        {"_target_": "buildable.Holder", "_recursive_": False, "inner": POINT_1_2},
        (),
        {},
        buildable.Holder(POINT_1_2),
    ),
    "convert-all": (
        {"_target_": "buildable.Holder", "_convert_": "all", "inner": {"a": [1]}},
        (),
        {},
        buildable.Holder({"a": [1]}),
    ),
    "convert-partial": (
        {"_target_": "buildable.Holder", "_convert_": "partial", "inner": {"a": [1]}},
        (),
        {},
        buildable.Holder({"a": [1]}),
    ),
    "convert-object": (
        {"_target_": "buildable.Holder", "_convert_": "object", "inner": [1]},
        (),
        {},
        buildable.Holder([1]),
    ),
    "convert-none": (
        {"_target_": "buildable.Holder", "_convert_": "none", "inner": {"a": 1}},
        (),
        {},
        buildable.Holder({"a": 1}),
    ),
    "torch-sequential": (
        {
            "_target_": "torch.nn.Sequential",
            "_args_": [
                {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 3},
                {"_target_": "torch.nn.ReLU"},
            ],
        },
        (),
        {},
        None,
    ),
    "torch-untyped-device": (
        {
            "_target_": "torch.nn.Linear",
            "in_features": 2,
            "out_features": 3,
            "device": "cpu",
            "bias": False,
        },
        (),
        {},
        None,
    ),
    "stdlib-calendar": ({"_target_": "calendar.Calendar", "firstweekday": 2}, (), {}, None),
}
FORMS = ["dict", "dict_config"]


@pytest.fixture(autouse=True)
def _resolvers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XP_TEST_HYDRA", "from-env")
    if not OmegaConf.has_resolver("xp_twice"):
        OmegaConf.register_new_resolver("xp_twice", lambda v: 2 * int(v))


def _given(config: Any, form: str) -> Any:
    return OmegaConf.create(config) if form == "dict_config" and config is not None else config


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", list(AGREE), ids=list(AGREE))
def test_the_same_objects_as_hydra(case: str, form: str) -> None:
    config, args, kwargs, expected = AGREE[case]
    hydra_result = hydra_utils.instantiate(_given(config, form), *args, **kwargs)
    xp_result = build(_given(config, form), *args, **kwargs)
    if expected is None:  # torch modules and calendars: compare what they are made of
        assert type(xp_result) is type(hydra_result)
        assert repr(xp_result) == repr(hydra_result) or vars(xp_result) == vars(hydra_result)
        return
    assert same(hydra_result, expected), hydra_result
    assert same(xp_result, expected), xp_result


def test_a_target_given_as_a_python_object() -> None:
    assert build({"_target_": buildable.Point, "x": 3}) == buildable.Point(3)
    assert hydra_utils.instantiate({"_target_": buildable.Point, "x": 3}) == buildable.Point(3)


def test_the_dict_config_hydra_main_hands_over_builds_nested_nodes_and_interpolations() -> None:
    cfg = OmegaConf.create({
        "model": {"_target_": P, "x": 2, "y": "${..scale}"}, "scale": 3,
        "trainer": {"_target_": "buildable.Pair", "left": "${model}", "right": {"_target_": P, "x": "${scale}"}},
    })  # fmt: skip
    pair = build(cfg.trainer)  # a sub-node whose interpolations name the whole config
    assert pair == buildable.Pair(buildable.Point(2, 3), buildable.Point(3))
    with pytest.raises(BuildError, match=r"model.x: expected int, got str"):
        build(OmegaConf.merge(cfg, {"model": {"x": "two"}}))
    assert isinstance(build(cfg)["trainer"].left, buildable.Point)  # not a DictConfig


def test_a_resolver_that_nothing_built_uses_does_not_block() -> None:
    config = {"run_dir": "${now:%Y-%m-%d}", "model": POINT_1_2}
    with pytest.raises(Exception, match="now"):
        hydra_utils.instantiate(config, _convert_="all")  # Hydra: outside its app, an error
    with pytest.warns(
        UserWarning,
        match=r"run_dir: '\$\{now:%Y-%m-%d\}' uses the resolver 'now', which is not registered",
    ):
        built = build(config)
    assert built == {"run_dir": "${now:%Y-%m-%d}", "model": buildable.Point(1, 2)}
    with pytest.raises(BuildError, match=r"model.x: '\$\{now:%Y\}' uses the resolver 'now'"):
        build({"model": {"_target_": P, "x": "${now:%Y}"}})


def test_resolvers_without_omegaconf_name_the_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "omegaconf", None)  # as if it were not installed
    with pytest.raises(
        BuildError,
        match=r"x: '\$\{oc.env:HOME\}' uses the resolver 'oc.env', which needs omegaconf",
    ):
        build({"_target_": P, "x": "${oc.env:HOME}"})
    assert build({"dim": 2, "p": {"_target_": P, "x": "${dim}"}})["p"] == buildable.Point(2)


def test_mandatory_missing_values() -> None:
    with pytest.raises(omegaconf.MissingMandatoryValue):
        hydra_utils.instantiate({"_target_": P, "x": "???"})
    with pytest.raises(
        BuildError, match=r"1 problem in config:\n  x: missing mandatory value \?\?\?"
    ):
        build({"_target_": P, "x": "???"})
    with pytest.raises(BuildError, match=r"_args_\[0\]: missing mandatory value"):
        build({"_target_": "buildable.total", "_args_": ["???"]})
    assert build({"data": "???"}) == {"data": "???"}  # data nothing needs: kept, as Hydra does


# (config, what Hydra builds, xp's error) — Hydra passes the ill-typed value on.
DIFFER = {
    "str-for-int": (
        {"_target_": P, "x": "1"},
        buildable.Point("1"),  # type: ignore[arg-type]
        r"x: expected int, got str '1'",
    ),
    "bool-for-int": (
        {"_target_": P, "x": True},
        buildable.Point(True),
        r"x: expected int, got bool True",
    ),
    "wrong-node-type": (
        {
            "_target_": "buildable.Pair",
            "left": POINT_1_2,
            "right": {"_target_": "buildable.Holder", "inner": 1},
        },
        None,
        r"right: expected Point, got buildable.Holder \(a Holder\)",
    ),
    "int-for-str": (
        {"_target_": "buildable.Holder", "inner": 1, "tag": 5},
        buildable.Holder(1, 5),  # type: ignore[arg-type]
        r"tag: expected str, got int 5",
    ),
    "untyped-project-parameter": (
        {"_target_": "buildable.Untyped", "size": 3},
        None,
        r"size: buildable.Untyped parameter 'size' has no type hint",
    ),
}


@pytest.mark.parametrize("case", list(DIFFER), ids=list(DIFFER))
def test_where_xpkit_refuses_what_hydra_lets_through(case: str) -> None:
    config, hydra_builds, error = DIFFER[case]
    try:
        built = hydra_utils.instantiate(config)
    except Exception:
        built = "raised"
    assert built != "raised", "Hydra refuses this too: not a difference"
    if hydra_builds is not None:
        assert built == hydra_builds
    with pytest.raises(BuildError, match=error):
        build(config)


def test_lists_become_the_tuples_and_unions_hints_ask_for() -> None:
    kernel = build({"_target_": "buildable.Kernel", "size": [3, 3], "strides": [2, 2]})
    assert kernel == buildable.Kernel((3, 3), (2, 2)) and isinstance(kernel.size, tuple)
    assert build({"_target_": "buildable.Kernel", "size": 3}).size == 3
    with pytest.raises(
        BuildError, match=r"size: expected Union\[int, tuple\[int, int\]\], got list \[3, 3, 3\]"
    ):
        build({"_target_": "buildable.Kernel", "size": [3, 3, 3]})
    torch = pytest.importorskip("torch")
    conv = build(
        {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": [3, 3]}
    )
    assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3)


def test_unannotated_parameters_of_libraries_pass_unchecked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    torch = pytest.importorskip("torch")
    with caplog.at_level(logging.DEBUG, logger="xpkit.config"):
        linear = build(
            {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 3, "device": "cpu"}
        )
    assert isinstance(linear, torch.nn.Linear)
    assert (
        "device: torch.nn.Linear parameter 'device' has no type hint: passed through unchecked"
        in caplog.text
    )
    with pytest.raises(BuildError, match=r"in_features: expected int, got str"):
        build({"_target_": "torch.nn.Linear", "in_features": "2", "out_features": 3})


@pytest.mark.parametrize(
    ("config", "args", "kwargs", "message"),
    [
        (
            {"_target_": "buildable.PositionalOnly", "_args_": [1, 2, 3, 4]},
            (),
            {},
            r"_args_\[3\]: buildable.PositionalOnly takes 3 positional arguments, 4 given",
        ),
        (
            {"_target_": "buildable.PositionalOnly", "a": 1, "b": 2},
            (),
            {},
            r"a: 'a' of buildable.PositionalOnly is positional-only: give it in _args_",
        ),
        (
            {"_target_": "buildable.PositionalOnly"},
            (),
            {},
            r"missing required argument 'a' \(int\) of buildable.PositionalOnly \(positional-only: give it in _args_\)",
        ),
        (
            {"_target_": P, "_args_": [1], "x": 2},
            (),
            {},
            r"x: 'x' is given twice, in _args_ and by name",
        ),
        (
            {"_target_": "buildable.total", "_args_": [1, "two"]},
            (),
            {},
            r"_args_\[1\]: expected float, got str 'two'",
        ),
        ([POINT_1_2], (), {"x": 1}, r"a top-level list of nodes takes no x"),
        ("buildable.Point", (), {}, r"a config is a mapping, a list or None, got str"),
        (
            {"_target_": 3.5},
            (),
            {},
            r"_target_: must be a dotted name like pkg.module.Class, or a class or function, got 3.5",
        ),
    ],
    ids=[
        "too-many-positional",
        "positional-only-by-name",
        "positional-only-missing",
        "given-twice",
        "positional-type",
        "call-arguments-without-node",
        "string-config",
        "number-target",
    ],
)
def test_bad_calls(
    config: Any, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(BuildError, match=message):
        build(config, *args, **kwargs)


def test_every_problem_at_once_before_anything_is_built() -> None:
    config = {
        "a": {"_target_": "buildable.Exploding", "value": 1},
        "b": {"_target_": P, "x": "???"},
        "c": {"_target_": "buildable.total", "_args_": ["x"]},
        "d": {"_target_": P, "x": "${nowhere}"},
        "e": {"_target_": "buildable.Holder", "_convert_": "sometimes", "inner": 1},
    }
    with pytest.raises(BuildError) as caught:
        build(OmegaConf.create(config))
    text = str(caught.value)
    assert text.startswith("4 problems in config:"), text
    for fragment in [
        "b.x: missing mandatory value",
        "c._args_[0]: expected float, got str 'x'",
        "d.x: '${nowhere}' could not be resolved",
        "e._convert_: must be one of",
    ]:
        assert fragment in text, text
