"""The profile report: JSON, Markdown and HTML with PNG plots (latency histograms, confusion matrices).

Every file is written atomically; the Markdown and HTML are built from the same rows so they agree.
"""

from __future__ import annotations

import html
from pathlib import Path

from edgekit.artifacts import atomic_path, write_json_atomic, write_text_atomic

LATENCY_COLUMNS = ("device", "status", "backend", "threads", "init ms", "first ms", "min ms", "mean ms", "std ms",
                   "p50 ms", "p90 ms", "p99 ms", "peak delta MiB", "peak RSS MiB")


def latency_rows(result: dict) -> list[list[str]]:
    """One row per device (skipped ones carry their reason), shared by the terminal table and the reports."""
    rows = []
    for name, device in result["devices"].items():
        if device["status"] != "ok":
            rows.append([name, f"skipped: {device['reason']}"] + [""] * (len(LATENCY_COLUMNS) - 2))
            continue
        lat, mem = device["latency"], device["memory"]
        rows.append([name, "ok", device["backend"], str(device["threads"]), f"{device['init_ms']:.1f}",
                     f"{device['first_inference_ms']:.3f}"] +
                    [f"{lat[k]:.3f}" for k in ("min_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p99_ms")] +
                    [_fmt(mem["peak_delta_mib"]), _fmt(mem["peak_rss_mib"])])
    return rows


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def latency_histogram_png(times_ms: list[float], path: Path, *, title: str) -> Path:
    from edgekit.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(times_ms, bins=min(40, max(5, len(times_ms) // 3)), color="#3b75af")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("runs")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def _accuracy_rows(accuracy: dict) -> list[list[str]]:
    model, parent = accuracy["model"], accuracy.get("parent")
    top5 = next(k for k in model if k.startswith("top") and k.endswith("_accuracy"))
    rows = [["top-1", f"{model['accuracy']:.4f}", f"{parent['accuracy']:.4f}" if parent else "n/a"],
            [top5.replace("_accuracy", "").replace("top", "top-"), f"{model[top5]:.4f}",
             f"{parent[top5]:.4f}" if parent else "n/a"],
            ["macro F1", f"{model['macro_f1']:.4f}", f"{parent['macro_f1']:.4f}" if parent else "n/a"]]
    if parent:
        change = accuracy["change"]
        low, high = change["interval95_points"]
        worst = change["worst_class_recall_drop"] or {}
        rows += [["top-1 drop (points, + = loss)", f"{accuracy['accuracy_drop']:.3f}", ""],
                 ["paired 95% interval (points)", f"{low:.2f} to {high:.2f}", f"n={change['images']}"],
                 ["top-1 agreement", f"{accuracy['top1_agreement']:.4f}", ""],
                 ["worst class recall drop (points)", f"{worst.get('points', 0):.1f}", worst.get("class", "")]]
        rows += [["warning", text, ""] for text in change["warnings"]]
    return rows


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _sections(result: dict, images: dict[str, str]) -> list[tuple[str, str, tuple, list, list[str]]]:
    """(kind, title, header, rows, images) blocks rendered by both writers."""
    blocks = [("table", "Latency and memory", LATENCY_COLUMNS, latency_rows(result),
               [images[k] for k in images if k.startswith("latency_")])]
    mem_rows = [[n, _fmt(d["memory"]["baseline_peak_mib"]), f"{d['memory']['model_file_mib']:.3f}",
                 "n/a" if d["memory"]["activation_mib_estimate"] is None else f"{d['memory']['activation_mib_estimate']:.3f}",
                 d["memory"]["activation_note"]] for n, d in result["devices"].items() if d["status"] == "ok"]
    blocks.append(("table", "Memory details", ("device", "baseline MiB (runtime imported)", "model file MiB",
                                                "activations MiB", "note"), mem_rows, []))
    for name, device in result["devices"].items():
        ops = device.get("op_profile") or {}
        if ops.get("ops"):
            blocks.append(("table", f"Top ops on {name} ({ops['source']})", ("op", "calls", "ms/run", "share"),
                           [[o["op"], o["calls"], f"{o['ms_per_run']:.4f}", f"{o['share']:.1%}"] for o in ops["ops"]], []))
        elif ops.get("reason") and device["status"] == "ok":
            blocks.append(("text", f"Per-op timing on {name}", (), [[ops["reason"]]], []))
    accuracy = result.get("accuracy")
    if accuracy:
        note = accuracy.get("parent_missing", f"parent: {accuracy.get('parent_path')}")
        blocks.append(("table", f"Accuracy on {accuracy['images']} images ({note})", ("metric", "model", "parent"),
                       _accuracy_rows(accuracy), [images[k] for k in images if k.startswith("confusion")]))
        per_class = accuracy["model"]["per_class"]
        blocks.append(("table", "Per class (model)", ("class", "precision", "recall", "F1", "support"),
                       [[c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
                        for c, v in per_class.items()], []))
    if result.get("gates"):
        blocks.append(("table", "Gates (fail if)", ("gate", "device", "value", "result"),
                       [[g["gate"], g["device"], "n/a" if g["value"] is None else f"{g['value']:.4g}",
                         "FAILED" if g["failed"] else "passed"] for g in result["gates"]], []))
    return blocks


def write_report(result: dict, out_dir: Path) -> dict[str, str]:
    """profile.json, report.md, report.html and the PNGs into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    images: dict[str, str] = {}
    for name, device in result["devices"].items():
        if device["status"] == "ok" and device.get("times_ms"):
            file = f"latency_{name}.png"
            latency_histogram_png(device["times_ms"], out_dir / file, title=f"{Path(result['model']).name} on {name}")
            images[f"latency_{name}"] = file
    accuracy = result.get("accuracy")
    if accuracy:
        from edgekit.plots import confusion_matrix_png

        for role in ("model", "parent"):
            if accuracy.get(role):
                file = f"confusion_{role}.png"
                confusion_matrix_png(accuracy[role]["confusion_matrix"], accuracy[role]["labels"], out_dir / file,
                                     title=f"{role}: top-1 {accuracy[role]['accuracy']:.3f}")
                images[f"confusion_{role}"] = file
    title = f"edgekit profile: {Path(result['model']).name}"
    md, body = [f"# {title}", "", f"Model `{result['model']}` ({result['format']})", ""], []
    for kind, heading, header, rows, pictures in _sections(result, images):
        md += [f"## {heading}", ""]
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if kind == "text":
            md += [rows[0][0], ""]
            body.append(f"<p>{html.escape(rows[0][0])}</p>")
        else:
            md += [_md_table(header, rows), ""]
            body.append(_html_table(header, rows))
        for picture in pictures:
            md += [f"![{picture}]({picture})", ""]
            body.append(f'<img src="{html.escape(picture)}" alt="{html.escape(picture)}">')
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>Model <code>{html.escape(result['model'])}</code> ({html.escape(result['format'])})</p>"
            + "".join(body) + "</body></html>\n")
    write_json_atomic(out_dir / "profile.json", result)
    write_text_atomic(out_dir / "report.md", "\n".join(md) + "\n")
    write_text_atomic(out_dir / "report.html", page)
    paths = {"json": "profile.json", "markdown": "report.md", "html": "report.html", **images}
    return {k: str(out_dir / v) for k, v in paths.items()}
