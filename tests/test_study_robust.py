"""Studies that never lose a trial: failure isolation (jobs 1, jobs 2, Ray), one study per folder, checked
configuration (YAML bombs, tags, syntax errors), studies that grow, read-only stores, no orphan workers."""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from melfront.cli import main
from melfront.errors import DivergenceError, ParameterError, StudyError
from melfront.study import ResultStore, StudyConfig, load_clips, plan, run_study
from melfront.study.store import StudyLock
from test_study import fake_trial, tiny_config

TESTS = os.path.dirname(__file__)


def failing_trial(clips, *, frontend, model, train_clips, test_clips, seed, **kw):
    """Fails two cells of the tiny grid: one raises, one diverges; the rest are fake_trial's."""
    n = len(train_clips) // len(clips.classes)
    if frontend == "logeps" and n == 1:
        raise MemoryError("pretend the clip was hostile")
    if frontend == "db" and n == 2:
        raise DivergenceError("loss is nan at epoch 1")
    return fake_trial(clips, frontend=frontend, model=model, train_clips=train_clips, test_clips=test_clips,
                      seed=seed)


def nan_trial(clips, *, frontend, train_clips, **kw):
    """Returns (rather than raises) a non-finite accuracy for one frontend."""
    return dict(accuracy=float("nan") if frontend == "db" else 0.5, map=0.5)


def dying_trial(clips, *, frontend, train_clips, **kw):
    """Kills its own worker process for one cell (a hard crash, an OOM kill)."""
    if frontend == "db" and len(train_clips) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return dict(accuracy=0.5, map=0.5)


@pytest.mark.parametrize("jobs", [1, 2])
def test_failing_trials_are_stored_and_the_study_goes_on(tmp_path, jobs):
    config = tiny_config(tmp_path)  # 1 fold x n in (1, 2) x 2 runs x vgg x (db, logeps): 8 trials
    total = len(plan(config, load_clips(config)))
    store = run_study(config, tmp_path / "s.db", trial_fn=failing_trial, quiet=True, jobs=jobs)
    failures = store.failures()
    assert len(store.rows()) == total - 4 and len(failures) == 4
    assert {(f["frontend"], f["n"]) for f in failures} == {("logeps", 1), ("db", 2)}
    causes = {f["error"] for f in failures}
    assert causes == {"MemoryError: pretend the clip was hostile", "DivergenceError: loss is nan at epoch 1"}
    assert all(set(f) == {"key", "model", "frontend", "n", "fold", "run", "error", "finished"} for f in failures)
    # a rerun skips the stored failures; --retry-failed runs them (and an ok row replaces each failed one)
    calls = []
    counting = lambda *a, **k: calls.append(k["frontend"]) or fake_trial(*a, **k)
    run_study(config, tmp_path / "s.db", trial_fn=counting, quiet=True)
    assert calls == []
    run_study(config, tmp_path / "s.db", trial_fn=counting, quiet=True, retry_failed=True)
    assert len(calls) == 4 and store.failures() == [] and len(store.rows()) == total


def test_non_finite_result_and_dead_worker_fail_only_their_trials(tmp_path):
    config = tiny_config(tmp_path, n_per_class=[1], runs={"default": 2})
    store = run_study(config, tmp_path / "nan.db", trial_fn=nan_trial, quiet=True)
    assert len(store.rows()) == 2 and all(r["frontend"] == "logeps" for r in store.rows())
    assert {f["error"] for f in store.failures()} == {"DivergenceError: the trial diverged: accuracy is nan"}
    store = run_study(config, tmp_path / "dead.db", trial_fn=dying_trial, quiet=True, jobs=2)
    assert len(store.rows()) == 2 and len(store.failures()) == 2
    assert all(f["error"].startswith("WorkerDied: the worker process was killed by SIGKILL")
               for f in store.failures())


def test_compare_exit_status_and_console_name_the_failures(tmp_path, monkeypatch, capsys):
    import melfront.study.grid as grid
    monkeypatch.setattr(grid, "run_trial", failing_trial)
    out = tmp_path / "study"
    args = ["compare", "-o", str(out), "--root", str(tmp_path / "synth"), "--n", "1,2", "--runs", "1", "--frontends",
            "db,logeps", "--jobs", "1", "--test-folds", "first"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "2 of 4 trials failed: " in captured.out and "MemoryError: pretend the clip was hostile (1)" in captured.out
    assert "FAILED: DivergenceError: loss is nan at epoch 1" in captured.out
    assert "2 trial(s) failed" in captured.err
    assert len(ResultStore(out / "study.db").rows()) == 2


LOCK_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_study import tiny_config, fake_trial
from melfront.study import run_study


def slow_trial(*a, **k):
    time.sleep(0.5)
    return fake_trial(*a, **k)


if __name__ == "__main__":
    seed = int(sys.argv[1])
    Path({tmp!r}, f"ready-{{seed}}").touch()  # both have imported melfront: start together
    while len(list(Path({tmp!r}).glob("ready-*"))) < 2:
        time.sleep(0.001)
    try:
        run_study(tiny_config(Path({tmp!r}), seed=seed, n_per_class=[1]), {db!r}, trial_fn=slow_trial, quiet=True)
    except Exception as exc:
        print(type(exc).__name__, exc)
        sys.exit(3)
"""


def test_two_studies_started_together_on_one_folder_exactly_one_proceeds(tmp_path):
    script = tmp_path / "run.py"
    db = tmp_path / "study" / "study.db"
    script.write_text(LOCK_SCRIPT.format(tests=TESTS, tmp=str(tmp_path), db=str(db)))
    procs = [subprocess.Popen([sys.executable, str(script), str(seed)], stdout=subprocess.PIPE, text=True)
             for seed in (0, 1)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], outputs
    refused = [o for o, p in zip(outputs, procs) if p.returncode == 3][0]
    assert refused.startswith("StudyError ") and str(db.parent) in refused and "pid " in refused
    rows = ResultStore(db).rows()
    assert len({r["seed"] for r in rows}) == 1 and len(rows) == 4


def test_a_refused_compare_leaves_config_json_alone(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from melfront.study.store import StudyLock
        with StudyLock({str(out)!r}):
            print("held", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["compare", "-o", str(out), "--n", "1", "--runs", "1", "--quiet"]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert str(out) in err and f"pid {holder.pid}" in err and "another melfront compare" in err
    assert (out / "config.json").read_text() == '{"mine": true}'
    with StudyLock(out):  # released when the holder died
        assert StudyLock.held(out)


@pytest.mark.parametrize("option", ["--runs", "--epochs", "--jobs"])
def test_zero_counts_on_the_command_line_are_refused(tmp_path, capsys, option):
    assert main(["compare", "-o", str(tmp_path / "s"), option, "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "must be a positive integer, got 0" in err and (option.lstrip("-") in err)
    assert not (tmp_path / "s" / "study.db").exists()


BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{p}'] * 9)}]\n" for p, a in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, error, match", [
    ('seed: "abc"\n', ParameterError, r"study\.yaml: seed must be a non-negative integer, got 'abc'"),
    ("mel: [1, 2]\n", ParameterError, r"study\.yaml: mel must be a mapping"),
    ("mel: {n_mels: 0}\n", ParameterError, r"mel\.n_mels must be a positive integer"),
    ("runs: {default: 0}\n", ParameterError, r"runs\['default'\] must be a positive integer"),
    ("compare: [[db]]\n", ParameterError, r"compare\[0\] must be a pair"),
    ("seed: 1\ndataset: [synth\n", StudyError, r"study\.yaml: not a valid YAML study config, line 3"),
    ("seed: !!python/object/apply:os.system [echo]\n", StudyError, r"study\.yaml, line 1: the tag .*python"),
    ("a: &a [*a]\n", StudyError, "refers to itself"),
    ("a: &a ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol']\n" + BOMB, StudyError,
     "aliases expand to more than"),
])
def test_bad_yaml_configs_name_the_file_and_field(tmp_path, text, error, match):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    began = time.perf_counter()
    with pytest.raises(error, match=match):
        StudyConfig.from_file(path)
    assert time.perf_counter() - began < 1.0


def test_forgiving_forms_are_read_as_lists(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("n_per_class: 5\nruns: 3\nfrontends: db\nmodels: vgg\ncompare: [db, logeps]\n")
    config = StudyConfig.from_file(path)
    assert (config.n_per_class, config.runs, config.frontends, config.models, config.compare) == (
        [5], {"default": 3}, ["db"], ["vgg"], [["db", "logeps"]])
    path.write_text("mel: &m {n_mels: 32}\ntrain: {epochs: 2}\ndataset_options: *m\n")  # small aliases are fine
    assert StudyConfig.from_file(path).dataset_options == {"n_mels": 32}
    toml = tmp_path / "study.toml"
    toml.write_text("seed = 1\nn_per_class = [1,,]\ndataset = 'synth'\n")
    with pytest.raises(StudyError, match=r"study\.toml: not a valid TOML study config: .*line 2"):
        StudyConfig.from_file(toml)


def test_a_study_grows_and_keeps_its_finished_trials(tmp_path):
    db = tmp_path / "s.db"
    first = run_study(tiny_config(tmp_path, frontends=["db"], n_per_class=[1]), db, trial_fn=fake_trial,
                      quiet=True).rows()
    calls = []
    counting = lambda *a, **k: calls.append((k["frontend"], k["model"])) or fake_trial(*a, **k)
    grown = tiny_config(tmp_path, frontends=["db", "logeps"], models=["vgg", "sbcnn"], n_per_class=[1],
                        runs={"default": 3})
    store = run_study(grown, db, trial_fn=counting, quiet=True)
    assert len(calls) == 3 * 4 - len(first) and ("db", "vgg") in calls
    kept = {r["key"]: r["finished"] for r in store.rows()}
    assert all(kept[r["key"]] == r["finished"] for r in first)
    saved = store.config()
    assert saved.frontends == ["db", "logeps"] and saved.models == ["vgg", "sbcnn"] and saved.runs_for(1) == 3
    # a smaller request later keeps the stored (grown) config
    run_study(tiny_config(tmp_path, frontends=["db"], n_per_class=[1]), db, trial_fn=fake_trial, quiet=True)
    assert store.config().frontends == ["db", "logeps"]
    for change, field in ((dict(seed=3), "seed"), (dict(mel=dict(sample_rate=8000, n_fft=256, hop_length=64,
                                                                  n_mels=32)), "mel"),
                          (dict(train=dict(epochs=3, patch_frames=32, batch_size=8)), r"train \(for model vgg\)")):
        with pytest.raises(StudyError, match=f"different configuration: {field} differs from the stored"):
            run_study(tiny_config(tmp_path, n_per_class=[1], **change), db, trial_fn=fake_trial, quiet=True)


def test_open_readonly_changes_nothing_and_names_bad_files(tmp_path):
    plain = tmp_path / "plain.db"
    with sqlite3.connect(plain) as con:
        con.execute("CREATE TABLE other (a)")
    before = plain.read_bytes()
    with pytest.raises(StudyError, match=r"plain\.db: not a melfront results store"):
        ResultStore.open_readonly(plain)
    assert plain.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["plain.db"]
    with sqlite3.connect(plain) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    garbage = tmp_path / "study.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(StudyError, match=r"study\.db: not a melfront results store"):
        ResultStore.open_readonly(garbage)
    with pytest.raises(StudyError, match="no such study store"):
        ResultStore.open_readonly(tmp_path / "missing.db")
    config, store = tiny_config(tmp_path), ResultStore(tmp_path / "real.db")
    store.save_config(config)
    store.set_meta("derived_settings", {"sample_rate": 8000})
    ro = ResultStore.open_readonly(store.path)
    assert ro.config() == config and ro.meta("derived_settings") == {"sample_rate": 8000} and ro.rows() == []
    with pytest.raises(StudyError, match="read-only"):
        ro.set_meta("x", 1)


def test_ray_auto_without_a_cluster_starts_a_local_one(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from melfront.study.execution import connect_ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # a fresh Ray temp folder: another Ray instance on this machine (a test elsewhere) must not be "the cluster"
    ray_tmp = tempfile.mkdtemp(prefix="mfray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    # Ray's workers import failing_trial by name: they need this folder on their path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])))
    lines = []
    try:
        connect_ray("auto", say=lines.append, num_cpus=1)
        assert lines and "no Ray cluster to attach to" in lines[0] and "started a local Ray instance (1 CPUs)" in lines[0]
        config = tiny_config(tmp_path, n_per_class=[1, 2], runs={"default": 1})
        store = run_study(config, tmp_path / "ray.db", ray_address="auto", trial_fn=failing_trial, quiet=True)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert len(store.rows()) == 2 and len(store.failures()) == 2
    assert {f["error"].split(":")[0] for f in store.failures()} == {"MemoryError", "DivergenceError"}


ORPHAN_SCRIPT = """
import os, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_study import tiny_config
from melfront.study import run_study


def slow_trial(*a, **k):
    Path({tmp!r}, f"worker-{{os.getpid()}}").touch()
    time.sleep(120)
    return dict(accuracy=0.5)


if __name__ == "__main__":
    run_study(tiny_config(Path({tmp!r})), {db!r}, trial_fn=slow_trial, quiet=True, jobs=2)
"""


def _children(pid: int) -> set:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_a_study_leaves_no_worker_behind(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(ORPHAN_SCRIPT.format(tests=TESTS, tmp=str(tmp_path), db=str(tmp_path / "s.db")))
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 180
    while time.time() < deadline and len(list(tmp_path.glob("worker-*"))) < 2:
        time.sleep(0.2)
    children = _children(proc.pid)
    workers = {int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")}
    assert len(workers) == 2 and workers <= children
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]
