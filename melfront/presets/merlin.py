"""The ``merlin`` preset: the spectrogram frontends of the Macaulay Library's Merlin team, as Hoffman & Van Horn
describe them in "From Sound to Images, Part 2: Spectrogram Image Processing" (Cornell Lab of Ornithology blog;
seed 001 in ``../shared/seeds``), compared on a public data set.

"we normalized each spectrogram to take values between 0 and 1. After processing, we normalized the spectrograms a
second time" (``chain(minmax, X, minmax)``), where "S(t,f) denotes a magnitude spectrogram" (``mel.power`` 1);
the compressions are the blog's "Decibel" ``log(max(S, 1e-6))``, the "Exponential" ``S^(1/(1+e^a))`` (global and
per band), PCEN (global and per band, trainable, looped start) and the three stacked as the channels of "an
off-the-shelf computer vision model" (melfront: its ResNet). The blog's claims stand beside the result: "Between
the top five models, there was little difference (less than one percent MAP)", "the gains in performance achieved
by PCEN and its variants were modest, as compared to decibel scaling", "decibel scaling provides a strong
baseline", with a seed standard deviation of .010 MAP (Merlin test set) and .017 (SWAMP) "based on a limited
experiment (n = 5)". The blog trained on its 52-species bird data, which is not public: the preset runs on
ESC-50 with ``n`` = the largest number of clips per class that every class has in the training pool (resolved
by ``plan()`` and stated).

>>> from melfront.presets import get_preset
>>> p = get_preset("merlin")
>>> p.values()["frontends"][0], p.values()["runs"], p.values()["mel.power"], p.headline_metric
('chain(minmax, logfloor(floor=1e-6), minmax)', 5, 1.0, 'map')
>>> [c.pair[1] for c in p.claims][:1], p.claims[0].metric
(['chain(minmax, pcen(trainable=True, init="loop"), minmax)'], 'map')
"""
from __future__ import annotations

from .compare import ComparePreset
from .registry import Claim, Setting, register_preset

__all__ = ["Merlin", "MERLIN_FRONTENDS", "mm"]

_BLOG = "Macaulay Library Merlin blog"
_S = "seed 001 (the Merlin blog)"
_SEED_STD = ("Seed spread: 'based on a limited experiment (n = 5), we found that the estimated standard deviation "
             "of trained model performance on the Merlin test set is .010 MAP, and ... on the SWAMP dataset is .017 "
             "MAP' (seed 001).")
_CLAIM_TEXT = ("seed 001: 'Between the top five models, there was little difference (less than one percent MAP) in "
               "test performance.' and 'the gains in performance achieved by PCEN and its variants were modest, as "
               "compared to decibel scaling' (expected: |B - A| < 0.01 MAP). " + _SEED_STD)


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
    """``merlin``: min-max, compression, min-max on a magnitude mel spectrogram; dB / exponential / PCEN / their
    stack into a ResNet; MAP, with seed 001's claims beside it."""

    name = "merlin"
    citation = (f"{_BLOG}: Hoffman & Van Horn, 'From Sound to Images, Part 2: Spectrogram Image Processing' "
                f"(Cornell Lab of Ornithology, Merlin Sound ID)")
    reproduces = ("the Merlin team's frontend comparison (dB floor 1e-6, exponential, PCEN with a looped start, "
                  "the 3-channel stack; min-max before and after, on magnitude) with a ResNet and MAP, on ESC-50")
    default_dataset = "esc50"
    headline_metric = "map"
    settings = (
        Setting("dataset", "esc50", f"{_S}: 'Models were trained on a 52 species dataset' of bird recordings, "
                                    f"which is not public; ESC-50 (public, 5 official folds) stands in", "unfixed"),
        Setting("test_folds", "all", "ESC-50's official 5-fold cross-validation (Piczak 2015)", "unfixed"),
        Setting("split", "folds", "the data set's official folds", "unfixed"),
        Setting("mel.power", 1.0, f"{_S}: 'In what follows, S(t,f) denotes a magnitude spectrogram': the "
                                  f"compressions act on magnitude (power 1); the floor 1e-6 after min-max is then "
                                  f"120 dB below the maximum (60 dB on a power spectrogram)"),
        Setting("protocol.minmax", "before and after", f"{_S}: 'we normalized each spectrogram to take values "
                                                       f"between 0 and 1. After processing, we normalized the "
                                                       f"spectrograms a second time' (melfront chain(minmax, X, "
                                                       f"minmax))",
                deviation="the blog normalises each spectrogram, its model input (3-second clips); melfront's "
                          "minmax normalises each 128-frame (2.97 s) patch the classifier sees: the same for a "
                          "3-second input, but ESC-50's 5 s clips give patches normalised each on its own (the "
                          "feature cache stores the raw mel spectrogram, the frontend sees patches)"),
        Setting("frontends", MERLIN_FRONTENDS,
                f"{_S}: Decibel log(max{{S(t,f), 10^-6}}) (melfront logfloor(floor=1e-6)); Exponential "
                f"S(t,f)^(1/(1+e^a)) for the entire spectrogram or 'one learnable parameter a for each mel band' = "
                f"melfront 'power', whose exponent is sigmoid(a) = 1/(1+e^-a): melfront's a is minus the blog's a "
                f"(start a = 0, exponent 1/2, in both); PCEN with 'five learnable parameters' for the entire "
                f"spectrogram or per mel band, 'looping the spectrogram in the time domain before applying PCEN' "
                f"(init='loop'); the combinations as channels",
                deviation="the blog loops the spectrogram once before PCEN; melfront's init='loop' starts the "
                          "smoother in the infinitely looped steady state (looping once leaves the first frame's "
                          "weight (1 - s)^T in the start: 4 % for s = 0.025 over 128 frames)"),
        Setting("protocol.stack_channels", [mm(_DB), mm(_EXP_BAND), mm(_PCEN_BAND)],
                f"{_S} stacks frontends as the 3 colour channels ('mixing and matching the different frontends'); "
                f"which ones and which variant (global or per band) it does not say; melfront stacks dB and the "
                f"per-band exponential and PCEN", "unfixed"),
        Setting("compare", [[mm(_DB), f] for f in MERLIN_FRONTENDS[1:]],
                "each frontend against the dB baseline (the report's difference tables)", "unfixed"),
        Setting("models", ["resnet"], f"{_S}: 'An off-the-shelf computer vision model' (which one is not said); "
                                      f"melfront's ResNet-18-style 'resnet'", "unfixed"),
        Setting("protocol.headline_metric", "MAP", f"{_S}: 'performance ... measured by mean average precision "
                                                   f"(MAP)' (how it is averaged over species is not said; melfront "
                                                   f"averages over classes, macro)"),
        Setting("runs", 5, f"{_S} trained one model per frontend; its seed variance came from 'a limited "
                           f"experiment (n = 5)'. melfront runs 5 seeds per cell so that each difference has an "
                           f"interval", "unfixed"),
        Setting("n_per_class", "all", f"{_S} trained on all its data: n = the largest n every class supports in "
                                      f"the training pool, resolved by plan() and stated", "unfixed"),
        Setting("protocol.mel", "melfront DEFAULT_MEL", f"{_S} points to its previous post for the spectrogram "
                                                        f"parameters, not given here; melfront's defaults (22.05 "
                                                        f"kHz, n_fft 1024, hop 512, 128 bands: 128 frames = 2.97 s, "
                                                        f"about the blog's 3-second clips)", "unfixed"),
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
    claims = tuple(Claim((mm(_DB), f), _CLAIM_TEXT, metric="map")
                   for f in (mm(_PCEN), mm(_PCEN_BAND), MERLIN_FRONTENDS[5])) + (
        Claim((mm(_DB), mm(_EXP_BAND)), f"seed 001: 'At the end of the day, we found that decibel scaling provides a "
                                        f"strong baseline.' {_SEED_STD}", metric="map"),)
    claims_note = ""

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
