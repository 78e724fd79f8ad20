"""Video extraction speed (decode + encode) with clips decoded in 0, 1 and 2 DataLoader
workers: ``extract_clip_features(..., num_workers=k)`` on generated H.264 clips.

    python benchmarks/decode_workers.py                          # 8 clips of 4 s, 224x224
    python benchmarks/decode_workers.py --clips 16 --workers 0 2 4 --threads 2

Each run computes every clip into a fresh feature store (the encoder is loaded and warmed
up once, outside the timing); the figure is frames encoded per second of wall time, best
of ``--repeat``. The decoding of a chunk runs in the workers while the calling process
waits for it, then encodes the chunk as one batch (as with 0 workers, so the features are
identical): workers speed up the decoding share only, which is also measured alone
(frames/s of decoding in the calling process). Prints the machine (CPU model, flags,
torch, threads) and writes outputs/benchmarks/decode_workers.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import machine_info, machine_line  # noqa: E402

from mir_core.features.clips import make_clip_set  # noqa: E402
from mir_core.features.extract import extract_clip_features  # noqa: E402
from mir_core.features.store import FeatureStore  # noqa: E402
from mir_core.features.video import (VideoSettings, load_frame_encoder,  # noqa: E402
                                     read_frames)


def run_once(clips, settings: VideoSettings, encoder, workers: int, batch_size: int) -> dict:
    """One extraction of every clip into a fresh store: seconds and frames encoded."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = extract_clip_features(clips, "video", settings, store=FeatureStore(tmp),
                                    encoder=encoder, batch_size=batch_size,
                                    num_workers=workers, progress=False, log=lambda *_: None)
        seconds = time.perf_counter() - t0
    if not res.ok.all():
        raise RuntimeError(f"decode_workers: {int((~res.ok).sum())} clips failed: "
                           f"{res.errors.to_dict(orient='records')}")
    return {"seconds": seconds, "frames": int(res.lengths.sum()), "features": res.features}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", type=int, default=224, help="clip height = width (even)")
    ap.add_argument("--n-frames", type=int, default=16, help="frames sampled per clip")
    ap.add_argument("--batch-size", type=int, default=4, help="clips per chunk")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the encoder")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default="outputs/benchmarks")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(machine_line(), flush=True)
    load_start = list(os.getloadavg())
    settings = VideoSettings(encoder=a.encoder, n_frames=a.n_frames, max_len=a.n_frames)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        clips = make_clip_set(Path(tmp) / "clips", a.clips, ["A", "B", "C"],
                              seconds=a.seconds, fps=a.fps, size=(a.size, a.size))
        print(f"{a.clips} clips of {a.seconds:g} s, {a.fps} fps, {a.size}x{a.size} written in "
              f"{time.perf_counter() - t0:.1f} s; {a.n_frames} frames per clip, chunks of "
              f"{a.batch_size}, encoder {a.encoder}", flush=True)
        t0 = time.perf_counter()
        for c in clips:
            read_frames(c.path, a.n_frames)
        decode_fps = a.clips * a.n_frames / (time.perf_counter() - t0)
        print(f"decoding alone: {decode_fps:.1f} frames/s", flush=True)
        encoder = load_frame_encoder(a.encoder)
        encoder.encode(np.zeros((2, a.size, a.size, 3), np.uint8))          # warm up
        runs, reference = {}, None
        for workers in a.workers:
            best = None
            for _ in range(a.repeat):
                r = run_once(clips, settings, encoder, workers, a.batch_size)
                best = r if best is None or r["seconds"] < best["seconds"] else best
            if reference is None:
                reference = best["features"]
            elif not np.array_equal(best["features"], reference):
                raise RuntimeError(f"decode_workers: features with {workers} workers differ "
                                   f"from those with {a.workers[0]}")
            runs[workers] = {"seconds": round(best["seconds"], 3), "frames": best["frames"],
                             "frames_per_s": round(best["frames"] / best["seconds"], 2)}
            print(f"{workers} decoding workers: {runs[workers]['frames_per_s']:.1f} frames/s "
                  f"({best['frames']} frames in {best['seconds']:.2f} s)", flush=True)
    out = Path(a.out) / "decode_workers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": machine_info(), "load_avg_start": load_start,
        "load_avg_end": list(os.getloadavg()),
        "setup": {k: v for k, v in vars(a).items() if k != "out"},
        "decode_only_frames_per_s": round(decode_fps, 2),
        "runs": {str(k): v for k, v in runs.items()}}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
