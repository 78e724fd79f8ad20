"""Run folders: one configuration trained and tested over seeds, resumable and honest.

A run folder ``<out>/runs/<dataset>/<run name>/`` holds ``config.json``, per seed
``seed_<k>/metrics.json``, ``predictions.csv`` (per test sample: prediction and the model's
scores, e.g. the importance weights alpha), ``train_scores.csv`` (the same scores on the
train split, for methods that have scores), ``best.pt`` and ``fingerprint.json``, and
``summary.json`` / ``summary.md`` (mean ± std over seeds).

Resume: a finished seed is reused only when its fingerprint (the run spec, the full train
config, the method's resolved options, the data files' sha256, a digest of the very input
tensors, a digest of the code that computes the numbers, the seed) equals the current one; otherwise the run refuses with a message naming
what differs (start a separate run with ``name=`` / ``--name``, or retrain with
``resume=False`` / ``--fresh``). A process holds an exclusive lock on the folder while it
writes; a second process on the same folder stops at once with a clear error.

Bit-reproducibility: the same seeds on the same feature cache, torch build and machine give
identical metrics. Re-encoding the features (another machine, torch build, or batch
composition) changes the features in the last bits, hence their digest: the fingerprint
then says so instead of silently mixing the two.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import paths
from ..data import MIRSplit, get_spec, load_split, sha256_of
from ..metrics import METRICS, format_summary, summarize
from ..models import get_method
from .config import ConfigError, TrainConfig, preset
from .distributed import broadcast, make_accelerator
from .inputs import build_inputs, resolve_precision
from .loop import scoped_determinism, train_one_seed

try:
    import fcntl
except ImportError:            # Windows: no advisory locks; single writer assumed
    fcntl = None


class RunError(RuntimeError):
    """A run cannot start or resume as asked (the message says what to do)."""


@dataclass
class RunSpec:
    dataset: str = "MIntRec2.0"
    method: str = "lgsrr"
    preset: str = "cpu"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    options: dict = field(default_factory=dict)    # the method's options, e.g. fusion
    overrides: dict = field(default_factory=dict)  # TrainConfig fields
    max_train: int | None = None                   # subsample (smoke tests); None = all
    max_eval: int | None = None
    name: str | None = None

    def run_name(self) -> str:
        """The folder name: method, preset, then only the options and overrides that differ
        from the method's defaults and the preset's values, so one computation has one name
        (``fusion=official`` spelled out or not)."""
        if self.name:
            return self.name
        try:
            default_opts = asdict(get_method(self.method).make_options({}))
            base = asdict(preset(self.dataset, self.preset))
        except Exception:          # an invalid spec: validate() names the problem
            default_opts, base = {}, {}
        parts = [self.method, self.preset]
        parts += [f"{k}={_name_value(v)}" for k, v in sorted(self.options.items())
                  if k not in default_opts or default_opts[k] != v]
        parts += [f"{k}={v}" for k, v in sorted(self.overrides.items())
                  if k not in base or base[k] != v]
        if self.max_train:
            parts.append(f"n{self.max_train}")
        if self.max_eval:
            parts.append(f"e{self.max_eval}")
        return "-".join(str(p) for p in parts)

    def regime_refusal(self) -> str | None:
        """Why the method cannot run in the preset's regime (None when it can): the
        multimodal baselines need the partial regime's token states."""
        method = get_method(self.method)
        regime = preset(self.dataset, self.preset, **self.overrides).regime
        if regime in method.regimes:
            return None
        return (f"{self.method} runs in the {'/'.join(method.regimes)} regime, preset "
                f"{self.preset!r} is {regime!r} (use a preset such as 'cpu-ft' or set regime)")

    def validate(self) -> tuple[TrainConfig, object]:
        """The resolved (config, method options); every bad value named before any work."""
        get_spec(self.dataset)
        method = get_method(self.method)
        try:
            opts = method.make_options(self.options)
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
        cfg = preset(self.dataset, self.preset, **self.overrides)
        why = self.regime_refusal()
        if why:
            raise ConfigError(f"method {why}")
        seeds = list(self.seeds)
        if not seeds:
            raise ConfigError("seeds must name at least one seed")
        if any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) for s in seeds):
            raise ConfigError(f"seeds must be integers, got {seeds}")
        if len(set(seeds)) != len(seeds):
            dup = sorted({s for s in seeds if seeds.count(s) > 1})
            raise ConfigError(f"seeds {dup} given more than once: each seed counts once in "
                              "mean ± std")
        for name in ("max_train", "max_eval"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
                raise ConfigError(f"{name} must be None (all rows) or an integer >= 1, got {v!r}")
        if self.name is not None and (not self.name.strip() or "/" in self.name
                                      or self.name in (".", "..")):
            raise ConfigError(f"name must be a plain folder name, got {self.name!r}")
        return cfg, opts


def _name_value(v) -> str:
    """An option value as it appears in a run folder name: a file path by its file stem
    (a folder name holds no '/'; what the file holds is in the fingerprint)."""
    s = str(v)
    if isinstance(v, (str, Path)) and ("/" in s or os.sep in s):
        return Path(s).stem or "path"
    return s


class RunLock:
    """Advisory lock on a run folder (``fcntl.flock`` on ``<folder>/.lock``).

    Exclusive (default): one writer per folder (the XMEI runs). ``shared=True``: the
    classification runs, where several processes may train the seeds of one run at once
    (each seed has its own :class:`SeedLock`); the shared lock only tells a process whose
    start failed whether anyone else is using the folder (:meth:`alone`) before it removes
    the folder it created."""

    def __init__(self, folder: Path, shared: bool = False):
        self.path = folder / ".lock"
        self.shared = shared
        self.fh = None

    def __enter__(self):
        if fcntl is None:
            return self
        self.fh, holder = _try_flock(self.path, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
                                     | fcntl.LOCK_NB)
        if self.fh is None:
            raise RunError(f"run folder {self.path.parent} is being written by {holder}; wait "
                           "for it to finish or give this run another name")
        if not self.shared:          # a shared holder leaves the note of the others alone
            _holder_note(self.fh)
        return self

    def alone(self) -> bool:
        """True when no other process holds this folder's lock (upgrades to exclusive)."""
        if self.fh is None:
            return fcntl is None
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc):
        if self.fh is not None:
            _unlock(self.fh, clear_note=not self.shared)
            self.fh = None


class SeedLock:
    """Exclusive advisory lock on one seed's folder (``seed_N/.lock``) while a process
    trains and writes that seed, so that several processes can share the seeds of one run
    (``python -m mir_core train ... --seeds 0 1 2 3 4`` started twice: each takes the seeds
    nobody else is training and waits for the others' at the end), and no seed is ever
    trained by two at once. Released when its holder exits or dies."""

    def __init__(self, seed_dir: Path):
        self.path = seed_dir / ".lock"
        self.fh = None

    def acquire(self, wait: bool) -> str | None:
        """Take the lock; None when held, else (``wait`` False and someone else holds it)
        the holder's note. ``wait`` True blocks until the holder is done."""
        if fcntl is None:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh, holder = _try_flock(self.path, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        if fh is None:
            return holder
        _holder_note(fh)
        self.fh = fh
        return None

    def release(self) -> None:
        if self.fh is not None:
            _unlock(self.fh, clear_note=True)
            self.fh = None


def _try_flock(path: Path, mode: int):
    """(open file holding the lock, "") or, when another process holds it, (None, its note)."""
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, mode)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        return None, holder
    return fh, ""


def _unlock(fh, clear_note: bool) -> None:
    if clear_note:
        fh.seek(0)
        fh.truncate()
    fcntl.flock(fh, fcntl.LOCK_UN)
    fh.close()


def _holder_note(fh) -> None:
    fh.seek(0)
    fh.truncate()
    fh.write(f"process {os.getpid()} since {time.strftime('%H:%M:%S')}")
    fh.flush()


def data_checksums(dataset: str, root: Path) -> dict[str, str]:
    spec = get_spec(dataset, root)
    return {rel: sha256_of(spec.path(root, rel)) for rel in spec.files()
            if spec.path(root, rel).exists()}


def code_digest(method) -> str:
    """sha256 over the source files that compute a run's numbers (the method's model file,
    the source encoders, the losses, the loop, its process sharding and the input
    builder): a changed model or loss makes old seeds stale even when every setting is the
    same."""
    import inspect

    from .. import losses
    from ..models import encoders
    from . import distributed, inputs, loop
    mods = {inspect.getmodule(method.build), encoders, losses, inputs, loop, distributed}
    h = hashlib.sha256()
    for path in sorted(Path(inspect.getsourcefile(m)) for m in mods):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _diff(old, new, prefix: str = "") -> list[str]:
    """Readable differences between two fingerprints."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k, "<absent>"), new.get(k, "<absent>"),
                         f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def predictions_frame(split: MIRSplit, out: dict, score_names: dict) -> pd.DataFrame:
    df = pd.DataFrame({"key": split.keys, "text": split.texts, "label": split.frame["label"],
                       "label_id": split.label_ids, "pred_id": out["pred"]})
    df["pred"] = [split.labels[i] for i in out["pred"]]
    return df.join(scores_frame(out, score_names))


def scores_frame(out: dict, score_names: dict) -> pd.DataFrame:
    cols = {}
    for name, columns in score_names.items():
        if name in out:
            for j, c in enumerate(columns):
                cols[f"{name}_{c}"] = out[name][:, j]
    return pd.DataFrame(cols)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")     # per process: no interleaving
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def run(spec: RunSpec, data_root: str | Path | None = None, out_dir: str | Path | None = None,
        store=None, resume: bool = True, log=print, progress: bool = False,
        stale: str = "error", on_seed=None, train: bool = True,
        wait_for_held: bool = True) -> dict:
    """Train and test one configuration over seeds; returns the summary dict.

    ``stale``: what to do with a finished seed whose fingerprint differs from the current
    one: ``"error"`` (default) refuses with a RunError naming the difference, ``"retrain"``
    logs the difference and trains that seed again. ``on_seed(metrics, reused)`` is called
    after every seed (a grid runner's progress bar and results log). ``train=False`` trains
    nothing: the summary holds the finished seeds whose fingerprint matches (a report of
    what is done); stale ones still follow ``stale`` ("retrain" leaves them out here).
    ``wait_for_held=False``: a seed another process is training is left to it (not waited
    for); the summary's ``held`` names them (a grid comes back for them after its other
    runs, so no process idles while there is work)."""
    if stale not in ("error", "retrain"):
        raise ConfigError(f"stale must be 'error' or 'retrain', got {stale!r}")
    root = Path(data_root) if data_root is not None else paths.data_dir() / "lgsrr"
    ds = get_spec(spec.dataset, root)          # also finds a user's dataset spec file
    cfg, options = spec.validate()
    method = get_method(spec.method)
    folder = paths.output_dir(out_dir) / "runs" / ds.name / spec.run_name()
    # the method's inputs besides the features (A-MESS: label descriptions), checked before
    # anything is loaded or encoded; their digest goes into the fingerprint
    method_inputs = method.inputs_fingerprint(options, ds.labels, ds.name)

    # everything that can fail on bad input happens before the run folder exists
    splits = {s: load_split(ds.name, s, root) for s in ("train", "dev", "test")}
    splits["train"] = splits["train"].subset(spec.max_train, seed=0)
    splits["dev"] = splits["dev"].subset(spec.max_eval, seed=0)
    splits["test"] = splits["test"].subset(spec.max_eval, seed=0)
    # several processes (accelerate launch / torchrun / notebook_launcher): all of them
    # train, the main one alone logs, shows bars and reads and writes the run folder
    accelerator = make_accelerator() if train else None
    world = accelerator.num_processes if accelerator is not None else 1
    is_main = accelerator is None or accelerator.is_main_process
    if not cfg.batch_per_process and cfg.batch_size < world:
        raise ConfigError(f"batch_size {cfg.batch_size} is the global batch and cannot be shared "
                          f"by {world} processes: raise it, or set batch_per_process=True")
    if not is_main:
        log, progress = _quiet, False
    if world > 1:
        from accelerate import PartialState

        from ..features.store import FeatureStore
        store = (store if store is not None else FeatureStore()).sharded(PartialState())
        per = cfg.batch_size if cfg.batch_per_process else cfg.batch_size / world
        log(f"{world} processes: global batch {per * world:g} = {world} x {per:g} per process"
            + (" (batch_per_process)" if cfg.batch_per_process else
               " (the preset's batch_size is global)"))
    if method.uses_ranks and not splits["train"].has_ranks:
        log(f"note: {ds.name} has no LLM ranks: {method.name} trains without L_rank")
    t0 = time.perf_counter()
    with scoped_determinism(cfg.num_threads):
        # the precision is measured (auto) by the main process alone, at the run's thread
        # count; the resolved value goes into the config, the features' key and the
        # fingerprint, so fp32 and bf16 runs never share features or seeds
        choice = None
        if is_main:
            choice = resolve_precision(cfg, splits["train"],
                                       accelerator.device if accelerator else None, log)
        choice = broadcast(accelerator, choice)
        cfg = cfg.replace(precision=choice.precision)
        data = build_inputs(splits, cfg, method.sources, method.uses_ranks, method.name,
                            store=store, progress=progress, log=log)
    feature_seconds = time.perf_counter() - t0
    base_fp = {
        "spec": {"dataset": ds.name, "method": method.name, "preset": spec.preset,
                 "options": asdict(options), "max_train": spec.max_train,
                 "max_eval": spec.max_eval},
        "train_config": asdict(cfg),
        "data": data_checksums(ds.name, root),
        "inputs": {k: v.digest for k, v in data.splits.items()},
        "code": code_digest(method),
        "world_size": world,
    }
    if method_inputs is not None:              # absent for methods without such inputs, so
        base_fp["method_inputs"] = method_inputs   # their fingerprints stay as they were

    created = not folder.exists()
    rows, held = [], {}
    if not train:                   # a read-only report: no folder, no lock, nothing written
        if not created:
            rows, held = _train_seeds(spec, method, options, cfg, ds, data, splits, folder,
                                      base_fp, resume, log, progress, None, stale, on_seed,
                                      train)
    else:
        with contextlib.ExitStack() as stack:
            folder_lock = None
            try:
                error = None
                if is_main:
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                        folder_lock = stack.enter_context(RunLock(folder, shared=True))
                    except RunError as e:
                        error = str(e)
                error = broadcast(accelerator, error)      # every process stops, or none
                if error:
                    raise RunError(error)
                rows, held = _train_seeds(spec, method, options, cfg, ds, data, splits,
                                          folder, base_fp, resume, log, progress,
                                          accelerator, stale, on_seed, train, choice,
                                          wait_for_held)
            except BaseException:
                # a failed start leaves nothing, unless another process shares the folder
                if is_main and created and folder_lock is not None \
                        and not any(folder.glob("seed_*/metrics.json")) and folder_lock.alone():
                    shutil.rmtree(folder, ignore_errors=True)
                raise
    summary = {
        "dataset": ds.name, "method": method.name, "options": asdict(options),
        "preset": spec.preset, "encoder": cfg.encoder, "regime": cfg.regime,
        "run": spec.run_name(), "folder": str(folder),
        "seeds": [r["seed"] for r in rows], "test": summarize(rows, METRICS),
        "dev": summarize([r["dev"] for r in rows], METRICS),
        "per_seed": [{k: r[k] for k in ("seed", *METRICS, "best_epoch", "train_seconds",
                                         "seconds_per_epoch")} for r in rows],
        "feature_seconds": round(feature_seconds, 2),
        "train_seconds_total": round(sum(r["train_seconds"] for r in rows), 2),
        "n_train": len(splits["train"]), "n_test": len(splits["test"]),
        "processes": world, "precision": cfg.precision,
        "held": held,
    }
    if train and is_main:
        _write_json(folder / "summary.json", summary)
        (folder / "summary.md").write_text(summary_markdown(summary))
    if rows:
        log(f"{ds.name} {spec.run_name()}: {format_summary(summary['test'])}")
    return summary


def _train_seeds(spec, method, options, cfg, ds, data, splits, folder, base_fp, resume, log,
                 progress, accelerator, stale="error", on_seed=None,
                 train: bool = True, choice=None,
                 wait_for_held: bool = True) -> tuple[list[dict], dict[int, str]]:
    """(the finished seeds' metrics in seed order, {seed: holder} of the seeds left to the
    other processes that hold them when ``wait_for_held`` is off)."""
    written = []

    def write_config() -> None:
        """config.json, written by the main process before the first seed it trains: a run
        refused as stale leaves the folder's config as it was."""
        if not written:
            _write_json(folder / "config.json", {
                "spec": asdict(spec), "train_config": asdict(cfg),
                "options": asdict(options),
                "precision": asdict(choice) if choice is not None else None})
            written.append(True)

    bar = None
    if progress and len(spec.seeds) > 1:     # one bar across the seeds, one per seed's epochs
        from tqdm.auto import tqdm
        bar = tqdm(total=len(spec.seeds), desc=f"{method.name}: seeds", unit="seed")
    done: dict[int, dict] = {}

    def one(seed: int, wait: bool):
        row = _one_seed(seed, spec, method, options, cfg, ds, data, splits, folder, base_fp,
                        resume, log, progress, accelerator, stale, on_seed, train,
                        write_config, wait=wait)
        if isinstance(row, dict):            # None: train=False and the seed is not done
            done[seed] = row
            if bar is not None:
                bar.set_postfix_str(f"seed {seed}: test F1 {row['F1']:.2f}")
                bar.update(1)
        return row

    try:
        # first the seeds no other process is training, then (waiting for their holders)
        # the others: reused when their holder finished them, trained here when it died
        busy = {}
        for seed in (int(s) for s in spec.seeds):
            row = one(seed, wait=False)
            if isinstance(row, str):             # another process holds this seed
                busy[seed] = row
        for seed, holder in busy.items():
            if not wait_for_held:
                log(f"seed {seed}: being trained by {holder}; left to it for now")
                continue
            log(f"seed {seed}: being trained by {holder}; waiting for it")
            one(seed, wait=True)
    finally:
        if bar is not None:
            bar.close()
    rows = [done[int(s)] for s in spec.seeds if int(s) in done]
    return rows, ({} if wait_for_held else busy)


def _one_seed(seed, spec, method, options, cfg, ds, data, splits, folder, base_fp, resume, log,
              progress, accelerator, stale, on_seed, train=True,
              write_config=lambda: None, wait: bool = True) -> dict | str | None:
    """Reuse one seed when its fingerprint matches, else train and write it; its metrics
    (None when ``train`` is False and the seed is not done; the holder's note when another
    job's process holds the seed's lock and ``wait`` is False). With several processes of
    one job (accelerate / torchrun) the main one locks and decides (it alone reads the
    folder), every process trains, the main one writes and the others wait for it."""
    lock = SeedLock(folder / f"seed_{seed}")
    try:
        return _locked_seed(seed, spec, method, options, cfg, ds, data, splits, folder,
                            base_fp, resume, log, progress, accelerator, stale, on_seed,
                            train, write_config, wait, lock)
    finally:
        lock.release()


def _locked_seed(seed, spec, method, options, cfg, ds, data, splits, folder, base_fp, resume,
                 log, progress, accelerator, stale, on_seed, train, write_config, wait, lock):
    sdir = folder / f"seed_{seed}"
    mfile, ffile = sdir / "metrics.json", sdir / "fingerprint.json"
    fp = {**base_fp, "seed": seed}
    is_main = accelerator is None or accelerator.is_main_process
    decision = None
    if is_main:
        # under accelerate the other ranks wait in the broadcast below while the main one
        # waits for another job's holder: a wait longer than the process group's timeout
        # (30 min for gloo) ends the job; give concurrent multi-process jobs disjoint seeds
        holder = lock.acquire(wait) if train else None
        if holder is not None:
            decision = ("busy", holder)
        else:
            try:
                decision = _seed_decision(seed, sdir, fp, resume, stale, train, log)
            except RunError as e:
                decision = ("error", str(e))
    kind, value = broadcast(accelerator, decision)
    if kind == "error":
        raise RunError(value)
    if kind == "busy":
        return value
    if kind == "reuse":
        if on_seed is not None and is_main:
            on_seed(value, True)
        return value
    if kind == "skip":
        return None
    if is_main:
        write_config()
    with scoped_determinism(cfg.num_threads):
        res = train_one_seed(method, options, cfg, seed, data, ds.num_labels, accelerator,
                             log=log, progress=progress, predict_train=bool(method.scores),
                             labels=tuple(ds.labels), dataset=ds.name)
    if not is_main:
        accelerator.wait_for_everyone()          # the main process writes the seed
        return res.metrics
    sdir.mkdir(parents=True, exist_ok=True)
    if mfile.exists():
        mfile.unlink()               # retraining: the seed is not done until rewritten
    torch.save(res.state, sdir / "best.pt")
    predictions_frame(splits["test"], res.test, method.scores).to_csv(
        sdir / "predictions.csv", index=False)
    if res.train is not None:
        tf = scores_frame(res.train, method.scores)
        tf.insert(0, "key", splits["train"].keys)
        tf.to_csv(sdir / "train_scores.csv", index=False)
    _write_json(ffile, fp)
    _write_json(mfile, res.metrics)  # written last: a seed counts as done only when complete
    if accelerator is not None:
        accelerator.wait_for_everyone()
    if on_seed is not None:
        on_seed(res.metrics, False)
    return res.metrics


def _seed_decision(seed, sdir, fp, resume, stale, train, log) -> tuple[str, object]:
    """('reuse', metrics) for a finished seed with this fingerprint, ('train', None) or
    ('skip', None) (not done and ``train`` is False); RunError for a stale seed unless
    ``stale`` is "retrain"."""
    mfile, ffile = sdir / "metrics.json", sdir / "fingerprint.json"
    if resume and mfile.exists():
        old = json.loads(ffile.read_text()) if ffile.exists() else None
        if old == fp:
            log(f"seed {seed}: done already ({mfile})")
            return "reuse", json.loads(mfile.read_text())
        what = ("it has no fingerprint (written by an older version)" if old is None
                else "; ".join(_diff(old, fp)[:6]))
        if stale != "retrain":
            raise RunError(f"{sdir} was trained with other settings ({what}); give this run "
                           "another name (--name / RunSpec.name) or retrain it (--fresh / "
                           "resume=False)")
        if not train:
            log(f"seed {seed}: stale ({what}); left out")
            return "skip", None
        log(f"seed {seed}: stale ({what}); retraining")
    if not train:
        log(f"seed {seed}: not trained yet; left out")
        return "skip", None
    return "train", None


def _quiet(*_args, **_kw) -> None:
    """The log of the processes other than the main one."""


def summary_markdown(summary: dict) -> str:
    head = "| seed | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS) + "\n"
    rows = "".join(f"| {r['seed']} | " + " | ".join(f"{r[k]:.2f}" for k in METRICS) + " |\n"
                   for r in summary["per_seed"])
    mean = ("| mean ± std | " + " | ".join(
        f"{summary['test'][k]['mean']:.2f} ± {summary['test'][k]['std']:.2f}" for k in METRICS)
        + " |\n")
    return f"# {summary['dataset']} — {summary['run']}\n\n{head}{rows}{mean}"

