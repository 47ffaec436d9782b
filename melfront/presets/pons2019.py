"""Pons, Serrà & Serra (2019), "Training neural audio classifiers with few data" (ICASSP): the presets
``pons2019-us8k`` (UrbanSound8K, official 10 folds) and ``pons2019-tut`` (ASC-TUT 2017: development set ->
evaluation set).

Every value below was read in their reference code (github.com/jordipons/neural-classifiers-with-few-audio @
06be344, ``src/``; status ``"read"``, the file and lines named) or in the paper's blog post (seed 000, quoted),
or is melfront's choice where the sources leave it open (``"unfixed"``, with the reason). The training loop's
semantics are the reference's: the supervised models' weight decay inside the clipped gradient and
TensorFlow's batch-norm statistics; the prototypical network's patch-grid epochs and queries, two embedding
passes, the training clips' inference-mode accuracy as the early-stopping monitor with a never-reset counter,
no epoch cap, and the LAST weights tested. Where melfront does otherwise the setting says so (``deviation``).

>>> from melfront.presets import get_preset
>>> v = get_preset("pons2019-us8k").values()
>>> v["mel.sample_rate"], v["mel.hop_length"], v["train.eval_hop"], v["train.protonet.eval_hop"]
(44100, 1024, 1, 42)
>>> v["train.protonet.monitor"], v["train.protonet.restore_best"], v["train.bn_momentum"], v["subsets"]
('train_clip_accuracy', False, 0.01, 'independent')
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
_REQ = "reference code requirements.txt"

#: The settings both Pons presets share (mel, patches, evaluation, models, training).
PONS_SETTINGS = (
    # mel (librosa.feature.melspectrogram after librosa.load at resample_sr)
    Setting("mel.sample_rate", 44100, f"{_CFG} config_preprocess 'resample_sr': 44100 (us8k_spec and asc_spec)"),
    Setting("mel.n_fft", 1024, f"{_CFG} config_preprocess 'n_fft': 1024"),
    Setting("mel.hop_length", 1024, f"{_CFG} config_preprocess 'hop': 1024 (= n_fft: no overlap)"),
    Setting("mel.n_mels", 128, f"{_CFG} config_preprocess 'n_mels': 128"),
    Setting("mel.power", 2.0, f"{_PRE} lines 34-37 call librosa.feature.melspectrogram(y, sr, hop_length, n_fft, "
                              f"n_mels) with the defaults of {_REQ}'s librosa==0.6.2: power 2, Slaney mel scale and "
                              f"area norm, fmin 0, fmax sr/2"),
    Setting("mel.pad_mode", "reflect", f"{_PRE}: librosa 0.6.2 (pinned in {_REQ}) centres its STFT frames with "
                                       f"pad_mode='reflect'"),
    Setting("protocol.resampler", "soxr", f"{_PRE} line 22: librosa.load(audio_file, sr=44100), whose default in the "
                                          f"pinned librosa==0.6.2 / resampy==0.2.1 ({_REQ}) is res_type='kaiser_best'",
            deviation="melfront resamples with soxr (its one resampler, melfront.audio.resample), not resampy's "
                      "kaiser_best: the two anti-aliasing filters differ near the new Nyquist frequency (not "
                      "measured here on these data); no resampy dependency is taken for it"),
    # patches, padding, evaluation
    Setting("train.patch_frames", 128, f"{_CFG} config_sl / config_proto 'n_frames': 128 (2.97 s at 44.1 kHz, "
                                       f"hop 1024)"),
    Setting("protocol.pad_short", "repeat-pad", f"{_CFG} 'pad_short': 'repeat-pad'; {_SLT} pre_processing repeats "
                                                f"a short clip to 128 frames (melfront's patches do the same)"),
    Setting("train.sampling", "random", f"{_CFG} config_sl 'train_sampling': 'random', 'param_train_sampling': 1 "
                                        f"(one random patch per clip per epoch, {_SLT} data_gen)"),
    Setting("train.drop_last", False, f"{_SLT} line 198: pescador.buffer_stream(..., partial=True): a last partial "
                                      f"batch is trained on",
            deviation="melfront drops a last batch of exactly one patch (batch norm in training mode needs two); with "
                      "10 or 15 classes and the paper's n, no epoch of 256-patch batches ends in a batch of one, so "
                      "the rule never fires here"),
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
    Setting("train.weight_decay", 0.001, f"{_CFG} config_sl 'weight_decay': 0.001; {_SLT} lines 30-33 add 0.001 * "
                                         f"tf.nn.l2_loss of every kernel to the cost (l2_loss = sum(w^2)/2, so the "
                                         f"gradient gets 0.001 * w: torch's weight decay 0.001)"),
    Setting("train.decay_before_clip", True, f"{_SLT} lines 30-33 and 165-166: the L2 term is part of the cost, so "
                                             f"clip_by_global_norm(gradients, 5.0) clips the gradient with the "
                                             f"decay in it"),
    Setting("train.decay_layers", "all", f"{_SLT}: every trainable variable with 'kernel' in its name"),
    Setting("train.bn_momentum", 0.01, f"{_MSL} / {_MPR}: tf.layers.batch_normalization with its default "
                                       f"momentum 0.99 (moving = 0.99 moving + 0.01 batch) = torch momentum 0.01"),
    Setting("train.bn_eps", 0.001, f"{_MSL} / {_MPR}: tf.layers.batch_normalization's default epsilon 1e-3"),
    Setting("train.batch_size", 256, f"{_CFG} config_sl 'batch_size': 256"),
    Setting("train.epochs", 199, f"{_CFG} config_sl 'epochs': 200, but {_SLT} skips training in epoch 0 "
                                 f"('do not train first epoch'): 199 epochs of updates, then the last model "
                                 f"is saved (no early stopping, no validation)"),
    Setting("models", ["sbcnn", "vgg", "timbre", "protonet"], "seed 000 (the paper's blog post) names SB-CNN, VGG, "
            f"TIMBRE and prototypical networks; {_MSL} model numbers 0/1/11 (SB-CNN), 3/13 (VGG-32), 2/12 (TIMBRE), "
            f"{_MPR} 2/12 (protonet)"),
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
    Setting("protocol.timbre_input_bn", "no scale or shift", f"{_MSL} line 142: timbre's input "
                                                              f"tf.layers.batch_normalization with its defaults, a "
                                                              f"learned scale and shift",
            deviation="melfront's Timbre normalises its input without affine parameters (melfront.models.Timbre: "
                      "a scale and shift before the linear convolution are absorbed into its weights and bias): the "
                      "same functions, but SGD with weight decay takes another path through them"),
    # prototypical networks (proto.py, config_proto)
    Setting("train.protonet.model_options.width", 128, f"{_MPR} vgg_bn NUMBER_FILTERS = 128, 10-unit embedding"),
    Setting("train.protonet.model_options.embedding_dim", 10, f"{_MPR} select(): vgg_bn(x, ..., 10, ...)"),
    Setting("protocol.protonet_input_bn", "one channel", f"{_MPR} line 23: tf.layers.batch_normalization(x, axis=1) "
                                                         f"on [batch, time, freq, 1] patches: a mean, variance, "
                                                         f"scale and shift per time frame",
            deviation="melfront's VGG embedding normalises its input as one channel (one mean and variance); a "
                      "per-frame batch norm would tie the network to 128-frame patches and learn a gain per "
                      "position in time, which melfront's backbones do not do"),
    Setting("train.protonet.sampling", "episodes", f"{_PRO} lines 282-326: each update trains on a query set "
                                                   f"against the support set"),
    Setting("train.protonet.queries", "grid_patches", f"{_PRO} lines 290 and 303: idx = "
                                                      f"np.random.permutation(patches of the class), "
                                                      f"idx[:max_patches_per_class]: distinct patches of the class's "
                                                      f"patch grid (2 at n = 1 on a 4 s clip)"),
    Setting("train.protonet.grid_hop", 42, f"{_CFG} config_proto 'train_sampling': 'overlap_sampling', "
                                           f"'param_train_sampling': 42; {_PRO} fetch_data cuts every training "
                                           f"audio into 128-frame patches 42 frames apart"),
    Setting("train.protonet.epoch_updates", "patch_grid", f"{_PRO} line 339: an epoch ends when update % "
                                                          f"(total_number_of_patches // query_set.shape[0]) == 0"),
    Setting("train.protonet.episode_passes", 2, f"{_PRO} lines 189 and 195: models.select embeds the support set "
                                                f"and the queries in two calls (batch norm sees each apart)"),
    Setting("train.protonet.query_per_class", 5, f"{_CFG} config_proto 'max_patches_per_class': 5"),
    Setting("train.protonet.support", "fixed", f"{_PRO} lines 280, 294-314: define_support is True only on the "
                                               f"first update: one support set for the whole run; line 291: one "
                                               f"random patch of each support clip's 42-frame grid (melfront: the "
                                               f"same under queries='grid_patches')"),
    Setting("train.protonet.support_per_class", 5, f"{_CFG} config_proto 'patches_per_prototype': 5; {_PRO} line "
                                                   f"298: one random patch from each of up to 5 audios per class"),
    Setting("train.protonet.eval_hop", 42, f"{_PRO} eval() line 23: pack [config, 'overlap_sampling', 42] (42 "
                                           f"frames, about a second)"),
    Setting("train.protonet.aggregation", "mean_logprob", f"{_PRO} eval() aggregates log_p_y = "
                                                          f"log_softmax(-distances) by the mean per clip "
                                                          f"({_SHR} accuracy_with_aggergated_predictions)"),
    Setting("train.protonet.weight_decay", 0.0, f"{_PRO}: the loss is the cross-entropy only (no L2 term)"),
    Setting("train.protonet.monitor", "train_clip_accuracy", f"{_PRO} lines 339-351: after every epoch eval() "
                                                             f"scores every training clip in inference mode "
                                                             f"(is_train False) with the fixed support at hop 42"),
    Setting("train.protonet.restore_best", False, f"{_PRO} lines 359-367: the train and test sets are evaluated "
                                                  f"with the network as it is when training stops (the last "
                                                  f"weights; nothing is saved or restored)"),
    Setting("train.protonet.patience_count", "total", f"{_PRO} lines 347-350: not_improve += 1 after every epoch "
                                                      f"whose accuracy is <= the best so far; it is never reset"),
    Setting("train.protonet.patience", 201, f"{_CFG} config_proto 'max_accuracy': 200; {_PRO} line 350 stops when "
                                            f"not_improve > 200, i.e. at the 201st epoch without gain (melfront "
                                            f"stops when its count reaches patience)"),
    Setting("train.protonet.epochs", None, f"{_CFG} config_proto 'max_epochs': np.inf: early stopping only"),
    Setting("train.protonet.max_epochs", None, f"{_CFG} config_proto 'max_epochs': np.inf (line 153). Safety note: "
                                               f"no cap, so a run ends only after 201 epochs without gain of the "
                                               f"training clips' accuracy; --set max_epochs=N bounds it (declared "
                                               f"as an override)"),
    Setting("train.protonet.batch_size", None, f"{_PRO}: an episode (support + queries) is the batch"),
    # study grid
    Setting("frontends", ["logeps", "loglearn"], f"{_SLT} pre_processing 'logEPS': log10(S + np.finfo(float).eps); "
                                                 f"{_MSL} log_learn: log(exp(7) S + log(1 + e^1)) start, trained"),
    Setting("compare", [["logeps", "loglearn"]], "seed 000: 'Tables 1 and 3 compare the results obtained by several "
                                                 "models when varying the mel spectrogram compression: log-learn vs. "
                                                 "log-EPS'"),
    Setting("n_per_class", [1, 2, 5, 10, 20, 50, 100], "seed 000: 'n randomly selected training audios per class, "
                                                       "n in {1, 2, 5, 10, 20, 50, 100}'"),
    Setting("runs", "pons", "seed 000: 'm = 20 when n in {1, 2}, m = 10 when n in {5,10}, and m = 5 when n in "
                            "{20, 50, 100}' (melfront.study.runs_for_n); config_file.py only has RUNS per invocation"),
    Setting("subsets", "independent", f"{_SHR} line 169: random.sample(label2ids_train[c], n_shot) for every run "
                                      f"and n: subsets drawn independently, not nested across n"),
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
                Setting("test_folds", "all", f"{_CFG} FOLD 0-9 with reference code data/index/us8k/"
                                             f"gt_us8k_fold{{k}}_test.tsv: one official fold each (seed 000: "
                                             f"'10 folds ... report average accuracy scores across runs and "
                                             f"folds')"),
                Setting("split", "folds", "reference code aux/us8k_index_files/us8k_pre.py: split k tests on "
                                          "official fold k+1, holds fold k+2 out as validation and trains on the "
                                          "other 8",
                        deviation="melfront's training pool for a test fold is the 9 other folds; the reference "
                                  "draws its n clips per class from 8 (the validation fold, which src/sl_train.py "
                                  "and src/proto.py never read, is left out): the same n, drawn from a pool about "
                                  "12 % larger"),
                ) + PONS_SETTINGS
    claims = (Claim(("logeps", "loglearn"), "seed 000: 'Tables 1 and 2 reveal that log-learn and log-EPS results "
                                            "are almost identical for US8K. Although it seems that log-learn can "
                                            "help improving the results for SB-CNN and TIMBRE architectures, for "
                                            "prototypical networks and VGG one can achieve worse results.' (almost "
                                            "equivalent overall; + for SB-CNN and TIMBRE, - possible for "
                                            "protonet and VGG)"),)


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
                Setting("test_folds", ["evaluation"], "reference code data/index/asc/gt_asc_fold0_train.tsv (4,680 "
                                                      "development segments) / _test.tsv (1,620 evaluation "
                                                      "segments), made by aux/ASC_index_files/ASC_pre.py; seed "
                                                      "000: '4,680 audio segments for training and 1,620 for "
                                                      "evaluation'"),
                Setting("split", "folds", "reference code aux/ASC_index_files/ASC_pre.py: train on the development "
                                          "set, test on the evaluation set; under melfront's 'folds' rule the pool "
                                          "of the 'evaluation' test fold is every development clip"),
                ) + PONS_SETTINGS
    claims = (Claim(("logeps", "loglearn"), "seed 000: 'for ASC-TUT dataset, log-learn results are much worse than "
                                            "log-EPS ones. Tables 3 and 4 show that log-learn only improves the "
                                            "results of SB-CNN models when trained with little data (1<=n<=10), but "
                                            "for the rest of the models the performance decreases substantially.'"),)


register_preset(PonsUS8K())
register_preset(PonsTUT())
