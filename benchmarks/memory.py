"""The memory options of AdamW on the GPT-2-small tensor list: step time and bytes of optimizer state per
parameter, every variant measured in the same run (what `make bench` runs after benchmarks.run).

    python -m benchmarks.memory [--device cpu|cuda] [--workload gpt2-small|KxN] [--budget S] [--tag STEM]

Variants (AdamW, lr 1e-3, CosineAnnealingLR for torch's, the same schedule fused for lrfused's):
  torch fused fp32 / bf16            torch.optim.AdamW(fused=True) on float32 / bfloat16 parameters
  lrfused fp32                       32-bit state, the reference of the ratios
  lrfused 8-bit                      optim_bits=8 (float32 parameters)
  lrfused bf16                       bfloat16 parameters and state, rounded to nearest
  lrfused bf16 + SR                  bfloat16 parameters and state, stochastic_rounding=True
  lrfused bf16 + master              bfloat16 parameters, float32 state and master copies
  lrfused bf16 + 8-bit + SR          bfloat16 parameters, optim_bits=8, stochastic_rounding=True
  lrfused bf16 + master + 8-bit      bfloat16 parameters, float32 masters, optim_bits=8
  bitsandbytes AdamW8bit             bitsandbytes.optim.AdamW8bit (when installed), float32 parameters
  torchao AdamW8bit / AdamW4bit      torchao.optim (when installed), float32 parameters
  torchao bf16 + SR                  torchao.optim._AdamW(bf16_stochastic_round=True), bfloat16 parameters

Bytes of state per parameter count every per-parameter state tensor but the step counter (codes, scales
and master copies included; torchao's subclasses by their inner tensors). The JSON and Markdown go to
benchmarks/results/<stem>.{json,md}.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import torch

from . import contenders as C
from . import harness as H
from . import workloads as W

T = 1_000_000  # schedule length, beyond any number of steps taken
KW = dict(C.HYPER["adamw"])


def _torch_cosine(opt):
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T)

    def step():
        opt.step()
        sched.step()

    return opt, step


def _lrfused(**options):
    def make(params):
        import lrfused
        from lrfused import schedules as S

        opt = lrfused.AdamW(params, **KW, schedule=S.CosineAnnealingLR(T_max=T), **options)
        return opt, opt.step

    return make


def _torchao(name, **options):
    def make(params):
        import torchao.optim as ao

        return _torch_cosine(getattr(ao, name)(params, **KW, **options))

    return make


# (label, parameter dtype, factory, what it needs)
VARIANTS = [
    ("torch fused fp32", torch.float32, lambda ps: _torch_cosine(torch.optim.AdamW(ps, **KW, fused=True)), None),
    ("torch fused bf16", torch.bfloat16, lambda ps: _torch_cosine(torch.optim.AdamW(ps, **KW, fused=True)), None),
    ("lrfused fp32", torch.float32, _lrfused(), None),
    ("lrfused 8-bit", torch.float32, _lrfused(optim_bits=8), None),
    ("lrfused bf16", torch.bfloat16, _lrfused(), None),
    ("lrfused bf16 + SR", torch.bfloat16, _lrfused(stochastic_rounding=True), None),
    ("lrfused bf16 + master", torch.bfloat16, _lrfused(master_weights=True, state_dtype=torch.float32), None),
    ("lrfused bf16 + 8-bit + SR", torch.bfloat16, _lrfused(optim_bits=8, stochastic_rounding=True), None),
    ("lrfused bf16 + master + 8-bit", torch.bfloat16, _lrfused(master_weights=True, optim_bits=8), None),
    ("bitsandbytes AdamW8bit", torch.float32,
     lambda ps: _torch_cosine(__import__("bitsandbytes").optim.AdamW8bit(ps, **KW)), "bitsandbytes"),
    ("torchao AdamW8bit", torch.float32, _torchao("AdamW8bit"), "torchao"),
    ("torchao AdamW4bit", torch.float32, _torchao("AdamW4bit"), "torchao"),
    ("torchao bf16 + SR", torch.bfloat16, _torchao("_AdamW", bf16_stochastic_round=True), "torchao"),
]
REFERENCE = "lrfused fp32"


def state_bytes(opt) -> int:
    """Bytes of per-parameter state tensors but the step counters; a tensor subclass (torchao's 8/4-bit
    state) by its inner tensors (codes, scales, its code map)."""
    total = 0
    for state in opt.state.values():
        for key, value in state.items():
            if key == "step" or not torch.is_tensor(value):
                continue
            names = value.__tensor_flatten__()[0] if hasattr(value, "__tensor_flatten__") else None
            inner = [getattr(value, n) for n in names] if names else [value]
            total += sum(t.numel() * t.element_size() for t in inner)
    return total


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--workload", default="gpt2-small", help="gpt2-small or KxN")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed steps per variant")
    p.add_argument("--min-runs", type=int, default=5)
    p.add_argument("--variants", default=None, help="comma list of labels (default: all)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default=None, help="file stem (default memory-<device>-<date>)")
    return p.parse_args(argv)


def run(args) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    (workload,) = W.build([args.workload], [])
    n = workload.num_params
    wanted = None if args.variants is None else {v.strip() for v in args.variants.split(",")}
    g = torch.Generator(device="cpu").manual_seed(1234)
    master_p = [torch.randn(s, generator=g) for s in workload.shapes]
    master_g = [torch.randn(s, generator=g) for s in workload.shapes]
    rows, skipped = [], []
    load = H.BackgroundLoad()
    started = time.perf_counter()
    for label, dtype, make, needs in VARIANTS:
        if wanted is not None and label not in wanted:
            continue
        if needs is not None:
            try:
                __import__(needs)
            except ImportError as exc:
                skipped.append({"variant": label, "reason": f"{needs} is not importable ({C._short(exc)})"})
                continue
        params = [m.detach().to(device, dtype, copy=True).requires_grad_() for m in master_p]
        for p, gr in zip(params, master_g):
            p.grad = gr.to(device, dtype)
        try:
            opt, step = make(params)
            print(f"memory bench: {label} ...", file=sys.stderr, flush=True)
            res = H.time_steps(step, device, warmup_min=3, warmup_max=10, warmup_s=0.5, min_runs=args.min_runs,
                               max_runs=200, budget_s=args.budget)
        except Exception as exc:  # noqa: BLE001 - one variant failing must not sink the run
            skipped.append({"variant": label, "reason": f"failed ({C._short(exc)})"})
            continue
        stats = H.summarize(res["samples_s"])
        rows.append({"variant": label, "param_dtype": str(dtype).replace("torch.", ""), "time_s": stats,
                     "state_bytes": state_bytes(opt), "state_bytes_per_param": state_bytes(opt) / n,
                     "param_bytes_per_param": torch.empty((), dtype=dtype).element_size(),
                     "params_finite": all(bool(torch.isfinite(p.detach().float()).all()) for p in params)})
        del opt, step, params
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ref = next((r for r in rows if r["variant"] == REFERENCE), None)
    for r in rows:
        r["time_vs_lrfused_fp32"] = r["time_s"]["median"] / ref["time_s"]["median"] if ref else None
    return {"created_utc": H.now_iso(), "machine": H.machine_info(device),
            "versions": dict(H.versions(None), torchao=H._module_version("torchao")),
            "workload": {"name": workload.name, "num_params": n, "num_tensors": workload.num_tensors},
            "device": str(device), "optimizer": "AdamW " + json.dumps(KW), "results": rows, "skipped": skipped,
            "background_load": load.finish(), "elapsed_s": time.perf_counter() - started}


def markdown(result) -> str:
    wl = result["workload"]
    lines = [f"# AdamW memory options on {wl['name']} ({wl['num_params']:,} params, {wl['num_tensors']} tensors), "
             f"{result['device']}",
             "",
             f"Machine: {result['machine'].get('cpu_model')}, {result['machine'].get('cpu_count_logical')} logical "
             f"CPUs, torch {result['versions']['torch']}, torchao {result['versions'].get('torchao')}. "
             f"Created {result['created_utc']}. Other processes used "
             f"{100 * (result['background_load'].get('other_processes_cpu_fraction') or 0):.0f}% of the CPU.",
             "",
             "| variant | params | step median (ms) | p25-p75 (ms) | time / lrfused fp32 | state bytes/param | "
             "params + state bytes/param |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in result["results"]:
        t = r["time_s"]
        lines.append(f"| {r['variant']} | {r['param_dtype']} | {1e3 * t['median']:.1f} | "
                     f"{1e3 * t['p25']:.1f}-{1e3 * t['p75']:.1f} | {r['time_vs_lrfused_fp32']:.2f}x | "
                     f"{r['state_bytes_per_param']:.2f} | "
                     f"{r['state_bytes_per_param'] + r['param_bytes_per_param']:.2f} |")
    for s in result["skipped"]:
        lines.append(f"\nskipped {s['variant']}: {s['reason']}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    result = run(args)
    os.makedirs(args.out, exist_ok=True)
    stem = args.tag or f"memory-{torch.device(result['device']).type}-{H.today()}"
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump(result, f, indent=1)
    text = markdown(result)
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
