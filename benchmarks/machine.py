"""The machine facts every benchmark prints and records with its figures: the processors
behind these machines change between sessions, so a timing without its CPU means nothing.
The CPU facts come from :func:`mir_core.machine.cpu_facts` (shared with the precision
choice, which caches its measurements per CPU model)."""
from __future__ import annotations

import os

from mir_core.machine import cpu_facts


def machine_info() -> dict:
    import torch
    cpu = cpu_facts()
    return {"cpu": cpu.name, "cpu_signature": cpu.signature, "cpu_flags": list(cpu.flags),
            "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def machine_line() -> str:
    m = machine_info()
    sig = f" [{m['cpu_signature']}]" if m["cpu_signature"] else ""
    return (f"{m['cpu']}{sig} ({m['cores']} cores; {' '.join(m['cpu_flags']) or 'no avx512'}), "
            f"torch {m['torch']}, {m['torch_threads']} threads"
            + (f", GPU {m['gpu']}" if m["gpu"] else ""))
