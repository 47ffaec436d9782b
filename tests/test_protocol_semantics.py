"""The training loop's protocol semantics as settings (issue 21): what the reference codes do, selectable.

Monitor and restore (Pons et al.'s protonet tests its LAST weights), the patch-grid epoch
(``total_patches // query_size`` updates), distinct grid queries, two embedding passes, TensorFlow's batch-norm
statistics, weight decay inside the clipped gradient, dropped partial batches, a never-reset patience counter.
Tiny: 3 classes x 4 random 32-band "spectrograms", 32-frame patches, 4-filter networks.
"""
import copy

import pytest
from conftest import banded_features
import torch

import melfront.train.episodes as episodes_module
import melfront.train.trainer as trainer_module
from melfront.errors import ParameterError
from melfront.train import Trainer, build_classifier, resolve_settings

MEL = dict(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32)
N_CLASSES, PER_CLASS = 3, 4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return banded_features(N_CLASSES, PER_CLASS)


def _proto(**kw):
    train = dict(patch_frames=32, n_mels=32, epochs=2, patience=None, lr=0.01, episodes_per_epoch=2,
                 support_per_class=2, query_per_class=2, support="fixed", model_options={"width": 4})
    train.update(kw)
    torch.manual_seed(0)
    clf, _ = build_classifier("db", "protonet", N_CLASSES, MEL, 32, {"width": 4})
    return Trainer(clf, resolve_settings("protonet", train), seed=0, device="cpu", progress=False)


def _vgg(**kw):
    train = dict(patch_frames=32, n_mels=32, epochs=1, lr=0.1, batch_size=5, model_options={"width": 4})
    train.update(kw)
    torch.manual_seed(0)
    clf, _ = build_classifier("db", "vgg", N_CLASSES, MEL, 32, {"width": 4})
    return Trainer(clf, resolve_settings("vgg", train), seed=0, device="cpu", progress=False)


def _states(trainer):
    """Record the weights after every epoch (through on_epoch)."""
    seen = {}

    def on_epoch(rec):
        seen[rec["epoch"]] = copy.deepcopy(trainer.model.state_dict())
    return seen, on_epoch


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a if not k.endswith("prototypes"))


@pytest.mark.parametrize("restore", [False, True])
def test_protonet_tests_the_last_weights_when_restore_is_off(data, restore):
    t = _proto(epochs=None, patience=2, max_epochs=5, monitor="train_clip_accuracy", restore_best=restore)
    seen, on_epoch = _states(t)
    t.fit(*data, on_epoch=on_epoch)
    last = max(seen)
    assert all("train_clip_accuracy" in h for h in t.history)
    final = t.model.state_dict()
    if restore:
        assert _same(final, seen[t.best["epoch"]])
    else:
        assert _same(final, seen[last])
        # the monitor is the inference-mode clip accuracy of the training clips, not the episodes' accuracy
        assert t.best["score"] == max(h["train_clip_accuracy"] for h in t.history)


def test_last_weights_differ_from_the_best_when_the_best_came_earlier(data):
    t = _proto(epochs=None, patience=2, max_epochs=6, monitor="train_clip_accuracy", restore_best=False)
    seen, on_epoch = _states(t)
    t.fit(*data, on_epoch=on_epoch)
    if t.best["epoch"] != max(seen):  # then the two rules test different networks
        assert not _same(t.model.state_dict(), seen[t.best["epoch"]])


def _grid_count(feats, patch, hop):
    return sum(len(range(0, f.shape[-1] - patch + 1, hop)) for f in feats)


def test_an_epoch_has_total_patches_over_query_size_updates(data, monkeypatch):
    calls = []
    original = episodes_module.grid_queries

    def spy(*args, **kwargs):
        x, y = original(*args, **kwargs)
        calls.append(y.clone())
        return x, y

    monkeypatch.setattr(episodes_module, "grid_queries", spy)
    t = _proto(epochs=1, epoch_updates="patch_grid", queries="grid_patches", grid_hop=5)
    t.fit(*data)
    total = _grid_count(data[0], 32, 5)
    assert len(calls) == total // (N_CLASSES * 2) != 2  # not episodes_per_epoch
    assert [int(v) for v in calls[0]] == [0, 0, 1, 1, 2, 2]


def test_grid_queries_are_distinct_patches(data, monkeypatch):
    seen = []
    original = episodes_module.grid_queries

    def spy(*args, **kwargs):
        x, y = original(*args, **kwargs)
        seen.append(x)
        return x, y

    monkeypatch.setattr(episodes_module, "grid_queries", spy)
    _proto(epochs=1, queries="grid_patches", query_per_class=4, grid_hop=10).fit(*data)
    for x in seen:
        flat = x.flatten(1)
        assert len({tuple(r.tolist()) for r in flat}) == len(flat)


def test_two_passes_embed_support_and_queries_apart(data, monkeypatch):
    for passes, expected in ((1, [6 + 6]), (2, [6, 6])):
        t = _proto(epochs=1, episodes_per_epoch=1, episode_passes=passes)
        sizes = []
        original = t.model.backbone.embed

        def embed(z, original=original):
            if t.model.training:
                sizes.append(z.shape[0])
            return original(z)

        monkeypatch.setattr(t.model.backbone, "embed", embed)
        t.fit(*data)
        assert sizes == expected


def test_batch_norm_takes_tensorflow_statistics(data):
    t = _vgg(bn_momentum=0.01, bn_eps=1e-3)
    bns = [m for m in t.model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(m.momentum == 0.01 and m.eps == 1e-3 for m in bns)
    # behaviour: one training batch moves the running mean 1 % of the way (TF's decay 0.99), not torch's 10 %
    bn = bns[0]
    bn.reset_running_stats()
    x = torch.randn(8, bn.num_features, 4, 4) + 3.0
    bn.train()
    bn(x)
    assert torch.allclose(bn.running_mean, 0.01 * x.mean(dim=(0, 2, 3)), atol=1e-6)
    default = _vgg()
    assert all(m.momentum == 0.1 and m.eps == 1e-5 for m in default.model.backbone.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


@pytest.mark.parametrize("before", [True, False])
def test_weight_decay_inside_the_clipped_gradient(data, before):
    lr, clip = 0.1, 1e-3
    t = _vgg(weight_decay=10.0, clip_norm=clip, lr=lr, decay_before_clip=before)
    t.model.train()
    params = [p for p in t.model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    x = torch.stack([f[:, :32] for f in data[0][:6]])
    loss = torch.nn.functional.cross_entropy(t.model(x), torch.tensor(data[1][:6]))
    t._step(loss, 1, 1)
    step = torch.sqrt(sum(((a - p.detach()) ** 2).sum() for a, p in zip(start, params))) / lr
    if before:  # the clipped gradient includes the decay: the step's norm is the clip norm
        assert abs(float(step) - clip) < 1e-6
    else:  # torch adds the decay after clipping: the step is far longer
        assert float(step) > 10 * clip


def test_drop_last_drops_every_partial_batch(data, monkeypatch):
    original = trainer_module.batches
    for drop, expected in ((True, [5, 5]), (False, [5, 5, 2])):
        sizes = []

        def spy(ds, order, batch_size, device, sizes=sizes):
            for x, y, c in original(ds, order, batch_size, device):
                sizes.append(len(y))
                yield x, y, c

        monkeypatch.setattr(trainer_module, "batches", spy)
        _vgg(drop_last=drop).fit(*data)  # 12 clips, batches of 5
        assert sizes == expected


def test_patience_counted_in_total_is_never_reset():
    t = _proto(epochs=None, patience=3, patience_count="total", restore_best=False)
    scores = [0.5, 0.4, 0.6, 0.3, 0.7, 0.2]  # gains at 1, 3, 5; non-gains at 2, 4, 6
    stops = [t._early_stopping(dict(epoch=e + 1, accuracy=a), False) for e, a in enumerate(scores)]
    assert stops == [False, False, False, False, False, True]
    c = _proto(epochs=None, patience=3)
    assert not any(c._early_stopping(dict(epoch=e + 1, accuracy=a), False) for e, a in enumerate(scores))


def test_unbounded_epochs_need_patience():
    assert resolve_settings("protonet", dict(epochs=None, patience=5, max_epochs=None))["max_epochs"] is None
    with pytest.raises(ParameterError, match="patience"):
        resolve_settings("protonet", dict(epochs=None, patience=None, max_epochs=None))


@pytest.mark.parametrize("bad", [dict(monitor="val_loss"), dict(bn_momentum=0.0), dict(bn_eps=-1.0),
                                 dict(episode_passes=3), dict(drop_last="yes"), dict(patience_count="some")])
def test_protocol_settings_are_range_checked(bad):
    with pytest.raises(ParameterError):
        resolve_settings("protonet", bad)


def test_grid_settings_need_episodes():
    with pytest.raises(ParameterError, match="episodes"):
        resolve_settings("vgg", dict(epoch_updates="patch_grid"))


def test_piczak_dropout_before_pool_runs_in_that_order():
    from melfront.models.piczak import PiczakCNN
    order = {}
    for before in (False, True):
        net = PiczakCNN(3, n_mels=60, n_frames=41, hidden=8, dropout_before_pool=before).train()
        seen = []
        hooks = [m.register_forward_hook(lambda m, i, o: seen.append(type(m).__name__))
                 for m in net.features[2:4]]
        net(torch.rand(2, 1, 60, 41))
        for h in hooks:
            h.remove()
        order[before] = seen
    assert order[False] == ["MaxPool2d", "Dropout"] and order[True] == ["Dropout", "MaxPool2d"]
    # the same weights either way
    a = PiczakCNN(3, n_mels=60, n_frames=41, hidden=8)
    PiczakCNN(3, n_mels=60, n_frames=41, hidden=8, dropout_before_pool=True).load_state_dict(a.state_dict())


def test_mst_batch_norm_as_slim_no_scale_decay_0999():
    from melfront.mst.model import MSTModel
    m = MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=3, n_hidden=2, bn_scale=False, bn_momentum=0.001,
                 bn_eps=1e-3)
    names = [n for n, _ in m.named_parameters()]
    assert "bn1.bias" in names and "bn1.weight" not in names  # a learned shift, no gamma
    x = torch.randn(5, 3, 7) * 2 + 4
    m.bn1.train()
    with torch.no_grad():
        m.bn1.bias.fill_(0.5)
        y = m.bn1(x)
    assert torch.allclose(m.bn1.running_mean, 0.001 * x.mean(dim=(0, 2)), atol=1e-6)
    expected = (x - x.mean(dim=(0, 2), keepdim=True)) / torch.sqrt(x.var(dim=(0, 2), unbiased=False,
                                                                        keepdim=True) + 1e-3) + 0.5
    assert torch.allclose(y, expected, atol=1e-5)
    assert MSTModel(**m.config()).config() == m.config()  # a checkpoint rebuilds the same layers
    assert "bn_scale" not in MSTModel(n_mels=4, n_fft=16, hop_length=8, n_filters=3, n_hidden=2).config()


def test_subsets_are_independent_across_n_when_set():
    from melfront.data import Clip, ClipList
    from melfront.study import StudyConfig
    from melfront.study.splits import split_for_trial
    clips = ClipList([Clip(f"{k}_{i}.wav", k, "ab"[k], 1 + i % 2) for k in range(2) for i in range(40)],
                     classes=["a", "b"])

    def nested_everywhere(subsets):
        config = StudyConfig(n_per_class=[2, 10], subsets=subsets)
        out = []
        for run in range(6):
            small = set(c.path for c in split_for_trial(config, clips, 1, 2, run)[0])
            large = set(c.path for c in split_for_trial(config, clips, 1, 10, run)[0])
            out.append(small <= large)
        return out
    assert all(nested_everywhere("nested"))
    assert not all(nested_everywhere("independent"))  # 2 of 20 inside a draw of 10 of 20: p = 0.24 per run
    with pytest.raises(ParameterError, match="subsets"):
        StudyConfig(subsets="sometimes")
    from melfront.study.config import Trial
    trial = Trial(1, 2, 0, "sbcnn", "db")  # a finished nested trial is not mistaken for an independent one
    assert trial.key(StudyConfig()) != trial.key(StudyConfig(subsets="independent"))


def test_fixed_support_patches_lie_on_the_grid_with_grid_queries(data):
    from melfront.data.patches import all_patches
    t = _proto(queries="grid_patches", grid_hop=10)
    x, _, clips = t.fixed_support(*data)
    for row, c in zip(x, clips):
        grid = all_patches(data[0][c], 32, 10, cover_end=False)
        assert any(torch.equal(row, g) for g in grid)
    short = [f[:, :20] for f in data[0]]  # shorter than a patch: the repeat-padded clip's one patch
    xs, _, cs = _proto(queries="grid_patches", grid_hop=10).fixed_support(short, data[1])
    assert xs.shape[-1] == 32 and torch.equal(xs[0][:, :20], short[cs[0]])
