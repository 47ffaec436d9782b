"""Classifier backbones, built by name, and the ``frontend -> backbone`` :class:`Classifier`.

Every backbone maps ``(batch, in_channels, n_mels, n_frames)`` to ``(batch, n_classes)`` logits::

    from melfront import models
    net = models.build("sbcnn", n_classes=10)                   # 128 x 128 x 1 input
    net = models.build("vgg", 10, width=128, in_channels=3)      # three stacked frontends
    clf = models.Classifier(frontend, net)                       # (batch, n_mels, frames) -> logits

``MODELS[name]`` is ``(builder, description, settings)``; ``settings`` are the training settings
of the paper the model comes from (keys: ``optimizer`` "sgd" | "adam", ``lr``, ``momentum``,
``nesterov``, ``weight_decay`` (L2 on kernels, see :func:`kernel_weights`), ``decay_layers``
"all" | "dense", ``clip_norm`` (global gradient norm, ``None`` for none), ``batch_size``,
``epochs`` (``None``: until early stopping), ``patience`` (early stopping, ``None`` for fixed epochs), ``n_mels``,
``patch_frames``, ``sampling`` ("random": one random patch per clip per epoch; "all": every
segment; "episodes": prototypical episodes, with ``query_per_class`` and ``support_per_class``),
``source``). A trainer reads them as defaults and lets
the user override any.
"""
from __future__ import annotations

from torch import nn

from ..errors import ParameterError
from .classifier import Backbone, Classifier, glorot_init, kernel_weights, set_batch_norm
from .piczak import PiczakCNN
from .protonet import ProtoNet, prototype_logits
from .resnet import ResNet
from .sbcnn import SBCNN
from .timbre import Timbre
from .vgg import VGG

__all__ = ["build", "MODELS", "Classifier", "Backbone", "kernel_weights", "set_batch_norm", "glorot_init",
           "SBCNN", "VGG", "Timbre", "PiczakCNN", "ProtoNet", "ResNet", "prototype_logits",
           "default_settings", "min_input"]

# Pons, Serrà & Serra 2019, as in their code (github.com/jordipons/neural-classifiers-with-few-audio,
# src/config_file.py and src/sl_train.py): plain SGD, lr 0.1, gradients clipped to global norm 5,
# L2 0.001 on every kernel (tf.nn.l2_loss, i.e. 0.001 * sum(w**2) / 2 = SGD weight decay 0.001),
# batch 256, 200 epochs, one random 128-frame patch per clip per epoch, 128 mel bands.
_PONS = dict(optimizer="sgd", lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.001, decay_layers="all",
             clip_norm=5.0, batch_size=256, epochs=200, patience=None, n_mels=128, patch_frames=128,
             sampling="random",
             source="Pons, Serra & Serra 2019 (ICASSP), reference code config_file.py / sl_train.py")

_SETTINGS = {
    # Salamon & Bello 2017 trained SB-CNN on UrbanSound8K with SGD lr 0.01, batch 100, 50 epochs and
    # L2 0.001 on the dense layers only (decay_layers="dense"), as recalled, not checked against the text
    # here; the default follows Pons et al., whose few-data setting this project reproduces.
    "sbcnn": dict(_PONS, source=_PONS["source"] + "; Salamon & Bello 2017 (IEEE SPL) used SGD lr 0.01, "
                                                  "batch 100, 50 epochs, L2 0.001 on the dense layers"),
    "vgg": dict(_PONS),
    "timbre": dict(_PONS),
    # Pons et al. 2019 prototypical networks (config_file.py config_proto, proto.py): SGD lr 0.1 with
    # clipping at 5, no L2; episodes of 5 query patches per class against a support set of one patch
    # from each of up to 5 audios per class; stop after 200 epochs without training-accuracy gain
    # (epochs None: unbounded, early stopping only). batch_size None: an episode is the batch.
    "protonet": dict(_PONS, weight_decay=0.0, batch_size=None, epochs=None, patience=200, sampling="episodes",
                     query_per_class=5, support_per_class=5,
                     source="Pons, Serra & Serra 2019 (ICASSP), reference code config_file.py / proto.py; "
                            "Snell et al. 2017"),
    # Piczak 2015, section 3: minibatch SGD with Nesterov momentum 0.9, L2 0.001 on each layer,
    # batches of 1000 segments, every segment of every clip; short segments (41 frames) 300 epochs,
    # long (101 frames) 150 epochs at lr 0.002. NOT checked against the paper's text in this
    # workspace (no copy available): treat lr/epochs as best recollection and override if needed.
    "piczak": dict(optimizer="sgd", lr=0.002, momentum=0.9, nesterov=True, weight_decay=0.001,
                   decay_layers="all", clip_norm=None, batch_size=1000, epochs=300, patience=None,
                   n_mels=60, patch_frames=41, sampling="all",
                   source="Piczak 2015 (MLSP), section 3 (from recollection, unverified here); "
                          "long variant: patch_frames=101, epochs=150"),
    # He et al. 2016 (ImageNet): SGD momentum 0.9, lr 0.1 (divided by 10 on plateaus), weight decay
    # 1e-4, batch 256. Their ~90-epoch ImageNet schedule is far too long for small audio sets; the
    # epochs here follow Pons et al.'s 200 with early stopping on validation left to the trainer.
    "resnet": dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4,
                   decay_layers="all", clip_norm=None, batch_size=256, epochs=200, patience=None,
                   n_mels=128, patch_frames=128, sampling="random",
                   source="He et al. 2016 (CVPR) optimiser; patches and epochs as Pons et al. 2019"),
}

MODELS = {
    "sbcnn": (SBCNN, "SB-CNN (Salamon & Bello 2017): 3 conv 5x5 + dense 64; 241,434 params at 128x128, C=10",
              _SETTINGS["sbcnn"]),
    "vgg": (VGG, "VGG (Pons et al. 2019): input BN, 5 x [conv 3x3, ELU, BN, pool 2x2], dense; width 32 or 128",
            _SETTINGS["vgg"]),
    "timbre": (Timbre, "TIMBRE (Pons et al. 2017): C filters of 108 mel x 7 frames, global max; 7,570 params, C=10",
               _SETTINGS["timbre"]),
    "piczak": (PiczakCNN, "PiczakCNN (Piczak 2015): 60 mels x 41/101 frames, conv 57x6 + conv 1x3, 2 x dense 5000",
               _SETTINGS["piczak"]),
    "protonet": (ProtoNet, "Prototypical network (Snell et al. 2017): VGG-128 embedding to 10 dims, -mean sq. distance",
                 _SETTINGS["protonet"]),
    "resnet": (ResNet, "ResNet-18 style (He et al. 2016): basic blocks [2,2,2,2], adaptive pooling, any channels",
               _SETTINGS["resnet"]),
}


def default_settings(name: str) -> dict:
    """A copy of the paper's training settings for model ``name`` (see the module docstring).

    >>> s = default_settings("piczak")
    >>> s["optimizer"], s["n_mels"], s["patch_frames"], s["sampling"]
    ('sgd', 60, 41, 'all')
    """
    _check_name(name)
    return dict(MODELS[name][2])


def _check_name(name) -> None:
    if not isinstance(name, str) or name not in MODELS:
        raise ParameterError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def min_input(name: str, **options) -> tuple[int, int]:
    """The smallest ``(n_mels, n_frames)`` that backbone ``name`` accepts with architecture ``options``.

    The same as ``MODELS[name][0].min_input(**options)`` (:meth:`Backbone.min_input`); nothing is built.
    :func:`build` with a smaller ``n_mels`` or ``n_frames`` raises a
    :class:`~melfront.errors.ParameterError` naming the axis and this minimum.

    >>> {name: min_input(name) for name in MODELS}
    {'sbcnn': (32, 100), 'vgg': (32, 32), 'timbre': (108, 7), 'piczak': (60, 20), 'protonet': (32, 32), 'resnet': (1, 1)}
    >>> min_input("timbre", filter_mels=86), min_input("piczak", deltas=True, delta_width=25)
    ((86, 7), (60, 25))
    """
    _check_name(name)
    return MODELS[name][0].min_input(**options)


def build(name: str, n_classes: int, n_mels: int | None = None, n_frames: int | None = None,
          in_channels: int = 1, **options) -> nn.Module:
    """Build the backbone ``name`` for ``n_classes`` classes and inputs ``(batch, in_channels, n_mels, n_frames)``.

    Parameters
    ----------
    name : str
        One of ``"sbcnn"``, ``"vgg"``, ``"timbre"``, ``"piczak"``, ``"protonet"``, ``"resnet"``.
    n_classes : int
        Number of output logits.
    n_mels, n_frames : int or None
        Input patch size. ``None`` (default) takes the model's paper setting, ``settings["n_mels"]``
        x ``settings["patch_frames"]``: 128 x 128 for all but ``piczak`` (60 x 41).
    in_channels : int
        Input channels (stacked frontends; 1 by default).
    **options
        Architecture options of the model's class, e.g. ``width=128`` for ``vgg``, ``deltas=True``
        for ``piczak``, ``input_bn=True`` for ``sbcnn``, ``width=16`` for ``resnet``.

    Returns
    -------
    nn.Module
        ``(batch, in_channels, n_mels, n_frames) -> (batch, n_classes)`` logits.

    Raises
    ------
    ParameterError
        Unknown name or option, a bad value, or an input smaller than :func:`min_input`.

    Examples
    --------
    >>> import torch
    >>> net = build("vgg", 10, n_mels=64, n_frames=96, width=8)
    >>> tuple(net(torch.randn(2, 1, 64, 96)).shape), sum(p.numel() for p in net.parameters())
    ((2, 10), 2988)
    >>> build("vgg", 10, widht=8)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    melfront.errors.ParameterError: unknown option(s) ['widht'] for model 'vgg'; accepted: width, ...
    """
    _check_name(name)
    cls, _, settings = MODELS[name]
    unknown = sorted(set(options) - set(cls.options()))
    if unknown:
        raise ParameterError(f"unknown option(s) {unknown} for model {name!r}; accepted: {', '.join(cls.options())}")
    n_mels = settings["n_mels"] if n_mels is None else n_mels
    n_frames = settings["patch_frames"] if n_frames is None else n_frames
    return cls(n_classes, n_mels=n_mels, n_frames=n_frames, in_channels=in_channels, **options)
