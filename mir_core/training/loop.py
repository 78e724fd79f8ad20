"""The one training loop, for every registered method and regime.

AdamW + linear warmup, early stopping on dev macro-F1 with patience, the best state
restored, test metrics via scikit-learn. The loop reads a :class:`ModelOutput` and knows no
method by name. Determinism and thread settings are scoped to the call and restored after
it (a notebook kernel keeps its own settings).

Precision: the forward passes run under bf16 autocast when the run's resolved precision is
bf16 (:attr:`RegimeInputs.precision`), the backward pass outside it. The loop applies it
itself rather than through ``Accelerator(mixed_precision=...)``: accelerate fixes mixed
precision once per process, and a notebook kernel trains fp32 and bf16 runs one after the
other. bf16 needs no loss scaling, so this is the computation accelerate would run.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from ..metrics import classification_metrics
from ..models.registry import BuildContext, Method
from ..precision import autocast
from .config import TrainConfig
from .distributed import ShardedBatches
from .inputs import RegimeInputs, SplitInputs


class _Rows(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def bucketed_batches(lengths: np.ndarray, batch_size: int, seed: int,
                     pool_batches: int = 50) -> list[list[int]]:
    """Shuffled batches of similar total length: shuffle, sort within pools of
    ``pool_batches`` batches, cut, shuffle the batch order (less padding, still random)."""
    rng = np.random.default_rng(seed)
    total = lengths.reshape(len(lengths), -1).sum(1)
    perm = rng.permutation(len(total))
    pool = batch_size * pool_batches
    batches = []
    for s in range(0, len(perm), pool):
        chunk = perm[s:s + pool]
        chunk = chunk[np.argsort(total[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


class BucketedSampler:
    """A batch sampler: fresh bucketed batches every epoch (seed + epoch)."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def __iter__(self):
        batches = bucketed_batches(self.lengths, self.batch_size, self.seed + self.epoch)
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def make_loader(inputs: SplitInputs, batch_size: int, shuffle: bool, seed: int,
                trim: bool, bucketing: bool = False, rank: int = 0,
                world: int = 1) -> DataLoader:
    """Batches of ``inputs.batch(idx)`` dicts. Evaluation keeps the split's order (the
    official fusion's gamma is a batch mean: batch composition matters). Training batches
    are global batches of ``batch_size``; with ``world`` > 1 processes this process gets
    its share of each (:class:`~mir_core.training.distributed.ShardedBatches`)."""
    collate = lambda ids: inputs.batch(torch.as_tensor(ids), trim=trim)  # noqa: E731
    if not shuffle:
        return DataLoader(_Rows(len(inputs)), batch_size=batch_size, collate_fn=collate)
    g = None
    if bucketing and inputs.lengths is not None:
        batches = BucketedSampler(inputs.lengths, batch_size, seed)
    else:   # exactly what DataLoader(shuffle=True, generator=g) builds and draws from g
        g = torch.Generator().manual_seed(seed)
        batches = BatchSampler(RandomSampler(_Rows(len(inputs)), generator=g), batch_size,
                               drop_last=False)
    if world > 1:
        batches = ShardedBatches(batches, rank, world)
    return DataLoader(_Rows(len(inputs)), collate_fn=collate, batch_sampler=batches,
                      generator=g)


@contextlib.contextmanager
def scoped_determinism(num_threads: int = 0):
    """Deterministic algorithms (and a thread count) for the block only."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # cuBLAS determinism
    torch.use_deterministic_algorithms(True, warn_only=True)
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.set_num_threads(prev_threads)


@torch.no_grad()
def predict(model, inputs: SplitInputs, batch_size: int, trim: bool,
            accelerator=None, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Logits, argmax predictions and the model's per-sample scores, in split order
    (``precision`` 'bf16': the forward pass under bf16 autocast, outputs as float32).

    With several processes the batches are dealt to them whole and gathered with
    ``gather_for_metrics`` (the padding of the last round dropped): every process returns
    the whole split, and a count other than the split size is an error, never a metric
    over duplicated or missing rows."""
    model.eval()
    loader = make_loader(inputs, batch_size, shuffle=False, seed=0, trim=trim)
    if accelerator is not None:
        loader = accelerator.prepare(loader)
    outs: dict[str, list] = {}
    for batch in loader:
        batch.pop("labels", None)
        batch.pop("rank_order", None)
        with autocast(precision, batch_device(batch)):
            out = model(**batch)
        for k, v in {"logits": out.logits, **out.scores}.items():
            v = v.float()
            if accelerator is not None:
                v = accelerator.gather_for_metrics(v)
            outs.setdefault(k, []).append(v.cpu().numpy())
    res = {k: np.concatenate(v) for k, v in outs.items()}
    if len(res["logits"]) != len(inputs):
        raise RuntimeError(f"evaluation gathered {len(res['logits'])} rows for the "
                           f"{len(inputs)} of {inputs.split.dataset}/{inputs.split.split}")
    res["pred"] = res["logits"].argmax(-1)
    return res


def batch_device(batch: dict[str, torch.Tensor]) -> torch.device:
    """Where a batch's tensors are (the device autocast has to cover)."""
    return next(iter(batch.values())).device


def _param_groups(model, cfg: TrainConfig, encoder: nn.Module) -> list[dict]:
    """Weight decay except on biases / norms / mix logits; the source encoder's layers at
    encoder_lr. ``encoder``: the module the regime built (BuildContext.encoder), found in
    the model by identity, whatever a model calls it (MAG-BERT's gate wraps it)."""
    no_decay = ("bias", "LayerNorm.weight", "norm.weight", "mix.logits")
    enc_lr = cfg.encoder_lr or cfg.lr
    layer_params = {id(p) for n, p in encoder.named_parameters()
                    if not n.startswith(("mix", "proj"))}       # PooledFeatures' own head
    groups: dict[tuple, list] = {}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = enc_lr if id(p) in layer_params else cfg.lr
        wd = 0.0 if any(x in n for x in no_decay) else cfg.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


@dataclass
class SeedResult:
    metrics: dict
    test: dict[str, np.ndarray]
    train: dict[str, np.ndarray] | None
    state: dict


def train_one_seed(method: Method, options, cfg: TrainConfig, seed: int, data: RegimeInputs,
                   num_labels: int, accelerator, log=print, progress: bool = False,
                   predict_train: bool = False, labels: tuple[str, ...] = (),
                   dataset: str = "") -> SeedResult:
    """Train with early stopping on dev macro-F1; test (and optionally train) predictions.
    ``labels`` (names in label-id order) and ``dataset`` go to the model's BuildContext."""
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    train, dev, test = data.splits["train"], data.splits["dev"], data.splits["test"]
    # rank 0 draws what one process draws; the other ranks' dropout masks differ from it
    # (their initial weights are replaced by rank 0's when DDP wraps the model)
    set_seed(seed, device_specific=accelerator.num_processes > 1)
    if labels and len(labels) != num_labels:
        raise ValueError(f"{len(labels)} label names for {num_labels} labels")
    encoder = data.encoder_factory()
    model = method.build(BuildContext(num_labels=num_labels, train_config=cfg,
                                      encoder=encoder, options=options,
                                      labels=tuple(labels), dataset=dataset))
    world = accelerator.num_processes
    global_batch = cfg.batch_size * (world if cfg.batch_per_process else 1)
    loader = make_loader(train, global_batch, shuffle=True, seed=seed, trim=data.trim,
                         bucketing=cfg.length_bucketing, rank=accelerator.process_index,
                         world=world)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg, encoder), lr=cfg.lr)
    steps = len(loader) * cfg.epochs              # optimizer steps: one per global batch
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    # the loader shards itself (ShardedBatches) and the scheduler steps once per step, so
    # neither goes through prepare(); the model (DDP) and optimizer do
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device

    def evaluate(inputs: SplitInputs) -> dict[str, np.ndarray]:
        return predict(model, inputs, cfg.eval_batch_size, data.trim, accelerator,
                       data.precision)

    bar = None
    if progress and accelerator.is_main_process:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.epochs, desc=f"{method.name} seed {seed}", unit="epoch",
                   leave=False)
    best = {"f1": -1.0, "epoch": 0, "state": None}
    history = []
    t0 = time.perf_counter()
    wait = 0
    dev_labels = dev.tensors["labels"].numpy()
    for epoch in range(cfg.epochs):
        model.train()
        te = time.perf_counter()
        tot, n = 0.0, 0
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(data.precision, device):    # backward outside, as torch advises
                out = model(**batch)
            accelerator.backward(out.loss)
            if cfg.grad_clip > 0:
                accelerator.clip_grad_value_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            b = len(batch["labels"])
            tot += float(out.loss.detach()) * b
            n += b
        if world > 1:                              # the loss over every process's share
            tot, n = accelerator.reduce(torch.tensor([tot, float(n)], device=device),
                                        "sum").tolist()
        dev_pred = evaluate(dev)["pred"]
        dev_m = classification_metrics(dev_labels, dev_pred)
        history.append({"epoch": epoch + 1, "train_loss": tot / max(n, 1), "dev_F1": dev_m["F1"],
                        "dev_ACC": dev_m["ACC"], "seconds": time.perf_counter() - te})
        if dev_m["F1"] > best["f1"]:
            best = {"f1": dev_m["F1"], "epoch": epoch + 1,
                    "state": copy.deepcopy(accelerator.unwrap_model(model).state_dict())}
            wait = 0
        else:
            wait += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(dev_F1=f"{dev_m['F1']:.2f}", best=f"{best['f1']:.2f}")
        if wait >= cfg.patience:
            break
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - t0
    if best["state"] is not None:
        accelerator.unwrap_model(model).load_state_dict(best["state"])
    state = accelerator.unwrap_model(model).state_dict()
    test_out, dev_out = evaluate(test), evaluate(dev)
    train_out = evaluate(train) if predict_train else None
    metrics = {
        "seed": seed, **classification_metrics(test.tensors["labels"].numpy(), test_out["pred"]),
        "dev": classification_metrics(dev_labels, dev_out["pred"]),
        "best_epoch": best["epoch"], "epochs_run": len(history),
        "train_seconds": round(train_seconds, 2),
        "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in history])), 3),
        "processes": world, "global_batch": global_batch,
        "history": history,
    }
    log(f"seed {seed}: test F1 {metrics['F1']:.2f} ACC {metrics['ACC']:.2f} "
        f"(best epoch {best['epoch']}, {train_seconds:.1f} s)")
    accelerator.free_memory()
    return SeedResult(metrics, test_out, train_out, state)
