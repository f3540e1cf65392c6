"""Typed building blocks for `train_config.py`: every constructor argument has a type
hint, so `xp.build` checks a config against them before anything is constructed."""

from __future__ import annotations

from typing import Literal

import numpy as np


class SyntheticCifar:
    """Synthetic 10-class data: Gaussian clusters, the same task for every seed."""

    def __init__(self, n: int = 2000, dim: int = 32, noise: float = 2.0, seed: int = 0):
        centers = np.random.default_rng(1234).normal(0, 1.0, size=(10, dim))
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, size=n)
        features = centers[labels] + rng.normal(0, noise, size=(n, dim))
        split = int(0.8 * n)
        self.train = (features[:split], labels[:split])
        self.test = (features[split:], labels[split:])


class SGD:
    def __init__(self, lr: float, schedule: Literal["constant", "cosine"] = "constant"):
        self.lr, self.schedule = lr, schedule

    def rate(self, epoch: int, epochs: int) -> float:
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))
        return self.lr


class Trainer:
    def __init__(self, data: SyntheticCifar, optimizer: SGD, epochs: int = 10,
                 batch_size: int = 64, seed: int = 0):  # fmt: skip
        self.data, self.optimizer = data, optimizer
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
