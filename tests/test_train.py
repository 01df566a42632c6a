"""resonance.train: determinism, resumption, caching, checkpoints (tiny models, synthetic data)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from resonance import models, paths
from resonance import train as T


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    # Tiny models run fastest on one thread, and a shared machine makes 2 threads spin.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "cache"
    torch.set_num_threads(threads)


def tiny(**kw) -> T.TrainConfig:
    base = dict(family="gpt2", d_model=16, n_layers=1, context=16, corpus="synthetic",
                vocab_size=64, batch_size=4, tokens=4 * 16 * 40, lr=3e-3, warmup=4,
                eval_every=10, eval_tokens=512, seed=0)
    base.update(kw)
    return T.TrainConfig(**base)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Crash(RuntimeError):
    pass


def crash_at(k):
    def callback(step, record):
        if step == k:
            raise Crash(f"simulated crash after step {k}")
    return callback


# --------------------------------------------------------------------------------------------


def test_config_key_and_validation():
    a, b = tiny(), tiny()
    assert a.key == b.key and len(a.key) == 12
    assert tiny(seed=1).key != a.key
    assert tiny(build_kwargs={"dropout": 0.1}).key != a.key
    assert tiny(build_kwargs={"dropout": 0.1}).model_kwargs() == {"dropout": 0.1}
    assert a.n_steps == 40 and a.tokens_per_step == 64
    hash(a)  # frozen and hashable
    with pytest.raises(ValueError, match="schedule"):
        tiny(schedule="linear")
    with pytest.raises(ValueError, match="less than one step"):
        tiny(tokens=10)


def test_checkpoint_steps():
    steps = T.checkpoint_steps(1000, n_log=8, n_linear=4)
    assert steps[0] == 0 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert {250, 500, 750, 1000} <= set(steps)
    early = [s for s in steps if 0 < s <= 250]
    assert len(early) == 8 and early[0] == 1
    ratios = np.diff(np.log(early))
    assert ratios.std() < 0.2  # log-spaced
    assert T.checkpoint_steps(3) == [0, 1, 2, 3]


def test_lr_schedule():
    c = tiny(tokens=64 * 100, warmup=10, lr=1e-3, min_lr_ratio=0.1)
    lrs = [T.lr_at(c, s) for s in range(c.n_steps)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05)
    assert all(x >= y - 1e-15 for x, y in zip(lrs[10:], lrs[11:]))
    const = tiny(tokens=64 * 100, warmup=0, schedule="constant", lr=1e-3)
    assert {T.lr_at(const, s) for s in range(const.n_steps)} == {1e-3}


@pytest.mark.parametrize("family", models.FAMILIES)
def test_train_each_family_learns(family):
    run = T.train(tiny(family=family, tokens=64 * 60, lr=1e-2), progress=False)
    h = run.history
    assert list(h.columns) == T.HISTORY_COLUMNS
    assert list(h.step) == [0, 10, 20, 30, 40, 50, 60]
    assert list(h.tokens) == [64 * s for s in h.step]
    assert math.isnan(h.train_loss.iloc[0]) and h.train_loss.iloc[1:].notna().all()
    assert h.val_loss.iloc[0] == pytest.approx(math.log(64), abs=0.3)
    assert h.val_loss.iloc[-1] < h.val_loss.iloc[0] - 0.2
    assert np.allclose(h.val_ppl, np.exp(h.val_loss))
    assert not run.model.training
    assert run.run_dir == paths.CACHE / "runs" / f"{family}-{run.config.key}"
    assert run.tokenizer is None  # the synthetic corpus has none
    assert run.info["params"] == models.param_count(run.model)


def test_same_seed_identical_different_seed_differs(cache):
    config = tiny(family="llama")
    a = T.train(config, progress=False)
    b = T.train(config, progress=False, force=True)  # retrains from scratch
    assert b.info["steps_this_session"] == config.n_steps
    pd.testing.assert_frame_equal(a.history, b.history, check_exact=True)
    assert same_weights(a.model, b.model)
    c = T.train(tiny(family="llama", seed=1), progress=False)
    assert not same_weights(a.model, c.model)
    assert not a.history.val_loss.equals(c.history.val_loss)


@pytest.mark.parametrize("family", ["gpt2", "gru"])
def test_interrupted_run_resumes_bitwise(cache, monkeypatch, family):
    config = tiny(family=family, tokens=64 * 45)
    steps = T.checkpoint_steps(config.n_steps, config.n_log_checkpoints,
                               config.n_linear_checkpoints)
    crash = 27
    assert crash not in steps  # the crash loses work since the last checkpoint
    with pytest.raises(Crash):
        T.train(config, progress=False, callback=crash_at(crash), resume_every=None)
    folder = T.run_dir(config)
    assert (folder / "resume.pt").is_file() and not (folder / "complete.json").exists()
    resumed = T.train(config, progress=False)
    last_saved = max(s for s in steps if s < crash)
    assert resumed.info["resumed_from"] == last_saved
    assert resumed.info["steps_this_session"] == config.n_steps - last_saved
    assert not (folder / "resume.pt").exists()

    monkeypatch.setattr(paths, "CACHE", cache.parent / "other-cache")
    whole = T.train(config, progress=False)
    assert whole.info["resumed_from"] == 0
    pd.testing.assert_frame_equal(resumed.history, whole.history, check_exact=True)
    assert same_weights(resumed.model, whole.model)
    for (s1, p1), (s2, p2) in zip(resumed.checkpoints, whole.checkpoints):
        assert s1 == s2
        assert same_weights(T.load_checkpoint(resumed, s1), T.load_checkpoint(whole, s2))


def test_resume_every_between_checkpoints(cache):
    config = tiny(tokens=64 * 45)
    with pytest.raises(Crash):
        T.train(config, progress=False, callback=crash_at(33), resume_every=4)
    resumed = T.train(config, progress=False)
    assert resumed.info["resumed_from"] == 32
    whole = T.train(config, progress=False, force=True)
    assert same_weights(resumed.model, whole.model)
    pd.testing.assert_frame_equal(resumed.history, whole.history, check_exact=True)


def test_cache_hit_does_no_training(monkeypatch):
    config = tiny()
    first = T.train(config, progress=False)

    def no_step(*args, **kwargs):
        raise AssertionError("a cache hit must not train")

    monkeypatch.setattr(T, "_step", no_step)
    monkeypatch.setattr(T, "_load_data", no_step)
    again = T.train(config, progress=False)
    pd.testing.assert_frame_equal(first.history, again.history, check_exact=True)
    assert same_weights(first.model, again.model)
    assert not again.model.training
    assert again.checkpoints == first.checkpoints
    with pytest.raises(AssertionError, match="must not train"):
        T.train(config, progress=False, force=True)


def test_checkpoints_on_schedule():
    config = tiny(tokens=64 * 40, n_log_checkpoints=5, n_linear_checkpoints=2)
    run = T.train(config, progress=False)
    expected = T.checkpoint_steps(40, 5, 2)
    assert [s for s, _ in run.checkpoints] == expected
    assert all(p.is_file() and p.parent == run.run_dir for _, p in run.checkpoints)
    final = T.load_checkpoint(run, 40)
    assert same_weights(final, run.model) and not final.training
    assert same_weights(T.load_checkpoint(run.config, -1), run.model)
    assert same_weights(T.load_checkpoint(run.run_dir, 40), run.model)
    assert not same_weights(T.load_checkpoint(run, 0), run.model)
    assert not same_weights(run.load_checkpoint(expected[1]), T.load_checkpoint(run, 0))
    with pytest.raises(FileNotFoundError, match="has no checkpoint at step 7"):
        T.load_checkpoint(run, 7)
    with pytest.raises(FileNotFoundError, match="no training run"):
        T.load_checkpoint(tiny(seed=5), 0)
    # nothing but finished files remain
    names = {p.name for p in run.run_dir.iterdir()}
    assert {"config.json", "history.csv", "complete.json"} <= names
    assert not any(n.endswith(".tmp") for n in names) and "resume.pt" not in names


def test_unknown_family():
    with pytest.raises(ValueError, match="known families: gpt2, llama, gru"):
        T.train(tiny(family="lstm"), progress=False)


def test_model_factory_and_training_loss_hook():
    class Bigram(nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.table = nn.Embedding(vocab, vocab)
            self.calls = 0

        def forward(self, input_ids, labels=None):
            logits = self.table(input_ids)
            return type("Out", (), {"logits": logits})()

    def factory(config, vocab_size):
        return Bigram(vocab_size)

    config = tiny(family="bigram-test", lr=0.05)
    run = T.train(config, progress=False, model_factory=factory)
    assert isinstance(run.model, Bigram)
    assert run.history.val_loss.iloc[-1] < run.history.val_loss.iloc[0]
    again = T.load_checkpoint(run, -1, model_factory=factory)
    assert same_weights(again, run.model)

    class WithHook(Bigram):
        def training_loss(self, input_ids, targets):
            self.calls += 1
            logits = self.table(input_ids)
            return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                               targets.reshape(-1))

    hooked = T.train(tiny(family="hooked-test"), progress=False,
                     model_factory=lambda c, v: WithHook(v))
    assert hooked.model.calls > hooked.config.n_steps


def test_build_kwargs_reach_the_model():
    run = T.train(tiny(build_kwargs={"dropout": 0.25}, tokens=64 * 5), progress=False)
    assert run.model.config.resid_pdrop == 0.25


def test_real_corpus_tiny_run():
    from resonance import data

    try:
        data.load_text("kjv")
    except (FileNotFoundError, RuntimeError) as err:  # corpus not installed
        pytest.skip(str(err))
    config = tiny(corpus="kjv", vocab_size=300, tokens=64 * 5, eval_tokens=256)
    run = T.train(config, progress=False)
    assert len(run.tokenizer) == 300
    assert run.model.config.vocab_size == 300
    assert run.history.val_loss.iloc[0] == pytest.approx(math.log(300), abs=0.5)


def test_later_fields_keep_old_keys_and_decay_all_params_decays_1d():
    from dataclasses import asdict

    from resonance.io import config_hash

    a = tiny()
    old = {k: v for k, v in asdict(a).items() if k != "decay_all_params"}
    assert a.key == config_hash(old)  # a default later field leaves the key as it was
    assert tiny(decay_all_params=True).key != a.key
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    groups = T._optimizer(model, tiny(weight_decay=0.1)).param_groups
    assert [len(g["params"]) for g in groups] == [1, 3]  # weight decayed; bias, LN exempt
    groups = T._optimizer(model, tiny(weight_decay=0.1, decay_all_params=True)).param_groups
    assert sum(len(g["params"]) for g in groups if g["weight_decay"] == 0.1) == 4


def test_unigram_perplexity_is_the_floor_of_a_synthetic_chain():
    config = tiny()
    ppl = T.unigram_perplexity(config)
    # the synthetic chain visits its 64 tokens about evenly: unigram ≈ vocabulary size
    assert 30 < ppl <= 64 * 1.05


# -- Nothing lost (issue 11) -------------------------------------------------------------------

_WORKER = r"""
import json, logging, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from resonance import train as T
config = T.TrainConfig(**json.loads(sys.argv[1]))
force, release = sys.argv[2] == "force", Path(sys.argv[3])
waited = []
class Show(logging.Handler):
    def emit(self, record):
        waited.append(record.getMessage())
        print("WAITING", flush=True)
logging.getLogger("resonance.train").addHandler(Show())
logging.getLogger("resonance.train").setLevel(logging.INFO)
def hold(step, record):  # the first job pauses mid-run until the test releases it
    while step == 3 and not force and not release.exists():
        time.sleep(0.05)
run = T.train(config, progress=False, force=force, callback=hold)
# run.checkpoints is listed from disk while the lock is held; the files themselves may already
# be gone by the time this prints (the waiting force=True job starts as soon as the lock frees)
print(json.dumps({"checkpoints": [s for s, _ in run.checkpoints],
                  "steps": run.info["steps_this_session"],
                  "waited": any("waiting" in w for w in waited)}), flush=True)
"""


def test_two_processes_on_one_config_do_not_corrupt_each_other(cache, tmp_path):
    """A concurrent force=True used to delete the checkpoints under a running job, which then
    reported success with a few of its checkpoints; now the second process waits for the lock
    (two real processes; the first pauses at step 3 until the second is seen waiting)."""
    import os
    import subprocess
    import sys
    import time

    config = tiny(tokens=64 * 40)
    fields = {k: getattr(config, k) for k in ("family", "d_model", "n_layers", "context",
                                              "corpus", "vocab_size", "batch_size", "tokens",
                                              "lr", "warmup", "eval_every", "eval_tokens")}
    env = {**os.environ, "RESONANCE_CACHE": str(cache), "TQDM_DISABLE": "1"}
    script, release = tmp_path / "worker.py", tmp_path / "release"
    script.write_text(_WORKER)

    def start(mode):
        return subprocess.Popen([sys.executable, str(script), json.dumps(fields), mode,
                                 str(release)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = start("plain")
    folder = T.run_dir(config)
    deadline = time.monotonic() + 120
    while not (folder / "resume.pt").is_file():  # the first job is training
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = start("force")
    try:
        assert second.stdout.readline().strip() == "WAITING", second.communicate()
    finally:
        release.touch()
    out_a, err_a = first.communicate(timeout=300)
    out_b, err_b = second.communicate(timeout=300)
    assert first.returncode == 0, err_a
    assert second.returncode == 0, err_b
    assert "Warning" not in err_b  # the wait is logged, not warned: notebook outputs stay clean
    a, b = json.loads(out_a.splitlines()[-1]), json.loads(out_b.splitlines()[-1])
    expected = T.checkpoint_steps(config.n_steps, config.n_log_checkpoints,
                                  config.n_linear_checkpoints)
    assert a["checkpoints"] == expected and a["steps"] == config.n_steps
    assert b["waited"] and b["checkpoints"] == expected and b["steps"] == config.n_steps
    assert [s for s, _ in T.train(config, progress=False).checkpoints] == expected


def test_lock_is_not_reentrant_within_a_process():
    config = tiny(tokens=64 * 5)

    def again(step, record):
        T.train(config, progress=False)

    with pytest.raises(RuntimeError, match="called again on run"):
        T.train(config, progress=False, callback=again)
    assert len(T.train(config, progress=False).history)  # the lock was released


def test_thread_count_is_recorded_and_a_resume_under_another_is_refused(cache):
    config = tiny(tokens=64 * 45)
    with pytest.raises(Crash):
        T.train(config, progress=False, callback=crash_at(27), resume_every=None, threads=1)
    saved = json.loads((T.run_dir(config) / "config.json").read_text())
    assert saved["numerics"]["torch_threads"] == 1
    assert saved["numerics"]["torch"] == torch.__version__
    with pytest.raises(T.NumericsChangedError, match="trained with 1 torch threads.*threads=1"):
        T.train(config, progress=False, threads=2)
    run = T.train(config, progress=False, threads=1)
    assert run.info["numerics"]["torch_threads"] == 1 and run.info["resumed_from"] > 0


def test_damaged_run_files_name_the_file_and_the_fix(cache):
    config = tiny(tokens=64 * 5)
    run = T.train(config, progress=False)
    folder = run.run_dir
    (folder / "complete.json").write_text("{half")
    with pytest.raises(T.CorruptRunError, match="complete.json is not valid JSON.*force=True"):
        T.train(config, progress=False)
    run = T.train(config, progress=False, force=True)
    step, path = run.checkpoints[-1]
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(T.CorruptRunError, match=rf"ckpt-{step:07d}.pt is damaged.*force=True"):
        T.train(config, progress=False)
    run = T.train(config, progress=False, force=True)
    run.checkpoints[1][1].unlink()
    with pytest.raises(T.CorruptRunError, match=r"lacks the checkpoints of steps \[1\]"):
        T.train(config, progress=False)
    run = T.train(config, progress=False, force=True)
    (folder / "history.csv").write_text("step,tokens\n1,2\n")
    with pytest.raises(T.CorruptRunError, match="history.csv has columns"):
        T.train(config, progress=False)


def test_damaged_resume_state_names_the_file(cache):
    config = tiny(tokens=64 * 45)
    with pytest.raises(Crash):
        T.train(config, progress=False, callback=crash_at(27), resume_every=None)
    resume = T.run_dir(config) / "resume.pt"
    resume.write_bytes(b"not a torch file")
    with pytest.raises(T.CorruptRunError, match="resume.pt is damaged.*delete"):
        T.train(config, progress=False)


def _cpu_weights(run: T.TrainedModel) -> dict:
    return {k: v.detach().cpu() for k, v in run.model.state_dict().items()}


def test_device_cpu_is_the_default_path_bit_for_bit(cache, monkeypatch):
    config = tiny(tokens=4 * 16 * 6, eval_every=3, eval_tokens=128)
    default = T.train(config, progress=False)
    assert default.info["device"] == "cpu"
    monkeypatch.setattr(paths, "CACHE", cache.parent / "other-device")
    explicit = T.train(config, progress=False, device="cpu")
    assert same_weights(default.model, explicit.model)
    assert default.history["val_loss"].tolist() == explicit.history["val_loss"].tolist()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_training_on_cuda_without_cuda_says_what_to_do():
    with pytest.raises(ValueError, match="sees no CUDA device.*device='cpu'"):
        T.train(tiny(), progress=False, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_training_repeats_bit_for_bit(cache, monkeypatch):
    config = tiny(tokens=4 * 16 * 6, eval_every=3, eval_tokens=128)
    first = T.train(config, progress=False, device="cuda")
    assert first.info["device"].startswith("cuda")
    monkeypatch.setattr(paths, "CACHE", cache.parent / "other-device")
    second = T.train(config, progress=False, device="cuda")
    a, b = _cpu_weights(first), _cpu_weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
