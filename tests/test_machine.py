"""The machine record in every manifest and benchmark result: CPU model and the ISA features that change
TensorFlow/XNNPACK numerics, read from /proc/cpuinfo in one place (edgekit/machine.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgekit.machine import cpu_flags, cpuinfo, machine_record

REPO = Path(__file__).resolve().parents[1]


def test_cpuinfo_reads_the_first_processors_fields(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t\t: fpu sse avx avx2\n\n"
                   "processor\t: 1\nmodel name\t: Other CPU\nflags\t\t: fpu\n\n")
    assert cpuinfo(x86)["model name"] == "Some CPU @ 2.0GHz"
    assert cpuinfo(x86)["flags"].split() == ["fpu", "sse", "avx", "avx2"]
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32\n\n")
    assert "flags" not in cpuinfo(arm) and cpuinfo(arm)["Features"].startswith("fp asimd")
    assert cpuinfo(tmp_path / "missing") == {}


def test_the_record_keeps_the_cpu_and_only_the_features_that_change_numerics(tmp_path):
    xeon = tmp_path / "xeon"
    xeon.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
                    "flags\t\t: fpu sse sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 hypervisor\n\n")
    record = machine_record(xeon)
    assert record["cpu"] == "Intel(R) Xeon(R) Processor" and record["cores"] == os.cpu_count()
    assert record["cpu_features"] == ["amx_int8", "amx_tile", "avx", "avx2", "avx512_vnni", "avx512f", "fma"]
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 asimddp i8mm\n"
                   "CPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\n")
    assert machine_record(arm)["cpu_features"] == ["asimd", "asimddp", "i8mm"]
    assert machine_record(arm)["cpu"] == "CPU implementer 0x41 CPU part 0xd0c"


def test_this_machines_record_names_its_cpu_and_features():
    record = machine_record()
    assert set(record) == {"cpu", "arch", "cores", "platform", "cpu_features"}
    assert record["cpu"] != "?" and record["arch"]
    flags = cpu_flags()
    assert set(record["cpu_features"]) <= flags
    if "avx2" in flags:
        assert "avx2" in record["cpu_features"]


def test_only_edgekit_machine_reads_proc_cpuinfo():
    """One reader: the CPU in manifests, in benchmark results and the flags that decide XNNPACK's kernels agree."""
    readers = [str(path.relative_to(REPO)) for folder in ("edgekit", "benchmarks") for path in (REPO / folder).rglob("*.py")
               if re.search(r"""["']/proc/cpuinfo["']""", path.read_text(encoding="utf-8"))]
    assert readers == ["edgekit/machine.py"]
