"""Fine-tune a trained in-house model on other corpora, with evenly spaced checkpoints.

>>> base = TrainConfig(family="gpt2", d_model=128, n_layers=4, ...)      # doctest: +SKIP
>>> run = finetune(FinetuneConfig(base, corpora=("fortunes",), steps=60))  # doctest: +SKIP
>>> run.checkpoints        # [(0, path), (5, path), ..., (60, path)]: step 0 = the base model
>>> run.load(30)           # the model after 30 fine-tuning updates (eval mode)

A fine-tuning run starts from the *last* checkpoint of ``base`` (trained with
:func:`resonance.train.train` if it is not cached yet) and keeps the base model's tokenizer,
so the new corpora are tokenized with the base vocabulary. Every update draws
``batch_size`` windows of ``context + 1`` tokens; each window's corpus is drawn uniformly
from ``corpora`` (so ``("fortunes", "wordnet")`` is an equal mix whatever the corpora's sizes),
then its offset uniformly within that corpus' training stream, all from one seeded
``torch.Generator``. The update itself is :mod:`resonance.train`'s (AdamW with its decay
groups, gradient clipping, :func:`resonance.train.lr_at` schedules): the fine-tuning phase is
described by :meth:`FinetuneConfig.phase`, an ordinary :class:`~resonance.train.TrainConfig`.

Checkpoints are saved after every ``steps // n_checkpoints`` updates (evenly spaced in steps,
hence in tokens: log-spaced checkpoints would bias any "early vs late" statistic by
themselves). Runs live in ``paths.CACHE / "finetune" / f"{base.name}-{key}"`` with
``config.json``, ``ckpt-*.pt``, ``history.csv`` (step, lr, train_loss averaged since the last
checkpoint) and ``complete.json`` written last; every file is written atomically. A run that
stopped before ``complete.json`` restarts from scratch (runs are short); same config and
thread count give bitwise identical weights.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import paths, train as _train
from .seeding import seed_everything
from .store import atomic_path, config_hash

__all__ = ["FinetuneConfig", "FinetunedRun", "finetune", "finetune_dir", "token_streams"]


@dataclass(frozen=True)
class FinetuneConfig:
    """A fine-tuning run: the base run, the corpora to mix, and the optimiser settings.

    ``steps`` updates of ``batch_size`` windows (of the base model's context); ``warmup`` in
    steps; ``schedule`` ``"cosine"`` (decay to ``min_lr_ratio * lr``) or ``"constant"``
    (after the warmup); ``n_checkpoints`` evenly spaced checkpoints after step 0 (``steps``
    must be a multiple of it).
    """

    base: _train.TrainConfig
    corpora: tuple[str, ...] = ("fortunes",)
    steps: int = 60
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 5
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    n_checkpoints: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        corpora = (self.corpora,) if isinstance(self.corpora, str) else tuple(self.corpora)
        object.__setattr__(self, "corpora", corpora)
        if not corpora or len(set(corpora)) != len(corpora):
            raise ValueError(f"corpora must name one or more distinct corpora, got {corpora!r}")
        if self.base.corpus == _train.SYNTHETIC or _train.SYNTHETIC in corpora:
            raise ValueError("fine-tuning needs text corpora and the base run's tokenizer; the "
                             "synthetic corpus has no tokenizer")
        if not isinstance(self.n_checkpoints, int) or self.n_checkpoints < 1:
            raise ValueError(f"n_checkpoints must be a positive integer, got {self.n_checkpoints!r}")
        if not isinstance(self.steps, int) or self.steps < 1 or self.steps % self.n_checkpoints:
            raise ValueError(f"steps ({self.steps!r}) must be a positive multiple of "
                             f"n_checkpoints ({self.n_checkpoints}) so checkpoints are evenly "
                             "spaced")
        self.phase()  # validates lr, warmup, schedule, batch size

    def phase(self) -> _train.TrainConfig:
        """The fine-tuning phase as a TrainConfig (its schedule, optimiser and batch shape)."""
        b = self.base
        return _train.TrainConfig(
            family=b.family, d_model=b.d_model, n_layers=b.n_layers, n_heads=b.n_heads,
            context=b.context, corpus="+".join(self.corpora), tokenizer=b.tokenizer or b.corpus,
            vocab_size=b.vocab_size, tokens=self.steps * self.batch_size * b.context,
            batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            betas=b.betas, warmup=self.warmup, schedule=self.schedule,
            min_lr_ratio=self.min_lr_ratio, grad_clip=self.grad_clip, seed=self.seed,
            build_kwargs=b.build_kwargs)

    @property
    def checkpoint_steps(self) -> list[int]:
        every = self.steps // self.n_checkpoints
        return list(range(0, self.steps + 1, every))

    @property
    def key(self) -> str:
        d = asdict(self)
        d["base"] = self.base.key
        return config_hash(d)

    @property
    def name(self) -> str:
        return f"{self.base.name}-ft-{self.key}"


@dataclass
class FinetunedRun:
    """A finished fine-tuning run: config, tokenizer, history and checkpoints on disk."""

    config: FinetuneConfig
    tokenizer: Any
    history: pd.DataFrame
    checkpoints: list[tuple[int, Path]]
    run_dir: Path
    info: dict

    def load(self, step: int) -> nn.Module:
        """The model after ``step`` fine-tuning updates (``0`` = the base model), eval mode."""
        return _load(self.run_dir, self.config, step)

    def parameters(self, step: int) -> np.ndarray:
        """All weights after ``step`` updates as one float64 vector (tied weights once)."""
        state = torch.load(_ckpt(self.run_dir, step), weights_only=True)
        seen, parts = set(), []
        for name in sorted(state):
            t = state[name]
            if not t.is_floating_point() or t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            parts.append(t.detach().double().ravel().numpy())
        return np.concatenate(parts)


def finetune_dir(config: FinetuneConfig) -> Path:
    return paths.CACHE / "finetune" / config.name


def _ckpt(folder: Path, step: int) -> Path:
    return folder / f"ckpt-{step:07d}.pt"


def _save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _load(folder: Path, config: FinetuneConfig, step: int) -> nn.Module:
    path = _ckpt(folder, step)
    if not path.is_file():
        raise FileNotFoundError(f"fine-tuning run {folder.name} has no checkpoint at step {step}; "
                                f"it has {config.checkpoint_steps}")
    model = _train.load_checkpoint(_train.run_dir(config.base), -1)  # the architecture
    model.load_state_dict(torch.load(path, weights_only=True))
    model.eval()
    return model


def token_streams(corpora: tuple[str, ...], split: str, tokenizer: Any) -> list[torch.Tensor]:
    """Each corpus' ``split`` token stream (int64) under ``tokenizer``."""
    from . import data

    return [torch.from_numpy(np.asarray(data.token_stream(c, split, tokenizer), dtype=np.int64))
            for c in corpora]


def _windows(streams: list[torch.Tensor], gen: torch.Generator, batch: int,
             width: int) -> torch.Tensor:
    source = torch.randint(0, len(streams), (batch,), generator=gen)
    rows = []
    for s in source.tolist():
        start = int(torch.randint(0, len(streams[s]) - width + 1, (1,), generator=gen))
        rows.append(streams[s][start:start + width])
    return torch.stack(rows)


def finetune(config: FinetuneConfig, *, force: bool = False, threads: int | None = 1) -> FinetunedRun:
    """Fine-tune (or load the cached run of) ``config``; see the module docstring.

    ``threads`` sets torch's intra-op threads during the run (restored afterwards; tiny
    models are fastest on one). ``force=True`` deletes this run's folder and retrains (never
    the base run).
    """
    folder = finetune_dir(config)
    if force and folder.exists():
        import shutil

        shutil.rmtree(folder)
    base_run = _train.train(config.base, progress=False, threads=threads)
    if (folder / "complete.json").is_file():
        return _finished(folder, config, base_run.tokenizer)
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _finetune(config, folder, base_run)
    finally:
        torch.set_num_threads(old)


def _finished(folder: Path, config: FinetuneConfig, tokenizer: Any) -> FinetunedRun:
    info = json.loads((folder / "complete.json").read_text())
    history = pd.read_csv(folder / "history.csv", float_precision="round_trip")
    ckpts = [(s, _ckpt(folder, s)) for s in config.checkpoint_steps]
    return FinetunedRun(config, tokenizer, history, ckpts, folder, info)


def _finetune(config: FinetuneConfig, folder: Path, base_run: _train.TrainedModel) -> FinetunedRun:
    phase = config.phase()
    width = phase.context + 1
    streams = token_streams(config.corpora, "train", base_run.tokenizer)
    for name, s in zip(config.corpora, streams):
        if len(s) < width + 1:
            raise ValueError(f"corpus {name!r} has {len(s)} training tokens, fewer than one "
                             f"window of {width}")
    for f in folder.glob("ckpt-*.pt"):  # a partial run restarts from scratch
        f.unlink()
    _write_json(folder / "config.json", {"config": asdict(config), "key": config.key,
                                         "base_key": config.base.key})
    seed_everything(config.seed)
    model = _train.load_checkpoint(base_run.run_dir, -1)
    model.train()
    optimizer = _train._optimizer(model, phase)
    gen = torch.Generator().manual_seed(config.seed)
    saves = set(config.checkpoint_steps)
    _save(model.state_dict(), _ckpt(folder, 0))
    history, losses = [dict(step=0, lr=float("nan"), train_loss=float("nan"))], []
    start = time.perf_counter()
    for step in range(config.steps):
        lr = _train.lr_at(phase, step)
        loss = _train._step(model, optimizer, _windows(streams, gen, phase.batch_size, width),
                            lr, phase.grad_clip)
        if not math.isfinite(loss):
            raise FloatingPointError(f"fine-tuning loss became {loss} at step {step + 1}; "
                                     "lower lr or raise warmup")
        losses.append(loss)
        if step + 1 in saves:
            _save(model.state_dict(), _ckpt(folder, step + 1))
            history.append(dict(step=step + 1, lr=lr, train_loss=float(np.mean(losses))))
            losses = []
    wall = time.perf_counter() - start
    frame = pd.DataFrame(history, columns=["step", "lr", "train_loss"])
    with atomic_path(folder / "history.csv") as tmp:
        frame.to_csv(tmp, index=False)
    info = dict(key=config.key, base_key=config.base.key, steps=config.steps,
                tokens=config.steps * phase.tokens_per_step, wall_time_s=round(wall, 3),
                threads=torch.get_num_threads())
    _write_json(folder / "complete.json", info)
    model.eval()
    return _finished(folder, config, base_run.tokenizer)


@torch.no_grad()
def final_token_states(model, tokenizer, texts: Sequence[str], layers: Sequence[int],
                       batch_size: int = 64) -> tuple[list[np.ndarray], np.ndarray]:
    """Final-token hidden states ``[(n, d)] per layer`` and next-token log-probs ``(n, vocab)``
    of a GPT-2-layout causal LM (``model.transformer``, ``model.lm_head``) on ``texts``."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    if min(len(i) for i in ids) < 1:
        raise ValueError("an evaluation prompt tokenizes to nothing")
    states = [[] for _ in layers]
    logp = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        width = max(len(i) for i in chunk)
        x = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, seq in enumerate(chunk):
            x[r, :len(seq)] = torch.as_tensor(seq)
            mask[r, :len(seq)] = 1
        # The body for hidden states; the LM head only at the final tokens (GPT-2 layout).
        out = model.transformer(input_ids=x, attention_mask=mask, output_hidden_states=True)
        last = mask.sum(1) - 1
        rows = torch.arange(len(chunk))
        for slot, layer in enumerate(layers):
            states[slot].append(out.hidden_states[layer][rows, last].double().numpy())
        logits = model.lm_head(out.hidden_states[-1][rows, last])
        logp.append(torch.log_softmax(logits.double(), -1).numpy())
    return [np.concatenate(s) for s in states], np.concatenate(logp)
