"""Commands of Tax et al. (2017), learning the log-mel transform from raw audio: ``learn-mel``, ``mst-study``.

>>> [name for name, _, _ in COMMANDS]
['learn-mel', 'mst-study']
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["COMMANDS"]


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
    from ..mst import run_learn_mel
    s = run_learn_mel(args.dataset, args.root, args.output, epochs=args.epochs, patience=args.patience,
                      max_clips=args.max_clips, val_fraction=args.val_fraction, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, device=args.device, progress=not args.quiet)
    print(f"validation MSE {s['val_mse']:.4f}, correlation with the target {s['val_corr']:.4f} "
          f"(best epoch {s['best_epoch']} of {s['epochs_run']}, {s['train_seconds']:.0f} s)")
    if s["skipped"]:
        print(f"skipped {len(s['skipped'])} clip(s): " + "; ".join(f"{p}: {c}" for p, c in s["skipped"][:5]))
    print(f"wrote {s['checkpoint']}, " + ", ".join(s["figures"]))
    from ..fileio import write_json
    write_json(Path(args.output).with_suffix(".json"), s)


def _add_mst_study(sub):
    p = sub.add_parser("mst-study", help="PiczakCNN on log-mel vs raw audio, random vs MSTModel-initialised (Tax et al. 2017)",
                       description="Train PiczakCNN (a) on log-mel, (b) on raw audio with randomly initialised conv "
                                   "layers, (c) on raw audio through the frozen MSTModel layers, (d) as (c) then "
                                   "fine-tuned, on one random split, with short CPU-sized defaults (a quick look, not "
                                   "the paper's protocol); writes accuracy_vs_epoch.png and results.json to the output "
                                   "folder. Tax et al.'s per-fold protocol, with the MSTModel early-stopped per fold: "
                                   "`melfront compare --preset tax2017 --root ESC-50/` (`--dry-run` first).")
    p.add_argument("--dataset", required=True, help="data set to classify (e.g. esc10, esc50)")
    p.add_argument("--root", default=None, help="data set folder")
    p.add_argument("-o", "--output", default="mst-study", help="output folder (default: mst-study)")
    p.add_argument("--mst", default=None, help="MSTModel checkpoint from `melfront learn-mel` (default: train one "
                                                "on the audio of --mst-dataset minus the test clips)")
    p.add_argument("--mst-dataset", default=None, help="data set whose audio trains the MSTModel (default: --dataset)")
    p.add_argument("--mst-root", default=None, help="its folder (default: --root)")
    p.add_argument("--mst-epochs", type=int, default=20, help="MSTModel epochs at most (default 20: short, "
                                                                              "not converged; see --preset tax2017)")
    p.add_argument("--mst-lr", type=float, default=3e-4, help="MSTModel Adam learning rate (default 3e-4)")
    p.add_argument("--epochs", type=int, default=10, help="epochs before fine-tuning starts (default 10)")
    p.add_argument("--finetune-epochs", type=int, default=5, help="epochs of (d) fine-tuning (default 5)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="test share of the clips (default 0.25)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                   help="sgd: Nesterov momentum 0.9 (Tax et al.'s trainer, default); adam")
    p.add_argument("--lr", type=float, default=5e-3, help="learning rate (default 5e-3)")
    p.add_argument("--finetune-lr-scale", type=float, default=0.1,
                   help="(d) keeps (c)'s optimiser; the MST layers learn at lr times this (default 0.1)")
    p.add_argument("--hidden", type=int, default=5000, help="units of PiczakCNN's dense layers (default 5000)")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_mst_study(args):
    from ..mst import LABELS, run_mst_study
    r = run_mst_study(args.dataset, args.root, args.output, mst=args.mst, mst_dataset=args.mst_dataset,
                      mst_root=args.mst_root, mst_epochs=args.mst_epochs, mst_lr=args.mst_lr,
                      epochs=args.epochs, finetune_epochs=args.finetune_epochs, test_fraction=args.test_fraction,
                      batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      finetune_lr_scale=args.finetune_lr_scale, hidden=args.hidden, max_clips=args.max_clips,
                      seed=args.seed, device=args.device, progress=not args.quiet)
    if r["mst"]:
        print(f"MSTModel: validation MSE {r['mst']['val_mse']:.4f}, correlation {r['mst']['val_corr']:.4f}")
    print(f"{r['n_train_clips']} training / {r['n_test_clips']} test clips; test accuracy (clip majority vote):")
    for key, v in r["variants"].items():
        print(f"  {LABELS[key]:<55} final {100 * v['final_test_accuracy']:5.1f} %  best "
              f"{100 * v['best_test_accuracy']:5.1f} %  {v['seconds']:6.0f} s")
    for w in r["warnings"]:
        print(f"warning: {w}")
    print(f"wrote {r['figure']} and {Path(args.output) / 'results.json'}")


#: ``(name, add_parser, run)`` of this module's commands, in ``melfront --help`` order.
COMMANDS = [("learn-mel", _add_learn_mel, _run_learn_mel), ("mst-study", _add_mst_study, _run_mst_study)]
