"""Longer fuzz run of every loader that reads untrusted bytes (the bounded version is tests/test_fuzz_loaders.py).

Per loader: N examples (half random bytes, half mutations of real valid files) or a time budget, whichever
ends first. A finding is any exception other than an EdgekitError, or an EdgekitError caused by running out
of memory (the process's address space is capped: :func:`cap_address_space`); each is recorded once per loader
and signature, with the example index that reproduces it (example i uses ``random.Random(f"{loader}/{i}")``).
Writes benchmarks/results/fuzz_loaders.{json,md}.

    python benchmarks/fuzz_loaders.py [--examples 2000] [--budget-s 120]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import REPO, environment, environment_lines, finish, write_results  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))

from fuzz.loaders import LOADERS, Loader, build_seeds, check, mutate  # noqa: E402


MEMORY_HEADROOM = 4 << 30  # address space allowed beyond what the process maps once TensorFlow and the seeds are loaded
FIXED = (  # findings of earlier runs, fixed; each has a regression case in tests/test_fuzz_loaders.py
    "safety.check_onnx_external_data: ValueError (embedded null byte) for a NUL in an external-data location",
    "torch_pickle.load_state_dict: OverflowError (BINBYTES8 length > sys.maxsize)",
    "torch_pickle.load_state_dict: NotImplementedError (zip version / compression method / flag bit 5)",
    "keras_io.inspect_keras_archive: NotImplementedError (zip file version 18.9) when opening the archive",
    "torch_pickle.load_state_dict: a stride-0 tensor larger than its storage would make numpy copy 160 GB (refused; "
    "case in tests/test_torch_pickle.py)",
    "torch_pickle.load_state_dict: the fuzzing process OOM-killed at 11-16 GB in `make bench` (twice): a LONG_BINPUT "
    "of 1,175,087,203 in a 168-byte file (torch_pickle example #969) made the C unpickler grow and fill a 19 GB memo; "
    "the pure-Python unpickler keeps the memo in a dict (case in tests/test_torch_pickle.py)",
)


def example(loader: Loader, seeds: dict[str, bytes], index: int) -> tuple[str, bytes]:
    """The reproducible input number ``index`` for ``loader``: (kind, bytes)."""
    rng = random.Random(f"{loader.name}/{index}")
    if index % 2 == 0:
        return "random", rng.randbytes(rng.randint(0, 4096))
    seed = rng.choice(loader.seeds)
    return f"mutated {seed}", mutate(seeds[seed], rng)


def fuzz(loader: Loader, seeds: dict[str, bytes], *, examples: int, budget_s: float, work: Path) -> dict:
    findings: dict[str, dict] = {}
    started = time.perf_counter()
    done = 0
    while done < examples and time.perf_counter() - started < budget_s:
        kind, data = example(loader, seeds, done)
        finding = check(loader, data, work)
        if finding is not None:
            signature = finding.split(" at ")[-1] + " " + finding.split(":")[0]
            entry = findings.setdefault(signature, {"finding": finding, "first_example": done, "input": kind,
                                                    "bytes": len(data), "count": 0})
            entry["count"] += 1
        done += 1
    return {"loader": loader.name, "examples": done, "seconds": round(time.perf_counter() - started, 2),
            "findings": list(findings.values())}


def cap_address_space(headroom_bytes: int) -> int | None:
    """Cap this process's address space at what it maps now plus ``headroom_bytes`` (Linux): an input that makes
    a loader allocate GBs then fails with MemoryError, which ``check`` reports as a finding with its example
    number, instead of the kernel's OOM killer ending this run and other people's jobs (it did, twice).
    Returns the cap, or None where /proc is absent."""
    import resource

    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    mapped_kib = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmSize:"))
    cap = mapped_kib * 1024 + headroom_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return cap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per loader")
    parser.add_argument("--budget-s", type=float, default=120.0, help="time budget per loader")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "fuzz")
    args = parser.parse_args()

    from edgekit.data import write_digits_dataset

    args.work.mkdir(parents=True, exist_ok=True)
    seeds = build_seeds(args.work / "seeds", write_digits_dataset(args.work / "digits", size=32))
    cap = cap_address_space(MEMORY_HEADROOM)
    rows = []
    setting = environment()
    with tempfile.TemporaryDirectory(prefix="edgekit-fuzz-") as tmp:
        for loader in LOADERS:
            work = Path(tmp) / loader.name.replace("/", "_")
            work.mkdir()
            row = fuzz(loader, seeds, examples=args.examples, budget_s=args.budget_s, work=work)
            rows.append(row)
            print(f"{row['loader']}: {row['examples']} examples in {row['seconds']} s, "
                  f"{len(row['findings'])} finding(s)", flush=True)
    summary = {"examples_per_loader": args.examples, "budget_s_per_loader": args.budget_s,
               "total_examples": sum(r["examples"] for r in rows), "total_seconds": round(sum(r["seconds"] for r in rows), 1),
               "total_findings": sum(len(r["findings"]) for r in rows),
               "address_space_cap_gib": None if cap is None else round(cap / 2**30, 1),
               "seed_bytes": {name: len(data) for name, data in seeds.items()}, "loaders": rows,
               "environment": finish(setting)}
    lines = ["# Loader fuzzing", "",
             f"{summary['total_examples']} examples in {summary['total_seconds']} s over {len(rows)} loaders "
             f"(half random bytes, half mutations of real files: {', '.join(f'{k} {v} B' for k, v in summary['seed_bytes'].items())}). "
             "A finding is any exception other than an EdgekitError, or an EdgekitError caused by running out of "
             "memory (address space capped at "
             f"{summary['address_space_cap_gib']} GiB: what the process mapped after loading the seeds + 4 GiB).", "",
             "| loader | examples | seconds | findings |", "|---|---:|---:|---|"]
    for row in rows:
        found = "; ".join(f"{f['finding']} (x{f['count']}, first #{f['first_example']}, {f['input']})"
                          for f in row["findings"]) or "none"
        lines.append(f"| {row['loader']} | {row['examples']} | {row['seconds']} | {found} |")
    lines += ["", "Earlier findings, fixed (regression cases in tests/test_fuzz_loaders.py):", ""]
    lines += [f"- {finding}" for finding in FIXED]
    lines += environment_lines(summary["environment"])
    write_results("fuzz_loaders", summary, lines)
    return 1 if summary["total_findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
