"""Clip-level aggregation of patch predictions, and the clip metrics of the study.

A clip's prediction aggregates its patches (all patches at ``eval_hop`` frames, or Piczak's segments):
``"mean_prob"`` (mean softmax), ``"vote"`` (majority of patch decisions, ties broken by the mean
probability) or ``"mean_logprob"`` (mean log-probability, the prototypical networks' rule).
Metrics: accuracy, macro mean average precision (one-vs-rest average precision of the clip scores,
averaged over the classes present: the Merlin team's metric), per-class accuracy and the confusion
matrix, all JSON-able.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..checks import one_of
from ..errors import ParameterError

__all__ = ["AGGREGATIONS", "aggregate", "clip_metrics"]

#: The clip aggregation rules of :func:`aggregate`.
AGGREGATIONS = ("mean_prob", "vote", "mean_logprob")


def aggregate(log_probs: torch.Tensor, clip_index: Sequence[int], n_clips: int, method: str = "mean_prob") -> np.ndarray:
    """Clip scores ``(n_clips, n_classes)`` (rows sum to 1) from patch log-probabilities ``(n_patches, n_classes)``.

    - ``"mean_prob"``: mean of the patches' softmax probabilities;
    - ``"mean_logprob"``: softmax of the mean log-probability (the normalised geometric mean);
    - ``"vote"``: fraction of patches voting for each class (argmax), plus ``1e-6`` times the mean
      probability so that ties go to the class with the higher mean probability.

    The predicted class of a clip is the argmax of its row. Every clip must have at least one patch.

    >>> lp = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.4, 0.6]]).log()
    >>> aggregate(lp, [0, 0, 0], 1, "mean_prob").round(3)
    array([[0.567, 0.433]])
    >>> int(aggregate(lp, [0, 0, 0], 1, "vote").argmax())
    1
    """
    one_of("method", method, AGGREGATIONS)
    lp = log_probs.detach().double().cpu()
    idx = torch.as_tensor(list(clip_index), dtype=torch.long)
    if idx.numel() != lp.shape[0]:
        raise ParameterError(f"clip_index has {idx.numel()} entries for {lp.shape[0]} patches")
    counts = torch.bincount(idx, minlength=n_clips).double()
    if (counts == 0).any():
        raise ParameterError(f"clip(s) {torch.nonzero(counts == 0).flatten().tolist()[:5]} have no patch")
    n_classes = lp.shape[1]

    def mean(values):
        return torch.zeros(n_clips, n_classes, dtype=torch.float64).index_add_(0, idx, values) / counts[:, None]

    mean_prob = mean(lp.exp())
    if method == "mean_prob":
        scores = mean_prob
    elif method == "mean_logprob":
        scores = torch.softmax(mean(lp), dim=1)
    else:
        votes = mean(torch.nn.functional.one_hot(lp.argmax(1), n_classes).double())
        scores = votes + 1e-6 * mean_prob
        scores = scores / scores.sum(1, keepdim=True)
    return scores.numpy()


def clip_metrics(scores: np.ndarray, labels: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy, macro mean average precision, per-class accuracy and confusion matrix (JSON-able).

    ``scores`` ``(n_clips, n_classes)``; ``labels`` the true class indices. ``map`` is the mean over
    the classes present in ``labels`` of sklearn's ``average_precision_score`` of the one-vs-rest
    problem (class scores as ranking). ``per_class_accuracy`` lists the classes present (recall per
    class); ``confusion[i][j]`` counts clips of class ``i`` predicted as ``j``.

    >>> m = clip_metrics(np.array([[0.4, 0.6], [0.6, 0.4]]), [0, 1], ["a", "b"])
    >>> m["accuracy"], m["map"], m["confusion"]
    (0.0, 0.5, [[0, 1], [1, 0]])
    """
    # scikit-learn is a heavy import (scipy and more): load it only when metrics are computed,
    # not on every `import melfront`
    from sklearn.metrics import average_precision_score
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(list(labels), dtype=np.int64)
    n_classes = len(classes)
    if scores.ndim != 2 or scores.shape != (len(y), n_classes):
        raise ParameterError(f"scores must be (n_clips={len(y)}, n_classes={n_classes}), got {scores.shape}")
    if len(y) == 0:
        raise ParameterError("labels: no clips to evaluate")
    pred = scores.argmax(1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    present = [k for k in range(n_classes) if (y == k).any()]
    aps = [float(average_precision_score((y == k).astype(int), scores[:, k])) for k in present]
    return {
        "accuracy": float((pred == y).mean()),
        "map": float(np.mean(aps)),
        "per_class_accuracy": {str(classes[k]): float(confusion[k, k] / confusion[k].sum()) for k in present},
        "confusion": confusion.tolist(),
        "n": int(len(y)),
    }
