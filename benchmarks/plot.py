"""PNG of a result: time per step against parameter count (log-log), one panel per optimizer, one line
per contender over the scale sweep, the named workloads as markers, and the roofline time at the
measured triad bandwidth as a dashed line."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .report import CONTENDER_ORDER, OPTIMIZER_ORDER  # noqa: E402

COLORS = {
    "lrfused": "#d62728",
    "torch-fused": "#1f77b4",
    "torch-foreach": "#2ca02c",
    "torch-forloop": "#9467bd",
    "deepspeed-cpuadam": "#ff7f0e",
    "apex-fused": "#8c564b",
}
WORKLOAD_MARKERS = ["s", "^", "D", "v", "P", "X", "*", "<", ">"]


def _load_warning(bl):
    other = (bl or {}).get("other_processes_cpu_fraction")
    if other is None or other <= 0.1:
        return ""
    return f"\nWARNING: other processes used {other:.0%} of the CPU during this run; spreads are wide"


def plot(result, path):
    rows = result["results"]
    optimizers = [o for o in OPTIMIZER_ORDER if any(r["optimizer"] == o for r in rows)]
    named = sorted({r["workload"] for r in rows if r["family"] != "sweep"},
                   key=lambda w: min(r["num_params"] for r in rows if r["workload"] == w))
    marker_of = {w: WORKLOAD_MARKERS[i % len(WORKLOAD_MARKERS)] for i, w in enumerate(named)}
    roof = result["bandwidth"]["roofline_gbps"] * 1e9

    fig, axes = plt.subplots(1, len(optimizers), figsize=(6.2 * len(optimizers), 5.4), squeeze=False)
    for ax, opt in zip(axes[0], optimizers):
        sub = [r for r in rows if r["optimizer"] == opt]
        conts = [c for c in CONTENDER_ORDER if any(r["contender"] == c for r in sub)]
        for c in conts:
            sweep = sorted((r for r in sub if r["contender"] == c and r["family"] == "sweep"),
                           key=lambda r: r["num_params"])
            color = COLORS.get(c, "gray")
            if sweep:
                x = np.array([r["num_params"] for r in sweep], dtype=float)
                y = np.array([r["time_s"]["median"] for r in sweep]) * 1e3
                lo = np.array([r["time_s"]["p10"] for r in sweep]) * 1e3
                hi = np.array([r["time_s"]["p90"] for r in sweep]) * 1e3
                ax.plot(x, y, "-o", color=color, lw=2 if c == "lrfused" else 1.4, ms=4, label=c,
                        zorder=3 if c == "lrfused" else 2)
                ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
            else:
                ax.plot([], [], "-o", color=color, label=c)
            for r in sub:
                if r["contender"] == c and r["family"] != "sweep":
                    ax.plot(r["num_params"], r["time_s"]["median"] * 1e3, marker_of[r["workload"]],
                            color=color, ms=7, mfc="none", mew=1.6, ls="none", zorder=4)
        ns = [r["num_params"] for r in sub]
        if ns:
            bpp = sub[0]["bytes_per_param"]
            xr = np.logspace(np.log10(min(ns)) - 0.1, np.log10(max(ns)) + 0.1, 50)
            ax.plot(xr, bpp * xr / roof * 1e3, "k--", lw=1.2,
                    label=f"roofline: {bpp} B/param at triad {roof / 1e9:.1f} GB/s")
        for w in named:
            if any(r["workload"] == w for r in sub):
                ax.plot([], [], marker_of[w], color="black", mfc="none", ls="none", label=w)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters (total elements)")
        ax.set_ylabel("time per step, ms (median; band p10–p90)")
        ax.set_title(f"{opt}: opt.step() + sched.step()")
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.12)
        ax.legend(fontsize=8, loc="upper left")
    m = result["machine"]
    dev = result["config"]["device"] + (f" — {m['gpu_name']}" if m.get("gpu_name") else "")
    fig.suptitle(f"lrfused vs torch — {dev}, {m['cpu_model']}, {m['torch_num_threads']} torch threads, "
                 f"torch {result['versions']['torch']}, {result['config']['dtype']}, "
                 f"{result['config']['mode']} mode"
                 + _load_warning(result.get("background_load")), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
