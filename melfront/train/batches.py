"""What the trainer feeds the model: patch datasets for training and evaluation, mini-batches, episodes.

Everything random derives from ``(seed, epoch, ...)`` by hashing (:func:`melfront.data.sampling.seed_for`),
so a resumed run draws exactly the patches and orders of the uninterrupted one.

Prototypical networks (``sampling="episodes"``) have two support rules (setting ``support``):

- ``"episode"`` (default): every episode draws its own support set (up to ``support_per_class`` clips per
  class, one random patch each) and query set; the prototypes used for evaluation are the class means of
  every evaluation patch (``eval_hop`` apart) of the training clips.
- ``"fixed"``: one support set for the whole run, as in Pons, Serrà & Serra's reference code
  (github.com/jordipons/neural-classifiers-with-few-audio, src/proto.py and src/scripts/proto_train_test.py,
  read here; src/config_file.py ``config_proto``: ``patches_per_prototype`` 5, ``max_patches_per_class`` 5,
  training patches taken 42 frames apart). There the support set is defined once, at the first update: for
  each class, one randomly chosen patch of each of the first ``patches_per_prototype`` training audios.
  Every update feeds that same support set (in training mode: the gradient flows through its embeddings
  too) with a new query set, ``max_patches_per_class`` distinct patches per class drawn at random from all
  patches of the class's training audios, so the support audios, and even the support patches themselves,
  may be queries. Every evaluation embeds the same support set in inference mode for the prototypes and
  scores test patches taken 42 frames apart. melfront draws the support clips and their patches once from
  ``seed`` alone (:func:`fixed_support`; :meth:`melfront.train.Trainer.fixed_support` re-draws it
  identically on resume and checks it against the clips stored in the checkpoint); the queries are drawn
  per episode as with ``"episode"`` (clips with replacement, the support clips included, one random patch
  each); the evaluation prototypes are the class means of the fixed support set embedded in eval mode.
  By default melfront differs from the reference code in three ways, each a setting that the
  ``pons2019-*`` presets set to the reference's rule: its queries are distinct patches of a 42-frame grid
  (``queries="grid_patches"``, ``grid_hop``; by default melfront crops clips drawn with replacement), an
  epoch is ``total_patches // query_size`` updates (``epoch_updates="patch_grid"``, :func:`grid_updates_per_epoch`),
  and it embeds support and queries in two passes (``episode_passes=2``; by default one). With
  ``queries="grid_patches"`` the fixed support's patches lie on the grid too (by default: at any frame).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..data.patches import PatchDataset, all_patches, random_crop
from ..data.sampling import episode, query_clips, rng_for, seed_for, support_clips

__all__ = ["train_dataset", "eval_dataset", "batches", "epoch_order", "episode_batch", "episodes_per_epoch",
           "fixed_support", "grid_dataset", "grid_by_class", "grid_queries", "grid_updates_per_epoch"]


def train_dataset(features, labels, s: dict, kind: str, hop_length: int | None, seed: int) -> PatchDataset:
    """Training patches of settings ``s``: every segment (``sampling="all"``) or one random patch per clip.

    >>> ds = train_dataset([torch.rand(4, 50)], [0], dict(sampling="random", patch_frames=8, segment_hop=4,
    ...                    silence_db=None), "mel", None, 0)
    >>> ds[0][0].shape
    torch.Size([4, 8])
    """
    mode = "all" if s["sampling"] == "all" else "random"
    silence = s["silence_db"] if mode == "all" else None
    return PatchDataset(features, labels, n_frames=s["patch_frames"], mode=mode, hop=s["segment_hop"],
                        silence_db=silence, kind=kind, hop_length=hop_length, seed=seed)


def eval_dataset(features, labels, s: dict, kind: str, hop_length: int | None, seed: int) -> PatchDataset:
    """Every patch at ``eval_hop`` frames (silent segments dropped for ``sampling="all"``), for evaluation.

    >>> ds = eval_dataset([torch.rand(4, 50)], [0], dict(sampling="random", patch_frames=8, eval_hop=8,
    ...                   silence_db=None), "mel", None, 0)
    >>> len(ds)
    7
    """
    silence = s["silence_db"] if s["sampling"] == "all" else None
    return PatchDataset(features, labels, n_frames=s["patch_frames"], mode="all", hop=s["eval_hop"],
                        silence_db=silence, kind=kind, hop_length=hop_length, seed=seed)


def batches(ds: PatchDataset, order: Sequence[int], batch_size: int, device):
    """``(x, y, clip_indices)`` mini-batches of the items ``order`` of ``ds``, ``x`` float32 on ``device``.

    >>> ds = eval_dataset([torch.rand(4, 16)] * 3, [0, 1, 2], dict(sampling="random", patch_frames=8,
    ...                   eval_hop=8, silence_db=None), "mel", None, 0)
    >>> [(tuple(x.shape), y.tolist(), c) for x, y, c in batches(ds, range(len(ds)), 4, "cpu")][1]
    ((2, 4, 8), [2, 2], [2, 2])
    """
    for b in range(0, len(order), batch_size):
        items = [ds[j] for j in order[b:b + batch_size]]
        x = torch.stack([it[0] for it in items]).to(device, torch.float32)
        y = torch.tensor([it[1] for it in items], device=device)
        yield x, y, [it[2] for it in items]


def epoch_order(n_items: int, batch_size: int, seed: int, epoch: int, drop_last: bool = False) -> list[int]:
    """The shuffled item order of an epoch; a last batch of one item is dropped (batch norm needs two), and
    with ``drop_last`` every last partial batch (Tax et al.'s EnvClassification loader, ``loader.py``).

    >>> sorted(epoch_order(5, 2, seed=0, epoch=1)) != list(range(5))  # 5 = 2 + 2 + 1: one item dropped
    True
    >>> len(epoch_order(7, 4, 0, 1)), len(epoch_order(7, 4, 0, 1, drop_last=True))
    (7, 4)
    >>> epoch_order(6, 4, 0, 1) == epoch_order(6, 4, 0, 1) != epoch_order(6, 4, 0, 2)
    True
    """
    g = torch.Generator().manual_seed(seed_for("order", seed, epoch))
    order = torch.randperm(n_items, generator=g).tolist()
    if drop_last and len(order) >= batch_size:
        order = order[:len(order) - len(order) % batch_size]
    elif len(order) % batch_size == 1 and len(order) > 1:
        order = order[:-1]  # a batch of one breaks batch norm in training mode
    return order


def episodes_per_epoch(s: dict, n_train: int, n_classes: int) -> int:
    """``episodes_per_epoch``, or by default enough episodes for the query sets to cover the training clips once.

    >>> episodes_per_epoch(dict(episodes_per_epoch=None, query_per_class=5), n_train=40, n_classes=4)
    2
    """
    return s["episodes_per_epoch"] or max(1, math.ceil(n_train / (n_classes * s["query_per_class"])))


def fixed_support(features, clips_by_class, s: dict, kind: str, hop_length: int | None, seed: int, device):
    """One support set for a whole run: ``(x, labels, clips)``, a function of ``seed`` and the clips only.

    Up to ``support_per_class`` distinct clips of each class (:func:`melfront.data.sampling.support_clips`)
    and one random ``patch_frames`` patch of each, at any frame, or with ``queries="grid_patches"`` one of the
    clip's ``grid_hop`` grid patches (src/proto.py line 291: ``random.choice`` among the clip's patches);
    ``clips`` lists the chosen clip indices in the rows' order. No epoch enters the draw, so a resumed run (same
    seed, same clips) draws the same set.

    >>> feats = [torch.rand(4, 20) for _ in range(4)]
    >>> s = dict(support_per_class=1, patch_frames=8)
    >>> x, y, clips = fixed_support(feats, {0: [0, 1], 1: [2, 3]}, s, "mel", None, 0, "cpu")
    >>> tuple(x.shape), y.tolist(), torch.equal(x, fixed_support(feats, {0: [0, 1], 1: [2, 3]}, s, "mel", None,
    ...                                                          0, "cpu")[0])
    ((2, 4, 8), [0, 1], True)
    """
    support = support_clips(clips_by_class, s["support_per_class"], rng_for("fixed-support", seed))
    g = torch.Generator().manual_seed(seed_for("fixed-support-crops", seed))
    if s.get("queries") == "grid_patches":
        def pick(c):
            grid = all_patches(features[c], s["patch_frames"], s["grid_hop"], kind, hop_length, cover_end=False)
            return grid[int(torch.randint(0, grid.shape[0], (1,), generator=g))]
    else:
        def pick(c):
            return random_crop(features[c], s["patch_frames"], g, kind, hop_length)
    x = torch.stack([pick(c) for c, _ in support])
    return (x.to(device, torch.float32), torch.tensor([lab for _, lab in support], device=device),
            [int(c) for c, _ in support])


def episode_batch(features, clips_by_class, s: dict, kind: str, hop_length: int | None, seed: int, epoch: int,
                  k: int, device, support=None):
    """Episode ``k`` of ``epoch`` (Snell et al. 2017): ``(x, support_labels, query_labels)``.

    ``x`` stacks one random patch of each support clip, then of each query clip. ``support``: a fixed
    support set ``(x_support, labels)`` (:func:`fixed_support`) used as the episode's support, the queries
    alone being drawn (:func:`melfront.data.sampling.query_clips`, from every training clip, the support
    clips included); None (default): both drawn for this episode (:func:`melfront.data.sampling.episode`).

    >>> feats = [torch.rand(4, 20) for _ in range(4)]
    >>> s = dict(support_per_class=1, query_per_class=1, patch_frames=8)
    >>> x, sup, qry = episode_batch(feats, {0: [0, 1], 1: [2, 3]}, s, "mel", None, 0, 1, 0, "cpu")
    >>> tuple(x.shape), sorted(sup.tolist()), sorted(qry.tolist())
    ((4, 4, 8), [0, 1], [0, 1])
    >>> fixed = fixed_support(feats, {0: [0, 1], 1: [2, 3]}, s, "mel", None, 0, "cpu")[:2]
    >>> x, sup, qry = episode_batch(feats, {0: [0, 1], 1: [2, 3]}, s, "mel", None, 0, 1, 0, "cpu", support=fixed)
    >>> torch.equal(x[:2], fixed[0]), tuple(x.shape)
    (True, (4, 4, 8))
    """
    rng = rng_for("episode", seed, epoch, k)
    if support is None:
        drawn, query = episode(clips_by_class, s["support_per_class"], s["query_per_class"], rng)
    else:
        drawn, query = [], query_clips(clips_by_class, s["query_per_class"], rng)
    g = torch.Generator().manual_seed(seed_for("episode-crops", seed, epoch, k))
    x = torch.stack([random_crop(features[c], s["patch_frames"], g, kind, hop_length)
                     for c, _ in drawn + query]).to(device, torch.float32)
    if support is None:
        sup_y = torch.tensor([lab for _, lab in drawn], device=device)
    else:
        x, sup_y = torch.cat([support[0].to(device, torch.float32), x]), support[1].to(device)
    return x, sup_y, torch.tensor([lab for _, lab in query], device=device)


# -------------------------------------------------------------------- the reference's patch grid (protonet)
def grid_dataset(features, labels, s: dict, kind: str, hop_length: int | None, seed: int) -> PatchDataset:
    """Every ``patch_frames`` patch ``grid_hop`` frames apart from the start of each clip, none added to cover the
    end: Pons et al.'s training patches (src/sl_train.py ``data_gen``, ``overlap_sampling``, hop 42 in
    src/config_file.py ``config_proto``).

    >>> len(grid_dataset([torch.rand(4, 50)], [0], dict(patch_frames=8, grid_hop=20), "mel", None, 0))
    3
    """
    return PatchDataset(features, labels, n_frames=s["patch_frames"], mode="all", hop=s["grid_hop"],
                        kind=kind, hop_length=hop_length, seed=seed, cover_end=False)


def grid_by_class(ds: PatchDataset) -> dict[int, list[int]]:
    """``{label: [item indices of ds]}`` in item order.

    >>> grid_by_class(grid_dataset([torch.rand(4, 30)] * 2, [1, 0], dict(patch_frames=8, grid_hop=10), "mel",
    ...                            None, 0))
    {1: [0, 1, 2], 0: [3, 4, 5]}
    """
    out: dict[int, list[int]] = {}
    for item, (clip, _) in enumerate(ds.index):
        out.setdefault(ds.labels[clip], []).append(item)
    return out


def grid_updates_per_epoch(s: dict, items_by_class: dict) -> int:
    """Updates per epoch under ``epoch_updates="patch_grid"``: ``total_patches // query_size`` (at least 1), with
    ``query_size`` the queries of one episode (``min(query_per_class, patches of the class)`` per class), as
    src/proto.py line 339 (``update % (total_number_of_patches // query_set.shape[0])``).

    >>> grid_updates_per_epoch(dict(query_per_class=5), {0: list(range(30)), 1: list(range(30, 33))})
    4
    """
    total = sum(len(v) for v in items_by_class.values())
    query = sum(min(s["query_per_class"], len(v)) for v in items_by_class.values())
    return max(1, total // max(1, query))


def grid_queries(ds: PatchDataset, items_by_class: dict, s: dict, seed: int, epoch: int, k: int, device):
    """Queries of episode ``k`` under ``queries="grid_patches"``: ``(x, labels)``, up to ``query_per_class``
    distinct grid patches per class drawn without replacement (src/proto.py lines 290 and 303:
    ``idx = np.random.permutation(...)``, ``idx[:max_patches_per_class]``).

    >>> ds = grid_dataset([torch.rand(4, 30)] * 2, [0, 1], dict(patch_frames=8, grid_hop=10), "mel", None, 0)
    >>> x, y = grid_queries(ds, grid_by_class(ds), dict(query_per_class=2), 0, 1, 0, "cpu")
    >>> tuple(x.shape), y.tolist()
    ((4, 4, 8), [0, 0, 1, 1])
    """
    rng = rng_for("grid-queries", seed, epoch, k)
    chosen = []
    for label in sorted(items_by_class):
        items = items_by_class[label]
        chosen += [items[j] for j in rng.permutation(len(items))[:s["query_per_class"]]]
    patches = [ds[j] for j in chosen]
    x = torch.stack([p[0] for p in patches]).to(device, torch.float32)
    return x, torch.tensor([p[1] for p in patches], device=device)
