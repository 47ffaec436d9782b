"""The presets: published values (written out here, so that a later change cannot drift silently), every
setting's source and status, plan() on tiny fixture data sets (refusals, declared reductions, overrides),
the dry run's grid, and run() storing the preset's meta before training."""
import numpy as np
import pytest
import soundfile

from conftest import write_csv
from melfront.errors import ParameterError, StudyError
from melfront.presets import PRESETS, STATUSES, Plan, Preset, Setting, get_preset, register_preset
from melfront.presets.merlin import MERLIN_FRONTENDS
from melfront.train import epoch_budget
from melfront.study import runs_for_n

# Pons, Serra & Serra 2019, as read in their reference code (src/config_file.py, sl_train.py, sl_evaluate.py,
# shared.py, models_sl.py, models_proto.py, proto.py) or stated by the paper / issue 12.
PONS_COMMON = {
    "mel.sample_rate": 44100, "mel.n_fft": 1024, "mel.hop_length": 1024, "mel.n_mels": 128,
    "train.patch_frames": 128, "train.sampling": "random", "train.eval_hop": 1, "train.aggregation": "mean_prob",
    "train.optimizer": "sgd", "train.lr": 0.1, "train.momentum": 0.0, "train.clip_norm": 5.0,
    "train.weight_decay": 0.001, "train.batch_size": 256, "train.epochs": 199,
    "models": ["sbcnn", "vgg", "timbre", "protonet"],
    "train.sbcnn.model_options.input_bn": True, "train.vgg.model_options.width": 32,
    "train.protonet.model_options.width": 128, "train.protonet.model_options.embedding_dim": 10,
    "train.protonet.support": "fixed", "train.protonet.support_per_class": 5, "train.protonet.query_per_class": 5,
    "train.protonet.eval_hop": 42, "train.protonet.aggregation": "mean_logprob",
    "train.protonet.epochs": None, "train.protonet.weight_decay": 0.0,
    # the training loop's semantics (issue 21): src/sl_train.py, src/proto.py, tf.layers.batch_normalization
    "train.decay_before_clip": True, "train.bn_momentum": 0.01, "train.bn_eps": 0.001, "train.drop_last": False,
    "train.protonet.monitor": "train_clip_accuracy", "train.protonet.restore_best": False,
    "train.protonet.patience": 201, "train.protonet.patience_count": "total",  # not_improve > 200, never reset
    "train.protonet.max_epochs": None, "train.protonet.epoch_updates": "patch_grid",
    "train.protonet.queries": "grid_patches", "train.protonet.grid_hop": 42, "train.protonet.episode_passes": 2,
    "subsets": "independent", "mel.power": 2.0, "mel.pad_mode": "reflect",
    "frontends": ["logeps", "loglearn"], "compare": [["logeps", "loglearn"]],
    "n_per_class": [1, 2, 5, 10, 20, 50, 100], "runs": "pons", "protocol.pad_short": "repeat-pad",
}
PONS_US8K = dict(PONS_COMMON, dataset="urbansound8k", test_folds="all", split="folds")
PONS_TUT = dict(PONS_COMMON, dataset="tut2017", test_folds=["evaluation"], split="folds",
                **{"dataset_options.split": "all"})
MERLIN = {
    "dataset": "esc50", "models": ["resnet"], "runs": 5, "n_per_class": "all", "test_folds": "all",
    "frontends": ["chain(minmax, logfloor(floor=1e-6), minmax)", "chain(minmax, power, minmax)",
                  "chain(minmax, power(per_band=True), minmax)",
                  'chain(minmax, pcen(trainable=True, init="loop"), minmax)',
                  'chain(minmax, pcen(trainable=True, per_band=True, init="loop"), minmax)',
                  'stack(chain(minmax, logfloor(floor=1e-6), minmax), chain(minmax, power(per_band=True), minmax), '
                  'chain(minmax, pcen(trainable=True, per_band=True, init="loop"), minmax))'],
}


@pytest.mark.parametrize("name, table", [("pons2019-us8k", PONS_US8K), ("pons2019-tut", PONS_TUT),
                                         ("merlin", MERLIN)])
def test_published_values(name, table):
    values = get_preset(name).values()
    for key, value in table.items():
        assert key in values, f"{name}: setting {key} missing"
        assert values[key] == value, f"{name}: {key} is {values[key]!r}, published {value!r}"


def test_every_setting_has_a_source_and_a_valid_status():
    assert {"pons2019-us8k", "pons2019-tut", "merlin"} <= set(PRESETS)
    for preset in PRESETS.values():
        assert preset.citation and preset.reproduces and preset.default_dataset
        keys = [s.key for s in preset.settings]
        assert len(keys) == len(set(keys)), f"{preset.name}: a key repeats"
        for s in preset.settings:
            assert isinstance(s, Setting) and s.source.strip() and s.status in STATUSES, (preset.name, s.key)


def test_read_status_cites_a_file_or_section():
    """A `read` value names the file (reference code), the seed text (quoted) or the section it was read in."""
    cites = ("src/", "reference code", "melfront", "seed 00", "Sec.", "section", "MSTmodel/", "EnvClassification/")
    for preset in PRESETS.values():
        for s in preset.settings:
            if s.status == "read":
                assert any(c in s.source for c in cites), (preset.name, s.key)


def test_merlin_exponent_sign_is_explained():
    frontends = get_preset("merlin").setting("frontends")
    assert "sigmoid(a)" in frontends.source and "minus the blog's a" in frontends.source
    assert get_preset("merlin").values()["frontends"] == MERLIN_FRONTENDS


def test_registry_refuses_duplicates_and_names_known_presets():
    with pytest.raises(ParameterError, match="already registered"):
        register_preset(get_preset("merlin"))
    with pytest.raises(ParameterError, match="known: .*pons2019-us8k"):
        get_preset("pons2020")
    with pytest.raises(ParameterError, match="status"):
        Setting("x", 1, "somewhere", status="maybe")
    with pytest.raises(ParameterError, match="source"):
        Setting("x", 1, " ")
    assert Plan("p", "d", None, [], [], [], {}).title == "p"
    assert Plan("p", "d", None, ["fewer folds"], [], [], {}).title == "p (reduced)"
    assert isinstance(get_preset("merlin"), Preset)


def test_show_lists_every_setting_with_status_and_source():
    preset = get_preset("pons2019-us8k")
    text = preset.show()
    for s in preset.settings:
        assert s.key in text
    assert "unfixed" in text and "src/proto.py" in text
    # every deviation from a cited source is said, after the table
    tail = text.split("deviations from the sources (declared):")[1]
    deviating = [s for s in preset.settings if s.deviation]
    assert {"split", "protocol.resampler", "protocol.protonet_input_bn"} <= {s.key for s in deviating}
    for s in deviating:
        assert f"{s.key}: {s.deviation}" in tail
    assert preset.setting("split").as_dict()["deviation"] == preset.setting("split").deviation
    assert "deviation" not in preset.setting("mel.n_fft").as_dict()


def test_every_preset_declares_what_melfront_does_differently():
    """Issue 21's table: each row equal to the reference (a value test above) or declared with its reason."""
    declared = {name: {s.key for s in get_preset(name).settings if s.deviation} for name in PRESETS}
    assert {"protocol.protonet_input_bn", "train.drop_last"} <= declared["pons2019-us8k"]
    assert {"protocol.minmax", "frontends", "mel.power"} & declared["merlin"]
    assert {"protocol.frames"} <= declared["tax2017"]


# ------------------------------------------------------------------------------------------------
# Fixture data sets (tiny WAVs, the public layouts)
# ------------------------------------------------------------------------------------------------
def _wav(path, seconds=0.05, sr=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (0.1 * np.random.default_rng(len(str(path))).standard_normal(int(sr * seconds))).astype(np.float32)
    soundfile.write(str(path), x, sr)


def us8k(tmp_path, folds=range(1, 11), per_fold=2, classes=("dog_bark", "siren")):
    root = tmp_path / "UrbanSound8K"
    rows = []
    for fold in folds:
        for k, name in enumerate(classes):
            for i in range(per_fold):
                fs = 1000 * fold + 10 * k + i
                rows.append([f"{fs}-{k}-0-0.wav", fs, 0, 1, 1, fold, k, name])
    write_csv(root / "metadata" / "UrbanSound8K.csv",
         ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"], rows)
    for r in rows:
        _wav(root / "audio" / f"fold{r[5]}" / r[0])
    return root


def esc50(tmp_path, folds=(1, 2, 3, 4, 5), per_fold=2, classes=("dog", "rain"), strays=()):
    """ESC-50 layout; ``strays``: (fold, class index) of single clips in otherwise empty folds."""
    root = tmp_path / "ESC-50"
    rows = []
    cells = [(f, k, i) for f in folds for k in range(len(classes)) for i in range(per_fold)]
    cells += [(f, k, 9) for f, k in strays]
    for f, k, i in cells:
        src = 100 * f + 10 * k + i
        rows.append([f"{f}-{src}-A-{k}.wav", f, k, classes[k], "False", src, "A"])
    write_csv(root / "meta" / "esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    for r in rows:
        _wav(root / "audio" / r[0])
    return root


def tut(tmp_path, with_evaluation=True, per_fold=2, scenes=("beach", "bus")):
    from melfront.data.tut import DEV_FOLDER, EVAL_FOLDER
    root = tmp_path / "TUT"
    dev = root / DEV_FOLDER
    meta, folds = [], {f: [] for f in range(1, 5)}
    for f in range(1, 5):
        for k, scene in enumerate(scenes):
            for i in range(per_fold):
                name = f"audio/{'ab'[k]}{f:02d}{i}_0_10.wav"
                _wav(dev / name)
                meta.append(f"{name}\t{scene}\t{'ab'[k]}{f:02d}{i}")
                folds[f].append(f"{name}\t{scene}")
    (dev / "meta.txt").write_text("\n".join(meta) + "\n")
    (dev / "evaluation_setup").mkdir()
    for f, lines in folds.items():
        (dev / "evaluation_setup" / f"fold{f}_evaluate.txt").write_text("\n".join(lines) + "\n")
    if with_evaluation:
        ev, lines = root / EVAL_FOLDER, []
        for k, scene in enumerate(scenes):
            for i in range(3):
                name = f"audio/{i}{k}.wav"
                _wav(ev / name)
                lines.append(f"{name}\t{scene}")
        (ev / "meta.txt").write_text("\n".join(lines) + "\n")
    return root


# ------------------------------------------------------------------------------------------------
# plan()
# ------------------------------------------------------------------------------------------------
def test_us8k_full_folds_drops_and_declares_large_n(tmp_path):
    plan = get_preset("pons2019-us8k").plan(root=us8k(tmp_path))
    # 9 training folds x 2 clips per class = 18: n 20, 50 and 100 are dropped, and said so
    assert plan.details["config"].n_per_class == [1, 2, 5, 10]
    assert len(plan.reduced) == 1 and "[20, 50, 100] dropped" in plan.reduced[0] and "18" in plan.reduced[0]
    assert plan.title == "pons2019-us8k (reduced)" and plan.overrides == []
    assert plan.details["config"].split == "folds"
    assert plan.details["config"].mel["hop_length"] == 1024


def test_us8k_dry_run_prints_the_full_grid(tmp_path):
    preset = get_preset("pons2019-us8k")
    plan = preset.plan(root=us8k(tmp_path))
    expected = sum(10 * runs_for_n(n) * 4 * 2 for n in (1, 2, 5, 10))  # folds x runs x models x frontends
    assert len(plan.grid) == expected == 4800
    text = preset.dry_run(plan, time_one=False)
    assert f"total: {expected} trials" in text
    assert f"protonet: {expected // 4}" in text and f"loglearn: {expected // 2}" in text
    per_n = {n: 10 * runs_for_n(n) * 8 for n in (1, 2, 5, 10)}
    assert "trials per n: " + ", ".join(f"{n}: {c}" for n, c in per_n.items()) in text
    assert "reduced: n: [20, 50, 100] dropped" in text
    assert "estimate" not in text.lower()


def test_one_complete_fold_is_a_declared_holdout(tmp_path):
    # an esc50-fold4-like copy: fold 4 complete, a stray clip in fold 2
    root = esc50(tmp_path, folds=(4,), per_fold=6, strays=[(2, 0)])
    plan = get_preset("merlin").plan(root=root)
    config = plan.details["config"]
    assert config.split == "holdout"
    assert any("holdout within it" in r and "grouped by source" in r for r in plan.reduced)
    assert {g["fold"] for g in plan.grid} == {4}
    assert plan.title == "merlin (reduced)"
    # n is resolved to the smallest class's pool, and stated
    assert len(config.n_per_class) == 1 and any("n_per_class = " in n for n in plan.details["notes"])


def test_merlin_full_folds_resolves_n(tmp_path):
    plan = get_preset("merlin").plan(root=esc50(tmp_path, per_fold=3))
    assert plan.details["config"].n_per_class == [12]  # 4 training folds x 3 clips
    assert plan.reduced == [] and plan.title == "merlin"
    assert len(plan.grid) == 5 * 5 * 6  # folds x runs x frontends


def test_merlin_training_budget_follows_the_data_unless_given(tmp_path):
    root = esc50(tmp_path, per_fold=3)
    resnet = get_preset("merlin").plan(root=root).details["config"].train["models"]["resnet"]
    n_train = 12 * 2  # n = 12 clips x the fixture's classes
    assert (resnet["batch_size"], resnet["epochs"]) == epoch_budget(n_train) == (16, 100)
    assert resnet["optimizer"] == "adam" and resnet["lr"] == 0.001
    plan = get_preset("merlin").plan(root=root, overrides=dict(epochs=3))
    config = plan.details["config"]
    assert config.train["epochs"] == 3 and "epochs" not in config.train["models"]["resnet"]
    assert any("train.epochs" in o and "-> 3" in o for o in plan.overrides)


def test_overrides_are_declared(tmp_path):
    plan = get_preset("pons2019-us8k").plan(root=us8k(tmp_path), overrides=dict(runs=2, epochs=3, n_per_class=[1, 2],
                                                                                  models=["sbcnn"]))
    said = "\n".join(plan.overrides)
    assert "runs: " in said and "-> {\"default\": 2}" in said
    assert "train.epochs: 199" in said and "-> 3" in said
    assert "n_per_class: [1, 2, 5, 10, 20, 50, 100] -> [1, 2]" in said
    assert plan.reduced == []
    config = plan.details["config"]
    assert config.train["epochs"] == 3 and config.train["models"]["protonet"]["epochs"] == 3
    assert len(plan.grid) == 10 * 2 * 1 * 2 * 2  # folds x runs x models x frontends x n


def test_n_larger_than_every_pool_is_refused(tmp_path):
    with pytest.raises(StudyError, match="every n of \\[50, 100\\] exceeds.*--n at most 18"):
        get_preset("pons2019-us8k").plan(root=us8k(tmp_path), overrides=dict(n_per_class=[50, 100]))


def test_fewer_than_two_classes_is_refused(tmp_path):
    with pytest.raises(StudyError, match="two classes"):
        get_preset("pons2019-us8k").plan(root=us8k(tmp_path, classes=("dog_bark",)))


def test_tut_trains_on_every_development_clip(tmp_path):
    from melfront.study import load_clips, split_for_trial
    plan = get_preset("pons2019-tut").plan(root=tut(tmp_path))
    config = plan.details["config"]
    assert {g["fold"] for g in plan.grid} == {"evaluation"}
    clips = load_clips(config)
    train, test, note = split_for_trial(config, clips, "evaluation", 8, 0)
    assert len(test) == 6 and all(c.fold == "evaluation" for c in test)
    assert len(train) == 16 and {c.fold for c in train} == {1, 2, 3, 4} and note.startswith("official folds")


def test_tut_without_evaluation_set_is_refused(tmp_path):
    with pytest.raises(StudyError, match="TUT-acoustic-scenes-2017-evaluation"):
        get_preset("pons2019-tut").plan(root=tut(tmp_path, with_evaluation=False))


def test_run_stores_the_preset_meta_before_training(tmp_path, monkeypatch):
    import melfront.study.grid as grid
    from melfront.study import ResultStore
    seen = {}

    def fake_trial(clips, train_clips, test_clips, **kw):
        seen.setdefault("meta", ResultStore(tmp_path / "out" / "study.db").meta("preset"))
        return dict(accuracy=0.5, map=0.5)

    preset = get_preset("pons2019-us8k")
    plan = preset.plan(root=us8k(tmp_path, folds=(1, 2), per_fold=1),
                       overrides=dict(runs=1, n_per_class=[1], models=["timbre"], test_folds=[1]))
    real = grid.run_study
    monkeypatch.setattr("melfront.study.run_study", lambda *a, **k: real(*a, **{**k, "trial_fn": fake_trial}))
    status = preset.run(plan, tmp_path / "out", jobs=1, quiet=True)
    assert status == 0
    meta = seen["meta"]
    assert meta["name"] == "pons2019-us8k" and meta["headline_metric"] == "accuracy"
    assert meta["claims"][0]["pair"] == ["logeps", "loglearn"]
    assert any(s["key"] == "mel.hop_length" and s["value"] == 1024 for s in meta["settings"])
    assert meta["overrides"] and meta["title"] == plan.title
    assert (tmp_path / "out" / "config.json").is_file()


# ------------------------------------------------------------------------------------------------
# Issue 21: the protocol's semantics reach the study; overrides that drop a compared pair
# ------------------------------------------------------------------------------------------------
def test_frontends_override_drops_the_compared_pair_declared(tmp_path):
    plan = get_preset("pons2019-us8k").plan(root=us8k(tmp_path), overrides=dict(frontends=["logeps"], runs=1,
                                                                                  n_per_class=[1]))
    assert plan.details["config"].compare == []
    said = "\n".join(plan.overrides)
    assert "compare: pair logeps vs loglearn dropped ('loglearn' not among --frontends)" in said
    assert {g["frontend"] for g in plan.grid} == {"logeps"}


def test_pons_plan_carries_the_reference_semantics(tmp_path):
    from melfront.study import train_settings
    from melfront.train import resolve_settings
    config = get_preset("pons2019-us8k").plan(root=us8k(tmp_path), overrides=dict(runs=1)).details["config"]
    assert config.subsets == "independent"
    proto = resolve_settings("protonet", train_settings(config, "protonet"))
    assert (proto["monitor"], proto["restore_best"], proto["epoch_updates"], proto["queries"], proto["grid_hop"],
            proto["episode_passes"], proto["max_epochs"], proto["patience"], proto["patience_count"]) == \
        ("train_clip_accuracy", False, "patch_grid", "grid_patches", 42, 2, None, 201, "total")
    sb = resolve_settings("sbcnn", train_settings(config, "sbcnn"))
    assert (sb["bn_momentum"], sb["bn_eps"], sb["decay_before_clip"], sb["restore_best"]) == (0.01, 1e-3, True, True)


def test_old_protonet_semantics_are_one_set_away(tmp_path):
    """The lead's old-vs-new comparison: --set restores melfront's former rules, each override declared."""
    old = dict(monitor="auto", restore_best=True, epoch_updates="episodes", queries="clips", episode_passes=1,
               max_epochs=1000, patience=200, patience_count="consecutive", bn_momentum=0.1, bn_eps=1e-5,
               subsets="nested", runs=1, n_per_class=[1])
    plan = get_preset("pons2019-us8k").plan(root=us8k(tmp_path), overrides=dict(old, models=["protonet"]))
    from melfront.study import train_settings
    from melfront.train import resolve_settings
    s = resolve_settings("protonet", train_settings(plan.details["config"], "protonet"))
    assert (s["monitor"], s["restore_best"], s["epoch_updates"], s["max_epochs"]) == ("auto", True, "episodes", 1000)
    said = "\n".join(plan.overrides)
    assert "train.restore_best: (model default) (protonet: false) -> true" in said
    assert "subsets: independent -> nested" in said


def test_merlin_runs_on_magnitude_with_the_blogs_claims(tmp_path):
    preset = get_preset("merlin")
    plan = preset.plan(root=esc50(tmp_path, folds=(1, 2, 3, 4, 5), per_fold=2), overrides=dict(runs=1))
    assert plan.details["config"].mel["power"] == 1.0
    meta = preset.meta(plan)
    assert meta["claims_note"] == "" and "not available" not in preset.show()
    texts = [c["text"] for c in meta["claims"]]
    assert all(c["metric"] == "map" for c in meta["claims"]) and len(texts) == 4
    assert any("less than one percent MAP" in t and ".010 MAP" in t and ".017" in t for t in texts)
    assert any("strong baseline" in t for t in texts)
    assert all(c.pair[0] == MERLIN_FRONTENDS[0] and c.pair[1] in MERLIN_FRONTENDS for c in preset.claims)
    for key in ("models", "runs"):  # not in the blog: melfront's choices
        assert preset.setting(key).status == "unfixed"
