"""Speed of the NeuralNDCG loss (forward + backward) at LGSRR's slate size, the fast
``mir_core.losses.neural_ndcg`` against the slow plain-autograd reference
``mir_core.losses._neural_ndcg_reference`` (the original implementation).

    python benchmarks/ndcg_speed.py [--batch 32] [--threads 1] [--repeats 15] [--calls 200]
                                    [--old-rev HEAD]

One call = softmax(logits) -> loss -> backward, as in a training step (alpha is the
softmax of the weight network's logits). Relevance as in the official training loop
(text 5, aspects 3/2/1; tau = 1, Sinkhorn tol 1e-6, at most 50 rounds), and the
"aspects" variant (text column padded out). The implementations are timed in turns,
``--repeats`` times ``--calls`` calls each. The table gives the minimum and the median
per-call time over the repeats (ms; CPU time of this thread by default, see
``--clock``) and both as a ratio to the new implementation. ``--old-rev REV`` also
times ``mir_core/losses.py`` as committed at REV (read with ``git show``; it has no
"aspects" mode). Prints the CPU model, torch version and thread count first.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mir_core import losses  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402


def cpu_model() -> str:
    return machine_info()["cpu"]


def load_rev(rev: str):
    """mir_core/losses.py at git revision ``rev`` as a module."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:mir_core/losses.py"],
                          check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "losses_old.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("losses_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_step(fn: Callable, logits: torch.Tensor, rel: torch.Tensor, **kw) -> Callable[[], None]:
    def step() -> None:
        x = logits.detach().requires_grad_(True)
        fn(x.softmax(-1), rel, **kw).backward()
    return step


def timeit(steps: Dict[str, Callable[[], None]], repeats: int, calls: int,
           clock: Callable[[], float]) -> Dict[str, list]:
    for f in steps.values():  # warm-up
        for _ in range(20):
            f()
    times: Dict[str, list] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, f in steps.items():  # in turns, so that load changes hit all alike
            t0 = clock()
            for _ in range(calls):
                f()
            times[k].append((clock() - t0) / calls * 1e3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--scale", type=float, default=1.0, help="std of the weight-net logits")
    ap.add_argument("--old-rev", default=None, help="also time mir_core/losses.py at this git rev")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=["thread", "wall"], default="thread",
                    help="thread: CPU time of this thread (time.thread_time), less sensitive "
                         "to other load on the machine; wall: time.perf_counter")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    print(f"CPU: {cpu_model()}")
    print(f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}")
    print(f"B = {a.batch}, n = 4, tau = 1, logits ~ N(0, {a.scale}^2), "
          f"{a.repeats} repeats x {a.calls} calls")

    gen = torch.Generator().manual_seed(a.seed)
    logits = torch.randn(a.batch, 4, generator=gen) * a.scale
    order = torch.stack([torch.randperm(3, generator=gen) for _ in range(a.batch)])
    rel = losses.aspect_relevance(order)  # official: [5, 3/2/1 ...]
    rel_asp = losses.aspect_relevance(order, mode="aspects")  # text column = -1 (padded)
    mask_asp = rel_asp != losses.PAD_RELEVANCE

    steps = {
        "reference (official)": make_step(losses._neural_ndcg_reference, logits, rel),
        "new (official)": make_step(losses.neural_ndcg, logits, rel),
        "reference (aspects)": make_step(losses._neural_ndcg_reference, logits, rel_asp,
                                         mask=mask_asp),
        "new (aspects)": make_step(losses.neural_ndcg, logits, rel_asp),
    }
    if a.old_rev:
        old = load_rev(a.old_rev)
        steps[f"{a.old_rev} (official)"] = make_step(old.neural_ndcg, logits, rel)

    # The two implementations agree (loss and gradient) on these inputs.
    for kind, r, kw in (("official", rel, {}), ("aspects", rel_asp, {"mask": mask_asp})):
        out = []
        for fn in (losses._neural_ndcg_reference, losses.neural_ndcg):
            x = logits.detach().requires_grad_(True)
            loss = fn(x.softmax(-1), r, **kw)
            loss.backward()
            out.append((float(loss.detach()), x.grad))
        d = max(abs(out[0][0] - out[1][0]), float((out[0][1] - out[1][1]).abs().max()))
        print(f"max |difference| reference vs new ({kind}): {d:.2e}")

    clock = time.thread_time if a.clock == "thread" else time.perf_counter
    times = timeit(steps, a.repeats, a.calls, clock)
    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    print(f"clock: {a.clock}")
    print("| loss fwd+bwd, B=%d n=4 | min ms/call | median ms/call | min / new | "
          "median / new |" % a.batch)
    print("|---|---:|---:|---:|---:|")
    for k, v in times.items():
        new = "new (aspects)" if "aspects" in k else "new (official)"
        print(f"| {k} | {min(v):.3f} | {med[k]:.3f} | {min(v) / min(times[new]):.2f}x | "
              f"{med[k] / med[new]:.2f}x |")


if __name__ == "__main__":
    main()
