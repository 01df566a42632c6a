"""Train small language models on CPU, deterministically, resumably, cached by config.

>>> run = train(TrainConfig(family="gpt2", d_model=64, n_layers=2, tokens=2_000_000))
>>> run.history            # step, tokens, lr, train_loss, val_loss, val_ppl at eval points
>>> run.checkpoints        # [(step, path), ...] on checkpoint_steps(): log-spaced + regular
>>> load_checkpoint(run, run.checkpoints[3][0])   # an intermediate model, for dynamics

Runs live in ``paths.CACHE / "runs" / f"{family}-{config.key}"``::

    config.json          the TrainConfig (and the model's vocabulary size)
    ckpt-0000123.pt      model weights after step 123 (step 0 = initialisation)
    resume.pt            last resumable state: model, optimizer, RNG states, data generator,
                         history, step (rewritten at every checkpoint and every resume_every)
    history.csv          the finished run's history
    complete.json        written last: a run with it is loaded, never retrained

Every file is written atomically (:func:`resonance.io.atomic_path`). A run that stopped
(crash, Ctrl-C, a raising ``callback``) resumes from ``resume.pt`` and ends bitwise identical to
an uninterrupted one: the data generator, torch RNG, AdamW state and the running train-loss
window are all restored. Same config, same torch version, thread count and CPU kernels ->
identical losses and weights; these are recorded (:func:`resonance.seeding.numeric_environment`)
in ``config.json``, ``resume.pt`` and ``complete.json``, and resuming under another thread count
is refused. One process trains a run at a time: ``runs/<name>.lock`` (``fcntl.flock``) makes a
second caller wait, so a concurrent ``force=True`` never deletes files under a running job.

Data: each step draws ``batch_size`` contiguous windows of ``context + 1`` tokens from
``data.token_stream(corpus, "train", tokenizer)`` at offsets from a seeded ``torch.Generator``;
the model sees the first ``context`` and is scored on the next-token targets (every window
token after the first is predicted once). Validation loss is on a fixed slice: the first
``eval_tokens`` tokens of the validation stream in consecutive windows. The tokenizer is
``data.tokenizer(config.tokenizer or config.corpus, config.vocab_size)``, so
``TrainConfig(corpus="openwebtext", tokenizer="gpt2")`` goes through the same code (offline it
fails with ``data``'s own error). ``corpus="synthetic"`` is a built-in corpus (a fixed sparse
first-order Markov chain over ``vocab_size`` tokens; no tokenizer) for tests and benchmarks.

Any module can be trained: a family registered with :func:`resonance.models.register`, or a
``model_factory(config, vocab_size) -> nn.Module`` passed to :func:`train` (then give the
config a ``family`` name of its own so its runs do not collide with a built-in's cache). The
loop needs only ``model(input_ids=x)`` returning ``.logits`` (or a logits tensor); a model
with a ``training_loss(input_ids, targets) -> scalar`` method gets that called instead (a hook
for auxiliary objectives).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import models, paths
from .io import atomic_path, config_hash, read_json
from .io import write_json as _write_json
from .seeding import numeric_environment, seed_everything

__all__ = ["TrainConfig", "TrainedModel", "train", "load_checkpoint", "checkpoint_steps",
           "evaluate", "lr_at", "run_dir", "run_lock", "CorruptRunError", "NumericsChangedError",
           "unigram_perplexity", "SYNTHETIC"]

SYNTHETIC = "synthetic"
HISTORY_COLUMNS = ["step", "tokens", "lr", "train_loss", "val_loss", "val_ppl"]
ModelFactory = Callable[["TrainConfig", int], nn.Module]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; ``key`` hashes it (the cache key).

    ``tokens`` is the budget of predicted tokens; steps = ``tokens // (batch_size * context)``.
    ``warmup`` is in steps (linear from ``lr / warmup``); ``schedule="cosine"`` decays to
    ``min_lr_ratio * lr`` at the last step, ``"constant"`` stays at ``lr``. ``eval_every``
    (steps) also evaluates at step 0 and at the last step. Checkpoints follow
    :func:`checkpoint_steps` with ``n_log_checkpoints`` and ``n_linear_checkpoints``.
    ``build_kwargs`` go to :func:`resonance.models.build` (e.g. ``{"dropout": 0.1}``).
    ``decay_all_params=True`` applies ``weight_decay`` to every parameter, as
    ``torch.optim.AdamW(model.parameters(), weight_decay=...)`` does; the default exempts 1-D
    parameters (biases, LayerNorm gains).
    """

    family: str = "gpt2"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int | None = None
    context: int = 128
    corpus: str = "kjv"
    tokenizer: str | None = None
    vocab_size: int = 4096
    tokens: int = 2_000_000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0
    eval_every: int = 100
    eval_tokens: int = 32_768
    n_log_checkpoints: int = 8
    n_linear_checkpoints: int = 4
    seed: int = 0
    build_kwargs: tuple = ()
    decay_all_params: bool = False

    def __post_init__(self) -> None:
        kw = self.build_kwargs
        if isinstance(kw, Mapping):
            kw = tuple(sorted(kw.items()))
        object.__setattr__(self, "build_kwargs", tuple(tuple(p) for p in kw))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        for name in ("d_model", "n_layers", "context", "batch_size", "eval_every",
                     "eval_tokens", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_steps < 1:
            raise ValueError(f"tokens={self.tokens} is less than one step of batch_size x "
                             f"context = {self.tokens_per_step} tokens")
        if self.warmup < 0 or not self.lr > 0:
            raise ValueError(f"need warmup >= 0 and lr > 0, got {self.warmup}, {self.lr}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context

    @property
    def n_steps(self) -> int:
        return self.tokens // self.tokens_per_step

    @property
    def key(self) -> str:
        """12 hex digits of :func:`resonance.io.config_hash` over ``asdict(self)``; fields
        added later (``_LATER_FIELDS``) enter the hash only when set away from their default,
        so the keys of existing runs do not change."""
        return config_hash(_key_dict(self))

    @property
    def name(self) -> str:
        return f"{self.family}-{self.key}"

    def model_kwargs(self) -> dict[str, Any]:
        return dict(self.build_kwargs)


_LATER_FIELDS = ("decay_all_params",)


def _key_dict(config: TrainConfig) -> dict[str, Any]:
    d = asdict(config)
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name in _LATER_FIELDS:
        if d[name] == defaults[name]:
            del d[name]
    return d


@dataclass
class TrainedModel:
    """A finished run: the model in eval mode, its tokenizer, config, history, checkpoints."""

    model: nn.Module
    tokenizer: Any
    config: TrainConfig
    history: pd.DataFrame
    checkpoints: list[tuple[int, Path]]
    run_dir: Path
    info: dict[str, Any] = field(default_factory=dict)  # wall time, tokens/s, params, ...

    def load_checkpoint(self, step: int) -> nn.Module:
        return load_checkpoint(self, step)

    def __repr__(self) -> str:
        last = self.history.iloc[-1] if len(self.history) else None
        loss = f", val_loss={last.val_loss:.3f}" if last is not None else ""
        return (f"TrainedModel({self.config.name}, {self.config.family} d={self.config.d_model} "
                f"L={self.config.n_layers}, {len(self.checkpoints)} checkpoints{loss})")


# --------------------------------------------------------------------------------------------
# Schedules


def checkpoint_steps(n_steps: int, n_log: int = 8, n_linear: int = 4) -> list[int]:
    """Step 0, ``n_log`` log-spaced steps in ``[1, n_steps / n_linear]``, then ``n_linear``
    evenly spaced steps ending at ``n_steps`` (duplicates merged; sorted).

    >>> checkpoint_steps(1000)
    [0, 1, 2, 5, 11, 24, 52, 113, 250, 500, 750, 1000]
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps!r}")
    steps = {0, n_steps}
    if n_linear > 0:
        steps.update(round(n_steps * k / n_linear) for k in range(1, n_linear + 1))
    first = max(1, round(n_steps / max(n_linear, 1)))
    if n_log > 0:
        steps.update(int(round(s)) for s in np.geomspace(1, first, n_log))
    return sorted(s for s in steps if 0 <= s <= n_steps)


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate of the update that produces step ``step + 1`` (``step`` from 0)."""
    if config.warmup and step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.schedule == "constant":
        return config.lr
    span = max(1, config.n_steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    low = config.lr * config.min_lr_ratio
    return low + 0.5 * (config.lr - low) * (1 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------------
# Data


@lru_cache(maxsize=8)
def _synthetic_streams(vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed sparse Markov chain: each token has 4 equally likely successors.

    Its entropy rate is ln 4 = 1.386 nats, against ln(vocab_size) for a model that knows
    nothing, so learning shows within a few dozen steps. 200,000 train, 20,000 validation.
    """
    rng = np.random.default_rng(12345)
    n = 220_000
    table = rng.integers(0, vocab_size, size=(vocab_size, 4)).tolist()
    choice = rng.integers(0, 4, size=n).tolist()
    out, token = [0] * n, 0
    for i in range(n):
        token = table[token][choice[i]]
        out[i] = token
    stream = np.asarray(out, dtype=np.int32)
    return stream[:200_000], stream[200_000:]


def _load_data(config: TrainConfig) -> tuple[Any, np.ndarray, np.ndarray]:
    """``(tokenizer, train stream, validation stream)`` for a config."""
    if config.corpus == SYNTHETIC:
        train, val = _synthetic_streams(config.vocab_size)
        return None, train, val
    from . import data

    tok = data.tokenizer(config.tokenizer or config.corpus, vocab_size=config.vocab_size)
    return (tok, data.token_stream(config.corpus, "train", tok),
            data.token_stream(config.corpus, "validation", tok))


def _vocab_size(config: TrainConfig, tokenizer: Any) -> int:
    return config.vocab_size if tokenizer is None else len(tokenizer)


def _batch(stream: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
    return stream[starts[:, None] + torch.arange(width, device=stream.device)]


def _val_windows(val: np.ndarray, config: TrainConfig) -> torch.Tensor:
    n = min(config.eval_tokens, len(val) - 1) // config.context
    if n < 1:
        raise ValueError(f"the validation stream has {len(val)} tokens, fewer than one window "
                         f"of context + 1 = {config.context + 1}")
    starts = torch.arange(n) * config.context
    return _batch(torch.from_numpy(np.asarray(val, dtype=np.int64)), starts, config.context + 1)


# --------------------------------------------------------------------------------------------
# The step


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if logits is None:
        raise TypeError(f"the model returned {type(out).__name__} without .logits; give it a "
                        "training_loss(input_ids, targets) method or return logits")
    return logits


def _loss(model: nn.Module, window: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of windows ``(b, context + 1)``."""
    x, y = window[:, :-1], window[:, 1:]
    custom = getattr(model, "training_loss", None)
    if custom is not None:
        return custom(x, y)
    return models.next_token_loss(_logits(model(input_ids=x)), y)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, window: torch.Tensor,
          lr: float, grad_clip: float | None) -> float:
    """One AdamW update; returns the batch's training loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = _loss(model, window)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model: nn.Module, windows: torch.Tensor, batch_size: int = 32) -> float:
    """Mean next-token loss over validation windows (model left in the mode it was in)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(windows), batch_size):
            chunk = windows[i:i + batch_size]
            n = chunk[:, 1:].numel()
            total += float(_loss(model, chunk)) * n
            count += n
    finally:
        model.train(was_training)
    return total / count


def unigram_perplexity(config: TrainConfig) -> float:
    """:func:`resonance.stats.unigram_perplexity` of ``config``'s training tokens, scored on
    exactly the validation targets :func:`evaluate` scores: the capability floor a trained
    model must beat by far before any comparison of models means much."""
    from .stats import unigram_perplexity as unigram

    tokenizer, train_np, val_np = _load_data(config)
    targets = _val_windows(val_np, config)[:, 1:].reshape(-1).numpy()
    return unigram(np.asarray(train_np, dtype=np.int64), targets, _vocab_size(config, tokenizer))


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 or config.decay_all_params else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, foreach=False)


# --------------------------------------------------------------------------------------------
# Runs on disk


def run_dir(config: TrainConfig) -> Path:
    """Where a config's run lives: ``paths.CACHE / "runs" / f"{family}-{key}"``."""
    return paths.CACHE / "runs" / config.name


def _ckpt_path(folder: Path, step: int) -> Path:
    return folder / f"ckpt-{step:07d}.pt"


def _list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for path in folder.glob("ckpt-*.pt"):
        try:
            found.append((int(path.stem.split("-")[1]), path))
        except (IndexError, ValueError):
            continue
    return sorted(found)


def _save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _config_from_dict(d: Mapping[str, Any]) -> TrainConfig:
    d = dict(d)
    d["betas"] = tuple(d.get("betas", (0.9, 0.95)))
    d["build_kwargs"] = tuple(tuple(p) for p in d.get("build_kwargs", ()))
    return TrainConfig(**d)


def _make_model(config: TrainConfig, vocab_size: int,
                model_factory: ModelFactory | None) -> nn.Module:
    if model_factory is not None:
        return model_factory(config, vocab_size)
    return models.build(config.family, vocab_size, config.d_model, config.n_layers,
                        n_heads=config.n_heads, context=config.context, **config.model_kwargs())


def _history_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    frame["step"] = frame["step"].astype(np.int64)
    frame["tokens"] = frame["tokens"].astype(np.int64)
    return frame


def _progress_disabled(progress: bool) -> bool:
    return (not progress) or os.environ.get("TQDM_DISABLE", "") not in ("", "0")


def train(config: TrainConfig, *, force: bool = False, progress: bool = True,
          model_factory: ModelFactory | None = None,
          callback: Callable[[int, dict], None] | None = None,
          resume_every: int | None = 200, threads: int | None = None,
          device: str | None = None) -> TrainedModel:
    """Train ``config`` (or load its finished run from the cache) and return the result.

    ``force=True`` deletes any stored run (finished or partial) and trains from scratch.
    ``callback(step, record)`` runs after every update (``record``: step, tokens, lr,
    train_loss); an exception in it stops training, and the next call resumes from the last
    saved state. ``resume_every`` (steps) adds resumable saves between checkpoints; it does not
    change the result and is not part of the key. ``threads`` sets torch's intra-op threads
    for the run (restored afterwards); bitwise repeatability holds at a fixed thread count, and
    the smallest models train fastest on one thread. ``device`` (``"cpu"``, the default,
    ``"cuda"`` or ``"auto"``) trains there with the same code: the model is initialised on the
    CPU and moved, batches are drawn by the CPU generator, CUDA runs use deterministic
    algorithms, so a run is repeatable per device (not bitwise across devices); the device is
    recorded in ``complete.json``; stored checkpoints load to the CPU.
    """
    from .backend import resolve_device
    device = resolve_device("cpu" if device is None else device)
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        with run_lock(config):
            return _train(config, force, progress, model_factory, callback, resume_every, device)
    finally:
        torch.set_num_threads(old)


def _train(config: TrainConfig, force: bool, progress: bool,
           model_factory: ModelFactory | None, callback: Callable[[int, dict], None] | None,
           resume_every: int | None, device: torch.device) -> TrainedModel:
    if model_factory is None and config.family not in models.families():
        raise ValueError(f"unknown model family {config.family!r}; known families: "
                         f"{', '.join(models.families())} (or pass model_factory=)")
    folder = run_dir(config)
    if force and folder.exists():
        import shutil

        shutil.rmtree(folder)
    if (folder / "complete.json").is_file():
        return _load_run(folder, config, model_factory)

    tokenizer, train_np, val_np = _load_data(config)
    vocab = _vocab_size(config, tokenizer)
    if len(train_np) < config.context + 2:
        raise ValueError(f"the training stream has {len(train_np)} tokens, fewer than one "
                         f"window of context + 1 = {config.context + 1}")
    if int(train_np.max()) >= vocab:
        raise ValueError(f"token ids reach {int(train_np.max())} but the vocabulary has {vocab}")
    if device.type == "cuda":  # repeatable on the GPU: deterministic kernels, fixed workspace
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    train_stream = torch.from_numpy(np.asarray(train_np, dtype=np.int64)).to(device)
    val_windows = _val_windows(val_np, config).to(device)
    n_starts = len(train_stream) - config.context  # windows of context + 1 tokens

    seed_everything(config.seed)
    model = _make_model(config, vocab, model_factory).to(device)
    model.train()
    optimizer = _optimizer(model, config)
    gen = torch.Generator().manual_seed(config.seed)
    schedule = set(checkpoint_steps(config.n_steps, config.n_log_checkpoints,
                                    config.n_linear_checkpoints))
    history: list[dict] = []
    window_losses: list[float] = []
    step = 0
    _write_json(folder / "config.json", {"config": asdict(config), "vocab_size": vocab,
                                         "key": config.key, "numerics": _numerics()})

    resume = folder / "resume.pt"
    if resume.is_file():
        state = _load_resume(resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        history, window_losses, step = state["history"], state["window_losses"], state["step"]

    def save_resume() -> None:
        _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
               "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
               "history": history, "window_losses": window_losses, "step": step,
               "numerics": _numerics()}, resume)

    def record_eval() -> None:
        val = evaluate(model, val_windows, batch_size=max(config.batch_size, 32))
        train_loss = float(np.mean(window_losses)) if window_losses else float("nan")
        history.append(dict(step=step, tokens=step * config.tokens_per_step,
                            lr=lr_at(config, max(step - 1, 0)), train_loss=train_loss,
                            val_loss=val, val_ppl=math.exp(min(val, 50.0))))
        window_losses.clear()

    if step == 0 and not history:
        record_eval()
        if 0 in schedule:
            _save(model.state_dict(), _ckpt_path(folder, 0))
        save_resume()

    from tqdm.auto import tqdm

    bar = tqdm(total=config.n_steps * config.tokens_per_step,
               initial=step * config.tokens_per_step, unit="tok", unit_scale=True,
               desc=f"{config.family} d={config.d_model} L={config.n_layers}",
               disable=_progress_disabled(progress), dynamic_ncols=True)
    start_time, start_step = time.perf_counter(), step
    try:
        while step < config.n_steps:
            lr = lr_at(config, step)
            starts = torch.randint(0, n_starts, (config.batch_size,), generator=gen).to(device)
            loss = _step(model, optimizer, _batch(train_stream, starts, config.context + 1),
                         lr, config.grad_clip)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at step {step + 1}; "
                                         "lower lr or raise warmup")
            step += 1
            window_losses.append(loss)
            bar.update(config.tokens_per_step)
            if step % config.eval_every == 0 or step == config.n_steps:
                record_eval()
                bar.set_postfix(loss=f"{loss:.3f}", val=f"{history[-1]['val_loss']:.3f}")
            saved = False
            if step in schedule:
                _save(model.state_dict(), _ckpt_path(folder, step))
                save_resume()
                saved = True
            if resume_every and step % resume_every == 0 and not saved:
                save_resume()
            if callback is not None:
                callback(step, dict(step=step, tokens=step * config.tokens_per_step, lr=lr,
                                    train_loss=loss))
    finally:
        bar.close()
    wall = time.perf_counter() - start_time
    trained = step - start_step
    frame = _history_frame(history)
    with atomic_path(folder / "history.csv") as tmp:
        frame.to_csv(tmp, index=False)
    info = dict(key=config.key, vocab_size=vocab, params=models.param_count(model),
                n_steps=config.n_steps, steps_this_session=trained, wall_time_s=round(wall, 3),
                tokens_per_s=(round(trained * config.tokens_per_step / wall, 1)
                              if wall > 0 and trained else None),
                threads=torch.get_num_threads(), device=str(device), resumed_from=start_step,
                final_val_loss=history[-1]["val_loss"], numerics=_numerics())
    _write_json(folder / "complete.json", info)
    resume.unlink(missing_ok=True)
    model.eval()
    return TrainedModel(model, tokenizer, config, frame, _list_checkpoints(folder), folder, info)


def _load_run(folder: Path, config: TrainConfig,
              model_factory: ModelFactory | None) -> TrainedModel:
    info = read_json(folder / "complete.json", error=CorruptRunError, fix=_fix(folder))
    checkpoints = _complete_checkpoints(folder, config)
    final = checkpoints[-1][0]
    model = load_checkpoint(folder, final, model_factory=model_factory)
    tokenizer = None
    if config.corpus != SYNTHETIC:
        from . import data

        tokenizer = data.tokenizer(config.tokenizer or config.corpus, vocab_size=config.vocab_size)
    history = _history_frame(_read_history(folder).to_dict("records"))
    return TrainedModel(model, tokenizer, config, history, checkpoints, folder, info)


def load_checkpoint(run: TrainedModel | TrainConfig | Path | str, step: int, *,
                    model_factory: ModelFactory | None = None) -> nn.Module:
    """The model saved after ``step`` updates of a run (eval mode); ``step=-1``: the last.

    ``run`` is a :class:`TrainedModel`, a :class:`TrainConfig` or a run folder.
    """
    if isinstance(run, TrainedModel):
        folder = run.run_dir
    elif isinstance(run, TrainConfig):
        folder = run_dir(run)
    else:
        folder = Path(run)
    meta_path = folder / "config.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no training run at {folder}; train(config) first")
    meta = read_json(meta_path, error=CorruptRunError, fix=_fix(folder))
    config = _config_from_dict(meta["config"])
    available = _list_checkpoints(folder)
    if step == -1 and available:
        step = available[-1][0]
    path = _ckpt_path(folder, step)
    if not path.is_file():
        raise FileNotFoundError(f"run {folder.name} has no checkpoint at step {step}; it has "
                                f"{[s for s, _ in available]}")
    with torch.random.fork_rng(devices=[]):  # building must not move the caller's RNG
        model = _make_model(config, int(meta["vocab_size"]), model_factory)
    model.load_state_dict(_torch_load(path, _fix(folder), weights_only=True))
    model.eval()
    return model


# --------------------------------------------------------------------------------------------
# Nothing lost: one process per run, the numeric environment, damaged files named


class CorruptRunError(RuntimeError):
    """A file of a training run cannot be read (or the run lacks files it must have)."""


class NumericsChangedError(RuntimeError):
    """Resuming a run under a thread count other than the one it started with."""


_HELD_LOCKS: set[str] = set()
_log = logging.getLogger(__name__)


@contextlib.contextmanager
def run_lock(config: TrainConfig):
    """Hold ``runs/<name>.lock`` exclusively (``fcntl.flock``) while training ``config``.

    A second process on the same config waits, then finds the finished run; a concurrent
    ``force=True`` waits too, so it never deletes checkpoints under a running job. The wait is
    logged (INFO, logger ``resonance.train``, naming the holder; the CLI shows it): notebooks
    run side by side wait on each other's models by design, and their outputs stay clean. The
    lock file sits beside the run folder (``force`` removes that).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    if config.name in _HELD_LOCKS:
        raise RuntimeError(f"train() was called again on run {config.name} while this process "
                           "trains it (from a callback?); that would wait for itself forever")
    path = paths.CACHE / "runs" / f"{config.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            _log.info("run %s is being trained by process %s (lock %s); waiting for it to "
                      "finish", config.name, holder, path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _HELD_LOCKS.add(config.name)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(config.name)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _numerics() -> dict:
    return numeric_environment(torch_too=True)


def _fix(folder: Path) -> str:
    return (f"train the config again with force=True (or delete {folder}) to retrain it; "
            "never force a run another process may be using")


def _torch_load(path: Path, fix: str, **kwargs) -> Any:
    try:
        return torch.load(path, **{"map_location": "cpu", **kwargs})
    except Exception as err:  # RuntimeError (zip reader), EOFError, UnpicklingError, ...
        raise CorruptRunError(f"{path} is damaged ({type(err).__name__}: {str(err)[:200]}); "
                              f"{fix}") from None


def _load_resume(resume: Path) -> dict:
    """The resumable state, refused when this process's thread count differs from the run's."""
    state = _torch_load(resume, f"delete {resume} to restart the run from step 0",
                        weights_only=False)
    then = (state.get("numerics") or {}).get("torch_threads")
    now = torch.get_num_threads()
    if then is not None and then != now:
        raise NumericsChangedError(
            f"{resume} was trained with {then} torch threads but this process uses {now}: the "
            f"resumed run would not be bitwise identical to an uninterrupted one. Pass "
            f"threads={then} to train(), or delete {resume} to restart from step 0")
    old_torch = (state.get("numerics") or {}).get("torch")
    if old_torch is not None and old_torch != torch.__version__:
        warnings.warn(f"{resume} was written by torch {old_torch}, resuming under "
                      f"{torch.__version__}: the run will not be bitwise reproducible",
                      RuntimeWarning, stacklevel=3)
    return state


def _complete_checkpoints(folder: Path, config: TrainConfig) -> list[tuple[int, Path]]:
    """A finished run's checkpoints; every scheduled one must be there."""
    checkpoints = _list_checkpoints(folder)
    expected = checkpoint_steps(config.n_steps, config.n_log_checkpoints,
                                config.n_linear_checkpoints)
    missing = sorted(set(expected) - {s for s, _ in checkpoints})
    if missing:
        raise CorruptRunError(f"run {folder} is marked complete but lacks the checkpoints of "
                              f"steps {missing} ({len(checkpoints)} of {len(expected)}); "
                              f"{_fix(folder)}")
    return checkpoints


def _read_history(folder: Path) -> pd.DataFrame:
    path = folder / "history.csv"
    try:
        frame = pd.read_csv(path, float_precision="round_trip")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CorruptRunError(f"{path} cannot be read ({err}); {_fix(folder)}") from None
    if list(frame.columns) != HISTORY_COLUMNS:
        raise CorruptRunError(f"{path} has columns {list(frame.columns)}, expected "
                              f"{HISTORY_COLUMNS}; {_fix(folder)}")
    return frame
