"""xp.build of LightningCLI / jsonargparse forms against the real jsonargparse: class_path
and init_args for a parameter typed as a callable that returns the class, short class
names, bare class-path strings, _partial_ beside class_path, dict_kwargs."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from xpkit.config.build import build
from xpkit.errors import BuildError

torch = pytest.importorskip("torch")
jsonargparse = pytest.importorskip("jsonargparse")
import buildable_torch  # noqa: E402 (needs torch)

NET = "buildable_torch.TinyNet"
ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}}


def net_config(**init_args: Any) -> dict[str, Any]:
    return {"model": {"class_path": NET, "init_args": {"hidden": 3, **init_args}}}


def by_jsonargparse(config: dict[str, Any]) -> Any:
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=buildable_torch.TinyNet)
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # < 4.49
    return instantiate(parser.parse_object(config)).model


def optimizer_of(net: Any) -> tuple[type, float]:
    optimizer = net.configure_optimizers()
    return type(optimizer), optimizer.param_groups[0]["lr"]


CASES = {
    "class-path+init-args": {"optimizer": ADAM},
    "short-class-name": {"optimizer": {"class_path": "Adam", "init_args": {"lr": 0.01}}},
    "bare-class-path-string": {"optimizer": "torch.optim.Adam"},
    "bare-short-name": {"optimizer": "Adam"},
    "module-for-a-module-parameter": {"activation": "torch.nn.ReLU"},
    "module-node": {
        "activation": {"class_path": "torch.nn.LeakyReLU", "init_args": {"negative_slope": 0.2}}
    },
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_same_objects_as_jsonargparse(case: str) -> None:
    config = net_config(**CASES[case])
    expected = by_jsonargparse(config)
    built = build(config)["model"]
    assert isinstance(built, buildable_torch.TinyNet) and built.layer.out_features == 3
    assert optimizer_of(built) == optimizer_of(expected)
    assert repr(built.activation) == repr(expected.activation)


def test_partial_and_dict_kwargs_beside_class_path() -> None:
    adam = build({"class_path": "torch.optim.Adam", "_partial_": True, "init_args": {"lr": 0.1}})
    assert isinstance(adam, functools.partial) and adam.keywords == {"lr": 0.1}
    assert adam([torch.nn.Parameter(torch.zeros(1))]).param_groups[0]["lr"] == 0.1
    built = build({"class_path": "buildable_torch.WithKwargs", "init_args": {"name": "n"},
                   "dict_kwargs": {"alpha": 0.5}})  # fmt: skip
    assert built.name == "n" and built.extra == {"alpha": 0.5}
    with pytest.raises(BuildError, match=r"dict_kwargs.alpha: expected float, got str 'x'"):
        build({"class_path": "buildable_torch.WithKwargs", "init_args": {"name": "n"},
               "dict_kwargs": {"alpha": "x"}})  # fmt: skip


def test_a_callable_parameter_checks_the_arguments_it_is_given() -> None:
    config = net_config(optimizer={"class_path": "Adam", "init_args": {"lr": "fast"}})
    with pytest.raises(jsonargparse.ArgumentError):
        by_jsonargparse(config)
    with pytest.raises(BuildError, match=r"model.init_args.optimizer.init_args.lr: expected float"):
        build(config)


class Base:
    pass


Twin = type("Twin", (Base,), {"__module__": __name__})
OtherTwin = type("Twin", (Base,), {"__module__": __name__ + ".elsewhere"})


class Uses:
    def __init__(self, part: Base) -> None:
        self.part = part


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (net_config(optimizer={"class_path": "Adm"}),
         r"model.init_args.optimizer: no imported subclass of Optimizer is named 'Adm'; close matches: Adam"),
        ({"class_path": f"{__name__}.Uses", "init_args": {"part": {"class_path": "Twin"}}},
         r"init_args.part: class_path 'Twin' is ambiguous: test_config_lightning.Twin, test_config_lightning.elsewhere.Twin"),
        ({"model": {"class_path": "Adam"}},
         r"model: class_path 'Adam' has no module, and no parameter type says what it is a subclass of"),
        ({"class_path": NET, "init_args": [1]}, r"init_args: must be a mapping, got \[1\]"),
        ({"class_path": "buildable_torch.WithKwargs", "init_args": {"name": "n"},
          "dict_kwargs": {"name": "m"}}, r"dict_kwargs.name: 'name' is also given in init_args"),
        ({"class_path": NET, "hidden": 3}, r"unexpected key\(s\) hidden beside class_path"),
        (net_config(optimizer="torch.optim.Adamm"),
         r"optimizer: expected Callable\[\[Iterable\], torch.optim.optimizer.Optimizer\], got str 'torch.optim.Adamm'"),
    ],
    ids=["unknown-short-name", "ambiguous-short-name", "short-name-without-type", "init-args-type",
         "given-twice", "argument-beside-class-path", "unknown-class-path-string"],
)  # fmt: skip
def test_bad_lightning_forms(config: dict[str, Any], message: str) -> None:
    with pytest.raises(BuildError, match=message):
        build(config)
