"""Cost of the feature store's integrity check: unchecked ``np.load`` vs the verified load.

    python benchmarks/store_integrity.py                 # all sizes (about 2 min, 4 GB RAM)
    python benchmarks/store_integrity.py --no-1gb --repeat 3

Entries of realistic size (MIntRec2.0 train: 6165 items, float16) are written once into a
temporary store, then loaded, with the page cache warm (the usual case of a cache):

* ``text``: ``mean`` + ``cls`` (6165, 7, 384) each, as ``split_text_features`` keeps them;
* ``tokens``: ``tokens`` (6165, 50, 384) + ``mask`` (6165, 50), token-level features;
* ``1gb``: one (24660, 50, 384) array, token features of the four text sources together.

Per entry, best of ``--repeat`` runs:

* ``np.load``: every array with plain ``np.load`` (the store before checksums: unchecked);
* ``checked, first``: ``StoreEntry.load()`` with the per-process verification cache
  cleared (header, shape, dtype, size and CRC-32 checked in the same pass as the read);
* ``checked, again``: ``StoreEntry.load()`` of a file already verified in this process
  (only ``stat``);
* ``get_or_compute``: the whole exact hit (input digest, manifest, verified load), first
  and again;
* ``subset``: 1000 items served from the entry (memory map + CRC-32 of the whole entry the
  first time), first and again.

Also the speed of the checksums the standard library offers, on the ``tokens`` array.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mir_core.features import store as store_mod  # noqa: E402
from mir_core.features.store import FeatureStore  # noqa: E402

N_TRAIN = 6165                 # MIntRec2.0 train
CASES = {
    "text": {"mean": ((N_TRAIN, 7, 384), np.float16), "cls": ((N_TRAIN, 7, 384), np.float16)},
    "tokens": {"tokens": ((N_TRAIN, 50, 384), np.float16), "mask": ((N_TRAIN, 50), np.bool_)},
    "1gb": {"tokens": ((4 * N_TRAIN, 50, 384), np.float16)},
}

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402


def cpu_model() -> str:
    return machine_info()["cpu"]


def best(fn, repeat: int, before=None) -> float:
    """Best wall time of ``repeat`` runs (the machine is shared: best is the least noisy)."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def make_entry(store: FeatureStore, name: str, spec: dict, rng) -> tuple[dict, list[str]]:
    n = next(iter(spec.values()))[0][0]
    inputs = [f"{name} utterance {i}" for i in range(n)]

    def compute(batch):
        out = {}
        for arr, (shape, dtype) in spec.items():
            shape = (len(batch), *shape[1:])
            out[arr] = (rng.random(shape, dtype=np.float32) < 0.8 if dtype == np.bool_
                        else rng.standard_normal(shape, dtype=np.float32).astype(dtype))
        return out

    kw = dict(dataset="bench", split="train", modality=name, encoder="synthetic",
              settings={"case": name}, compute=compute, chunk_size=2048, progress=False)
    store.get_or_compute_entry(inputs=inputs, **kw)
    return kw, inputs


def hash_speeds(arr: np.ndarray, repeat: int) -> dict[str, float]:
    buf = memoryview(arr.reshape(-1).view(np.uint8))
    algos = {"crc32": lambda: zlib.crc32(buf), "adler32": lambda: zlib.adler32(buf),
             "sha1": lambda: hashlib.sha1(buf).digest(),
             "sha256": lambda: hashlib.sha256(buf).digest(),
             "blake2b": lambda: hashlib.blake2b(buf, digest_size=16).digest(),
             "md5": lambda: hashlib.md5(buf).digest()}
    return {name: arr.nbytes / best(fn, repeat) / 1e9 for name, fn in algos.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-1gb", action="store_true", help="skip the 1 GB entry")
    ap.add_argument("--root", help="store folder (default: a temporary folder, removed)")
    args = ap.parse_args()

    import torch
    print(f"cpu: {cpu_model()} ({os.cpu_count()} logical cores), torch threads "
          f"{torch.get_num_threads()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"python {platform.python_version()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cases = {k: v for k, v in CASES.items() if not (args.no_1gb and k == "1gb")}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        store = FeatureStore(tmp, log=print)
        made = {name: make_entry(store, name, spec, rng) for name, spec in cases.items()}
        time.sleep(store_mod._RACY_NS / 1e9 + 0.1)     # files changed in the last 2 s are
        rows: list[tuple] = []                         # re-verified on every load
        speeds = None
        for name, (kw, inputs) in made.items():
            entry = store.get_or_compute_entry(inputs=inputs, **kw)
            files = [entry.path / f"{a}.npy" for a in entry.manifest["arrays"]]
            mb = sum(f.stat().st_size for f in files) / 1e6
            reset = store_mod.reset_verification_cache
            plain = best(lambda: [np.load(f) for f in files], args.repeat)
            first = best(entry.load, args.repeat, before=reset)
            entry.load()
            again = best(entry.load, args.repeat)
            goc_first = best(lambda: store.get_or_compute(inputs=inputs, **kw), args.repeat,
                             before=reset)
            goc_again = best(lambda: store.get_or_compute(inputs=inputs, **kw), args.repeat)
            sub = inputs[:1000]
            sub_first = best(lambda: store.get_or_compute(inputs=sub, **kw), args.repeat,
                             before=reset)
            sub_again = best(lambda: store.get_or_compute(inputs=sub, **kw), args.repeat)
            rows.append((name, mb, plain, first, again, goc_first, goc_again, sub_first,
                         sub_again))
            if name == "tokens":
                speeds = hash_speeds(np.load(files[0]), args.repeat)
    print()
    print("| entry | MB | np.load (unchecked) | checked, first | ratio | checked, again | ratio "
          "| get_or_compute first / again | subset 1000 first / again |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, mb, plain, first, again, gf, ga, sf, sa in rows:
        print(f"| {name} | {mb:.0f} | {plain * 1e3:.1f} ms | {first * 1e3:.1f} ms | "
              f"{first / plain:.2f} | {again * 1e3:.1f} ms | {again / plain:.2f} | "
              f"{gf * 1e3:.1f} / {ga * 1e3:.1f} ms | {sf * 1e3:.1f} / {sa * 1e3:.1f} ms |")
    if speeds:
        print()
        print("checksum speed on the tokens array (GB/s): "
              + ", ".join(f"{k} {v:.2f}" for k, v in speeds.items()))


if __name__ == "__main__":
    main()
