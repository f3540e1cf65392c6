"""Tiny typed models for the Hydra example: plain Python, no framework, so the example
shows what xp.build checks (the hints) rather than a framework's internals."""

from __future__ import annotations

from collections.abc import Callable


class SGD:
    def __init__(self, params: list[float], lr: float, momentum: float = 0.0) -> None:
        self.params, self.lr, self.momentum = params, lr, momentum

    def step(self, grads: list[float]) -> None:
        self.params = [p - self.lr * g for p, g in zip(self.params, grads)]


class MLP:
    def __init__(self, hidden: int, depth: int = 2, kernel: tuple[int, int] = (1, 1)) -> None:
        self.hidden, self.depth, self.kernel = hidden, depth, kernel
        self.weights = [1.0 + 0.1 * i for i in range(depth)]


class Trainer:
    def __init__(self, model: MLP, optimizer: Callable[..., SGD], epochs: int) -> None:
        self.model, self.epochs = model, epochs
        self.optimizer = optimizer(params=model.weights)

    def fit(self) -> list[float]:
        losses = []
        for _ in range(self.epochs):
            grads = [2 * w for w in self.optimizer.params]  # d/dw of w**2
            self.optimizer.step(grads)
            losses.append(sum(w * w for w in self.optimizer.params) / self.model.hidden)
        return losses
