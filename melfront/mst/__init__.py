"""Learning the log-mel transform from raw audio (Tax et al. 2017) and the (a)-(d) end-to-end study.

Tax, Diez Antich, Purwins & Maaløe (2017), "Utilizing domain knowledge in end-to-end audio
processing", NIPS ML4Audio workshop (arXiv:1712.00254).

- :mod:`melfront.mst.model`: :class:`MSTModel`, :class:`LogMelTarget`, :class:`MSTFrontend`;
- :mod:`melfront.mst.checkpoint`: :func:`save_mst`, :func:`load_mst` and the ``"mst"`` frontend
  (:func:`mst_frontend`, registered when this package is imported);
- :mod:`melfront.mst.segments`: Piczak's 101-frame segments of peak-normalised audio, source-aware splits;
- :mod:`melfront.mst.learn`: ``melfront learn-mel`` (:func:`train_mst`, :func:`run_learn_mel`);
- :mod:`melfront.mst.study`: ``melfront mst-study`` (:func:`run_mst_study`), every arm trained by
  :class:`melfront.train.Trainer`.

The figures are in :mod:`melfront.plotting.mst`.
"""
from .model import DEFAULT_MEL, SEGMENT_FRAMES, LogMelTarget, MSTFrontend, MSTModel, log_mel_db, peak_normalise
from .checkpoint import load_mst, mst_frontend, save_mst
from .segments import SILENCE_DB, Segments, load_clips, load_segments, progress_bar, segment_waveform
from .learn import (MSTResult, evaluate_mst, figure_paths, init_output_layer, learn_mel_from_clips, run_learn_mel,
                    train_mst)
from .study import LABELS, finetune_branch, majority_vote, run_mst_study, study_settings

__all__ = ["DEFAULT_MEL", "SEGMENT_FRAMES", "MSTModel", "LogMelTarget", "MSTFrontend", "log_mel_db",
           "peak_normalise", "save_mst", "load_mst", "mst_frontend", "SILENCE_DB", "Segments", "segment_waveform",
           "load_segments", "load_clips", "progress_bar", "MSTResult", "train_mst", "evaluate_mst",
           "init_output_layer", "learn_mel_from_clips", "run_learn_mel", "figure_paths", "LABELS", "majority_vote",
           "study_settings", "finetune_branch", "run_mst_study"]
