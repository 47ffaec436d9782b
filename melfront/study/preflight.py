"""The checks a study runs before its first trial, the same for ``compare --dry-run`` and the real run.

A setting that would make every trial fail, or make every trial meaningless, is refused here with one
:class:`~melfront.errors.ParameterError` naming the setting, instead of surfacing as one failed trial after
another (or as a chance-level study stored with exit status 0):

- the mel configuration: a filterbank with empty bands (``n_fft`` too small for ``n_mels``; the library
  function :func:`melfront.functional.mel_filterbank` keeps librosa's warning, a study refuses it), and a
  ``hop_length`` longer than the analysis window (``n_fft``), which skips audio between frames;
- ``epochs`` and ``max_epochs`` above :data:`MAX_EPOCHS`, a patch longer than :data:`MAX_PATCH_SECONDS`;
- every model with every frontend, built at the study's input size (``n_mels`` x ``patch_frames``) with its
  ``model_options`` on PyTorch's ``meta`` device (nothing allocated): an unknown option, an option of the wrong
  type, a patch too small for the backbone or a backbone over :data:`MAX_PARAMETERS` parameters is found before
  any training.

>>> from melfront.study import StudyConfig
>>> mel = {"n_mels": 32, "n_fft": 256, "hop_length": 128, "sample_rate": 8000}
>>> preflight(StudyConfig(frontends=["db"], models=["vgg"], mel=mel, train={"patch_frames": 32}))
>>> preflight(StudyConfig(frontends=["db"], models=["sbcnn"], mel=mel, train={"patch_frames": 32}))
Traceback (most recent call last):
...
melfront.errors.ParameterError: model 'sbcnn' with frontend 'db' (n_mels=32, patch_frames=32, model_options={}): SBCNN needs n_frames >= 100, got 32
>>> preflight(StudyConfig(mel={"n_fft": 3}))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
melfront.errors.ParameterError: mel: n_fft=3 leaves 128 of the 128 mel bands empty at sample_rate=22050 ...
"""
from __future__ import annotations

import warnings

from ..checks import one_of
from ..data.cache import full_mel_config
from ..errors import MelfrontError, ParameterError
from ..functional import mel_filterbank
from ..train import DEFAULT_MEL, resolve_settings
from ..train.build import (INPUT_NORMS, MAX_PARAMETERS, MAX_PATCH_SECONDS, backbone_input_shape, backbone_parameters,
                           check_patch)
from .config import train_settings

__all__ = ["preflight", "study_mel", "check_mel", "classifier_parameters", "MAX_EPOCHS", "MAX_PARAMETERS",
           "MAX_PATCH_SECONDS"]

#: The most epochs (``epochs`` or ``max_epochs``) a study accepts.
MAX_EPOCHS = 100_000


def study_mel(config, n_mels: int) -> dict:
    """The full mel configuration the study's trials use, for a model whose paper setting is ``n_mels`` bands
    (the study's ``mel`` wins, as in :func:`melfront.train.train_classifier`).

    >>> from melfront.study import StudyConfig
    >>> study_mel(StudyConfig(mel={"hop_length": 256}), 64)["n_mels"]
    64
    """
    with warnings.catch_warnings():  # empty bands: check_mel says it as an error
        warnings.simplefilter("ignore")
        return full_mel_config({**DEFAULT_MEL, "n_mels": n_mels, **config.mel})


def check_mel(mel: dict) -> None:
    """ParameterError for a mel configuration a study cannot learn from (empty bands, a hop beyond the window)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fb = mel_filterbank(mel["sample_rate"], mel["n_fft"], mel["n_mels"], mel.get("fmin", 0.0), mel.get("fmax"),
                            htk=mel.get("htk", False), norm=mel.get("norm", "slaney"))
    empty = int((fb.amax(dim=1) <= 0).sum())
    if empty:
        raise ParameterError(f"mel: n_fft={mel['n_fft']} leaves {empty} of the {mel['n_mels']} mel bands empty at "
                             f"sample_rate={mel['sample_rate']} (fmin={mel.get('fmin', 0.0)}, fmax={mel.get('fmax')}): "
                             f"a study refuses it; use fewer n_mels or a larger n_fft")
    win = mel.get("win_length") or mel["n_fft"]
    if mel["hop_length"] > win:
        raise ParameterError(f"mel: hop_length={mel['hop_length']} is longer than the analysis window "
                             f"(win_length/n_fft={win}): frames would skip audio between them; use a hop of at most "
                             f"{win} samples")


def preflight(config) -> None:
    """Check the study's mel configuration and build every model with every frontend at the study's input size;
    ParameterError naming the model, frontend and cause at the first problem."""
    for m in config.models:
        s = resolve_settings(m, train_settings(config, m))
        for key in ("epochs", "max_epochs"):
            if (s.get(key) or 0) > MAX_EPOCHS:
                raise ParameterError(f"train[{key!r}] must be at most {MAX_EPOCHS} epochs, got {s[key]} (model {m!r})")
        mel = study_mel(config, s["n_mels"])
        check_mel(mel)
        try:
            check_patch(mel, s["patch_frames"])
        except ParameterError as exc:
            raise ParameterError(f"train['patch_frames'] (model {m!r}): {exc}") from None
        for spec in config.frontends:
            where = (f"model {m!r} with frontend {spec!r} (n_mels={mel['n_mels']}, patch_frames={s['patch_frames']}, "
                     f"model_options={s['model_options']})")
            try:
                n = classifier_parameters(spec, m, mel, s["patch_frames"], s["model_options"])
            except (MelfrontError, ValueError, TypeError, RuntimeError) as exc:
                raise ParameterError(f"{where}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
            if n > MAX_PARAMETERS:
                raise ParameterError(f"{where}: the backbone would have {n:,} parameters, more than the "
                                     f"{MAX_PARAMETERS:,} a study accepts ({4 * n / 2 ** 30:.1f} GiB of float32 "
                                     f"weights alone)")


def classifier_parameters(spec: str, model: str, mel: dict, patch_frames: int, model_options: dict) -> int:
    """The backbone's parameter count behind frontend ``spec`` on ``patch_frames`` patches, built on PyTorch's
    ``meta`` device (:func:`melfront.train.build.backbone_parameters`: nothing allocated); its options and input
    size are checked as :func:`melfront.train.build_classifier` checks them.

    >>> from melfront.study import StudyConfig
    >>> classifier_parameters("db", "vgg", study_mel(StudyConfig(), 32), 32, {"width": 4, "input_norm": "batch"})
    684
    """
    options = dict(model_options or {})
    one_of("model_options['input_norm']", options.pop("input_norm", "none"), INPUT_NORMS)
    return backbone_parameters(model, 2, backbone_input_shape(spec, mel, patch_frames), options)
