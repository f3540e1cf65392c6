"""The shared parts of the integrations, in process: flattening hyperparameters, which
values are metrics, rank-zero only, and that `import xpkit` never imports a framework."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from xpkit.integrations._common import flat_config, scalars


@dataclasses.dataclass
class Optim:
    name: str = "adam"
    betas: tuple[float, float] = (0.9, 0.999)


def test_flat_config_opens_every_kind_of_container() -> None:
    from omegaconf import OmegaConf

    params = {
        "args": argparse.Namespace(lr=0.1, layers=[2, 3]),
        "optim": Optim(),
        "data": OmegaConf.create({"root": "/data", "aug": {"flip": True}}),
        "path": Path("/tmp/x"),
        "nan": float("nan"),
        "wandb_api_key": "abc",
        "url": "postgres://user:hunter2@db/x",
        "empty": {},
    }
    assert flat_config(params) == {
        "args.lr": 0.1, "args.layers": [2, 3], "optim.name": "adam", "optim.betas": [0.9, 0.999],
        "data.root": "/data", "data.aug.flip": True, "path": "/tmp/x", "nan": "nan",
        "wandb_api_key": "***", "url": "***", "empty": {},
    }  # fmt: skip
    json.dumps(flat_config(params), allow_nan=False)  # always valid JSON


def test_scalars_keeps_numbers_and_strings_only() -> None:
    import numpy as np
    import torch

    values = {"a": 1, "b": 0.5, "c": np.float32(2.0), "d": torch.tensor(3.0),
              "e": torch.ones(3), "f": "text", "g": None, "step": 4, "time": 1.0}  # fmt: skip
    assert scalars(values) == {"a": 1, "b": 0.5, "c": 2.0, "d": 3.0, "f": "text",
                               "step_": 4, "time_": 1.0}  # fmt: skip


def test_other_ranks_record_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.utilities import rank_zero_only

    from xpkit.integrations.lightning import XpLogger

    monkeypatch.setenv("XP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = XpLogger()
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.finalize("success")
    assert logger.name == "xpkit" and logger.save_dir is None  # no run was started
    assert not (tmp_path / "runs").exists()


def test_import_xpkit_imports_no_framework() -> None:
    code = ("import sys, xpkit, xpkit.tracking, xpkit.integrations; "
            "print(sorted(m for m in ('torch', 'lightning', 'pytorch_lightning', 'transformers', "
            "'keras', 'accelerate') if m in sys.modules))")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_missing_framework_says_which_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "keras.py").write_text("raise ImportError('no keras here')\n")
    code = "import xpkit.integrations.keras"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(blocker), "PATH": ""})  # fmt: skip
    assert result.returncode == 1
    assert "xpkit.integrations.keras needs keras: pip install 'xpkit[keras]'" in result.stderr
