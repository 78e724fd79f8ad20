"""The machine facts every benchmark prints and records with its figures: the processors
behind these machines change between sessions, so a timing without its CPU means nothing."""
from __future__ import annotations

import os
import platform


def machine_info() -> dict:
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        model = platform.processor() or "unknown"
    import torch
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")
    return {"cpu": model, "cpu_flags": [f for f in wanted if f in flags],
            "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def machine_line() -> str:
    m = machine_info()
    return (f"{m['cpu']} ({m['cores']} cores; {' '.join(m['cpu_flags']) or 'no avx512'}), "
            f"torch {m['torch']}, {m['torch_threads']} threads"
            + (f", GPU {m['gpu']}" if m["gpu"] else ""))
