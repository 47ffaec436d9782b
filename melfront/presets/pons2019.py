"""Pons, Serrà & Serra (2019), "Training neural audio classifiers with few data" (ICASSP): the presets
``pons2019-us8k`` (UrbanSound8K, official 10 folds) and ``pons2019-tut`` (ASC-TUT 2017: development set ->
evaluation set).

Every value below was read in their reference code (github.com/jordipons/neural-classifiers-with-few-audio,
``src/``; status ``"read"``, the file named), is stated by the paper or issue text only (``"recalled"``), or is
melfront's choice where the sources leave it open (``"unfixed"``, with the reason).

>>> from melfront.presets import get_preset
>>> v = get_preset("pons2019-us8k").values()
>>> v["mel.sample_rate"], v["mel.hop_length"], v["train.eval_hop"], v["train.protonet.eval_hop"]
(44100, 1024, 1, 42)
>>> get_preset("pons2019-tut").values()["test_folds"]
['evaluation']
"""
from __future__ import annotations

from .compare import ComparePreset
from .registry import Claim, Setting, register_preset

__all__ = ["PONS_CITATION", "PONS_SETTINGS", "PonsUS8K", "PonsTUT"]

PONS_CITATION = ("Pons, Serra & Serra 2019, Training neural audio classifiers with few data, ICASSP; "
                 "reference code github.com/jordipons/neural-classifiers-with-few-audio")

_CFG = "reference code src/config_file.py"
_PRE = "reference code src/preprocess.py"
_SLT = "reference code src/sl_train.py"
_SLE = "reference code src/sl_evaluate.py"
_SHR = "reference code src/shared.py"
_MSL = "reference code src/models_sl.py"
_MPR = "reference code src/models_proto.py"
_PRO = "reference code src/proto.py"

#: The settings both Pons presets share (mel, patches, evaluation, models, training).
PONS_SETTINGS = (
    # mel (librosa.feature.melspectrogram after librosa.load at resample_sr)
    Setting("mel.sample_rate", 44100, f"{_CFG} config_preprocess 'resample_sr': 44100 (us8k_spec and asc_spec)"),
    Setting("mel.n_fft", 1024, f"{_CFG} config_preprocess 'n_fft': 1024"),
    Setting("mel.hop_length", 1024, f"{_CFG} config_preprocess 'hop': 1024 (= n_fft: no overlap)"),
    Setting("mel.n_mels", 128, f"{_CFG} config_preprocess 'n_mels': 128"),
    Setting("mel.power", 2.0, f"{_PRE} calls librosa.feature.melspectrogram with its defaults (power 2, Slaney "
                              f"mel scale and norm, fmin 0, fmax sr/2); the defaults are librosa's, not in the repo",
            "recalled"),
    Setting("mel.pad_mode", "reflect", f"{_PRE}: librosa's default centring; librosa before 0.10 (the code's era; "
                                       f"the repo pins no version) padded with 'reflect'", "recalled"),
    Setting("protocol.resampler", "soxr", "melfront resamples with soxr; the reference used librosa.load's default "
                                     "resampler of its version (not pinned): only the band edges may differ",
            "unfixed"),
    # patches, padding, evaluation
    Setting("train.patch_frames", 128, f"{_CFG} config_sl / config_proto 'n_frames': 128 (2.97 s at 44.1 kHz, "
                                       f"hop 1024)"),
    Setting("protocol.pad_short", "repeat-pad", f"{_CFG} 'pad_short': 'repeat-pad'; {_SLT} pre_processing repeats "
                                                f"a short clip to 128 frames (melfront's patches do the same)"),
    Setting("train.sampling", "random", f"{_CFG} config_sl 'train_sampling': 'random', 'param_train_sampling': 1 "
                                        f"(one random patch per clip per epoch, {_SLT} data_gen)"),
    Setting("train.eval_hop", 1, f"{_SLE} evaluates with pack [config, 'overlap_sampling', 1]: every 128-frame "
                                 f"patch at hop 1 frame"),
    Setting("train.aggregation", "mean_prob", f"{_SHR} accuracy_with_aggergated_predictions: mean of the patches' "
                                              f"softmax per clip, then argmax"),
    # supervised models: SB-CNN, VGG-32, TIMBRE (sl_train.py, SGD_clip)
    Setting("train.optimizer", "sgd", f"{_CFG} 'optimizer': 'SGD_clip'; {_SLT}: GradientDescentOptimizer, "
                                      f"no momentum"),
    Setting("train.lr", 0.1, f"{_CFG} config_sl and config_proto 'learning_rate': 0.1"),
    Setting("train.momentum", 0.0, f"{_SLT} / {_PRO}: tf.train.GradientDescentOptimizer (plain SGD)"),
    Setting("train.clip_norm", 5.0, f"{_SLT} / {_PRO}: tf.clip_by_global_norm(gradients, 5.0)"),
    Setting("train.weight_decay", 0.001, f"{_CFG} config_sl 'weight_decay': 0.001; {_SLT} adds 0.001 * "
                                         f"tf.nn.l2_loss of every kernel (= SGD weight decay 0.001)"),
    Setting("train.decay_layers", "all", f"{_SLT}: every trainable variable with 'kernel' in its name"),
    Setting("train.batch_size", 256, f"{_CFG} config_sl 'batch_size': 256"),
    Setting("train.epochs", 199, f"{_CFG} config_sl 'epochs': 200, but {_SLT} skips training in epoch 0 "
                                 f"('do not train first epoch'): 199 epochs of updates, then the last model "
                                 f"is saved (no early stopping, no validation)"),
    Setting("models", ["sbcnn", "vgg", "timbre", "protonet"], "the paper's models (issue 12); "
            f"{_MSL} model numbers 0/1/11 (SB-CNN), 3/13 (VGG-32), 2/12 (TIMBRE), {_MPR} 2/12 (protonet)"),
    Setting("train.sbcnn.model_options.input_bn", True,
            f"{_MSL}: model 11 (log-learn SB-CNN) is sb_cnn_bn(log_learn(x)), batch norm on the input. For log-EPS "
            f"the code offers model 0 (sb_cnn, no input BN) and model 1 (sb_cnn_bn); config_file.py does not say "
            f"which the paper used. melfront uses input BN for both frontends, so that the pair differs only in "
            f"the compression", "unfixed"),
    Setting("train.vgg.model_options.width", 32, f"{_MSL} vgg(..., num_filters=32) in models 3 and 13 "
                                                 f"(melfront's VGG option 'width')"),
    Setting("protocol.timbre_filters", "n_classes",
            f"{_MSL}: timbre(..., num_filters=config['num_classes_dataset']), 7 x 108 filters, global max pool "
            f"(melfront's Timbre sizes its filters by n_classes already)", "read"),
    # prototypical networks (proto.py, config_proto)
    Setting("train.protonet.model_options.width", 128, f"{_MPR} vgg_bn NUMBER_FILTERS = 128, 10-unit embedding"),
    Setting("train.protonet.model_options.embedding_dim", 10, f"{_MPR} select(): vgg_bn(x, ..., 10, ...)"),
    Setting("train.protonet.sampling", "episodes", f"{_PRO}: each update draws max_patches_per_class query patches "
                                                   f"per class (the reference takes the patches from a hop-42 grid "
                                                   f"over the clip, melfront crops at any frame)"),
    Setting("train.protonet.query_per_class", 5, f"{_CFG} config_proto 'max_patches_per_class': 5"),
    Setting("train.protonet.support", "fixed", f"{_PRO}: define_support is True only on the first update: one "
                                               f"support set for the whole run"),
    Setting("train.protonet.support_per_class", 5, f"{_CFG} config_proto 'patches_per_prototype': 5; {_PRO}: one "
                                                   f"random patch from each of up to 5 audios per class"),
    Setting("train.protonet.eval_hop", 42, f"{_PRO} eval(): pack [config, 'overlap_sampling', 42] (42 frames, "
                                           f"about a second)"),
    Setting("train.protonet.aggregation", "mean_logprob", f"{_PRO} eval() aggregates log_p_y = "
                                                          f"log_softmax(-distances) by the mean per clip "
                                                          f"({_SHR} accuracy_with_aggergated_predictions)"),
    Setting("train.protonet.weight_decay", 0.0, f"{_PRO}: the loss is the cross-entropy only (no L2 term)"),
    Setting("train.protonet.epochs", None, f"{_CFG} config_proto 'max_epochs': np.inf"),
    Setting("train.protonet.patience", 200, f"{_CFG} config_proto 'max_accuracy': 200; {_PRO} stops when the "
                                            f"training-set accuracy has not improved in more than 200 epochs (the "
                                            f"reference's counter is never reset; melfront counts consecutive "
                                            f"epochs)"),
    Setting("train.protonet.batch_size", None, f"{_PRO}: an episode (support + queries) is the batch"),
    # study grid
    Setting("frontends", ["logeps", "loglearn"], f"{_SLT} pre_processing 'logEPS': log10(S + np.finfo(float).eps); "
                                                 f"{_MSL} log_learn: log(exp(7) S + log(1 + e^1)) start, trained"),
    Setting("compare", [["logeps", "loglearn"]], "the paper's log-learn vs log-EPS comparison (issue 12)",
            "recalled"),
    Setting("n_per_class", [1, 2, 5, 10, 20, 50, 100], "the paper's n, training audios per class (issue 12)",
            "recalled"),
    Setting("runs", "pons", "the paper (issue 12): m = 20 runs for n <= 2, 10 for n <= 10, 5 above "
                            "(melfront.study.runs_for_n); config_file.py only has RUNS per invocation", "recalled"),
    Setting("seed", 0, "the reference draws subsets with Python's random, unseeded; melfront derives every "
                       "draw from (seed, n, run, fold)", "unfixed"),
)


class PonsUS8K(ComparePreset):
    """``pons2019-us8k``: UrbanSound8K, the official 10 folds, every model, log-EPS vs log-learn."""

    name = "pons2019-us8k"
    citation = PONS_CITATION
    reproduces = ("log-EPS vs log-learn with SB-CNN, VGG-32, TIMBRE and a prototypical net (VGG-128) on "
                  "UrbanSound8K, n in {1..100} clips per class, official 10-fold cross-validation")
    default_dataset = "urbansound8k"
    settings = (Setting("dataset", "urbansound8k", _CFG + " DATASET 'us8k' (with the us8k_spec mel settings)"),
                Setting("test_folds", "all", f"{_CFG} FOLD and data/index/us8k/gt_us8k_fold*_train.tsv: the "
                                             f"official folds of UrbanSound8K", "recalled"),
                Setting("split", "folds", "the official folds (Salamon et al. 2014 ask users to keep them)",
                        "recalled"),
                ) + PONS_SETTINGS
    claims = (Claim(("logeps", "loglearn"), "log-learn is about equal to log-EPS on UrbanSound8K for every model "
                                            "and n (a negative result; the paper's US8K results, as issue 12 "
                                            "states them)"),)


class PonsTUT(ComparePreset):
    """``pons2019-tut``: ASC-TUT 2017, trained on the development set, tested on the evaluation set."""

    name = "pons2019-tut"
    citation = PONS_CITATION
    reproduces = ("log-EPS vs log-learn with SB-CNN, VGG-32, TIMBRE and a prototypical net (VGG-128) on ASC-TUT "
                  "2017: train on the 4,680 development clips, test on the 1,620 evaluation clips")
    default_dataset = "tut2017"
    needs_folds = ("evaluation",)
    missing_fix = ("fetch it with `melfront download tut2017 --root DIR` (the TUT-acoustic-scenes-2017-evaluation "
                   "folder); without it only a plain `melfront compare --dataset tut2017` on the development folds is "
                   "possible, which is not this protocol")
    settings = (Setting("dataset", "tut2017", _CFG + " DATASET 'asc', FOLD 0 ('For ASC-TUT, "
                                                                         "the only fold is fold0')"),
                Setting("dataset_options.split", "all", "melfront's tut2017 loader: 'all' reads the development "
                                                        "(folds 1-4) and evaluation (fold 'evaluation') sets",
                        "unfixed"),
                Setting("test_folds", ["evaluation"], "reference code data/index/asc/gt_asc_fold0_train.tsv / "
                                                      "_test.tsv: train on development, test on evaluation "
                                                      "(4,680 / 1,620 clips per the issue text)", "recalled"),
                Setting("split", "folds", "issue 12: the published development/evaluation split; under melfront's "
                                          "'folds' rule the pool of the 'evaluation' test fold is every development "
                                          "clip", "recalled"),
                ) + PONS_SETTINGS
    claims = (Claim(("logeps", "loglearn"), "log-learn is clearly worse than log-EPS on ASC-TUT (a negative result; "
                                            "the paper's ASC-TUT results, as issue 12 states them)"),)


register_preset(PonsUS8K())
register_preset(PonsTUT())
