"""Prototypical network (Snell et al. 2017) with the VGG-128 embedding of Pons, Serrà & Serra (2019)."""
from __future__ import annotations

import torch

from ..checks import positive_int
from ..errors import ModelStateError, ParameterError
from .classifier import Backbone
from .vgg import VGG

__all__ = ["ProtoNet", "prototype_logits"]


def _class_means(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    if embeddings.ndim != 2:
        raise ParameterError(f"support embeddings must be (n_support, dim), got shape {tuple(embeddings.shape)}")
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ParameterError(f"support_labels must be a 1-d tensor of {embeddings.shape[0]} class indices, "
                             f"got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ParameterError(f"support_labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ParameterError(f"support_labels must lie in [0, {n_classes - 1}], got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
    counts = torch.bincount(labels, minlength=n_classes)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ParameterError(f"support_labels: every class needs at least one support example; none for "
                             f"class(es) {missing}")
    sums = torch.zeros(n_classes, embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    sums = sums.index_add(0, labels, embeddings)
    return sums / counts.to(embeddings.dtype).unsqueeze(1)


def prototype_logits(query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Logits ``-d(q, c_k)`` with ``d`` the mean squared difference over embedding dimensions.

    ``query`` ``(n, dim)``, ``prototypes`` ``(n_classes, dim)`` -> ``(n, n_classes)``. The mean
    (rather than Snell et al.'s sum) follows Pons et al. 2019; it only rescales the logits by
    ``1 / dim``.

    >>> import torch
    >>> prototype_logits(torch.tensor([[0.0, 0.0], [2.0, 2.0]]), torch.tensor([[0.0, 0.0], [1.0, 3.0]]))
    tensor([[-0., -5.],
            [-4., -1.]])
    """
    return -(query.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).mean(dim=-1)


class ProtoNet(Backbone):
    """Prototypical network: a VGG-128 embedding and logits from distances to class prototypes.

    The embedding :math:`f` is :class:`~melfront.models.VGG` with ``width=128`` and an output of
    ``embedding_dim`` (default 10) units. A class prototype is the mean embedding of that class's
    support examples, :math:`c_k = \\frac{1}{|S_k|}\\sum_{x \\in S_k} f(x)`, and a query's logits are
    :math:`-\\frac{1}{D}\\lVert f(q) - c_k \\rVert^2`; their softmax is the class posterior.

    Use
    ---
    *Episodic training* (Snell et al. 2017; Pons et al. 2019): per episode a support set (one patch
    from each of up to 5 training audios per class) and a query set (5 patches per class); the loss
    is the cross-entropy of ``model.logits(query, support, support_labels)``, whose gradient flows
    through both the queries and the prototypes. The trainer's setting ``support`` chooses between a
    support set drawn anew every episode (``"episode"``, Snell et al.'s rule) and one support set drawn
    once and kept for the whole run (``"fixed"``, what Pons et al.'s reference code does: src/proto.py,
    src/config_file.py ``patches_per_prototype=5``, ``max_patches_per_class=5``); see
    :mod:`melfront.train.trainer`.

    *Inference*: :meth:`set_prototypes` (from support embeddings: with the trainer, every evaluation
    patch of the training clips for ``support="episode"``, the fixed support set for ``"fixed"``)
    stores the prototypes in a buffer that is saved in ``state_dict``; then ``forward(x)`` returns
    ``(batch, n_classes)`` logits like every other backbone. A clip's class is the argmax of the mean
    log-probability over its patches, taken ``eval_hop`` frames apart (default 42 frames for this
    model, Pons et al.'s test hop in src/proto.py, at most a patch).

    The default network (VGG-128 embedding to 10 dimensions) has 613,388 parameters whatever the
    number of classes; the smallest input is 32 x 32 (five 2 x 2 poolings). A narrower embedding
    for the example:

    >>> import torch
    >>> net = ProtoNet(3, n_mels=32, n_frames=48, width=8).eval()
    >>> support, labels = torch.randn(6, 1, 32, 48), torch.tensor([0, 0, 1, 1, 2, 2])
    >>> tuple(net.logits(torch.randn(4, 1, 32, 48), support, labels).shape)  # an episode: 4 queries
    (4, 3)
    >>> net.set_prototypes(net.embed(support), labels)
    >>> tuple(net(torch.randn(5, 1, 32, 48)).shape), sum(p.numel() for p in net.parameters())
    ((5, 3), 2588)
    >>> ProtoNet.min_input()
    (32, 32)

    Parameters
    ----------
    n_classes : int
        Number of classes (prototypes).
    n_mels, n_frames, in_channels : int
        Input patch shape, default 128 x 128 x 1; at least 32 x 32.
    embedding_dim : int
        Embedding size, default 10.
    width : int
        Filters of the VGG embedding, default 128.
    dropout : float
        Dropout of the VGG embedding, default 0.5.

    References
    ----------
    J. Snell, K. Swersky and R. Zemel, "Prototypical networks for few-shot learning", NeurIPS 2017.
    J. Pons, J. Serrà and X. Serra, "Training neural audio classifiers with few data", ICASSP 2019.
    """

    def __init__(self, n_classes: int, n_mels: int = 128, n_frames: int = 128, in_channels: int = 1,
                 embedding_dim: int = 10, width: int = 128, dropout: float = 0.5):
        super().__init__(n_classes, n_mels, n_frames, in_channels)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self._require()
        self.embedding = VGG(embedding_dim, n_mels, n_frames, in_channels, width=width, dropout=dropout)
        self.register_buffer("prototypes", torch.zeros(n_classes, embedding_dim))
        self.register_buffer("has_prototypes", torch.tensor(False))

    @classmethod
    def _input_ops(cls, **options):
        pool = [(2, 2, 0)] * 5  # the VGG embedding's five 2x2 poolings
        return pool, pool

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, n_mels, n_frames) -> (batch, embedding_dim)``."""
        return self.embedding(x)

    def compute_prototypes(self, support_embeddings: torch.Tensor, support_labels: torch.Tensor) -> torch.Tensor:
        """Mean embedding per class: ``(n_support, dim)``, labels ``(n_support,)`` -> ``(n_classes, dim)``."""
        if support_embeddings.ndim == 2 and support_embeddings.shape[1] != self.embedding_dim:
            raise ParameterError(f"support embeddings have {support_embeddings.shape[1]} dimensions, "
                                 f"expected embedding_dim={self.embedding_dim}")
        return _class_means(support_embeddings, support_labels, self.n_classes)

    @torch.no_grad()
    def set_prototypes(self, support_embeddings: torch.Tensor, support_labels: torch.Tensor) -> None:
        """Store the class means of ``support_embeddings`` (from :meth:`embed`) for ``forward``."""
        protos = self.compute_prototypes(support_embeddings.detach(), support_labels)
        self.prototypes.copy_(protos.to(self.prototypes.dtype))
        self.has_prototypes.fill_(True)

    def logits(self, query: torch.Tensor, support: torch.Tensor, support_labels: torch.Tensor) -> torch.Tensor:
        """Episode logits ``(n_query, n_classes)``: queries against prototypes of the ``support`` patches.

        ``query`` and ``support`` are input patches ``(n, in_channels, n_mels, n_frames)``; both are
        embedded in one pass (so batch norm sees the whole episode) and gradients reach both.
        """
        emb = self.embed(torch.cat([support, query], dim=0))
        protos = self.compute_prototypes(emb[: support.shape[0]], support_labels)
        return prototype_logits(emb[support.shape[0]:], protos)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.has_prototypes):
            raise ModelStateError("ProtoNet has no prototypes yet: call set_prototypes(model.embed(support), "
                                  "labels) or use model.logits(query, support, labels)")
        return prototype_logits(self.embed(x), self.prototypes)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", embedding_dim={self.embedding_dim}"
