"""Facts about the processor this process runs on.

Speed decisions (bf16 or fp32, :mod:`mir_core.precision`) and benchmark figures are only
meaningful together with the CPU they were measured on: the machines behind this
workspace change between sessions, and two CPUs with the same feature flags can differ
several-fold (bf16 autocast is 2-3.6x faster than fp32 on one AMD EPYC, 0.6x on an Intel
Xeon that also reports ``avx512_bf16``). Flags are recorded, never acted on.

Virtual machines often report a generic model name ("Intel(R) Xeon(R) Processor") for
several CPU generations, so :attr:`Cpu.ident` adds the vendor, family, model and stepping
numbers, which do tell them apart.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache

# The instruction-set flags worth recording next to a CPU timing (reported, not acted on).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")
_SIGNATURE = ("vendor_id", "cpu family", "model", "stepping")


@dataclass(frozen=True)
class Cpu:
    name: str                   # 'model name', e.g. 'AMD EPYC 7B13'
    signature: str              # e.g. 'GenuineIntel family 6 model 207 stepping 2'; '' if unknown
    flags: tuple[str, ...]      # the SPEED_FLAGS it has

    @property
    def ident(self) -> str:
        """Name and signature: what identifies the processor in caches and reports."""
        return f"{self.name} ({self.signature})" if self.signature else self.name


@lru_cache(maxsize=1)
def cpu_facts() -> Cpu:
    """The first processor's entry of ``/proc/cpuinfo``.

    Off Linux, or where the file cannot be read, the name is ``platform.processor()``
    (``"unknown"`` if empty) and signature and flags are unknown.
    """
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break                                   # end of the first processor
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    have = set(fields.get("flags", "").split())
    sig = fields.get("vendor_id", "")
    for key in _SIGNATURE[1:]:
        if key in fields:
            sig += f" {key.replace('cpu ', '')} {fields[key]}"
    return Cpu(name=fields.get("model name") or platform.processor() or "unknown",
               signature=sig.strip(), flags=tuple(f for f in SPEED_FLAGS if f in have))
