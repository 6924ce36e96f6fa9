"""Markdown rendering of a result dict (the JSON written by run.py)."""

CONTENDER_ORDER = ("lrfused", "torch-fused", "torch-foreach", "torch-forloop", "deepspeed-cpuadam",
                   "apex-fused")
OPTIMIZER_ORDER = ("adamw", "adam", "sgd")


def _ms(seconds):
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _count(n):
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            v = n / div
            return f"{v:.3g}{unit}"
    return str(n)


def _sort_key(row):
    fam_order = 0 if row["family"] != "sweep" else 1
    return (OPTIMIZER_ORDER.index(row["optimizer"]) if row["optimizer"] in OPTIMIZER_ORDER else 9,
            fam_order, row["num_params"], row["workload"],
            CONTENDER_ORDER.index(row["contender"]) if row["contender"] in CONTENDER_ORDER else 9)


HEADER = ("| optimizer | workload | params | tensors | contender | median ms | p10–p90 ms | GB/s "
          "| % triad | CPU ms/step | state MiB | lrfused speedup |")
ALIGN = "|---|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|"


def _noisy(t):
    return " ⚠" if t["p90"] > 2 * t["p10"] else ""


def markdown_table(result):
    lines = [HEADER, ALIGN]
    for r in sorted(result["results"], key=_sort_key):
        t = r["time_s"]
        speed = r.get("speedup_of_lrfused")
        speed_s = "—" if speed is None else ("1 (ref)" if r["contender"] == "lrfused" else f"{speed:.2f}×")
        lines.append(
            f"| {r['optimizer']} | {r['workload']} | {_count(r['num_params'])} | {r['num_tensors']} "
            f"| {r['contender']} | {_ms(t['median'])} | {_ms(t['p10'])}–{_ms(t['p90'])}{_noisy(t)} "
            f"| {r['bandwidth_gbps']:.1f} | {r['pct_of_triad']:.0f}% "
            f"| {_ms(r['cpu_time_per_step_s'])} | {r['state_bytes'] / 2**20:.1f} | {speed_s} |")
    return "\n".join(lines)


def _skipped_lines(result):
    seen = set()
    out = []
    for s in result["skipped"]:
        what = " / ".join(x for x in (s.get("workload"), s.get("optimizer"), s.get("contender")) if x)
        line = f"- {what}: {s['reason']}"
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def header_lines(result):
    m, v, c, bw = result["machine"], result["versions"], result["config"], result["bandwidth"]
    dev = c["device"] + (f" ({m['gpu_name']})" if m.get("gpu_name") else "")
    lines = [
        f"- machine: {m['cpu_model']}, {m['cpu_count_logical']} logical CPUs, "
        f"torch threads {m['torch_num_threads']} (torch default), CPU capability {m['cpu_capability']}; "
        f"device {dev}",
        f"- versions: python {v['python']}, torch {v['torch']}, lrfused {v['lrfused'] or 'not importable'}"
        + (f", deepspeed {v['deepspeed']}" if v.get("deepspeed") else "")
        + (f", apex {v['apex']}" if v.get("apex") else ""),
        f"- mode {c['mode']}, dtype {c['dtype']}, schedule {c['schedule_torch']} stepped every "
        f"iteration; timed unit opt.step() + sched.step() (lrfused: opt.step()); {c['timer']}; "
        f"cache flush between steps {'on' if c['flush_cache'] else 'off'}",
        f"- bandwidth (same run, torch ops, {bw['triad']['elements'] * 4 / 2**20:.0f} MiB arrays): "
        f"copy {bw['copy']['best_gbps']:.1f} GB/s best / {bw['copy']['median_gbps']:.1f} median, "
        f"triad {bw['triad']['best_gbps']:.1f} GB/s best / {bw['triad']['median_gbps']:.1f} median; "
        f"roofline = best triad",
        "- background load: " + _load(result.get("background_load")),
        "- byte model (bytes per parameter per step): "
        + "; ".join(f"{k} {b['bytes_per_param']} B ({b['detail']})" for k, b in result["byte_model"].items()),
    ]
    return lines


def _load(bl):
    if not bl:
        return "not measured"
    parts = []
    if bl.get("other_processes_cpu_fraction") is not None:
        parts.append(f"other processes {bl['other_processes_cpu_fraction']:.0%} of CPU time")
    if bl.get("steal_fraction") is not None:
        parts.append(f"steal {bl['steal_fraction']:.0%}")
    if bl.get("loadavg_1min_before") is not None:
        parts.append(f"1-min loadavg {bl['loadavg_1min_before']:.2f} before, "
                     f"{bl['loadavg_1min_after']:.2f} after")
    return ", ".join(parts) or "not measured"


def terminal_summary(result, table):
    parts = [table, ""]
    parts += header_lines(result)
    skipped = _skipped_lines(result)
    if skipped:
        parts += ["", "skipped:"] + skipped
    for note in result["notes"]:
        parts.append(f"note: {note}")
    parts.append(f"elapsed {result['elapsed_s']:.1f} s")
    return "\n".join(parts)


def markdown_document(result, table):
    c = result["config"]
    parts = [f"# lrfused benchmark — {c['device']}, {result['created_utc']} ({c['mode']} mode)", ""]
    parts += header_lines(result)
    parts += ["", table, "",
              "median/p10–p90: wall time of one timed unit; GB/s: byte model × params / median; "
              "% triad: of the best triad bandwidth; CPU ms/step: process CPU time (all threads) per "
              "step; state MiB: bytes of the optimizer's state tensors; lrfused speedup: contender "
              "median / lrfused median (>1: lrfused is faster); ⚠: p90 > 2 × p10, a noisy measurement.", ""]
    skipped = _skipped_lines(result)
    if skipped:
        parts += ["## Skipped", ""] + skipped + [""]
    if result["notes"]:
        parts += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    parts.append(f"Total time {result['elapsed_s']:.1f} s. Command: `python -m benchmarks.run "
                 f"{' '.join(result['argv'] or [])}`".rstrip() + "")
    return "\n".join(parts) + "\n"
