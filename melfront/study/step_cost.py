"""The step costs a study's price is made of: one model's seconds per training step, training patch, evaluation
patch and second of audio, measured on this machine with one thread (:func:`measure_step_cost`), and the
machine they were measured on (:func:`machine`). The pricing arithmetic that uses them is
:mod:`melfront.study.estimate`, which re-exports these names.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

from ..data.patches import patch_starts

__all__ = ["StepCost", "eval_patches", "measure_step_cost", "machine"]


@dataclass(frozen=True)
class StepCost:
    """Seconds of one model's work on this machine: ``step`` per training step (whatever its size), ``patch`` per
    training patch (forward + backward + update), ``eval_patch`` per evaluation patch (forward, no gradient),
    ``features`` per second of audio (the mel spectrogram), and how they were measured (``how``).

    >>> StepCost(0.5, 0.25, 0.125).train_step(10)
    3.0
    """

    step: float
    patch: float
    eval_patch: float
    features: float = 0.0
    how: str = ""

    def train_step(self, patches: int) -> float:
        """Seconds of one training step of ``patches`` patches."""
        return self.step + self.patch * patches


def eval_patches(frames: int, patch_frames: int, hop: int) -> int:
    """Patches of ``patch_frames`` at ``hop`` that evaluate a clip of ``frames`` frames (a shorter clip is
    repeat-padded to one patch; a tail the grid leaves is covered by one more patch, as evaluation does).

    >>> eval_patches(172, 128, 1), eval_patches(100, 128, 1), eval_patches(300, 128, 128)
    (45, 1, 3)
    """
    return len(patch_starts(max(int(frames), int(patch_frames)), int(patch_frames), int(hop)))


# ------------------------------------------------------------------------------------------ measuring
def machine() -> str:
    """This machine in one line: CPU model, cores, torch version (what the step costs were measured on)."""
    import torch
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__}"


def _timed(fn, budget: float = 0.5) -> float:
    """Fewest CPU seconds (this process's user + system time, so that other jobs on the machine do not count) of
    a few calls of ``fn``: one warm-up, then three calls, or one when a call exceeds ``budget`` seconds."""
    t0 = time.process_time()
    fn()
    first = time.process_time() - t0
    times = []
    for _ in range(1 if first > budget else 3):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def measure_step_cost(model: str, frontend: str, s: dict, mel: dict, n_classes: int, sizes=(2, 8),
                      eval_frames: int | None = None) -> StepCost:
    """Time ``model`` behind ``frontend`` on this machine, one thread: training steps (forward, cross-entropy or,
    for a prototypical network, its embedding, backward, optimiser update with the settings' weight decay
    and clipping) at two batch sizes give ``step`` and ``patch`` by a straight line; the mel spectrogram of 2 s
    of audio gives ``features`` (per second). Inputs are random patches of the study's shape (``n_mels`` x
    ``patch_frames``, or the samples for waveform frontends).

    ``eval_patch``: with ``eval_frames`` (and complete settings ``s``), one clip of that many frames scored by
    the trainer's own evaluation (:meth:`melfront.train.Trainer.predict`: exact dense evaluation where it
    applies, else batched patches), divided by its patches at ``eval_hop``, so that whatever path evaluation
    takes is what is priced; without, a batch of patches through the classifier.

    >>> import torch
    >>> torch.manual_seed(0) is not None
    True
    >>> s = dict(patch_frames=32, model_options={"width": 4}, sampling="random", optimizer="sgd", lr=0.1,
    ...          momentum=0.0, weight_decay=0.0, clip_norm=None, eval_batch_size=4)
    >>> c = measure_step_cost("vgg", "db", s, dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32), 3)
    >>> c.patch > 0 and c.eval_patch > 0 and c.step >= 0
    True
    """
    import torch

    from ..data.patches import samples_for_frames
    from ..data.cache import full_mel_config
    from ..frontends import MelSpectrogram
    from ..train.build import build_classifier
    from ..train.trainer import Trainer
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clf, _ = build_classifier(frontend, model, n_classes, mel, s["patch_frames"], s.get("model_options"))
        waveform = getattr(clf, "input_kind", "mel") == "waveform"
        length = samples_for_frames(s["patch_frames"], mel["hop_length"]) if waveform else s["patch_frames"]
        shape = (length,) if waveform else (mel["n_mels"], length)
        embed = s.get("sampling") == "episodes" and hasattr(clf.backbone, "embed")
        # the trainer's own update (Trainer.step: decay, clipping, optimiser step as in training), at a tiny lr:
        # the time, not the result, matters here
        trainer = Trainer(clf, dict(_complete_settings(model, s), lr=1e-9), kind="waveform" if waveform else "mel",
                          hop_length=mel["hop_length"], device="cpu", progress=False)

        def forward(x):
            return clf.backbone.embed(clf.features(x)) if embed else clf(x)

        def train(b):
            x, y = torch.rand(b, *shape), torch.arange(b) % n_classes
            clf.train()

            def step():
                out = forward(x)
                loss = out.pow(2).mean() if embed else torch.nn.functional.cross_entropy(out, y)
                trainer.step(loss, 1, 1)
            return _timed(step)

        small, large = sizes
        t_small, t_large = train(small), train(large)
        patch = max((t_large - t_small) / (large - small), 0.5 * t_large / large)
        step = max(0.0, t_large - large * patch)
        b_eval = max(2, min(int(s.get("eval_batch_size") or 16), 16))
        x_eval = torch.rand(b_eval, *shape)
        clf.eval()
        with torch.no_grad():
            if hasattr(clf.backbone, "set_prototypes"):  # a prototypical network: any prototypes will do
                clf.backbone.set_prototypes(torch.zeros(n_classes, clf.backbone.embedding_dim),
                                            torch.arange(n_classes))
            if eval_frames:
                eval_patch = _time_predict(clf, s, mel, eval_frames, waveform)
                b_eval = f"a {eval_frames}-frame clip"
            else:
                eval_patch = _timed(lambda: clf(x_eval)) / b_eval
            mel_fe = MelSpectrogram(**full_mel_config(mel))
            wave = torch.rand(2 * int(mel["sample_rate"]))
            features = _timed(lambda: mel_fe(wave)) / 2.0
    finally:
        torch.set_num_threads(threads)
    how = f"batches of {small} and {large} (training), {b_eval} (evaluation)"
    return StepCost(step, patch, eval_patch, features, how)


def _complete_settings(model: str, s: dict) -> dict:
    """``s`` as the trainer's complete settings: as given when complete, else the model's defaults overridden by
    ``s`` (:func:`melfront.train.resolve_settings`)."""
    from ..errors import ParameterError
    from ..train.settings import TrainSettings, resolve_settings
    try:
        return TrainSettings.from_dict(s).as_dict()
    except ParameterError:
        return resolve_settings(model, s)


def _time_predict(clf, s: dict, mel: dict, frames: int, waveform: bool) -> float:
    """CPU seconds per evaluation patch of the trainer's own :meth:`~melfront.train.Trainer.predict` on one clip
    of ``frames`` frames (random features of the study's shape)."""
    import torch

    from ..data.patches import samples_for_frames
    from ..train.trainer import Trainer
    trainer = Trainer(clf, s, kind="waveform" if waveform else "mel", hop_length=mel["hop_length"], device="cpu",
                      progress=False)
    x = (torch.rand(samples_for_frames(frames, mel["hop_length"])) if waveform else
         torch.rand(mel["n_mels"], frames))
    return _timed(lambda: trainer.predict([x])) / eval_patches(frames, s["patch_frames"], s["eval_hop"])
