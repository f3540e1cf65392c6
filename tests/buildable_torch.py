"""Torch classes for the LightningCLI-form config tests, importable as `buildable_torch.X`
(a project module: strict checking applies to it, not to torch)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

# LightningCLI's own alias (lightning.pytorch.cli.OptimizerCallable), spelled out.
OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]


class TinyNet(torch.nn.Module):
    def __init__(self, hidden: int = 4, optimizer: OptimizerCallable = torch.optim.SGD,
                 activation: torch.nn.Module | None = None) -> None:  # fmt: skip
        super().__init__()
        self.layer = torch.nn.Linear(2, hidden)
        self.optimizer_factory = optimizer
        self.activation = activation

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())


class WithKwargs:
    def __init__(self, name: str, **extra: float) -> None:
        self.name, self.extra = name, extra
