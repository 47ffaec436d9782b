"""Commands over single training runs: ``train``, ``evaluate``, ``predict``.

>>> [name for name, _, _ in COMMANDS]
['train', 'evaluate', 'predict']
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..errors import MelfrontError
from ..fileio import write_json, write_text
from .options import add_dataset_args, add_settings_args, add_split_args, cache_arg, key_values, settings_from_args, \
    split_settings

__all__ = ["COMMANDS", "EXIT_SOME_FAILED"]

#: Exit status of a command that went through every input but some failed (each printed as one line).
EXIT_SOME_FAILED = 1
#: Exit status after Ctrl-C (128 + SIGINT), as :data:`melfront.cli.EXIT_INTERRUPTED`.
EXIT_INTERRUPTED = 130


def _add_train(sub):
    p = sub.add_parser("train", help="train a frontend + model on a data set's folds; write a run folder",
                       description="Train FRONTEND -> MODEL on every fold but the test (and validation) fold, "
                                   "evaluate on the test fold, and write OUTPUT/checkpoint.pt (rewritten every "
                                   "epoch; --resume continues it), OUTPUT/config.json and OUTPUT/metrics.json. "
                                   "Learned frontend parameters are printed and saved in metrics.json.")
    add_dataset_args(p, required=True)
    p.add_argument("--frontend", default="db", help="frontend spec, e.g. \"pcen(trainable=True)\" (default db)")
    p.add_argument("--model", default="sbcnn",
                   help="sbcnn, vgg, timbre, piczak, protonet or resnet (default sbcnn). piczak: "
                        "--set 'model_options={\"deltas\": true}' adds the deltas channel (Piczak 2015; off by "
                        "default). protonet: --set support=fixed keeps one support set for the whole run "
                        "(Pons et al. 2019's code; default: a new one every episode)")
    p.add_argument("--test-fold", help="fold held out for testing (e.g. 4, or 'test' for fsdd); a data set with "
                                       "one fold (a flat folder) holds out a stratified, grouped third by itself")
    p.add_argument("--val-fold", help="fold for validation (reported each epoch; early stopping with patience=N)")
    add_split_args(p)
    p.add_argument("--n-per-class", type=int, help="train on a class-balanced subset of N clips per class")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--profile", choices=("fitted", "paper"), default="fitted",
                   help="settings not given: fitted to the data (default; printed and saved in "
                        "OUTPUT/derived_settings.json) or the model's paper settings")
    add_settings_args(p)
    p.add_argument("--resume", action="store_true", help="continue OUTPUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", default="run", help="run folder (default run/)")


def _train_overrides(args) -> tuple[dict, dict | None, object]:
    """``(train, mel, fitted)``: the settings given on the command line, the rest fitted to the data (printed;
    ``fitted`` is the :class:`~melfront.train.FittedSettings`) or, with ``--profile paper``, the model's
    (``mel`` None: :data:`~melfront.train.DEFAULT_MEL` with the model's bands)."""
    from ..data import dataset as load_dataset
    from ..train import DEFAULT_MEL, fit_settings, training_size
    given = settings_from_args(args)
    mel, train = split_settings(given)
    if args.profile == "paper":
        if mel:
            mel = {**{k: DEFAULT_MEL[k] for k in ("sample_rate", "n_fft", "hop_length")}, **mel}
            if "n_mels" in mel:
                train.setdefault("n_mels", mel["n_mels"])
        return train, mel or None, None
    clips = load_dataset(args.dataset, args.root, **key_values(args.dataset_option, "--dataset-option"))
    fitted = fit_settings(clips, models=[args.model], frontends=[args.frontend], given=given,
                          n_train=training_size(clips, args.test_fold, args.val_fold, args.n_per_class))
    print(fitted.summary())
    return fitted.train_for(args.model), fitted.mel, fitted


def _run_train(args):
    from ..train import train_run
    train, mel, fitted = _train_overrides(args)
    if fitted is not None:
        Path(args.output).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.output) / "derived_settings.json", fitted.as_dict())
    started = time.time()
    try:
        m = train_run(args.output, dataset=args.dataset, root=args.root,
                      dataset_options=key_values(args.dataset_option, "--dataset-option"), frontend=args.frontend,
                      model=args.model, test_fold=args.test_fold, val_fold=args.val_fold,
                      n_per_class=args.n_per_class, mel=mel, train=train, seed=args.seed, cache=cache_arg(args),
                      device=args.device, progress=not args.quiet, resume=args.resume, split=args.split,
                      group_by=args.group_by)
    except KeyboardInterrupt:  # the trainer has saved the checkpoint (the start of the interrupted epoch)
        ckpt = Path(args.output) / "checkpoint.pt"
        if ckpt.is_file() and ckpt.stat().st_mtime >= started - 1:
            print(f"melfront train: interrupted; {ckpt} written, resume with --resume", file=sys.stderr)
        else:
            print("melfront train: interrupted before training started; no new checkpoint written", file=sys.stderr)
        return EXIT_INTERRUPTED
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


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="metrics (JSON) of a trained run on a data set's fold",
                       description="Evaluate RUN (a folder written by `melfront train`, or its checkpoint.pt) on a "
                                   "fold; the data set, root and fold default to those of training (its test fold). "
                                   "Prints the metrics as JSON: accuracy, map, per_class_accuracy, confusion.")
    p.add_argument("run", help="run folder or checkpoint file")
    add_dataset_args(p, required=False)
    p.add_argument("--fold", help="fold to evaluate (default: the run's test fold)")
    p.add_argument("-o", "--output", help="also write the metrics to this JSON file")


def _run_evaluate(args):
    from ..train import evaluate_run
    opts = key_values(args.dataset_option, "--dataset-option") if args.dataset_option else None
    m = evaluate_run(args.run, dataset=args.dataset, root=args.root, dataset_options=opts, fold=args.fold,
                     cache=cache_arg(args), device=args.device)
    text = json.dumps(m, indent=2)
    print(text)
    if args.output:
        write_text(args.output, text + "\n")


def _add_predict(sub):
    p = sub.add_parser("predict", help="top-k labels with probabilities for audio files, from a trained run",
                       description="Classify each audio file with the classifier of RUN (folder or checkpoint).")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--top-k", type=int, default=5, help="labels to show per file (default 5)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def _run_predict(args):
    """Each file on its own: a file that fails is one line on stderr, the others are still classified;
    the exit status is 1 when any file failed."""
    from ..train import load_classifier, predict_file
    clf, cfg = load_classifier(args.run)
    failed = 0
    for path in args.audio:
        try:
            top = predict_file(clf, cfg, path, top_k=args.top_k, device=args.device)
        except (MelfrontError, OSError, MemoryError, FloatingPointError) as exc:
            failed += 1
            message = " ".join(str(exc).split()) or type(exc).__name__
            print(f"melfront predict: failed: {message if str(path) in message else f'{path}: {message}'}",
                  file=sys.stderr)
            continue
        print(path)
        for name, prob in top:
            print(f"  {prob:7.4f}  {name}")
    if failed:
        print(f"melfront predict: {failed} of {len(args.audio)} file(s) failed", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


#: ``(name, add_parser, run)`` of this module's commands, in ``melfront --help`` order.
COMMANDS = [("train", _add_train, _run_train), ("evaluate", _add_evaluate, _run_evaluate),
            ("predict", _add_predict, _run_predict)]
