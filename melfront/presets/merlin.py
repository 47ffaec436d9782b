"""The ``merlin`` preset: the frontends of the Macaulay Library's Merlin team (Cornell Lab of Ornithology blog on
the compression of spectrograms for Merlin Sound ID), compared with a ResNet on a public data set.

Every spectrogram is min-max normalised to [0, 1] before and after the compression
(``chain(minmax, X, minmax)``); the compressions are the blog's "decibel" ``log(max(S, 1e-6))``, the
exponential ``S^(1/(1+e^a))`` (global and per band), PCEN (global and per band, trainable, looped start) and
the three stacked as channels. Headline metric: macro mean average precision; 5 seeds per cell. The blog trained
on all its (bird) data, which is not public: the preset runs on ESC-50 with ``n`` = the largest number of clips
per class that every class has in the training pool (resolved by ``plan()`` and stated).

>>> from melfront.presets import get_preset
>>> p = get_preset("merlin")
>>> p.values()["frontends"][0], p.values()["runs"], p.headline_metric
('chain(minmax, logfloor(floor=1e-6), minmax)', 5, 'map')
"""
from __future__ import annotations

from .compare import ComparePreset
from .registry import Setting, register_preset

__all__ = ["Merlin", "MERLIN_FRONTENDS", "mm"]

_BLOG = "Macaulay Library Merlin blog"


def mm(spec: str) -> str:
    """``spec`` between two min-max normalisations, as the blog does.

    >>> mm("db")
    'chain(minmax, db, minmax)'
    """
    return f"chain(minmax, {spec}, minmax)"


_DB = "logfloor(floor=1e-6)"
_EXP = "power"
_EXP_BAND = "power(per_band=True)"
_PCEN = 'pcen(trainable=True, init="loop")'
_PCEN_BAND = 'pcen(trainable=True, per_band=True, init="loop")'
#: The compared frontends, in order: dB, exponential (global, per band), PCEN (global, per band), the stack.
MERLIN_FRONTENDS = [mm(_DB), mm(_EXP), mm(_EXP_BAND), mm(_PCEN), mm(_PCEN_BAND),
                    f"stack({mm(_DB)}, {mm(_EXP_BAND)}, {mm(_PCEN_BAND)})"]


class Merlin(ComparePreset):
    """``merlin``: min-max, compression, min-max; dB / exponential / PCEN / their stack into a ResNet; macro MAP."""

    name = "merlin"
    citation = f"{_BLOG} (Cornell Lab of Ornithology): spectrogram compression for Merlin Sound ID"
    reproduces = ("the Merlin team's frontend comparison (dB floor 1e-6, exponential, PCEN with a looped start, "
                  "the 3-channel stack; min-max before and after) with a ResNet, macro MAP, 5 seeds per cell")
    default_dataset = "esc50"
    headline_metric = "map"
    settings = (
        Setting("dataset", "esc50", "the blog's bird recordings are not public; ESC-50 (public, 5 official folds) "
                                    "stands in", "unfixed"),
        Setting("test_folds", "all", "ESC-50's official 5-fold cross-validation (Piczak 2015)", "unfixed"),
        Setting("split", "folds", "the data set's official folds", "unfixed"),
        Setting("protocol.minmax", "before and after", f"{_BLOG}: every spectrogram min-max normalised to [0, 1] "
                                                       f"before and after the compression (melfront "
                                                       f"chain(minmax, X, minmax))", "recalled"),
        Setting("frontends", MERLIN_FRONTENDS,
                f"{_BLOG}: dB as log(max(S, 1e-6)) (melfront logfloor(floor=1e-6)); exponential S^(1/(1+e^a)) "
                f"global and per band = melfront 'power', whose exponent is sigmoid(a) = 1/(1+e^-a): melfront's a "
                f"is minus the blog's a (start a = 0, exponent 1/2, in both); PCEN global and per band, trainable, "
                f"looped start (init='loop'); the 3 channels stacked", "recalled"),
        Setting("protocol.stack_channels", [mm(_DB), mm(_EXP_BAND), mm(_PCEN_BAND)],
                f"{_BLOG} stacks dB, exponential and PCEN as 3 channels; which variant (global or per band) of the "
                f"last two is not fixed by what we have; melfront stacks the per-band ones", "unfixed"),
        Setting("compare", [[mm(_DB), f] for f in MERLIN_FRONTENDS[1:]],
                "each frontend against the dB baseline (the report's difference tables)", "unfixed"),
        Setting("models", ["resnet"], f"{_BLOG}: a ResNet classifier (melfront's ResNet-18-style 'resnet')",
                "recalled"),
        Setting("protocol.headline_metric", "macro MAP", f"{_BLOG}: macro-averaged mean average precision",
                "recalled"),
        Setting("runs", 5, f"{_BLOG}: 5 seeds per cell", "recalled"),
        Setting("n_per_class", "all", f"{_BLOG} trained on all its data: n = the largest n every class supports in "
                                      f"the training pool, resolved by plan() and stated", "recalled"),
        Setting("protocol.mel", "melfront DEFAULT_MEL", "the blog's mel parameters are not given for a public data "
                                                        "set; melfront's defaults (22.05 kHz, n_fft 1024, hop 512, "
                                                        "128 bands: 128 frames = 2.97 s)", "unfixed"),
        Setting("train.resnet.model_options.input_norm", "none",
                "the min-max after the compression already puts every channel on [0, 1]; no extra input "
                "normalisation between frontend and ResNet", "unfixed"),
        Setting("train.resnet.optimizer", "adam", "the blog gives no training recipe for a public data set; "
                                                  "melfront's fitted recipe (melfront.train.fitted): Adam", "unfixed"),
        Setting("train.resnet.lr", 0.001, "melfront's fitted recipe: Adam at 1e-3", "unfixed"),
        Setting("train.resnet.weight_decay", 0.0, "melfront's fitted recipe: no weight decay", "unfixed"),
        Setting("protocol.epoch_budget", "about 1200 steps", "melfront's fitted recipe: about 1200 optimiser steps, 20 to 100 "
                                                 "epochs, batches of 16 (32 from 500 clips), resolved by plan() "
                                                 "from n x classes (melfront.train.epoch_budget)", "unfixed"),
        Setting("seed", 0, "melfront derives every draw and initialisation from (seed, n, run, fold)", "unfixed"),
    )
    claims = ()
    claims_note = ("The Merlin blog's own results were not available here (its settings are recalled from a "
                   "second-hand account), so no claim of it is set beside this study's measurement.")

    def adjust(self, config, clips, pools, notes, overrides):
        """Resolve ``n = "all"`` (the largest n every class has in every test fold's training pool) and the
        epoch budget (unless given)."""
        if "n_per_class" not in overrides:
            n = min(pools.values())
            config.n_per_class = [n]
            notes.append(f"n_per_class = {n}: the blog trained on all its data; {n} is the largest n every class has "
                         f"in the training pool of every test fold (fewest: fold {min(pools, key=pools.get)})")
        self._budget(config, clips, notes, overrides)

    @staticmethod
    def _budget(config, clips, notes, overrides):
        """The ResNet's epochs and batch size from the training set's size (melfront's fitted recipe), unless given."""
        from ..train import epoch_budget
        resnet = config.train.setdefault("models", {}).setdefault("resnet", {})
        n_train = max(config.n_per_class) * len(clips.classes)
        batch, epochs = epoch_budget(n_train)
        for key, value in (("batch_size", batch), ("epochs", epochs)):
            if key not in overrides:
                resnet[key] = value
        shown = {k: resnet.get(k, config.train.get(k)) for k in ("epochs", "batch_size")}
        notes.append(f"training: epochs {shown['epochs']}, batches of {shown['batch_size']} for {n_train} training "
                     f"clips (melfront's budget of about 1200 steps, unless given)")

    def base_config(self, dataset):
        values = super().base_config(dataset)
        values["n_per_class"] = [1]  # placeholder, resolved by adjust() once the clips are read
        return values


register_preset(Merlin())
