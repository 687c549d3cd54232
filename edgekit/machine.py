"""The machine a run happened on, recorded in every manifest and benchmark result.

The same code, seed and image bytes give different float fine-tunes on CPUs with different instruction
sets: TensorFlow's oneDNN and XNNPACK pick their kernels (and so their order of float additions) by ISA,
and the int8 paths change with VNNI/AMX or ARM dot-product support. Results are comparable only between
machines whose ``cpu_features`` agree. This is the one reader of ``/proc/cpuinfo``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# The /proc/cpuinfo feature names that select TensorFlow (oneDNN) / XNNPACK / LiteRT kernels: x86 vector
# widths, FMA, int8 dot products (VNNI, AMX) and bf16/fp16; ARM NEON/ASIMD, its dot products, i8mm and SVE.
NUMERIC_FEATURES = frozenset({
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimdhp", "asimddp", "fphp", "i8mm", "bf16", "sve", "sve2", "sme",
})


def cpuinfo(path: Path = CPUINFO) -> dict[str, str]:
    """The first processor's fields in ``/proc/cpuinfo`` (``model name``, ``flags`` on x86; ``Features`` on ARM):
    what a timing ran on, and which CPU features decide a runtime's kernels. Empty off Linux."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


def cpu_flags(path: Path = CPUINFO) -> set[str]:
    """Every feature the CPU reports (x86 ``flags`` or ARM ``Features``)."""
    return _features(cpuinfo(path))


def _features(fields: dict[str, str]) -> set[str]:
    return set((fields.get("flags") or fields.get("Features") or "").split())


def machine_record(path: Path = CPUINFO) -> dict[str, Any]:
    """CPU model, architecture, cores, OS and the ISA features that change float results and speed."""
    fields = cpuinfo(path)
    arm_part = " ".join(f"{key} {fields[key]}" for key in ("CPU implementer", "CPU part") if key in fields)
    return {"cpu": fields.get("model name") or arm_part or platform.processor() or "?",
            "arch": platform.machine(), "cores": os.cpu_count(), "platform": platform.platform(),
            "cpu_features": sorted(_features(fields) & NUMERIC_FEATURES)}
