"""Regression in the one training loop: the task hook that lets :class:`~melfront.train.Trainer` fit a model to
tensor targets by mean squared error (Tax et al. 2017's MSTModel learning the log-mel: :mod:`melfront.mst.learn`).

A *task* tells the trainer what one epoch trains and what it measures; the trainer keeps everything else (the
optimiser, the update step with its divergence check, early stopping, best-state restore, the history):

- ``train_epoch(trainer, epoch) -> float``: one pass over the training data, every update through
  ``trainer.step(loss, epoch, batch)``; returns the mean training loss;
- ``evaluate(trainer) -> dict``: the validation metrics of the current model (names starting ``val_``);
- ``score(record) -> float``: what early stopping maximises (here ``-val_mse``).

:class:`Regression` is the mean-squared-error task: inputs ``x`` ``(n, ...)`` and targets ``y`` ``(n, ...)``,
shuffled per epoch from ``(seed, epoch)`` (:func:`~melfront.train.batches.epoch_order`, so a batch of one,
which batch norm cannot train on, is dropped), validation MSE and Pearson correlation
(:func:`regression_scores`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import positive_int
from ..errors import ParameterError
from .batches import epoch_order

__all__ = ["Regression", "regression_scores"]


def regression_scores(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """Mean squared error and Pearson correlation (over every element) of ``pred`` against ``target``.

    :math:`\\mathrm{mse} = \\frac1N \\sum (p - t)^2`, :math:`r = \\frac{\\sum (p - \\bar p)(t - \\bar t)}
    {\\lVert p - \\bar p\\rVert\\, \\lVert t - \\bar t\\rVert}` (float64; 0 when either side is constant).

    >>> regression_scores(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0, 1.0, 4.0]))["mse"]
    1.3333333333333333
    >>> round(regression_scores(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))["corr"], 6)
    1.0
    """
    p, t = pred.detach().double().flatten(), target.detach().double().flatten()
    if p.shape != t.shape:
        raise ParameterError(f"regression_scores: prediction has {p.numel()} values, target {t.numel()}")
    mse = float(((p - t) ** 2).mean())
    pc, tc = p - p.mean(), t - t.mean()
    corr = float((pc @ tc) / (pc.norm() * tc.norm()).clamp_min(1e-12))
    return {"mse": mse, "corr": corr}


class Regression:
    """The mean-squared-error task of :class:`~melfront.train.Trainer` (see the module docstring).

    Parameters
    ----------
    x, y : Tensor ``(n, ...)``
        Training inputs and targets (kept on the CPU; each batch moves to the trainer's device).
    val_x, val_y : Tensor ``(m, ...)``
        Validation inputs and targets: early stopping watches their MSE.
    batch_size : int
        Training batch size (validation runs in batches of ``eval_batch_size``).

    >>> from melfront.train import Trainer
    >>> model = nn.Linear(3, 2)
    >>> x, w = torch.randn(40, 3), torch.randn(3, 2)
    >>> task = Regression(x[:32], x[:32] @ w, x[32:], x[32:] @ w, batch_size=8)
    >>> t = Trainer(model, Regression.settings(lr=0.05, epochs=30, patience=5), task=task, device="cpu",
    ...             progress=False)
    >>> h = t.fit()
    >>> h[0]["epoch"], h[-1]["val_mse"] < h[0]["val_mse"], sorted(h[1])
    (0, True, ['epoch', 'loss', 'seconds', 'val_corr', 'val_mse'])
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                 batch_size: int = 100, eval_batch_size: int = 100):
        for name, a, b in (("training", x, y), ("validation", val_x, val_y)):
            if len(a) == 0 or len(a) != len(b):
                raise ParameterError(f"Regression: the {name} inputs ({len(a)}) and targets ({len(b)}) must be "
                                     "non-empty and as many")
        self.x, self.y, self.val_x, self.val_y = x, y, val_x, val_y
        self.batch_size = positive_int("batch_size", batch_size)
        self.eval_batch_size = positive_int("eval_batch_size", eval_batch_size)

    def train_epoch(self, trainer, epoch: int) -> float:
        """One shuffled pass; every update through ``trainer.step``; the mean training MSE."""
        order = torch.tensor(epoch_order(len(self.x), self.batch_size, trainer.seed, epoch), dtype=torch.long)
        total, count = 0.0, 0
        for b, i in enumerate(range(0, len(order), self.batch_size)):
            idx = order[i:i + self.batch_size]
            x, y = self.x[idx].to(trainer.device), self.y[idx].to(trainer.device)
            total += trainer.step(nn.functional.mse_loss(trainer.model(x), y), epoch, b + 1) * len(idx)
            count += len(idx)
        return total / max(count, 1)

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor, device) -> torch.Tensor:
        """The model's output on ``x`` in eval mode, in batches, on the CPU (the mode is restored)."""
        was = model.training
        model.eval()
        out = torch.cat([model(x[i:i + self.eval_batch_size].to(device)).cpu()
                         for i in range(0, len(x), self.eval_batch_size)])
        model.train(was)
        return out

    def evaluate(self, trainer) -> dict:
        """``val_mse`` and ``val_corr`` of the trainer's current model."""
        scores = regression_scores(self.predict(trainer.model, self.val_x, trainer.device), self.val_y)
        return {"val_mse": scores["mse"], "val_corr": scores["corr"]}

    @staticmethod
    def settings(lr: float, epochs: int, patience: int | None, batch_size: int = 100, optimizer: str = "adam",
                 momentum: float = 0.0) -> dict:
        """The trainer settings of a regression: ``optimizer`` at ``lr``, no weight decay or clipping, at most
        ``epochs`` epochs, early stopping after ``patience`` epochs without a lower validation MSE (best state
        restored); the classifier-only fields are placeholders the task does not read.

        >>> s = Regression.settings(3e-4, 800, 50)
        >>> s["optimizer"], s["epochs"], s["patience"], s["restore_best"]
        ('adam', 800, 50, True)
        """
        return dict(optimizer=optimizer, lr=lr, momentum=momentum, nesterov=False, weight_decay=0.0,
                    decay_layers="all", clip_norm=None, batch_size=batch_size, epochs=epochs, patience=patience,
                    n_mels=1, patch_frames=1, sampling="random", restore_best=True, patience_count="consecutive")

    @staticmethod
    def score(record: dict) -> float:
        """Early stopping maximises ``-val_mse``."""
        return -record["val_mse"]
