"""The ``melfront`` command line.

Each command is a pair: ``_add_<name>(subparsers)`` declares its arguments and
``_run_<name>(args)`` does the work. Heavy imports happen inside ``_run_*`` so that
``melfront --help`` stays fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


# --------------------------------------------------------------------------------------------
# show
# --------------------------------------------------------------------------------------------
def _add_show(sub):
    p = sub.add_parser("show", help="draw clips' waveforms and mel spectrograms (one panel per frontend)",
                       description="Draw each clip's waveform and its mel spectrogram in dB, plus one panel per "
                                   "frontend given with --frontends, into one PNG.")
    p.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, ...)")
    p.add_argument("-o", "--output", default="show.png", help="PNG to write (default: show.png)")
    p.add_argument("--sample-rate", type=int, default=22050, help="resample to this rate in Hz (default 22050)")
    p.add_argument("--n-fft", type=int, default=1024, help="FFT size in samples (default 1024)")
    p.add_argument("--hop", type=int, default=512, help="hop length in samples (default 512)")
    p.add_argument("--n-mels", type=int, default=128, help="number of mel bands (default 128)")
    p.add_argument("--frontends", default="",
                   help="comma-separated frontend specs, one extra panel each, e.g. \"db,pcen,pcen(init='loop'),power\"")


def _run_show(args):
    from .plotting import show_clips
    out = show_clips(args.audio, args.output, sample_rate=args.sample_rate, n_fft=args.n_fft,
                     hop_length=args.hop, n_mels=args.n_mels, frontends=split_specs(args.frontends))
    print(f"wrote {out}")


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of frontend specs, keeping commas inside parentheses."""
    specs, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            if cur.strip():
                specs.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    if cur.strip():
        specs.append(cur.strip())
    return specs


# --------------------------------------------------------------------------------------------
# compare / report (the few-data study, issue 6)
# --------------------------------------------------------------------------------------------
def _add_compare(sub):
    p = sub.add_parser("compare", help="run the few-data study: frontends x models x n x runs x folds, then the report",
                       description="Train every frontend x model on n clips per class (m runs each, the data set's "
                                   "official folds), store each finished run in OUTPUT/study.db (re-running resumes), "
                                   "and write the report to OUTPUT/report. With no arguments: the quick profile on "
                                   "the built-in synthetic field-recording set.")
    p.add_argument("-o", "--output", default="studies/quick", help="study folder (default studies/quick)")
    p.add_argument("--config", help="YAML or TOML file with study settings (saved with the results)")
    p.add_argument("--profile", choices=["quick", "paper"], default=None, help="preset grid (default quick)")
    p.add_argument("--dataset", help="synth, esc50, esc10, urbansound8k, tut2017, fsdd or folder")
    p.add_argument("--root", help="data set folder")
    p.add_argument("--frontends", help="comma-separated frontend specs, e.g. \"logeps,loglearn\"")
    p.add_argument("--models", help="comma-separated model names, e.g. sbcnn,vgg,timbre,protonet")
    p.add_argument("--n", dest="n_per_class", help="comma-separated clips per class, e.g. 1,2,5")
    p.add_argument("--runs", type=int, help="runs per n (default: Pons et al.: 20 for n<=2, 10 for n<=10, 5 above)")
    p.add_argument("--test-folds", help="'all', 'first' or comma-separated folds")
    p.add_argument("--epochs", type=int, help="training epochs per run")
    p.add_argument("--seed", type=int, help="base seed (default 0)")
    p.add_argument("--compare", action="append", metavar="A,B",
                   help="two frontends whose difference the report tests (repeatable)")
    p.add_argument("--jobs", type=int, default=None, help="trials run side by side (default: one per CPU core)")
    p.add_argument("--ray", metavar="auto|ADDRESS", help="run every trial as a task on a Ray cluster")
    p.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per Ray task (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines")


def study_config_from_args(args):
    from .study import StudyConfig
    overrides = {}
    if args.dataset:
        overrides["dataset"] = args.dataset
        overrides.setdefault("dataset_options", {})
    if args.root:
        overrides["root"] = args.root
    if args.frontends:
        overrides["frontends"] = split_specs(args.frontends)
    if args.models:
        overrides["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.n_per_class:
        overrides["n_per_class"] = [int(n) for n in args.n_per_class.split(",")]
    if args.runs:
        overrides["runs"] = {"default": args.runs}
    if args.test_folds:
        tf = args.test_folds
        overrides["test_folds"] = tf if tf in ("all", "first") else [int(f) if f.strip().isdigit() else f.strip()
                                                                      for f in tf.split(",")]
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.compare:
        overrides["compare"] = [split_specs(c) for c in args.compare]
    if args.config:
        config = StudyConfig.from_file(args.config, profile=args.profile)
        for k, v in overrides.items():
            setattr(config, k, v)
    else:
        profile = args.profile or "quick"
        if args.dataset and args.dataset != "synth" and args.profile is None:
            # real data: the quick grid's shape, with the data set's own mel defaults
            overrides.setdefault("mel", dict(sample_rate=22050, n_fft=1024, hop_length=512, n_mels=128))
            overrides.setdefault("train", dict(epochs=30, patch_frames=128))
        config = StudyConfig.from_profile(profile, **overrides)
    if args.epochs:
        config.train = {**config.train, "epochs": args.epochs}
    if "compare" not in overrides and not args.config:
        config.compare = [p for p in config.compare if all(f in config.frontends for f in p)]
    return config


def _run_compare(args):
    from .report import write_report
    from .study import run_study
    config = study_config_from_args(args)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    import json
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    store = run_study(config, out / "study.db", ray_address=args.ray, jobs=args.jobs, quiet=args.quiet,
                      ray_num_gpus=args.ray_gpus)
    page = write_report(store.path, out / "report")
    print(f"results: {store.path}\nreport:  {page} (and report.md)")


def _add_report(sub):
    p = sub.add_parser("report", help="write the Markdown + HTML report of a study",
                       description="Tables (mean ± std, paired differences with significance) and plots for a study.db.")
    p.add_argument("study", help="study.db written by melfront compare (or its folder)")
    p.add_argument("-o", "--output", help="report folder (default: report/ next to the study)")
    p.add_argument("--compare", action="append", metavar="A,B", help="two frontends to difference (repeatable)")


def _run_report(args):
    from .report import write_report
    path = Path(args.study)
    if path.is_dir():
        path = path / "study.db"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such study (run melfront compare first)")
    out = Path(args.output) if args.output else path.parent / "report"
    page = write_report(path, out, compare=[split_specs(c) for c in args.compare] if args.compare else None)
    print(f"report: {page} (and report.md)")


# --------------------------------------------------------------------------------------------
# download, synth (data sets)
# --------------------------------------------------------------------------------------------
def _add_download(sub):
    p = sub.add_parser("download", help="download and extract a public data set",
                       description="Fetch a data set from its canonical public address (resuming an interrupted "
                                   "transfer, verifying size/checksum where known) and extract it safely into --root, "
                                   "so that melfront.data.dataset(NAME, ROOT) reads it.")
    p.add_argument("name", choices=["esc50", "esc10", "urbansound8k", "tut2017", "fsdd"], help="data set")
    p.add_argument("--root", required=True, help="folder to download and extract into")
    p.add_argument("--mirror", default=None, help="base URL of a mirror holding the same archive names")
    p.add_argument("--delete-archives", action="store_true", help="delete each archive once extracted")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_download(args):
    from .data.download import DownloadError, download_dataset
    try:
        root = download_dataset(args.name, args.root, progress=not args.quiet,
                                keep_archives=not args.delete_archives, mirror=args.mirror)
    except DownloadError as exc:
        print(f"melfront download: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name} is in {root}")


def _add_synth(sub):
    p = sub.add_parser("synth", help="write the synthetic field-recording set (ESC-50-like layout)",
                       description="Generate the synthetic field-recording set (animal-like and mechanical events "
                                   "at random SNR and gain in noisy backgrounds) as audio/*.wav + meta/esc50.csv.")
    p.add_argument("--root", required=True, help="folder to write (audio/, meta/)")
    p.add_argument("--n-classes", type=int, default=10, help="number of classes (default 10)")
    p.add_argument("--clips-per-class", type=int, default=40, help="clips per class (default 40)")
    p.add_argument("--duration", type=float, default=3.0, help="clip length in seconds (default 3.0)")
    p.add_argument("--sample-rate", type=int, default=22050, help="Hz (default 22050)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--n-folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--snr-db", type=float, nargs=2, default=(-10.0, 20.0), metavar=("MIN", "MAX"),
                   help="event-to-background ratio range in dB (default -10 20)")
    p.add_argument("--gain-db", type=float, nargs=2, default=(-20.0, 20.0), metavar=("MIN", "MAX"),
                   help="overall gain range in dB (default -20 20)")


def _run_synth(args):
    from .data.synth import load_synth
    clips = load_synth(args.root, n_classes=args.n_classes, clips_per_class=args.clips_per_class,
                       duration=args.duration, sample_rate=args.sample_rate, seed=args.seed, n_folds=args.n_folds,
                       progress=True, snr_db=tuple(args.snr_db), gain_db=tuple(args.gain_db))
    print(f"wrote {len(clips)} clips of {len(clips.classes)} classes to {clips.root}")


# --------------------------------------------------------------------------------------------
# learn-mel, mst-study (Tax et al. 2017: learning the log-mel transform from raw audio)
# --------------------------------------------------------------------------------------------
def _add_learn_mel(sub):
    p = sub.add_parser("learn-mel", help="train the MSTModel to output the log-mel spectrogram of raw audio",
                       description="Train MSTModel (Tax et al. 2017: three 1-D convolutions) by MSE against the "
                                   "normalised log-mel (22050 Hz, n_fft 1024, hop 512, 60 mels, 101-frame "
                                   "segments) of a data set's audio, with Adam and early stopping on a validation "
                                   "split. Writes the checkpoint and two PNGs next to it (target vs prediction; "
                                   "first-layer filters).")
    p.add_argument("--dataset", required=True, help="data set name (esc50, esc10, urbansound8k, fsdd, folder, ...)")
    p.add_argument("--root", default=None, help="data set folder")
    p.add_argument("-o", "--output", default="mst.pt", help="checkpoint to write (default: mst.pt)")
    p.add_argument("--epochs", type=int, default=100, help="at most this many epochs (default 100)")
    p.add_argument("--patience", type=int, default=5,
                   help="stop after this many epochs without a better validation MSE (default 5)")
    p.add_argument("--max-clips", type=int, default=None, help="use a seeded random subset of this many clips")
    p.add_argument("--val-fraction", type=float, default=0.15, help="validation share of the clips (default 0.15)")
    p.add_argument("--batch-size", type=int, default=100, help="segments per batch (default 100, as the paper)")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4, as the paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_learn_mel(args):
    import json
    from .learn_mel import run_learn_mel
    s = run_learn_mel(args.dataset, args.root, args.output, epochs=args.epochs, patience=args.patience,
                      max_clips=args.max_clips, val_fraction=args.val_fraction, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, device=args.device, progress=not args.quiet)
    print(f"validation MSE {s['val_mse']:.4f}, correlation with the target {s['val_corr']:.4f} "
          f"(best epoch {s['best_epoch']} of {s['epochs_run']}, {s['train_seconds']:.0f} s)")
    if s["skipped"]:
        print(f"skipped {len(s['skipped'])} clip(s): " + "; ".join(f"{p}: {c}" for p, c in s["skipped"][:5]))
    print(f"wrote {s['checkpoint']}, " + ", ".join(s["figures"]))
    Path(args.output).with_suffix(".json").write_text(json.dumps(s, indent=2))


def _add_mst_study(sub):
    p = sub.add_parser("mst-study", help="PiczakCNN on log-mel vs raw audio, random vs MSTModel-initialised (Tax et al. 2017)",
                       description="Train PiczakCNN (a) on log-mel, (b) on raw audio with randomly initialised conv "
                                   "layers, (c) on raw audio through the frozen MSTModel layers, (d) as (c) then "
                                   "fine-tuned; writes accuracy_vs_epoch.png and results.json to the output folder.")
    p.add_argument("--dataset", required=True, help="data set to classify (e.g. esc10, esc50)")
    p.add_argument("--root", default=None, help="data set folder")
    p.add_argument("-o", "--output", default="mst-study", help="output folder (default: mst-study)")
    p.add_argument("--mst", default=None, help="MSTModel checkpoint from `melfront learn-mel` (default: train one "
                                                "on the audio of --mst-dataset minus the test clips)")
    p.add_argument("--mst-dataset", default=None, help="data set whose audio trains the MSTModel (default: --dataset)")
    p.add_argument("--mst-root", default=None, help="its folder (default: --root)")
    p.add_argument("--mst-epochs", type=int, default=20, help="MSTModel epochs at most (default 20)")
    p.add_argument("--mst-lr", type=float, default=3e-4, help="MSTModel Adam learning rate (default 3e-4)")
    p.add_argument("--epochs", type=int, default=10, help="epochs before fine-tuning starts (default 10)")
    p.add_argument("--finetune-epochs", type=int, default=5, help="epochs of (d) fine-tuning (default 5)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="test share of the clips (default 0.25)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                   help="sgd: Nesterov momentum 0.9 (Tax et al.'s trainer, default); adam")
    p.add_argument("--lr", type=float, default=5e-3, help="learning rate (default 5e-3)")
    p.add_argument("--finetune-lr", type=float, default=None, help="learning rate of (d) (default: --lr)")
    p.add_argument("--hidden", type=int, default=5000, help="units of PiczakCNN's dense layers (default 5000)")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_mst_study(args):
    from .learn_mel import LABELS, run_mst_study
    r = run_mst_study(args.dataset, args.root, args.output, mst=args.mst, mst_dataset=args.mst_dataset,
                      mst_root=args.mst_root, mst_epochs=args.mst_epochs, mst_lr=args.mst_lr,
                      epochs=args.epochs,
                      finetune_epochs=args.finetune_epochs, test_fraction=args.test_fraction,
                      batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, finetune_lr=args.finetune_lr,
                      hidden=args.hidden, max_clips=args.max_clips, seed=args.seed, device=args.device,
                      progress=not args.quiet)
    if r["mst"]:
        print(f"MSTModel: validation MSE {r['mst']['val_mse']:.4f}, correlation {r['mst']['val_corr']:.4f}")
    print(f"{r['n_train_clips']} training / {r['n_test_clips']} test clips; test accuracy (clip majority vote):")
    for key, v in r["variants"].items():
        print(f"  {LABELS[key]:<55} final {100 * v['final_test_accuracy']:5.1f} %  best "
              f"{100 * v['best_test_accuracy']:5.1f} %  {v['seconds']:6.0f} s")
    for w in r["warnings"]:
        print(f"warning: {w}")
    print(f"wrote {r['figure']} and {Path(args.output) / 'results.json'}")


# --------------------------------------------------------------------------------------------
# train / evaluate / predict
# --------------------------------------------------------------------------------------------
def _key_values(items, what: str) -> dict:
    """``["a=1", "b='x'"]`` -> ``{"a": 1, "b": "x"}`` (values are Python literals, else plain strings)."""
    import ast
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what} must look like KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _add_dataset_args(p, required: bool):
    p.add_argument("--dataset", required=required, help="esc50, esc10, urbansound8k, tut2017, fsdd, folder or synth")
    p.add_argument("--root", help="data set folder")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", default=None,
                   help="loader option, e.g. n_classes=3 for synth (repeatable)")
    p.add_argument("--cache", help="feature cache folder (default $MELFRONT_CACHE or ~/.cache/melfront)")
    p.add_argument("--no-cache", action="store_true", help="compute features without the cache")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def _cache_arg(args):
    return False if args.no_cache else args.cache


def _add_train(sub):
    p = sub.add_parser("train", help="train a frontend + model on a data set's folds; write a run folder",
                       description="Train FRONTEND -> MODEL on every fold but the test (and validation) fold, "
                                   "evaluate on the test fold, and write OUTPUT/checkpoint.pt (rewritten every "
                                   "epoch; --resume continues it), OUTPUT/config.json and OUTPUT/metrics.json. "
                                   "Learned frontend parameters are printed and saved in metrics.json.")
    _add_dataset_args(p, required=True)
    p.add_argument("--frontend", default="db", help="frontend spec, e.g. \"pcen(trainable=True)\" (default db)")
    p.add_argument("--model", default="sbcnn", help="sbcnn, vgg, timbre, piczak, protonet or resnet (default sbcnn)")
    p.add_argument("--test-fold", required=True, help="fold held out for testing (e.g. 4, or 'test' for fsdd)")
    p.add_argument("--val-fold", help="fold for validation (reported each epoch; early stopping with patience=N)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the model's paper setting)")
    p.add_argument("--n-per-class", type=int, help="train on a class-balanced subset of N clips per class")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--batch-size", type=int, help="batch size")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--patch-frames", type=int, help="patch length in frames")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=None,
                   help="any training setting, e.g. optimizer='adam', patience=10, model_options={'width':8}")
    p.add_argument("--sample-rate", type=int, help="mel: resample to this rate in Hz (default 22050)")
    p.add_argument("--n-fft", type=int, help="mel: FFT size (default 1024)")
    p.add_argument("--hop", type=int, help="mel: hop length in samples (default 512)")
    p.add_argument("--n-mels", type=int, help="mel: bands (default: the model's, 128 or 60 for piczak)")
    p.add_argument("--resume", action="store_true", help="continue OUTPUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", default="run", help="run folder (default run/)")


def _run_train(args):
    import json
    from .training import DEFAULT_MEL, train_run
    train = _key_values(args.set, "--set")
    for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                       ("patch_frames", args.patch_frames)):
        if value is not None:
            train[key] = value
    mel = None
    given = dict(sample_rate=args.sample_rate, n_fft=args.n_fft, hop_length=args.hop, n_mels=args.n_mels)
    if any(v is not None for v in given.values()):
        mel = {k: v for k, v in given.items() if v is not None}
        for k in ("sample_rate", "n_fft", "hop_length"):
            mel.setdefault(k, DEFAULT_MEL[k])
        if args.n_mels is not None:
            train.setdefault("n_mels", args.n_mels)
    m = train_run(args.output, dataset=args.dataset, root=args.root,
                  dataset_options=_key_values(args.dataset_option, "--dataset-option"), frontend=args.frontend,
                  model=args.model, test_fold=args.test_fold, val_fold=args.val_fold, n_per_class=args.n_per_class,
                  mel=mel, train=train, seed=args.seed, cache=_cache_arg(args), device=args.device,
                  progress=not args.quiet, resume=args.resume)
    print(f"test fold {m['fold']}: accuracy {100 * m['accuracy']:.1f} %, mAP {m['map']:.3f} "
          f"({m['n_test']} clips; trained on {m['n_train']} clips, {m['epochs']} epochs, "
          f"{m['train_seconds']:.0f} s on {m['device']})")
    if m["learned"]:
        print("learned frontend parameters:")
        for name, values in m["learned"].items():
            shown = ", ".join(f"{v:.4g}" for v in values[:8]) + (", ..." if len(values) > 8 else "")
            print(f"  {name}: [{shown}]" + (f" (mean {sum(values) / len(values):.4g})" if len(values) > 1 else ""))
    if m["skipped"]:
        print(f"skipped {len(m['skipped'])} clip(s):", file=sys.stderr)
        for path, cause in m["skipped"]:
            print(f"  {path}: {cause}", file=sys.stderr)
    out = Path(args.output)
    print(f"wrote {out / 'checkpoint.pt'}, {out / 'config.json'}, {out / 'metrics.json'}")
    json.dumps(m)  # JSON-able by construction


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="metrics (JSON) of a trained run on a data set's fold",
                       description="Evaluate RUN (a folder written by `melfront train`, or its checkpoint.pt) on a "
                                   "fold; the data set, root and fold default to those of training (its test fold). "
                                   "Prints the metrics as JSON: accuracy, map, per_class_accuracy, confusion.")
    p.add_argument("run", help="run folder or checkpoint file")
    _add_dataset_args(p, required=False)
    p.add_argument("--fold", help="fold to evaluate (default: the run's test fold)")
    p.add_argument("-o", "--output", help="also write the metrics to this JSON file")


def _run_evaluate(args):
    import json
    from .training import evaluate_run
    opts = _key_values(args.dataset_option, "--dataset-option") if args.dataset_option else None
    m = evaluate_run(args.run, dataset=args.dataset, root=args.root, dataset_options=opts, fold=args.fold,
                     cache=_cache_arg(args), device=args.device)
    text = json.dumps(m, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


def _add_predict(sub):
    p = sub.add_parser("predict", help="top-k labels with probabilities for audio files, from a trained run",
                       description="Classify each audio file with the classifier of RUN (folder or checkpoint).")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--top-k", type=int, default=5, help="labels to show per file (default 5)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def _run_predict(args):
    from .training import load_classifier, predict_file
    clf, cfg = load_classifier(args.run)
    for path in args.audio:
        print(path)
        for name, prob in predict_file(clf, cfg, path, top_k=args.top_k, device=args.device):
            print(f"  {prob:7.4f}  {name}")


# --------------------------------------------------------------------------------------------
# frontends
# --------------------------------------------------------------------------------------------
def _add_frontends(sub):
    sub.add_parser("frontends", help="list the frontend names usable in specs, with a one-line description",
                   description="List the frontend names of melfront.frontend(spec) specs (e.g. \"db\", "
                               "\"pcen(trainable=True, per_band=True, init='loop')\", \"stack(db, pcen, power)\").")


def _run_frontends(args):
    from .frontends import FRONTENDS
    width = max(len(n) for n in FRONTENDS)
    for name, entry in FRONTENDS.items():
        print(f"{name:<{width}}  {entry.description}")
    print("\nArguments go in parentheses as Python literals, e.g. pcen(trainable=True, per_band=True, init='loop');")
    print("stack(a, b, ...) makes channels, chain(a, b) or a+b applies in sequence.")


# --------------------------------------------------------------------------------------------
# equivalence
# --------------------------------------------------------------------------------------------
def _add_equivalence(sub):
    p = sub.add_parser("equivalence", help="figures for the Dörfler-Bammer-Grill equivalences (windows; mel vs adaptive filterbank)",
                       description="Write two PNGs into DIR: window_equivalence.png (Figure 1 of Dörfler, Bammer & Grill "
                                   "2017 on a synthetic signal of damped notes: spectrograms with a 2048- and a 512-sample "
                                   "window, each convolved with its kernel and max-pooled, and their difference) and "
                                   "mel_vs_adaptive.png (a MelSpectrogram against the AdaptiveFilterbank designed from it, "
                                   "on --audio or a generated clip).")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNGs")
    p.add_argument("--audio", default=None, help="audio file for the mel-vs-adaptive figure (default: a generated clip)")
    p.add_argument("--sample-rate", type=int, default=22050, help="sampling rate in Hz (default 22050)")
    p.add_argument("--n-fft", type=int, default=1024, help="mel FFT size (default 1024)")
    p.add_argument("--hop", type=int, default=512, help="mel hop length (default 512)")
    p.add_argument("--n-mels", type=int, default=128, help="number of mel bands (default 128)")
    p.add_argument("--long-window", type=int, default=2048, help="long Hann window g in samples (default 2048)")
    p.add_argument("--short-window", type=int, default=512, help="short Hann window h in samples (default 512)")
    p.add_argument("--duration", type=float, default=1.5, help="length of the damped-notes signal in s (default 1.5)")


def _run_equivalence(args):
    import torch
    from .filterbanks import demo_clip, plot_mel_vs_adaptive, plot_window_equivalence
    out = Path(args.output)
    if not 0 < args.short_window < args.long_window:
        raise ValueError(f"need 0 < --short-window < --long-window, got {args.short_window}, {args.long_window}")
    fig1 = plot_window_equivalence(out / "window_equivalence.png", sample_rate=args.sample_rate,
                                   long_window=args.long_window, short_window=args.short_window,
                                   hop_length=max(1, args.short_window // 16), duration=args.duration)
    print(f"wrote {fig1['path']}  (relative residual {fig1['residual']:.2e} on the lattice, "
          f"{fig1['pooled_residual']:.2e} after pooling)")
    if args.audio:
        from .audio import load_audio
        wave, sr = load_audio(args.audio, sample_rate=args.sample_rate)
        name = Path(args.audio).name
    else:
        wave, sr, name = demo_clip(args.sample_rate), args.sample_rate, "generated clip"
    fig2 = plot_mel_vs_adaptive(out / "mel_vs_adaptive.png", torch.as_tensor(wave), sr, n_fft=args.n_fft,
                                hop_length=args.hop, n_mels=args.n_mels, title=name)
    print(f"wrote {fig2['path']}  (median relative error {fig2['median_relative_error']:.2%}, "
          f"dB correlation {fig2['db_correlation']:.4f})")


# --------------------------------------------------------------------------------------------
# Registry: add new commands here, in the order `melfront --help` lists them.
# --------------------------------------------------------------------------------------------
COMMANDS = [
    ("show", _add_show, _run_show),
    ("frontends", _add_frontends, _run_frontends),
    ("train", _add_train, _run_train),
    ("evaluate", _add_evaluate, _run_evaluate),
    ("predict", _add_predict, _run_predict),
    ("learn-mel", _add_learn_mel, _run_learn_mel),
    ("mst-study", _add_mst_study, _run_mst_study),
    ("compare", _add_compare, _run_compare),
    ("report", _add_report, _run_report),
    ("download", _add_download, _run_download),
    ("synth", _add_synth, _run_synth),
    ("equivalence", _add_equivalence, _run_equivalence),
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="melfront",
        description="Mel-spectrogram frontends for neural audio classifiers: look at them, train with them, compare them.")
    parser.add_argument("--version", action="version", version=f"melfront {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, add, run in COMMANDS:
        add(sub)
        sub.choices[name].set_defaults(_run=run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    from .audio import AudioError
    try:
        result = args._run(args)
    except (AudioError, FileNotFoundError, ValueError) as exc:
        print(f"melfront {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"melfront {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
