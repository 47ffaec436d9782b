"""The Tax et al. (2017) protocol's own part of a study report: the data per fold, each fold's MSTModel fit, the
arms' final and best test accuracy over folds, and the curves averaged over folds (the paper's Figure 3).

A protocol study (:mod:`melfront.mst.protocol`; the store's meta ``"protocol"`` is ``"tax2017"``) stores per
fold one MSTModel row (model and frontend ``"mst"``; ``metrics``: validation MSE and correlation, best epoch,
what stopped it, the validation curve in ``history``, the segment counts) and one row per arm (model ``"piczak"``,
frontend ``a``-``d``; ``accuracy`` the final test accuracy, ``best_accuracy``, the per-epoch curve in
``history``). :func:`melfront.report.write_report` renders the arms' rows like any study's (accuracy table,
paired differences over folds, the paper's claims) and adds :func:`protocol_sections` and
:func:`protocol_figures`. Statistics: :mod:`melfront.report.stats`.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..mst.protocol import MST_ROW, average_curves
from ..mst.study import LABELS
from ..plotting.mst import plot_fold_average, plot_mst_curves
from .sections import html_table, md_table
from .stats import mean_std

__all__ = ["is_protocol", "split_rows", "protocol_sections", "protocol_figures"]

_COUNTS = (("n_train_clips", "train clips"), ("n_val_clips", "validation clips"), ("n_test_clips", "test clips"),
           ("n_train_segments", "train segments"), ("n_train_segments_from_copies", "of them from shifted copies"),
           ("n_val_segments", "validation segments"), ("n_test_segments", "test segments"))


def is_protocol(store) -> bool:
    """True for a store written by :func:`melfront.mst.protocol.run_protocol`."""
    return store.meta("protocol") == "tax2017"


def split_rows(rows) -> tuple[list, list]:
    """``(MSTModel rows, arm rows)`` of a protocol study.

    >>> split_rows([{"model": "mst"}, {"model": "piczak"}])
    ([{'model': 'mst'}], [{'model': 'piczak'}])
    """
    return [r for r in rows if r["model"] == MST_ROW], [r for r in rows if r["model"] != MST_ROW]


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _pm(values) -> str:
    """``mean ± std`` in % over folds; one fold: the value alone (no spread to show)."""
    mean, std = mean_std(values)
    return _pct(mean) if len(values) == 1 else f"{_pct(mean)} ± {_pct(std)}"


def _folds(rows) -> list:
    return sorted({str(r["fold"]) for r in rows}, key=lambda f: [int(p) if p.isdigit() else p for p in f.split("-")])


def arm_table(arm_rows) -> tuple[list, list]:
    """``(header, body)``: per arm the final and best test accuracy, mean ± std over folds (%), and the folds.

    >>> rows = [dict(frontend="a", fold=f, accuracy=acc, metrics={"best_accuracy": acc + 0.1})
    ...         for f, acc in (("1-2", 0.5), ("2-3", 0.7))]
    >>> arm_table(rows)[1]
    [['(a) log-mel + PiczakCNN', '60.0 ± 14.1', '70.0 ± 14.1', 2]]
    """
    body = []
    for arm in sorted({r["frontend"] for r in arm_rows}):
        mine = [r for r in arm_rows if r["frontend"] == arm]
        best = [r["metrics"].get("best_accuracy", r["accuracy"]) for r in mine]
        body.append([LABELS.get(arm, arm), _pm([r["accuracy"] for r in mine]), _pm(best), len(mine)])
    return ["arm", "final test accuracy (%)", "best test accuracy over epochs (%)", "folds"], body


def mst_table(mst_rows) -> tuple[list, list]:
    """``(header, body)``: per fold the MSTModel's fit (epochs run, what stopped it, best epoch, validation MSE
    and correlation, the epoch where the correlation levels off).

    >>> m = dict(epochs_run=3, stopped="patience", best_epoch=2, val_mse=0.01, val_corr=0.95, corr_levels_off_epoch=2)
    >>> mst_table([dict(fold="1-2", metrics=m)])[1]
    [['1-2', 3, 'patience', 2, '0.0100', '0.950', 2]]
    """
    by_fold = {str(r["fold"]): r["metrics"] for r in mst_rows}
    body = [[f, m.get("epochs_run"), m.get("stopped"), m.get("best_epoch"), f"{m.get('val_mse', math.nan):.4f}",
             f"{m.get('val_corr', math.nan):.3f}", m.get("corr_levels_off_epoch")]
            for f in _folds(mst_rows) for m in [by_fold[f]]]
    return ["fold", "epochs run", "stopped by", "best epoch", "validation MSE", "validation correlation",
            "correlation levels off at epoch"], body


def protocol_sections(rows) -> list[tuple[str, str, str]]:
    """The protocol's sections ``(heading, markdown, html)``: data per fold, the MSTModel per fold, the arms."""
    mst_rows, arm_rows = split_rows(rows)
    sections = []
    if mst_rows:
        by_fold = {str(r["fold"]): r["metrics"] for r in mst_rows}
        header = ["fold (validation-test)"] + [name for _, name in _COUNTS]
        body = [[f] + [by_fold[f].get(k, "-") for k, _ in _COUNTS] for f in _folds(mst_rows)]
        sections.append(("Data per fold", md_table(header, body), html_table(header, body)))
        header, body = mst_table(mst_rows)
        capped = [b[0] for b in body if b[2] == "max_epochs"]
        note = (f"Fold(s) {', '.join(capped)} hit the epoch cap before early stopping: not shown to have converged; "
                "raise mst_epochs." if capped else "Every fold's MSTModel stopped by early stopping.")
        note = ("Early stopping on the validation MSE, best state restored; the row's accuracy column holds r² "
                "(the squared validation correlation). " + note)
        sections.append(("MSTModel per fold", md_table(header, body) + "\n\n" + note,
                         html_table(header, body) + f"<p class='note'>{note}</p>"))
    if arm_rows:
        header, body = arm_table(arm_rows)
        n = len(_folds(arm_rows))
        note = ("Clip accuracy by majority vote of the segments. " + ("One fold: no spread over folds to show."
                if n == 1 else f"Mean ± sample standard deviation over {n} folds."))
        sections.append(("Test accuracy per arm (final and best epoch)", md_table(header, body) + "\n\n" + note,
                         html_table(header, body) + f"<p class='note'>{note}</p>"))
    return sections


def protocol_figures(store, rows, out: Path, title: str) -> list[tuple[str, str]]:
    """Draw ``accuracy_vs_epoch.png`` (test accuracy per epoch, mean ± std over folds; (d)'s branch epoch marked,
    from the stored ``protocol_settings``) and ``mst_learning_curves.png``; ``(heading, file name)`` of each."""
    settings = store.meta("protocol_settings", default={}) or {}
    branch_epoch = settings.get("epochs") if settings.get("finetune_epochs") else None
    mst_rows, arm_rows = split_rows(rows)
    images = []
    folds = _folds(arm_rows)
    if arm_rows:
        per_fold = [{r["frontend"]: {"label": LABELS.get(r["frontend"], r["frontend"]),
                                     "curve": r["metrics"].get("history") or []}
                     for r in arm_rows if str(r["fold"]) == f and r["metrics"].get("history")} for f in folds]
        average = average_curves([f for f in per_fold if f])
        if average:
            plot_fold_average(average, out / "accuracy_vs_epoch.png", branch_epoch=branch_epoch,
                              title=f"{title}: test accuracy, mean over {len(folds)} fold(s)")
            images.append(("Test accuracy per epoch, mean ± std over folds (Tax et al.'s Figure 3)",
                           "accuracy_vs_epoch.png"))
    if mst_rows:
        plot_mst_curves({str(r["fold"]): {"history": r["metrics"].get("history") or [],
                                          "best_epoch": r["metrics"].get("best_epoch")} for r in mst_rows},
                        out / "mst_learning_curves.png", title="MSTModel validation curves per fold")
        images.append(("MSTModel validation curves per fold", "mst_learning_curves.png"))
    return images
