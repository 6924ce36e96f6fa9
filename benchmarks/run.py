"""lrfused against eager torch: `python -m benchmarks.run [--quick] [options]` (what `make bench` runs).

See benchmarks/README.md for what is measured and how to read the output.
"""
import argparse
import gc
import json
import os
import sys
import time

import torch

from . import contenders as C
from . import harness as H
from . import report
from . import workloads as W

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}

# Per-mode defaults; every one can be overridden on the command line.
MODES = {
    "quick": {
        "workloads": ["sweep", "1000x100"],
        "sweep": {"cpu": "1e3,1e4,1e5,1e6", "cuda": "1e3,1e4,1e5,1e6,1e7"},
        "optimizers": list(C.OPTIMIZERS),
        "warmup_min": 2, "warmup_max": 5, "warmup_s": 0.02,
        "min_runs": 5, "max_runs": 200, "budget_s": 0.12,
        "bw_elems": {"cpu": 16 * W.M, "cuda": 64 * W.M}, "bw_runs": 8,
    },
    "full": {
        "workloads": ["large", "1000x16K", "10000x100", "gpt2-small", "resnet50", "sweep"],
        "sweep": {"cpu": "1e3,1e4,1e5,1e6,1e7,1e8",
                  "cuda": "1e3,1e4,1e5,1e6,1e7,1e8,1e9"},
        # Adam costs what AdamW costs (same passes, same bytes); --optimizers adamw,adam,sgd adds it.
        "optimizers": ["adamw", "sgd"],
        "warmup_min": 2, "warmup_max": 20, "warmup_s": 0.2,
        "min_runs": 5, "max_runs": 1000, "budget_s": 1.0,
        "bw_elems": {"cpu": 64 * W.M, "cuda": 256 * W.M}, "bw_runs": 10,
    },
}

# Schedule length: beyond the number of steps any contender takes, so that every policy (OneCycleLR
# refuses to step past total_steps) stays inside its range for the whole measurement.
SCHEDULE_LENGTH = 1_000_000


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Time opt.step() + sched.step() of torch's for-loop / foreach / fused optimizers "
                    "against lrfused (schedule fused into the step).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="CI-sized run: small workloads, few repeats (under a minute on 2 cores)")
    p.add_argument("--device", default=None,
                   help="cpu or cuda[:i] (default: cuda when available, else cpu)")
    p.add_argument("--workloads", type=_csv, default=None,
                   help=f"comma list of {', '.join(W.NAMED)} or KxN (e.g. 4x1000); default per mode")
    p.add_argument("--sweep", default=None,
                   help="sizes (total params) of the scale sweep, e.g. 1e3,1e4,1e5; default per mode "
                        "and device, capped by free memory")
    p.add_argument("--optimizers", type=_csv, default=None,
                   help=f"comma list of {', '.join(C.OPTIMIZERS)}")
    p.add_argument("--contenders", type=_csv, default=list(C.CONTENDERS),
                   help="comma list of " + ", ".join(C.CONTENDERS))
    p.add_argument("--schedule", default="cosine", choices=sorted(C.SCHEDULES),
                   help="lr schedule paired with every contender")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--warmup", type=int, default=None, help="minimum warm-up steps")
    p.add_argument("--min-runs", type=int, default=None, help="minimum timed steps per measurement")
    p.add_argument("--max-runs", type=int, default=None, help="maximum timed steps per measurement")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timed steps per measurement (after --min-runs)")
    p.add_argument("--bw-elems", type=int, default=None,
                   help="fp32 elements per array of the copy/triad bandwidth probe")
    p.add_argument("--sequential", action="store_true",
                   help="time contenders of large workloads one after another instead of interleaved "
                        "(interleaving, the default for workloads >= 64 MiB, spreads the machine's "
                        "bandwidth drift evenly over the contenders)")
    p.add_argument("--flush-cache", choices=("auto", "on", "off"), default="auto",
                   help="evict caches between timed steps (auto: on for CUDA, off for CPU)")
    p.add_argument("--mem-fraction", type=float, default=0.6,
                   help="skip a workload whose estimated footprint exceeds this fraction of free memory")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                   help="directory for the JSON, Markdown and PNG results")
    p.add_argument("--tag", default=None,
                   help="file stem (default <device>-<date>, with -quick in quick mode)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = p.parse_args(argv)
    for name in args.contenders:
        if name not in C.CONTENDERS:
            p.error(f"unknown contender {name!r}; choose from {', '.join(C.CONTENDERS)}")
    if args.optimizers:
        for name in args.optimizers:
            if name not in C.OPTIMIZERS:
                p.error(f"unknown optimizer {name!r}; choose from {', '.join(C.OPTIMIZERS)}")
    return args


def resolve(args):
    """Merge the mode's defaults with the command line into one plain config dict."""
    mode = "quick" if args.quick else "full"
    d = MODES[mode]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"unsupported device {device}")
    dev = device.type
    flush = {"auto": dev == "cuda", "on": True, "off": False}[args.flush_cache]
    return {
        "mode": mode,
        "device": str(device),
        "dtype": args.dtype,
        "workloads": args.workloads or d["workloads"],
        "sweep_sizes": W.parse_sizes(args.sweep or d["sweep"][dev]),
        "optimizers": args.optimizers or d["optimizers"],
        "contenders": args.contenders,
        "schedule": args.schedule,
        "schedule_torch": C.SCHEDULES[args.schedule].description.format(T=SCHEDULE_LENGTH),
        "schedule_length": SCHEDULE_LENGTH,
        "hyperparameters": {k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()}
                            for k, v in C.HYPER.items()},
        "warmup_min": args.warmup if args.warmup is not None else d["warmup_min"],
        "warmup_max": max(d["warmup_max"], args.warmup or 0),
        "warmup_s": d["warmup_s"],
        "min_runs": args.min_runs if args.min_runs is not None else d["min_runs"],
        "max_runs": args.max_runs if args.max_runs is not None else d["max_runs"],
        "budget_s": args.budget if args.budget is not None else d["budget_s"],
        "bw_elems": args.bw_elems or d["bw_elems"][dev],
        "bw_runs": d["bw_runs"],
        "flush_cache": flush,
        "mem_fraction": args.mem_fraction,
        "interleave": not args.sequential,
        "torch_num_threads": torch.get_num_threads(),
        "timer": "torch.cuda.Event per step, one synchronize at the end" if dev == "cuda"
                 else "time.perf_counter per step",
        "cpu_timer": "time.process_time (all threads of the process) over the timed loop / steps",
    }


def _footprint_bytes(workload, optimizer, elem):
    # master param + grad kept for the whole workload, the contender's param + grad clones, its state
    # (2 tensors for Adam(W), 1 for SGD) and room for the foreach path's temporaries (2 more).
    state = 2 if optimizer in ("adam", "adamw") else 1
    return workload.num_params * elem * (4 + state + 2)


def _lrfused_version():
    mod, _ = C.lrfused_module()
    return getattr(mod, "__version__", "unknown") if mod is not None else None


def _measured_row(wl, opt_name, cont, res, opt, step, params, device, dtype, elem):
    """The result row of one timed contender: adds the memory one more step allocates transiently
    (CUDA), whether the parameters stayed finite, and the optimizer state's size."""
    transient = None
    if device.type == "cuda":
        H.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        H.synchronize(device)
        transient = int(torch.cuda.max_memory_allocated(device) - base)
    finite = all(bool(torch.isfinite(p.detach()).all()) for p in params)
    return _row(wl, opt_name, cont, res, H.tensor_state_bytes(opt), transient, finite, dtype, elem)


def _run_interleaved(wl, opt_name, conts, master_p, master_g, config, device, dtype, elem, flusher, skipped,
                     bar):
    """All contenders of one large workload built side by side and timed in rounds (time_interleaved)."""
    built = []
    for cont in conts:
        params = [m.clone().requires_grad_() for m in master_p]
        for p, gr in zip(params, master_g):
            p.grad = gr.clone()
        try:
            opt, step = C.build(cont, opt_name, params, config["schedule"], SCHEDULE_LENGTH)
            step()  # allocates the state now, so that a failure shows before timing
        except Exception as exc:  # noqa: BLE001 - one contender failing must not sink the run
            skipped.append({"contender": cont, "optimizer": opt_name, "workload": wl.name,
                            "reason": f"failed while running ({C._short(exc)})"})
            bar.advance(f"{wl.name} / {opt_name} / {cont}: failed")
            continue
        built.append((cont, params, opt, step))
    bar.update(f"{wl.name} / {opt_name} / {', '.join(c for c, *_ in built)} (interleaved)")
    results = H.time_interleaved([step for *_, step in built], device, warmup_min=config["warmup_min"],
                                 warmup_max=config["warmup_max"], warmup_s=config["warmup_s"],
                                 min_runs=config["min_runs"], max_runs=config["max_runs"],
                                 budget_s=config["budget_s"], flush=flusher)
    rows = []
    for (cont, params, opt, step), res in zip(built, results):
        rows.append(_measured_row(wl, opt_name, cont, res, opt, step, params, device, dtype, elem))
        bar.advance(f"{wl.name} / {opt_name} / {cont}")
    built.clear()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def run(config, progress=True, log=sys.stderr):
    device = torch.device(config["device"])
    dtype = DTYPES[config["dtype"]]
    elem = torch.empty((), dtype=dtype).element_size()
    workloads = W.build(config["workloads"], config["sweep_sizes"])
    started = time.perf_counter()
    load = H.BackgroundLoad()

    result = {
        "schema_version": 1,
        "created_utc": H.now_iso(),
        "argv": None,
        "machine": H.machine_info(device),
        "versions": H.versions(_lrfused_version()),
        "config": config,
        "byte_model": {
            opt: {"bytes_per_param": C.bytes_per_param(opt, dtype), "accesses": C.ACCESSES[opt],
                  "element_bytes": elem, "detail": C.ACCESS_DETAIL[opt]}
            for opt in config["optimizers"]
        },
        "bandwidth": {},
        "skipped": [],
        "results": [],
        "background_load": None,
        "notes": [],
    }
    skipped = result["skipped"]

    # Which (contender, optimizer) pairs can run at all, decided once, before any timing.
    available = {}
    for opt_name in config["optimizers"]:
        for cont in config["contenders"]:
            why = C.unavailable_reason(cont, opt_name, device, dtype, config["schedule"])
            available[(cont, opt_name)] = why is None
            if why is not None:
                skipped.append({"contender": cont, "optimizer": opt_name, "workload": None,
                                "reason": why})

    # Memory cap, per workload and optimizer.
    free = H.memory_available_bytes(device)
    jobs = []
    for wl in workloads:
        for opt_name in config["optimizers"]:
            need = _footprint_bytes(wl, opt_name, elem)
            if need > config["mem_fraction"] * free:
                skipped.append({"contender": None, "optimizer": opt_name, "workload": wl.name,
                                "reason": f"needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free "
                                          f"(cap {config['mem_fraction']:.0%})"})
                continue
            conts = [c for c in config["contenders"] if available[(c, opt_name)]]
            if conts:
                jobs.append((wl, opt_name, conts))

    total = sum(len(c) for _, _, c in jobs) + 2
    bar = H.Progress(total, stream=log, enabled=progress)
    bar.update("bandwidth probe (copy, triad)")
    bw_before = H.measure_bandwidth(device, config["bw_elems"], runs=config["bw_runs"])
    bar.advance("bandwidth probe done")

    flusher = None
    if config["flush_cache"]:
        flusher = H.CacheFlusher(device, 256 * 2**20)

    for wl, opt_name, conts in jobs:
        # Drawn on the device itself (a 1e9 sweep point would take minutes through the host).
        g = torch.Generator(device=device).manual_seed(1234)
        master_p = [torch.randn(s, generator=g, device=device).to(dtype) for s in wl.shapes]
        master_g = [torch.randn(s, generator=g, device=device).to(dtype) for s in wl.shapes]
        rows = []
        big = wl.num_params * elem >= 64 * 2**20
        state = 2 if opt_name in ("adam", "adamw") else 1
        together = wl.num_params * elem * (2 + len(conts) * (2 + state + 2))
        if config["interleave"] and big and len(conts) > 1 and together <= config["mem_fraction"] * free:
            rows = _run_interleaved(wl, opt_name, conts, master_p, master_g, config, device, dtype, elem,
                                    flusher, skipped, bar)
            conts = []  # done
        for cont in conts:
            bar.update(f"{wl.name} / {opt_name} / {cont}")
            params = [m.clone().requires_grad_() for m in master_p]
            for p, gr in zip(params, master_g):
                p.grad = gr.clone()
            try:
                opt, step = C.build(cont, opt_name, params, config["schedule"], SCHEDULE_LENGTH)
                res = H.time_steps(step, device, warmup_min=config["warmup_min"],
                                   warmup_max=config["warmup_max"], warmup_s=config["warmup_s"],
                                   min_runs=config["min_runs"], max_runs=config["max_runs"],
                                   budget_s=config["budget_s"], flush=flusher)
                row = _measured_row(wl, opt_name, cont, res, opt, step, params, device, dtype, elem)
            except Exception as exc:  # noqa: BLE001 - one contender failing must not sink the run
                skipped.append({"contender": cont, "optimizer": opt_name, "workload": wl.name,
                                "reason": f"failed while running ({C._short(exc)})"})
                bar.advance(f"{wl.name} / {opt_name} / {cont}: failed")
                continue
            finally:
                opt = step = None
                del params
                if big:  # schedulers hold reference cycles; free the state before the next one
                    gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            bar.advance(f"{wl.name} / {opt_name} / {cont}")
        _add_speedups(rows)
        result["results"].extend(rows)
        del master_p, master_g
        if big:
            gc.collect()

    bar.update("bandwidth probe (copy, triad), again")
    bw_after = H.measure_bandwidth(device, config["bw_elems"], runs=config["bw_runs"])
    bar.advance("done")
    bar.close()

    result["background_load"] = load.finish()
    result["bandwidth"] = _bandwidth_summary(bw_before, bw_after)
    roof = result["bandwidth"]["roofline_gbps"]
    copy_best = result["bandwidth"]["copy"]["best_gbps"]
    for row in result["results"]:
        row["pct_of_triad"] = 100.0 * row["bandwidth_gbps"] / roof
        row["pct_of_copy"] = 100.0 * row["bandwidth_gbps"] / copy_best
        row["roofline_time_s"] = row["bytes_moved"] / (roof * 1e9)
    if not any(r["contender"] == "lrfused" for r in result["results"]):
        reasons = sorted({s["reason"] for s in skipped if s["contender"] == "lrfused"})
        result["notes"].append("lrfused was not timed: " + ("; ".join(reasons) or "not selected"))
    other = result["background_load"]["other_processes_cpu_fraction"]
    if other is not None and other > 0.1:
        result["notes"].append(f"other processes used {other:.0%} of the machine's CPU time during the "
                               "run: expect wide spreads; rerun on a quiet machine for publishable numbers")
    if any(r.get("interleaved") for r in result["results"]):
        result["notes"].append("workloads of 64 MiB and more: contenders timed interleaved (one step each per "
                               "round) so that the machine's bandwidth drift hits all of them alike")
    result["elapsed_s"] = time.perf_counter() - started
    return result


def _row(wl, opt_name, cont, res, state_bytes, transient, finite, dtype, elem):
    stats = H.summarize(res["samples_s"])
    bpp = C.bytes_per_param(opt_name, dtype)
    moved = bpp * wl.num_params
    return {
        "workload": wl.name,
        "family": wl.family,
        "optimizer": opt_name,
        "contender": cont,
        "num_params": wl.num_params,
        "num_tensors": wl.num_tensors,
        "dtype": str(dtype).replace("torch.", ""),
        "warmup": res["warmup"],
        "runs": res["runs"],
        "time_s": stats,
        "samples_s": res["samples_s"],
        "cpu_time_per_step_s": res["cpu_time_per_step_s"],
        "interleaved": res.get("interleaved", False),
        "cpu_utilization": res["cpu_time_per_step_s"] / stats["mean"] if stats["mean"] > 0 else None,
        "bytes_per_param": bpp,
        "bytes_moved": moved,
        "bandwidth_gbps": moved / stats["median"] / 1e9,
        "param_bytes": wl.num_params * elem,
        "state_bytes": state_bytes,
        "step_transient_bytes": transient,
        "params_finite": finite,
        "speedup_of_lrfused": None,
    }


def _add_speedups(rows):
    mine = [r for r in rows if r["contender"] == "lrfused"]
    if not mine:
        return
    t = mine[0]["time_s"]["median"]
    for r in rows:
        r["speedup_of_lrfused"] = r["time_s"]["median"] / t


def _bandwidth_summary(before, after):
    out = {}
    for name in ("copy", "triad"):
        b, a = before[name], after[name]
        out[name] = {
            "bytes_per_elem": b["bytes_per_elem"],
            "elements": b["elements"],
            "before": b,
            "after": a,
            "median_gbps": float(sorted([b["median_gbps"], a["median_gbps"]])[1]),
            "best_gbps": max(b["best_gbps"], a["best_gbps"]),
        }
    out["roofline_gbps"] = out["triad"]["best_gbps"]
    out["roofline_rule"] = "best triad run (STREAM convention) of the probes before and after"
    return out


def output_stem(config):
    date = H.today()
    dev = torch.device(config["device"]).type
    return f"{dev}-{date}" + ("-quick" if config["mode"] == "quick" else "")


def main(argv=None):
    args = parse_args(argv)
    config = resolve(args)
    result = run(config, progress=not args.no_progress)
    result["argv"] = list(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out, exist_ok=True)
    stem = args.tag or output_stem(config)
    paths = {ext: os.path.join(args.out, f"{stem}.{ext}") for ext in ("json", "md", "png")}
    table = report.markdown_table(result)
    with open(paths["json"], "w") as f:
        json.dump(result, f, indent=1)
    with open(paths["md"], "w") as f:
        f.write(report.markdown_document(result, table))
    written = [paths["json"], paths["md"]]
    if not args.no_plot and result["results"]:
        from . import plot
        plot.plot(result, paths["png"])
        written.append(paths["png"])
    print(report.terminal_summary(result, table))
    print("\nwrote " + ", ".join(written))
    return result


if __name__ == "__main__":
    main()
