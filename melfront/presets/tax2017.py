"""The ``tax2017`` preset: Tax et al.'s (2017) per-fold MSTmodel protocol on ESC-50.

Tax, Diez Antich, Purwins & Maaløe (2017), "Utilizing domain knowledge in end-to-end audio processing",
NIPS ML4Audio workshop (arXiv:1712.00254); released code github.com/corticph/MSTmodel (read for the settings
marked "read" below: ``Experiments/*.sh``, ``Experiments/mst_learning.py``, ``Experiments/classifier_training.py``,
``Dataset/esc50_processor.py``, ``MSTmodel/MSTloader.py``, ``MSTmodel/MSTtrainer.py``,
``EnvClassification/loader.py``, ``EnvClassification/trainer.py``, ``EnvClassification/Models/*.py``,
``Utilities/utilities.py``).

The protocol itself is :mod:`melfront.mst.protocol` (a study: rows in ``study.db``, the report of any study);
this module holds its settings with their sources,
the paper's claims, and the checks of the data (:meth:`Tax2017.plan`): with ESC-50's folds 1-5 complete
it runs the five (validation, test) fold pairs; otherwise it declares a reduced version (one grouped,
class-stratified split within the clips present).

>>> p = Tax2017()
>>> p.values()["folds.pairs"][0], p.values()["augment.copies"], p.values()["train.batch_size"]
([1, 2], 4, 500)
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from ..checks import positive_int
from ..errors import DataError, ParameterError, StudyError
from .registry import Claim, Plan, Preset, Setting, register_preset

__all__ = ["Tax2017", "OVERRIDE_KEYS"]

_REF = "reference code (corticph/MSTmodel) "
_PAPER = "Tax et al. 2017 "

SETTINGS = (
    Setting("dataset", "esc50", _REF + "README.md, Dataset/esc50_processor.py"),
    Setting("folds.pairs", [[1, 2], [2, 3], [3, 4], [4, 5], [5, 1]],
            _REF + "Experiments/mst_learning.sh, classifier_training.sh: (validation_fold, test_fold) arguments"),
    Setting("folds.train", "the other three folds", _REF + "EnvClassification/loader.py, MSTmodel/MSTloader.py"),
    Setting("mel.sample_rate", 22050,
            _REF + "Dataset/esc50_processor.py (_process_esc50, _extract_segments_combined)"),
    Setting("mel.n_fft", 1024, _REF + "Dataset/esc50_processor.py (_extract_segments_combined)"),
    Setting("mel.hop_length", 512, _REF + "Dataset/esc50_processor.py (_extract_segments_combined)"),
    Setting("mel.n_mels", 60, _REF + "Dataset/esc50_processor.py (BANDS = 60; PiczakCNN long segments)"),
    Setting("segment.frames", 101, _REF + "Dataset/esc50_processor.py (frames=101: 512 x 100 samples)"),
    Setting("segment.overlap", 0.5, _REF + "Dataset/esc50_processor.py (STEP_SIZE = window // 2)"),
    Setting("segment.silence_db", -72.0, _REF + "Dataset/esc50_processor.py (segments kept when the mean "
            "log-mel (librosa.logamplitude) > -72)"),
    Setting("segment.peak_normalise", "clip, then each kept segment",
            "seed 004 Sec. 2.2.1: 'their amplitudes are normalized per segment (corresponding to a single "
            "mel-spectrogram of framelength 101) between -1 and 1 through division with the maximum absolute value "
            "of the segment'; but " + _REF + "Dataset/esc50_processor.py lines 239-240 divide the whole clip by its "
            "peak, once: a paper-vs-code conflict",
            deviation="paper and code disagree; melfront follows the paper for the MSTmodel's input (MSTFrontend "
                      "divides every segment by its peak) after the code's per-clip division, so a quiet segment of "
                      "a loud clip is scaled up where the code would leave it quiet"),
    Setting("augment.copies", 4, _REF + "Dataset/esc50_processor.py (augmentations=4, training folds only: "
            "validation and test use augmented == 0, EnvClassification/loader.py)"),
    Setting("augment.shift", "leading zeros, uniform integer in [0, sample_rate) samples (< 1 s), clip kept whole",
            _REF + "Dataset/esc50_processor.py (_augment_esc50: randint(sample_rate); its pitch shift 0 and "
            "stretch 1.0 change nothing)"),
    Setting("augment.seed", 41, _REF + "Dataset/esc50_processor.py (np.random.seed(41))",
            deviation="melfront draws with numpy default_rng((41, clip number)), so the individual shifts differ "
                      "from theirs (same distribution; NumPy's legacy stream cannot be replayed clip by clip)"),
    Setting("target.normalisation", "global z-score, then min-max to [-1, 1], training-set statistics",
            _REF + "MSTmodel/MSTloader.py; the same for arm (a)'s input, EnvClassification/loader.py"),
    Setting("mst.layers", "conv 512 x 1024 stride 512, conv 256 x 3, conv 60 x 3 (ReLU, ReLU, tanh)",
            _REF + "EnvClassification/Models/RawPiczakCNN.py (the MSTmodel scope)"),
    Setting("mst.batch_norm", "after each convolution: learned shift, no scale, decay 0.999, epsilon 1e-3",
            _REF + "MSTmodel/MSTmodel.py lines 66-82: slim.batch_norm with its defaults (center=True, scale=False, "
            "decay=0.999, epsilon=0.001) = melfront MSTModel(bn_scale=False, bn_momentum=0.001, bn_eps=1e-3) "
            "(melfront.mst.protocol.MST_SLIM_BN)"),
    Setting("mst.loss", "mean squared error", _REF + "MSTmodel/MSTmodel.py get_loss_op ('Builds the MSE loss "
            "op'); seed 004 Sec. 2.2.1: 'a simple mean squared error (MSE) loss between the predicted "
            "representations and the target mel-spectrograms'"),
    Setting("protocol.frames", "101 frames in and out, centred with zero padding",
            _REF + "MSTmodel/MSTmodel.py: 'SAME' convolutions turn 512 x 100 samples into 100 frames; "
            "MSTmodel/MSTtrainer.py lines 196-197 slice the target's last (101st) frame off (seed 004 footnote 2); "
            "the targets are librosa 0.5.1's (requirements.txt), which centres frames with reflect padding",
            deviation="melfront's MSTModel pads its first layer as the STFT centres its frames, so prediction and "
                      "target both have 101 frames and none is dropped; its log-mel target pads with zeros where "
                      "librosa 0.5.1 reflects (only the two edge frames differ)"),
    Setting("mst.optimizer", "adam", _REF + "MSTmodel/MSTtrainer.py (AdamOptimizer)"),
    Setting("mst.lr", 3e-4, _REF + "Experiments/mst_learning.py (lr=3e-4)"),
    Setting("mst.batch_size", 100, _REF + "Experiments/mst_learning.py (batch_size=100)"),
    Setting("mst.max_epochs", 800, _REF + "Experiments/mst_learning.py (no_epochs=800)"),
    Setting("mst.patience", 50, _REF + "Experiments/mst_learning.py (overfit_window=50), MSTmodel/MSTtrainer.py: "
            "stop after 50 epochs without a lower validation-fold MSE, keep the best model"),
    Setting("mst.init_output", False, "melfront's output-layer start (train_mst init_output) is a CPU speed-up "
            "not in the paper; off, for the paper's Xavier start (RawPiczakCNN.py xavier_initializer)", "unfixed"),
    Setting("train.model", "piczak (60 x 101, dense 5000, dropout 0.5; first block conv, ReLU, dropout, pool)",
            _REF + "EnvClassification/Models/PiczakCNN.py lines 57-64 (dropout before the first max-pool; "
            "melfront PiczakCNN(dropout_before_pool=True) in melfront.mst.study)"),
    Setting("train.drop_last", True, _REF + "EnvClassification/loader.py lines 137-141 and MSTmodel/MSTloader.py: "
            "floor(n / batch_size) batches per epoch, the last partial batch never trained on (melfront's "
            "classifier arms: train setting drop_last=True)"),
    Setting("train.optimizer", "sgd, Nesterov momentum 0.9", _REF + "EnvClassification/trainer.py (train(): "
            "MomentumOptimizer use_nesterov=True, momentum 0.9)"),
    Setting("train.lr", 5e-3, _REF + "EnvClassification/trainer.py train() default, used by "
            "Experiments/classifier_training.py"),
    Setting("train.batch_size", 500, _REF + "EnvClassification/trainer.py train() default, used by "
            "Experiments/classifier_training.py"),
    Setting("train.epochs", 200, _REF + "EnvClassification/trainer.py train() default (fixed, no early stopping)"),
    Setting("train.b", "raw waveform, same 3 conv layers, Xavier init, dropout 0.5 after each, no batch norm",
            _REF + "Experiments/classifier_training.py ('raw'), "
            "EnvClassification/Models/RawPiczakCNN.py (dropout=True)"),
    Setting("train.c", "MSTmodel layers loaded and frozen", _REF + "Experiments/classifier_training.py "
            "('initialized'), EnvClassification/trainer.py (MSTfrozen=True)"),
    Setting("train.c.batch_norm", "kept (the MSTmodel's learned batch norm, fixed statistics)",
            _REF + "EnvClassification/Models/RawPiczakCNN.py rebuilds the MSTmodel layers without batch norm when "
            "it loads them", "unfixed",
            deviation="melfront keeps the learned batch norm: dropping it changes the function the loaded layers "
                      "compute (seed 004, abstract: 'initializing the first layers of an end-to-end CNN "
                      "classifier with the learned transformation')"),
    Setting("train.d.branch_epoch", 100, "melfront's choice: (d) branches off (c) after 100 of the 200 epochs; the "
            "paper did not run fine-tuning (an open question there)", "unfixed"),
    Setting("train.finetune_lr_scale", 0.1, "melfront's documented setting (mst-study --finetune-lr-scale): the "
            "MST layers learn at lr x 0.1 in (d)", "unfixed"),
    Setting("eval.vote", "majority vote of the segments per clip", _REF + "Utilities/utilities.py "
            "(classification_accuracy)",
            deviation="ties are broken by summed probability in melfront (theirs: pandas value_counts order, "
                      "arbitrary among equal counts)"),
    Setting("eval.average", "test accuracy per epoch, mean over the 5 folds", _REF + "Utilities/utilities.py "
            "(retrieve_fold_results); the paper's Figure 3"),
    Setting("seed", 0, "melfront's seed (the reference trainers use 42 with TensorFlow's generators)", "unfixed"),
)

CLAIMS = (
    Claim(("a", "c"), "seed 004 (abstract; Sec. 2.3.2; Sec. 3): 'upon initializing the first layers of an "
          "end-to-end CNN classifier with the learned transformation, convergence and performance on the ESC-50 "
          "environmental sound classification dataset are similar to a CNN-based model trained on the highly "
          "pre-processed log-scaled mel-spectrogram features' (Figure 3: (c) about equal to (a))"),
    Claim(("a", "b"), "seed 004 Sec. 2.3.2: initializing with the learned transformation 'results in better "
          "convergence and increases performance on raw waveform approximately to mel-spectrogram-levels' "
          "(Figure 3: the randomly initialised raw-waveform network (b) stays below the log-mel baseline (a))"),
    Claim(("c", "d"), "seed 004 Sec. 3: 'it will be interesting to fine-tune the previously fixed parameters of "
          "the first layers of the classifier': an open question there (a future direction), no claim; "
          "melfront's arm (d) measures it"),
)

#: What a user may override: ``epochs`` (all epochs of (a), (b), (c); (d) then branches off (c) at half of
#: them unless ``branch_epoch`` is given; ``branch_epoch == epochs``: no (d)) and the
#: :class:`~melfront.mst.protocol.ProtocolSettings` fields below, under their own names.
OVERRIDE_KEYS = ("epochs", "branch_epoch", "batch_size", "lr", "optimizer", "hidden", "finetune_lr_scale",
                 "mst_epochs", "mst_patience", "mst_lr", "mst_batch_size", "mst_init_output", "mst_model_options",
                 "copies", "seed", "segment_frames")
_FOLD_NAME = re.compile(r"^(\d+)-")


def _complete_folds(clips) -> list:
    """Folds 1-5 that are complete: none of their listed clips missing on disk, and every class with as many
    clips as the fold that has most of that class (ESC-50: 8 clips of each of the 50 classes per fold).

    >>> from melfront.data.base import Clip
    >>> clips = [Clip(f"{f}-{i}.wav", i % 2, "ab"[i % 2], f) for f in range(1, 6) for i in range(4)]
    >>> _complete_folds(clips), _complete_folds(clips[:-1])
    ([1, 2, 3, 4, 5], [1, 2, 3, 4])
    """
    counts: dict = {}
    for c in clips:
        counts.setdefault(c.fold, {}).setdefault(c.label, 0)
        counts[c.fold][c.label] += 1
    labels = {c.label for c in clips}
    most = {lab: max(per.get(lab, 0) for per in counts.values()) for lab in labels}
    missing = set()
    for path in getattr(clips, "missing", []) or []:
        m = _FOLD_NAME.match(Path(path).name)
        missing.add(int(m.group(1)) if m else "unknown")
    if "unknown" in missing:
        return []
    return [f for f in range(1, 6) if f in counts and f not in missing
            and all(counts[f].get(lab, 0) == most[lab] for lab in labels)]


class Tax2017(Preset):
    """Tax et al. 2017's per-fold protocol (see the module docstring)."""

    override_keys = OVERRIDE_KEYS  # what `compare --preset tax2017 --set KEY=VALUE` may change
    name = "tax2017"
    citation = ("Tax, Diez Antich, Purwins & Maaløe (2017), Utilizing domain knowledge in end-to-end audio "
                "processing, NIPS ML4Audio workshop, arXiv:1712.00254")
    reproduces = ("ESC-50, 5 fold pairs: an MSTmodel learns the log-mel per fold; PiczakCNN on (a) log-mel, "
                  "(b) raw from scratch, (c) frozen MST layers, (d) fine-tuned; accuracy per epoch over folds")
    default_dataset = "esc50"
    settings = SETTINGS
    claims = CLAIMS

    # ---------------------------------------------------------------- plan
    def _protocol_settings(self, overrides: dict, declared: list):
        """ProtocolSettings with the user's overrides, each declared as ``"key: old -> new"``."""
        from ..mst.protocol import ProtocolSettings
        base = ProtocolSettings()
        bad = sorted(set(overrides) - set(OVERRIDE_KEYS))
        if bad:
            raise ParameterError(f"preset {self.name}: cannot override {', '.join(map(repr, bad))}; known: "
                                 f"{', '.join(OVERRIDE_KEYS)}")
        changes = {}
        old_total = base.epochs + base.finetune_epochs
        total = positive_int("epochs", overrides.get("epochs", old_total))
        branch = positive_int("branch_epoch", overrides.get("branch_epoch",
                                                            base.epochs if "epochs" not in overrides else
                                                            max(1, total // 2)))
        if branch > total:
            raise ParameterError(f"branch_epoch ({branch}) must not exceed epochs ({total})")
        if total != old_total:
            declared.append(f"epochs: {old_total} -> {total}")
        if branch != base.epochs:
            declared.append(f"branch_epoch: {base.epochs} -> {branch}" + (" (no arm (d))" if branch == total else ""))
        changes.update(epochs=branch, finetune_epochs=total - branch)
        for key, new in overrides.items():
            if key in ("epochs", "branch_epoch"):
                continue
            old = getattr(base, key)
            if new != old:
                declared.append(f"{key}: {old} -> {new}")
            changes[key] = new
        return base.replace(**changes)

    def plan(self, root=None, dataset=None, overrides: dict | None = None) -> Plan:
        """Check the data at ``root`` (the clip list and headers; no audio decoded) and return the :class:`Plan`.

        Folds 1-5 all complete -> the full protocol (five fold pairs). Otherwise -> a declared reduced version:
        one split within the clips present (60 % training, 20 % validation, 20 % test; class-stratified, each
        source recording on one side). Refuses (``StudyError``) with fewer than 2 classes or too few clips
        for the three sides. ``overrides``: keys of :data:`OVERRIDE_KEYS`, each declared in ``Plan.overrides``.
        """
        from ..data import dataset as load_dataset
        from ..mst.protocol import fold_splits, holdout_split
        dataset = dataset or self.default_dataset
        overrides = dict(overrides or {})
        declared = [] if dataset == self.default_dataset else [f"dataset: {self.default_dataset} -> {dataset}"]
        settings = self._protocol_settings(overrides, declared)
        try:
            clips = load_dataset(dataset, root)
        except FileNotFoundError as exc:
            raise StudyError(f"preset {self.name}: {exc}") from None
        except DataError as exc:
            raise StudyError(f"preset {self.name} cannot run on this data: {exc}") from None
        if len(clips.classes) < 2 or len({c.label for c in clips}) < 2:
            raise StudyError(f"preset {self.name}: {dataset} at {root} has fewer than 2 classes with clips; "
                             "point --root at an ESC-50 folder (audio/ and meta/esc50.csv)")
        complete = _complete_folds(clips)
        reduced = []
        if set(clips.folds) == set(range(1, 6)) and complete == [1, 2, 3, 4, 5]:
            splits = fold_splits(clips)
        else:
            splits = [holdout_split(clips, 0.2, 0.2, seed=settings.seed)]
            for side in ("train", "val", "test_clips"):
                if not splits[0][side]:
                    raise StudyError(f"preset {self.name}: {len(clips)} clips are too few for a training, validation "
                                     f"and test side (the {side.replace('_clips', '')} side is empty); add clips")
            n_listed = len(clips) + len(getattr(clips, "missing", []) or [])
            sp = splits[0]
            reduced.append(f"Only fold(s) {', '.join(map(str, complete)) or 'none'} of folds 1-5 are complete in "
                           f"{root} ({len(clips)} clips present of {n_listed} listed; folds with clips: "
                           f"{clips.folds}), "
                           f"so the five (validation, test) fold pairs cannot run: one split within the clips present "
                           f"instead, {len(sp['train'])} training / {len(sp['val'])} validation / "
                           f"{len(sp['test_clips'])} test clips (aimed at 60/20/20 %; class-stratified, each source "
                           "recording on one side, so small classes round up the held-out sides).")
            reduced.append("Results come from that one split, not the mean of 5 folds: no fold-to-fold spread.")
        arms = ["a", "b", "c"] + (["d"] if settings.finetune_epochs else [])
        total = settings.epochs + settings.finetune_epochs
        grid = [{"arm": arm, "fold": s["name"], "validation": s["validation"], "test": s["test"],
                 "epochs": settings.finetune_epochs if arm == "d" else total, "run": 0}
                for s in splits for arm in arms]
        details = {"settings": settings, "splits": splits, "classes": list(clips.classes), "n_clips": len(clips),
                   "complete_folds": complete}
        return Plan(self.name, dataset, None if root is None else str(root), reduced, declared, grid, details)

    # ---------------------------------------------------------------- dry run
    def dry_run(self, plan: Plan, time_one: bool = True) -> str:
        """The grid (arms x folds x epochs, one MSTModel per fold) and, with ``time_one``, a CPU-time estimate
        from timing training steps on a few real segments (scaled; the method is printed)."""
        s = plan.details["settings"]
        splits = plan.details["splits"]
        lines = [f"preset {plan.title}: {self.citation}",
                 f"data: {plan.dataset} at {plan.root or '(default folder)'} ({plan.details['n_clips']} clips, "
                 f"{len(plan.details['classes'])} classes); complete folds: {plan.details['complete_folds']}"]
        lines += [f"reduced: {r}" for r in plan.reduced] + [f"override: {o}" for o in plan.overrides]
        for sp in splits:
            lines.append(f"fold {sp['name']}: {len(sp['train'])} training clips (+{s.copies} shifted copies each), "
                         f"{len(sp['val'])} validation, {len(sp['test_clips'])} test")
        arms = sorted({g["arm"] for g in plan.grid})
        lines.append(f"per fold: 1 MSTModel (at most {s.mst_epochs} epochs, early stopping after {s.mst_patience} "
                     f"without gain), then arms {', '.join(arms)}: (a), (b), (c) {s.epochs + s.finetune_epochs} epochs"
                     + (f", (d) {s.finetune_epochs} epochs after (c)'s epoch {s.epochs}" if "d" in arms else ""))
        lines.append(f"total: {len(splits)} MSTModel(s), {len(plan.grid)} arm trainings "
                     f"({len(arms)} arms x {len(splits)} fold(s))")
        if time_one and splits:
            lines += _estimate(plan)
        return "\n".join(lines)

    # ---------------------------------------------------------------- run
    def run(self, plan: Plan, output_dir, *, jobs=None, ray=None, quiet=False, retry_failed=False,
            ray_num_gpus=0.0) -> int:
        """Run the protocol as a study (:func:`melfront.mst.protocol.run_protocol`) into ``output_dir/study.db``,
        then write ``output_dir/report`` (:func:`melfront.report.write_report`, as for any study). ``jobs``: folds
        side by side (None: one); ``ray``: folds as Ray tasks. 0: every row finished; 1: some failed (stored,
        see the report; ``retry_failed`` runs them again)."""
        from ..mst.protocol import run_protocol
        from ..report import write_report
        out = Path(output_dir)
        store = run_protocol(plan.details["splits"], plan.details["classes"], out, plan.details["settings"],
                             dataset=plan.dataset, root=plan.root, meta=self.meta(plan), jobs=jobs or 1,
                             ray_address=ray, ray_num_gpus=ray_num_gpus, progress=not quiet, quiet=quiet,
                             retry_failed=retry_failed)
        failed = store.failures()
        if any(r["model"] != "mst" for r in store.rows()):  # an arm finished: something to report
            page = write_report(store.path, out / "report", examples=False)
            if not quiet:
                print(f"results: {store.path}\nreport:  {page} (and report.md)")
        if failed:
            print(f"melfront compare: {len(failed)} row(s) of the protocol failed (see the report; --retry-failed "
                  f"runs them again)", file=sys.stderr)
            return 1
        return 0


def _estimate(plan: Plan) -> list:
    """CPU-time estimate: time one training step of the MSTModel and of arms (a), (b), (c) on up to 8 real
    segments of the first fold's training clips, then scale by segments and epochs."""
    import torch
    from ..models import Classifier
    from ..models.piczak import PiczakCNN
    from ..mst.model import LogMelTarget, MSTFrontend, MSTModel
    from ..mst.segments import load_segments
    from ..train import Trainer
    from ..train.regression import Regression
    s = plan.details["settings"]
    sp = plan.details["splits"][0]
    sample = sp["train"][:4]
    segs = load_segments(sample, s.mel, s.segment_frames, s.overlap, s.silence_db, progress=False)
    x = segs.waves[:8]
    per_clip = len(segs) / max(1, len(sample) - len(segs.skipped))
    n_classes = len(plan.details["classes"])
    batch = min(s.batch_size, 32)  # the arms' steps are timed on a batch like the run's (segments repeated)
    xb = x.repeat(-(-batch // x.shape[0]), 1)[:batch]
    y = torch.randint(0, n_classes, (batch,))
    mel = s.mel

    def mst():
        return MSTModel(n_mels=mel["n_mels"], n_fft=mel["n_fft"], hop_length=mel["hop_length"],
                        **(s.mst_model_options or {}))

    def step_seconds(model, loss_fn, n, reps=2):
        # the trainer's own update step (plain SGD at a tiny lr: the time, not the result, matters here)
        trainer = Trainer(model, Regression.settings(1e-6, 1, None, optimizer="sgd"), device="cpu", progress=False)
        times = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            trainer.step(loss_fn(model), 1, 1)
            times.append(time.perf_counter() - t0)
        return min(times[1:]) / n  # seconds per segment, first step as warm-up

    target = LogMelTarget(mel)
    y_mst = target(x).float()
    t_mst = step_seconds(mst(), lambda m: torch.nn.functional.mse_loss(m(x), y_mst), x.shape[0])
    arms = {"a": target, "b": MSTModel(n_mels=mel["n_mels"], n_fft=mel["n_fft"], hop_length=mel["hop_length"],
                                       batch_norm=False, dropout=0.5, **(s.mst_model_options or {})),
            "c": MSTFrontend(mst(), frozen=True)}
    t_arm, t_once = {}, {}
    for k, front in arms.items():
        backbone = PiczakCNN(n_classes, n_mels=mel["n_mels"], n_frames=s.segment_frames, hidden=s.hidden)
        if k == "b":  # trained end to end: the frontend runs in every step
            t_arm[k] = step_seconds(Classifier(front, backbone),
                                    lambda m: torch.nn.functional.cross_entropy(m(xb), y), batch)
            continue
        # frozen frontends, (a) and (c): their output is computed once per segment, then only the backbone trains
        t0 = time.perf_counter()
        with torch.no_grad():
            feats = front(xb)
        t_once[k] = (time.perf_counter() - t0) / batch
        feats = feats.unsqueeze(1) if feats.dim() == 3 else feats
        t_arm[k] = step_seconds(backbone, lambda m: torch.nn.functional.cross_entropy(m(feats), y), batch)
    t_arm["d"] = t_arm["b"]  # (d) trains every layer, as (b) does
    from ..study.estimate import machine, part_lines
    parts = {"MSTModel": [0.0, 0.0]}
    n_seg = 0
    for split in plan.details["splits"]:
        n_train = per_clip * len(split["train"]) * (1 + s.copies)
        n_eval = per_clip * (len(split["val"]) + len(split["test_clips"]))
        mst_epoch = n_train * t_mst * 1.1  # + validation forward passes
        parts["MSTModel"][0] += mst_epoch * min(s.mst_patience + 1, s.mst_epochs)  # early stopping: at least
        parts["MSTModel"][1] += mst_epoch * s.mst_epochs                           # the cap: at most
        for g in (g for g in plan.grid if g["fold"] == split["name"]):
            cost = g["epochs"] * (n_train * t_arm[g["arm"]] + n_eval * t_arm[g["arm"]] / 3)
            cost += (n_train + n_eval) * t_once.get(g["arm"], 0.0)
            part = parts.setdefault(f"arm ({g['arm']})", [0.0, 0.0])
            part[0] += cost
            part[1] += cost
        n_seg = max(n_seg, n_train)
    gib = n_seg * s.mel["hop_length"] * (s.segment_frames - 1) * 4 * 2 / 2 ** 30
    where = f"{machine()}, {torch.get_num_threads()} torch threads"
    return part_lines(parts, where, f"early stopping decides the MSTModels' epochs: {s.mst_patience + 1} at "
                                    f"least, {s.mst_epochs} at most") + [
            f"  how: one training step each of the MSTModel ({1e3 * t_mst:.1f} ms/segment) and arms (a) "
            f"{1e3 * t_arm['a']:.1f}, (b) {1e3 * t_arm['b']:.1f}, (c) {1e3 * t_arm['c']:.1f} ms/segment (batches of "
            f"{batch}; (a) and (c) train the backbone on their frozen frontend's output, computed once), timed on "
            f"{x.shape[0]} real segments of {len(sample)} training clips ({per_clip:.1f} segments per clip), scaled "
            f"by the segments per fold (copies included) and epochs; evaluation counted as 1/3 of a step per segment",
            f"  memory: about {gib:.1f} GiB for the largest fold's training segments (kept twice: segments and "
            f"per-clip features)"]


register_preset(Tax2017())
