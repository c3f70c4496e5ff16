"""Reporting for the brain benchmark (``brain_benchmark.py``): the machine, markdown, the volume rows, files."""
from __future__ import annotations

import json
import platform
from datetime import datetime, timezone

import torch


def machine(device: torch.device) -> dict:
    """Where a run ran: CPU model (/proc/cpuinfo), torch threads and version, device (GPU name), date (UTC)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device),
            "python": platform.python_version(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def markdown(rows) -> str:
    """Rows as a markdown table; "∇": evaluations with a backward pass; UQ columns where samples were drawn."""
    lines = ["| task | method | PSNR | SSIM | s/img | NFE/img | peak MiB | UQ: cover 1/2/3σ (Student) · corr |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        nfe = "" if r.get("nfe") is None else f"{r['nfe']:g}" + (f" ({r['nfe_grad']:g} ∇)" if r["nfe_grad"] else "")
        mem = "" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
        uq = ""
        if "coverage" in r:
            uq = ("/".join(f"{c:.2f}" for c in r["coverage"]) + " (" +
                  "/".join(f"{c:.2f}" for c in r["coverage_student"]) + f") · {r['corr_std_error']:.2f}")
        lines.append(f"| {r['task']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['seconds_per_image']:.2f} | {nfe} | {mem} | {uq} |")
    return "\n".join(lines)


def volume_rows(paths) -> list[dict]:
    """Rows already measured by benchmarks/volume_table.py (JSON files), with where they came from."""
    rows = []
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        for r in d["rows"]:
            rows.append({"task": r["task"], "method": r["method"], "psnr": r["psnr"], "ssim": r["ssim_axial"],
                         "seconds_per_image": r["seconds_per_volume"], "nfe": r["nfe_per_slice"], "nfe_grad": None,
                         "peak_mib": None, "note": f"benchmarks/volume_table.py, {d['volumes']} volumes "
                         f"{d['slab'][1] - d['slab'][0]}x64x64 (seed {d['seeds'][0]}; knobs tuned on seed {d['seeds'][1]}), "
                         f"torch {d['torch']}, "
                         "1 CPU thread; s/img is per volume, NFE per slice, SSIM axial"})
    return rows


def merge(base: dict, run: dict, what: str, command: str) -> dict:
    """``base`` (a table assembled from earlier runs) with the rows of ``run`` added: a row of the same task
    and method replaces the old one, others are appended; the run is recorded under "runs" (its command,
    what it covered, machine, time, rows) and "seconds" becomes the sum over the runs."""
    if base["images"] != run["images"] or base["prior"] != run["prior"] or base["quick"] != run["quick"]:
        raise ValueError("--merge: the run's images, prior and --quick must equal the table's, got "
                         f"{run['images']!r}, {run['prior']!r}, {run['quick']} against {base['images']!r}, "
                         f"{base['prior']!r}, {base['quick']}")
    new = {(r["task"], r["method"]): r for r in run["rows"]}
    rows = [new.pop((r["task"], r["method"]), r) for r in base["rows"]] + list(new.values())
    runs = list(base.get("runs", [])) + [{"run": f"run{len(base.get('runs', [])) + 1}", "command": command,
                                          "tasks": sorted({r["task"] for r in run["rows"]}), "methods": what,
                                          "machine": run["machine"], "seconds": run["seconds"],
                                          "rows": len(run["rows"])}]
    return {**base, "rows": rows, "runs": runs, "brain_knobs": run["brain_knobs"], "budget": run["budget"],
            "seconds": sum(r["seconds"] for r in runs)}


def write(result: dict, out: str) -> None:
    """The result as JSON at ``out`` and as a markdown table beside it (same name, .md)."""
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    m = result["machine"]
    with open(out.rsplit(".", 1)[0] + ".md", "w") as f:
        f.write(f"# Brain benchmark ({'quick smoke run' if result['quick'] else 'table'})\n\n"
                f"{result['images']}, prior {result['prior']}, {result['budget']}.\n"
                f"Machine: {m['cpu']}, {m['threads']} thread(s), device {m['device']}"
                f"{', ' + m['gpu'] if 'gpu' in m else ''}, torch {m['torch']}, {m['date']}; "
                f"{result['seconds']:.0f} s in all. {m.get('note', '')}\n\n")
        for run in result.get("runs", []):                  # a table assembled from several runs
            f.write(f"- {run['run']}: {', '.join(run['tasks'])}: {run['methods']} ({run['seconds']:.0f} s, "
                    f"started {run['machine']['date']})" + (f": `{run['command']}`" if "command" in run else "") + "\n")
        f.write("\n" + markdown(result["rows"]) + "\n")
        if result["volume_rows"]:
            f.write("\n## Volume tasks\n\n" + result["volume_rows"][0]["note"] + ".\n\n" +
                    markdown(result["volume_rows"]) + "\n")
