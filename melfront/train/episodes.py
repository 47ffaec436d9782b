"""The prototypical network's part of the training loop (``sampling="episodes"``), mixed into
:class:`melfront.train.Trainer`: an epoch of episodes, the patch grid the reference code draws queries and epochs
from, the two embedding passes, the fixed support set and the evaluation prototypes.

What Pons et al.'s reference code does and how each setting maps to it: :mod:`melfront.train.batches`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.protonet import prototype_logits
from .batches import (batches, episode_batch, episodes_per_epoch, fixed_support, grid_by_class, grid_dataset,
                      grid_queries, grid_updates_per_epoch)

__all__ = ["Episodes", "tick"]


def tick(bar, loss_sum: float, total: int) -> None:
    """Advance an epoch's progress bar (None: no bar) by one batch, showing the running mean loss."""
    if bar is not None:
        bar.set_postfix(loss=f"{loss_sum / max(total, 1):.3f}", refresh=False)
        bar.update(1)


class Episodes:
    """Methods of :class:`~melfront.train.Trainer` for prototypical networks; they use the trainer's ``s``
    (settings), ``model``, ``kind``, ``hop_length``, ``seed``, ``device``, ``_support`` and ``_step``."""

    def _episodes_epoch(self, ds, clips_by_class, n_train, epoch):
        """One epoch of episodes: ``(progress bar, loss sum, correct, queries)``; ``epoch_updates="patch_grid"``:
        ``total_patches // query_size`` episodes, else :func:`~melfront.train.batches.episodes_per_epoch`."""
        s = self.s
        grid = self._grid(ds)
        if s["epoch_updates"] == "patch_grid":
            n_episodes = grid_updates_per_epoch(s, grid[1])
        else:
            n_episodes = episodes_per_epoch(s, n_train, len(clips_by_class))
        bar = self._batch_bar(epoch, n_episodes, "episode")
        loss_sum, correct, total = 0.0, 0, 0
        for k in range(n_episodes):
            x, sup_y, qry_y = self._episode(ds, clips_by_class, grid, epoch, k)
            logits = self._episode_logits(x, sup_y)
            loss_sum += self._step(nn.functional.cross_entropy(logits, qry_y), epoch, k + 1) * len(qry_y)
            correct += int((logits.argmax(1) == qry_y).sum())
            total += len(qry_y)
            tick(bar, loss_sum, total)
        return bar, loss_sum, correct, total

    def _grid(self, ds):
        """``(grid dataset, {label: items})`` when an epoch or the queries follow the patch grid, else None."""
        s = self.s
        if s["epoch_updates"] != "patch_grid" and s["queries"] != "grid_patches":
            return None
        if getattr(self, "_grid_cache", None) is None or self._grid_cache[0] is not ds:
            g = grid_dataset(ds.features, ds.labels, s, self.kind, self.hop_length, self.seed)
            self._grid_cache = (ds, (g, grid_by_class(g)))
        return self._grid_cache[1]

    def _episode(self, ds, clips_by_class, grid, epoch: int, k: int):
        """Episode ``k`` of ``epoch``: ``(x, support_labels, query_labels)``, support rows first."""
        s = self.s
        support = None if self._support is None else self._support[:2]
        if s["queries"] == "grid_patches":
            q, qry_y = grid_queries(grid[0], grid[1], s, self.seed, epoch, k, self.device)
            if support is None:  # a support set per episode, drawn as with queries="clips"
                x, sup_y, _ = episode_batch(ds.features, clips_by_class, s, self.kind, self.hop_length, self.seed,
                                            epoch, k, self.device)
                support = (x[:len(sup_y)], sup_y)
            return torch.cat([support[0].to(self.device, torch.float32), q]), support[1].to(self.device), qry_y
        return episode_batch(ds.features, clips_by_class, s, self.kind, self.hop_length, self.seed, epoch, k,
                             self.device, support=support)

    def _episode_logits(self, x, sup_y):
        """Query logits of an episode; ``episode_passes=2`` embeds support and queries apart (batch norm sees
        each set alone, as src/proto.py's two ``models.select`` calls), 1 in one pass."""
        n = len(sup_y)
        if self.s["episode_passes"] == 2:
            zs, zq = self.model.features(x[:n]), self.model.features(x[n:])
            backbone = self.model.backbone
            embs, embq = backbone.embed(zs), backbone.embed(zq)
            return prototype_logits(embq, backbone.compute_prototypes(embs, sup_y))
        z = self.model.features(x)
        return self.model.backbone.logits(z[n:], z[:n], sup_y)

    def fixed_support(self, features, labels):
        """The run's fixed support set (setting ``support="fixed"``): ``(x, labels, clip indices)``.

        Up to ``support_per_class`` training clips per class and one random ``patch_frames`` patch of each,
        drawn from this trainer's ``seed`` alone (:func:`melfront.train.batches.fixed_support`), so the same
        seed and clips give the same set, in this session or a resumed one. ``x`` is
        ``(n_support, n_mels, patch_frames)`` (or samples, for waveform features) on the trainer's device.
        """
        by_class: dict[int, list[int]] = {}
        for i, lab in enumerate(labels):
            by_class.setdefault(int(lab), []).append(i)
        return fixed_support(features, by_class, self.s, self.kind, self.hop_length, self.seed, self.device)

    @torch.no_grad()
    def set_prototypes(self, features, labels) -> None:
        """Prototypical network: store the prototypes used by :meth:`predict` (other models: nothing).

        ``support="episode"``: the class means of every evaluation patch (``eval_hop`` apart) of the clips
        ``features``; ``support="fixed"``: the class means of the fixed support set of those clips
        (:meth:`fixed_support`), as Pons et al. evaluate. Embeddings are computed in eval mode.
        """
        backbone = self.model.backbone
        if not hasattr(backbone, "set_prototypes"):
            return
        was = self.model.training
        self.model.eval()
        emb, ys = [], []
        if self.s["support"] == "fixed":
            # fit drew the set from these training clips already; another caller draws it (the same, by seed)
            x_all, y_all, _ = self._support or self.fixed_support(features, labels)
            parts = [(x_all[b:b + self.s["eval_batch_size"]], y_all[b:b + self.s["eval_batch_size"]])
                     for b in range(0, len(y_all), self.s["eval_batch_size"])]
        else:
            ds = self._eval_dataset(features, labels)
            parts = ((x, y) for x, y, _ in batches(ds, range(len(ds)), self.s["eval_batch_size"], self.device))
        for x, y in parts:
            emb.append(backbone.embed(self.model.features(x)))
            ys.append(y)
        backbone.set_prototypes(torch.cat(emb), torch.cat(ys))
        self.model.train(was)

    def _draw_support(self, features, labels):
        """``support="fixed"``: the run's support set (checked against a resumed checkpoint's); else None."""
        if self.s["support"] != "fixed":
            return None
        support = self.fixed_support(features, labels)
        saved = self._checkpoint_support
        if saved is not None and [int(c) for c in saved] != support[2]:
            raise CheckpointError(f"{self.checkpoint}: cannot resume, the checkpoint was trained with the fixed "
                                  f"support clips {list(saved)}, these training clips give {support[2]} "
                                  f"(other training clips or seed?)")
        return support
