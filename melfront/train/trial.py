"""From clips to a trained classifier, and the few-data study's trial: :func:`train_classifier`,
:func:`run_trial`, :func:`trainer_for` and :func:`predict_file`.

The examples use a tiny synthetic data set (2 classes x 2 clips of 0.5 s at 8 kHz), 32 mel bands,
32-frame patches and a narrow VGG.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from ..audio import load_audio
from ..checks import positive_int
from ..data.cache import full_mel_config, load_features
from ..errors import DataError
from ..functional.spectral import melspectrogram_chunked
from .build import DEFAULT_MEL, MEL_KEYS, build_classifier, learned_parameters
from .settings import resolve_settings
from .trainer import Trainer, seed_everything

__all__ = ["classes_of", "clip_features", "train_classifier", "trainer_for", "run_trial", "predict_file"]


def classes_of(clips) -> list[str]:
    """The class names in label order: ``clips.classes``, else read from the clips' labels and names.

    >>> from melfront.data import Clip
    >>> classes_of([Clip("b.wav", 1, "frog", 1), Clip("a.wav", 0, "owl", 1)])
    ['owl', 'frog']
    """
    classes = list(getattr(clips, "classes", []) or [])
    if classes:
        return classes
    names = {}
    for c in clips:
        names.setdefault(int(c.label), c.class_name)
    return [names.get(k, str(k)) for k in range(max(names) + 1)]


def clip_features(clips, mel: dict, kind: str, cache, progress: bool):
    """``(features, kept clips, skipped)`` of :func:`melfront.data.load_features`, ``skipped`` as
    JSON-able ``[path, cause]`` lists; no clips, no work.

    >>> import tempfile
    >>> from melfront.data import dataset
    >>> clips = dataset("synth", root=tempfile.mkdtemp(), n_classes=2, clips_per_class=2, duration=0.5,
    ...                 sample_rate=8000, n_folds=2)
    >>> MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    >>> TRAIN = dict(epochs=1, batch_size=2, lr=0.01, patch_frames=32, n_mels=32, model_options={"width": 4})
    >>> feats, kept, skipped = clip_features(clips, MEL, "mel", cache=False, progress=False)
    >>> len(feats), tuple(feats[0].shape), skipped
    (4, (32, 63), [])
    """
    if not clips:
        return [], [], []
    feats, kept, skipped = load_features(clips, mel, cache=cache, kind=kind, progress=progress)
    return feats, kept, [[str(p), str(c)] for p, c in skipped]


def _mel_config(mel: dict | None, n_mels: int) -> dict:
    default = dict(DEFAULT_MEL, n_mels=n_mels)
    mel = dict(default) if mel is None else dict(mel)
    for key in MEL_KEYS:
        mel.setdefault(key, default[key])
    return full_mel_config(mel)


def train_classifier(clips, *, frontend: str, model: str, train_clips, val_clips=None, mel: dict | None = None,
                     train: dict | None = None, seed: int = 0, cache=None, device: str | None = None,
                     progress: bool = False, checkpoint=None, resume: bool = False, extra_config: dict | None = None):
    """Load features, build ``frontend -> model``, train it. Returns ``(trainer, info)``.

    ``info``: ``config`` (what the checkpoint stores), ``n_train``, ``n_val``, ``skipped`` (``[path, cause]``),
    ``train_seconds``, ``epochs``. See :func:`run_trial` for the arguments; ``checkpoint`` is a path
    written after every epoch, ``resume=True`` continues from it, ``extra_config`` adds JSON-able entries
    to the stored config.

    >>> import tempfile
    >>> from melfront.data import dataset
    >>> clips = dataset("synth", root=tempfile.mkdtemp(), n_classes=2, clips_per_class=2, duration=0.5,
    ...                 sample_rate=8000, n_folds=2)
    >>> MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    >>> TRAIN = dict(epochs=1, batch_size=2, lr=0.01, patch_frames=32, n_mels=32, model_options={"width": 4})
    >>> trainer, info = train_classifier(clips, frontend="db", model="vgg", train_clips=clips, mel=MEL,
    ...                                  train=TRAIN, cache=False, device="cpu")
    >>> info["n_train"], info["epochs"], info["config"]["classes"]
    (4, 1, ['up_chirp', 'down_chirp'])
    """
    s = resolve_settings(model, train)
    mel = _mel_config(mel, s["n_mels"])
    s["n_mels"] = int(mel["n_mels"])  # the mel parameters given win over the model's paper setting
    classes = classes_of(clips)
    seed_everything(seed)
    clf, shape = build_classifier(frontend, model, len(classes), mel, s["patch_frames"], s["model_options"])
    kind = clf.input_kind
    config = dict(frontend=frontend, model=model, model_options=s["model_options"], classes=classes, mel=mel,
                  patch_frames=s["patch_frames"], aggregation=s["aggregation"], input_kind=kind,
                  backbone_input=shape, train=s, seed=int(seed), **(extra_config or {}))
    config = json.loads(json.dumps(config))
    train_feats, train_kept, skipped = clip_features(list(train_clips), mel, kind, cache, progress)
    val_feats, val_kept, skipped_val = clip_features(list(val_clips or []), mel, kind, cache, progress)
    if not train_feats:
        raise DataError(f"no usable training clips ({len(skipped)} skipped)")
    trainer = Trainer(clf, s, kind=kind, hop_length=mel["hop_length"], seed=seed, device=device,
                      progress=progress, checkpoint=checkpoint, config=config)
    if resume:
        trainer.resume()
    trainer.fit(train_feats, [c.label for c in train_kept], val_feats, [c.label for c in val_kept], classes)
    info = dict(config=config, n_train=len(train_feats), n_val=len(val_feats), skipped=skipped + skipped_val,
                train_seconds=trainer.train_seconds, epochs=trainer.epoch,  # every session's, after a resume
                history=[{k: round(float(v), 5) for k, v in rec.items() if isinstance(v, (int, float))}
                         for rec in trainer.history])
    return trainer, info


def trainer_for(classifier, config: dict, device: str | None = None, progress: bool = False) -> Trainer:
    """A :class:`Trainer` that evaluates/predicts with a loaded classifier and its checkpoint config.

    >>> import tempfile
    >>> from melfront.data import dataset
    >>> clips = dataset("synth", root=tempfile.mkdtemp(), n_classes=2, clips_per_class=2, duration=0.5,
    ...                 sample_rate=8000, n_folds=2)
    >>> MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    >>> TRAIN = dict(epochs=1, batch_size=2, lr=0.01, patch_frames=32, n_mels=32, model_options={"width": 4})
    >>> trainer, info = train_classifier(clips, frontend="db", model="vgg", train_clips=clips, mel=MEL,
    ...                                  train=TRAIN, cache=False, device="cpu")
    >>> feats, _, _ = clip_features(clips, MEL, "mel", cache=False, progress=False)
    >>> trainer_for(trainer.model, info["config"], device="cpu").predict(feats).shape
    (4, 2)
    """
    return Trainer(classifier, dict(config["train"]), kind=config["input_kind"], hop_length=config["mel"]["hop_length"],
                   seed=config.get("seed", 0), device=device, progress=progress)


def run_trial(clips, *, frontend: str, model: str, train_clips: list, test_clips: list,
              val_clips: list | None = None, mel: dict | None = None, train: dict | None = None, seed: int = 0,
              cache=None, device: str | None = None, progress: bool = False) -> dict:
    """Train frontend+model on train_clips, evaluate on test_clips. Returns a JSON-able dict:
    {"accuracy": float, "map": float, "per_class_accuracy": {class_name: float}, "confusion": [[int]],
     "train_seconds": float, "epochs": int, "n_train": int, "n_test": int,
     "learned": {name: list[float]}   # frontend.learned_parameters() if it has it, else {}
     "skipped": [[path, cause], ...],
     "history": [{"epoch", "loss", "accuracy", "seconds", ...}, ...]}   # per epoch, training loss and accuracy

    Parameters
    ----------
    clips : ClipList
        The data set (its ``classes`` give the label order).
    frontend : str
        A spec for :func:`melfront.frontend`, e.g. ``"db"``, ``"pcen(trainable=True)"``, ``"stack(db, pcen, power)"``.
    model : str
        A name in :data:`melfront.models.MODELS`.
    train_clips, test_clips, val_clips
        Clips of ``clips`` (val: early stopping when ``train['patience']`` is set, else only reported).
    mel : dict or None
        :class:`melfront.MelSpectrogram` parameters; default :data:`DEFAULT_MEL` with the model's ``n_mels``
        (60 for piczak, 128 otherwise).
    train : dict or None
        Overrides of the training settings (:func:`resolve_settings`): epochs, lr, batch_size, patch_frames, ...
    seed : int
        Everything random derives from it: same seed, same machine and device -> same metrics.
    cache : FeatureCache, path, None (default cache) or False (none)
    device : str or None
        None: CUDA when available, else CPU.

    >>> import tempfile
    >>> from melfront.data import dataset
    >>> clips = dataset("synth", root=tempfile.mkdtemp(), n_classes=2, clips_per_class=2, duration=0.5,
    ...                 sample_rate=8000, n_folds=2)
    >>> MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    >>> TRAIN = dict(epochs=1, batch_size=2, lr=0.01, patch_frames=32, n_mels=32, model_options={"width": 4})
    >>> r = run_trial(clips, frontend="db", model="vgg", train_clips=clips.by_fold(1), test_clips=clips.by_fold(2),
    ...               mel=MEL, train=TRAIN, cache=False, device="cpu")
    >>> r["n_train"], r["n_test"], r["epochs"], sum(map(sum, r["confusion"]))
    (2, 2, 1, 2)
    """
    trainer, info = train_classifier(clips, frontend=frontend, model=model, train_clips=train_clips,
                                     val_clips=val_clips, mel=mel, train=train, seed=seed, cache=cache,
                                     device=device, progress=progress)
    test_feats, test_kept, skipped_test = clip_features(list(test_clips), info["config"]["mel"],
                                                        info["config"]["input_kind"], cache, progress)
    if not test_feats:
        raise DataError(f"no usable test clips ({len(skipped_test)} skipped)")
    m = trainer.evaluate(test_feats, [c.label for c in test_kept], info["config"]["classes"])
    return {"accuracy": m["accuracy"], "map": m["map"], "per_class_accuracy": m["per_class_accuracy"],
            "confusion": m["confusion"], "train_seconds": float(info["train_seconds"]), "epochs": int(info["epochs"]),
            "n_train": int(info["n_train"]), "n_test": len(test_feats), "learned": learned_parameters(trainer.model),
            "skipped": info["skipped"] + skipped_test, "history": info["history"]}


def predict_file(classifier, config: dict, path, top_k: int = 5, device: str | None = None) -> list[tuple[str, float]]:
    """Top-``k`` ``(class name, probability)`` for one audio file with a loaded classifier.

    The clip is scored as :meth:`Trainer.predict` scores an evaluation clip: its patches, a batch at a
    time, aggregated. The mel spectrogram is computed in blocks
    (:func:`melfront.functional.melspectrogram_chunked`, the feature cache's values) and the waveform
    released before scoring, so a long recording needs its float32 waveform, its mel spectrogram and
    one batch of patches in memory, never its whole STFT.

    >>> import tempfile
    >>> from melfront.data import dataset
    >>> clips = dataset("synth", root=tempfile.mkdtemp(), n_classes=2, clips_per_class=2, duration=0.5,
    ...                 sample_rate=8000, n_folds=2)
    >>> MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
    >>> TRAIN = dict(epochs=1, batch_size=2, lr=0.01, patch_frames=32, n_mels=32, model_options={"width": 4})
    >>> trainer, info = train_classifier(clips, frontend="db", model="vgg", train_clips=clips, mel=MEL,
    ...                                  train=TRAIN, cache=False, device="cpu")
    >>> top = predict_file(trainer.model, info["config"], clips[0].path, top_k=2, device="cpu")
    >>> sorted(name for name, _ in top), round(sum(p for _, p in top), 6)
    (['down_chirp', 'up_chirp'], 1.0)
    """
    top_k = positive_int("top_k", top_k)
    mel = config["mel"]
    wave, _ = load_audio(path, sample_rate=int(mel["sample_rate"]))
    if config["input_kind"] == "mel":
        with torch.no_grad():  # as the feature cache computes it
            feat = melspectrogram_chunked(wave, **full_mel_config(mel))
        del wave
    else:
        feat = wave
    scores = trainer_for(classifier, config, device=device).predict([feat])[0]
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [(config["classes"][k], float(scores[k])) for k in order]
