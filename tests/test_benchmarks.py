"""The benchmark harness runs end to end on a tiny workload and writes well-formed results.

This checks the schema of what `python -m benchmarks.run` writes (keys, types, positivity), not speed.
lrfused is one contender among several: while its optimizers are not functional the harness must record
it as skipped with a reason; once they are, its rows must be there.
"""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import run as bench_run  # noqa: E402

TINY = ["--quick", "--device", "cpu", "--workloads", "3x100,sweep", "--sweep", "1e3",
        "--optimizers", "adamw,sgd", "--warmup", "1", "--min-runs", "3", "--max-runs", "4",
        "--budget", "0.001", "--bw-elems", "65536", "--no-progress"]
TORCH_CONTENDERS = ("torch-forloop", "torch-foreach", "torch-fused")
TIME_KEYS = ("median", "p10", "p25", "p75", "p90", "iqr", "min", "max", "mean", "std")


def _lrfused_status():
    """(functional, agrees_with_torch), decided here independently of the harness."""
    try:
        import lrfused
        from lrfused import schedules as S
        from lrfused.testing import assert_close
    except Exception:  # noqa: BLE001
        return False, False
    try:
        agree = True
        for name, kw in (("AdamW", {}), ("SGD", {"momentum": 0.9})):
            g = torch.Generator().manual_seed(0)
            init = torch.randn(50, generator=g)
            grad = torch.randn(50, generator=g)
            a = init.clone().requires_grad_()
            b = init.clone().requires_grad_()
            a.grad, b.grad = grad.clone(), grad.clone()
            ref = getattr(torch.optim, name)([a], lr=1e-3, foreach=False, **kw)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=10)
            mine = getattr(lrfused, name)([b], lr=1e-3, schedule=S.CosineAnnealingLR(T_max=10), **kw)
            for _ in range(6):
                ref.step()
                sched.step()
                mine.step()
            try:
                assert_close(b, a, what=name)
            except AssertionError:
                agree = False
        return True, agree
    except Exception:  # noqa: BLE001
        return False, False


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = bench_run.main(TINY + ["--out", str(out), "--tag", "tiny"])
    return out, result


def _positive(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_writes_json_markdown_png(tiny_run):
    out, result = tiny_run
    for ext in ("json", "md", "png"):
        path = out / f"tiny.{ext}"
        assert path.is_file() and path.stat().st_size > 0, path
    with open(out / "tiny.json") as f:
        on_disk = json.load(f)
    assert on_disk["results"] == json.loads(json.dumps(result["results"]))
    md = (out / "tiny.md").read_text()
    assert "| optimizer | workload |" in md and "torch-fused" in md
    assert (out / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_top_level_schema(tiny_run):
    _, r = tiny_run
    for key, typ in (("schema_version", int), ("created_utc", str), ("machine", dict), ("versions", dict),
                     ("config", dict), ("byte_model", dict), ("bandwidth", dict), ("skipped", list),
                     ("results", list), ("notes", list), ("background_load", dict),
                     ("elapsed_s", float), ("argv", list)):
        assert isinstance(r[key], typ), key
    m = r["machine"]
    assert isinstance(m["cpu_model"], str) and m["cpu_model"]
    assert isinstance(m["cpu_count_logical"], int) and m["cpu_count_logical"] >= 1
    assert m["torch_num_threads"] == torch.get_num_threads()
    assert "gpu_name" in m
    v = r["versions"]
    assert v["torch"] == torch.__version__ and isinstance(v["python"], str)
    assert "lrfused" in v
    c = r["config"]
    assert c["device"] == "cpu" and c["mode"] == "quick" and c["dtype"] == "float32"
    assert c["optimizers"] == ["adamw", "sgd"]
    assert r["byte_model"]["adamw"]["bytes_per_param"] == 28
    assert r["byte_model"]["sgd"]["bytes_per_param"] == 20
    bw = r["bandwidth"]
    for name in ("copy", "triad"):
        assert _positive(bw[name]["best_gbps"]) and _positive(bw[name]["median_gbps"])
        assert bw[name]["best_gbps"] >= min(bw[name]["before"]["gbps_runs"])
    assert bw["roofline_gbps"] == bw["triad"]["best_gbps"]


def test_result_rows(tiny_run):
    _, r = tiny_run
    rows = r["results"]
    keys = {(row["workload"], row["optimizer"], row["contender"]) for row in rows}
    for wl in ("3x100", "sweep-1e3"):
        for opt in ("adamw", "sgd"):
            for cont in TORCH_CONTENDERS:
                assert (wl, opt, cont) in keys, (wl, opt, cont)
    assert len(keys) == len(rows), "duplicate rows"
    for row in rows:
        assert row["num_params"] == {"3x100": 300, "sweep-1e3": 1000}[row["workload"]]
        assert row["num_tensors"] == {"3x100": 3, "sweep-1e3": 1}[row["workload"]]
        t = row["time_s"]
        for k in TIME_KEYS:
            assert isinstance(t[k], float) and math.isfinite(t[k]) and t[k] >= 0, k
        assert t["min"] > 0
        assert t["p10"] <= t["p25"] <= t["median"] <= t["p75"] <= t["p90"] <= t["max"]
        assert 3 <= row["runs"] <= 4 and len(row["samples_s"]) == row["runs"]
        assert all(_positive(s) for s in row["samples_s"])
        assert row["warmup"] >= 1
        for k in ("cpu_time_per_step_s", "bandwidth_gbps", "pct_of_triad", "pct_of_copy",
                  "roofline_time_s", "bytes_moved", "bytes_per_param", "state_bytes", "param_bytes"):
            assert _positive(row[k]), (k, row[k])
        assert row["bytes_per_param"] == {"adamw": 28, "sgd": 20}[row["optimizer"]]
        assert row["bytes_moved"] == row["bytes_per_param"] * row["num_params"]
        # AdamW keeps exp_avg + exp_avg_sq, SGD a momentum buffer: at least that many bytes of state.
        assert row["state_bytes"] >= row["param_bytes"] * (2 if row["optimizer"] == "adamw" else 1)
        assert row["params_finite"] is True
        assert row["step_transient_bytes"] is None  # CPU: not measured


def test_lrfused_rows_or_reason(tiny_run):
    _, r = tiny_run
    functional, agrees = _lrfused_status()
    rows = [row for row in r["results"] if row["contender"] == "lrfused"]
    skips = [s for s in r["skipped"] if s["contender"] == "lrfused"]
    for s in r["skipped"]:
        assert isinstance(s["reason"], str) and s["reason"]
    if functional and agrees:
        assert {(row["workload"], row["optimizer"]) for row in rows} == {
            (wl, opt) for wl in ("3x100", "sweep-1e3") for opt in ("adamw", "sgd")}
        for row in r["results"]:
            assert _positive(row["speedup_of_lrfused"])
        assert not skips
    else:
        assert not rows
        assert {s["optimizer"] for s in skips} == {"adamw", "sgd"}
        assert all(s["reason"] for s in skips)
        assert any("lrfused" in n for n in r["notes"])
        if functional:
            assert all("disagrees" in s["reason"] for s in skips)


def test_cli_entry_point(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    args = [a for a in TINY if a != "3x100,sweep"]
    args[args.index("--workloads") + 1:args.index("--workloads") + 1] = ["2x10"]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", *args, "--optimizers", "sgd",
                           "--contenders", "torch-foreach,lrfused", "--no-plot",
                           "--out", str(tmp_path), "--tag", "cli"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| optimizer | workload |" in proc.stdout and "torch-foreach" in proc.stdout
    with open(tmp_path / "cli.json") as f:
        data = json.load(f)
    assert {row["contender"] for row in data["results"]} <= {"torch-foreach", "lrfused"}
    assert any(row["contender"] == "torch-foreach" for row in data["results"])


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--contenders", "nope"])
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--optimizers", "lamb"])
    with pytest.raises(ValueError):
        bench_run.W.build(["not-a-workload"], [])


# ----------------------------------------------------------------------------------------------------
# The lrfused branch of the harness, driven by stand-ins so that it is tested before (and independently
# of) the real library: a correct one must be timed, a wrong one and a stub must be skipped with reasons.

def _fake_lrfused(lr_factor=1.0, broken=False):
    import types

    def schedule(name):
        def make(**kw):
            return (name, kw)
        return make

    def from_torch(sched):
        assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR), sched
        return schedule("CosineAnnealingLR")(T_max=sched.T_max, eta_min=sched.eta_min)

    S = types.SimpleNamespace(from_torch=from_torch)

    def wrap(torch_cls):
        class Opt(torch_cls):
            def __init__(self, params, lr=1e-3, schedule=None, **kw):
                if broken:
                    raise TypeError("stub: not implemented")
                super().__init__(params, lr=lr * lr_factor, foreach=False, **kw)
                name, skw = schedule
                self._sched = getattr(torch.optim.lr_scheduler, name)(self, **skw)

            def step(self, closure=None):
                super().step()
                self._sched.step()
        return Opt

    return types.SimpleNamespace(AdamW=wrap(torch.optim.AdamW), Adam=wrap(torch.optim.Adam),
                                 SGD=wrap(torch.optim.SGD), schedules=S, has_cuda=lambda: False,
                                 __version__="fake")


def _run_with(monkeypatch, tmp_path, fake):
    from benchmarks import contenders as C

    monkeypatch.setattr(C, "lrfused_module", lambda: (fake, None))
    monkeypatch.setattr(C, "_VERIFIED", {})
    args = [a for a in TINY]
    args[args.index("3x100,sweep")] = "2x50"
    return bench_run.main(args + ["--contenders", "torch-fused,lrfused", "--no-plot",
                                  "--out", str(tmp_path), "--tag", "fake"])


def test_functional_lrfused_is_timed(monkeypatch, tmp_path):
    r = _run_with(monkeypatch, tmp_path, _fake_lrfused())
    assert r["versions"]["lrfused"] == "fake"
    mine = [row for row in r["results"] if row["contender"] == "lrfused"]
    assert {row["optimizer"] for row in mine} == {"adamw", "sgd"}
    assert not [s for s in r["skipped"] if s["contender"] == "lrfused"]
    for row in r["results"]:
        assert _positive(row["speedup_of_lrfused"])
    for row in mine:
        assert row["speedup_of_lrfused"] == 1.0
    assert "lrfused" in (tmp_path / "fake.md").read_text()


def test_wrong_lrfused_is_not_timed(monkeypatch, tmp_path):
    r = _run_with(monkeypatch, tmp_path, _fake_lrfused(lr_factor=2.0))
    assert not [row for row in r["results"] if row["contender"] == "lrfused"]
    skips = [s for s in r["skipped"] if s["contender"] == "lrfused"]
    assert {s["optimizer"] for s in skips} == {"adamw", "sgd"}
    assert all("disagrees" in s["reason"] for s in skips)


def test_stub_lrfused_is_not_timed(monkeypatch, tmp_path):
    r = _run_with(monkeypatch, tmp_path, _fake_lrfused(broken=True))
    assert not [row for row in r["results"] if row["contender"] == "lrfused"]
    skips = [s for s in r["skipped"] if s["contender"] == "lrfused"]
    assert skips and all("not functional" in s["reason"] and "stub" in s["reason"] for s in skips)
    assert any(row["contender"] == "torch-fused" for row in r["results"])


# ----------------------------------------------------------------------------------------------------
# lrfused's side of every --schedule choice is S.from_torch of the torch contenders' scheduler.

@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
@pytest.mark.parametrize("schedule", sorted(bench_run.C.SCHEDULES))
def test_schedule_converts_through_from_torch(schedule, optimizer):
    """Each SCHEDULES entry, converted by from_torch (as the harness does), gives the lr and the momentum /
    beta1 (cycled by OneCycleLR, constant otherwise) that torch's scheduler applies, step by step, live."""
    pytest.importorskip("lrfused")
    from lrfused import schedules as S
    from lrfused.testing import LR_ATOL_PER_BASE, LR_RTOL

    C = bench_run.C
    T = 12  # short, so that StepLR (step_size max(T // 100, 1)) and OneCycleLR change every step
    lr = C.HYPER[optimizer]["lr"]
    topt, step = C.make_torch(optimizer, [torch.zeros(3, requires_grad=True)], "torch-forloop", schedule, T)
    ours = C.lrfused_schedule(S, optimizer, schedule, T)
    assert (ours is None) == (schedule == "constant")
    ours = ours if ours is not None else S.Constant()
    group = topt.param_groups[0]
    max_lr = max(lr, group.get("max_lr", lr))
    h = C.HYPER[optimizer]
    fallback = h["momentum"] if optimizer == "sgd" else h["betas"][0]  # the optimizer's, unscheduled
    seen = set()
    for k in range(T - 1):
        applied = group["lr"]
        momentum = group["momentum"] if optimizer == "sgd" else group["betas"][0]
        seen.add(applied)
        bound = LR_RTOL * abs(applied) + LR_ATOL_PER_BASE * max_lr
        assert abs(ours.lr_at(k, lr) - applied) <= bound, (k, applied)
        assert ours.momentum_at(k, fallback) == pytest.approx(momentum, rel=1e-12, abs=1e-12), (k, momentum)
        topt.param_groups[0]["params"][0].grad = torch.zeros(3)
        step()
    assert (len(seen) == 1) == (schedule == "constant"), seen


def test_memory_benchmark_runs_and_measures_state_bytes(tmp_path):
    """benchmarks.memory (make bench's AdamW memory options) on a tiny list: every lrfused variant runs,
    the ratios are against lrfused fp32 measured in the same run, and the state bytes per parameter are
    the formats' (8 fp32; 2 + 8/256 for 8-bit; 4 bf16; 12 with fp32 masters and state)."""
    from benchmarks import memory

    labels = ["torch fused fp32", "lrfused fp32", "lrfused 8-bit", "lrfused bf16 + SR", "lrfused bf16 + master",
              "lrfused bf16 + master + 8-bit"]
    result = memory.main(["--workload", "4x8192", "--budget", "0.05", "--min-runs", "2", "--device", "cpu",
                          "--variants", ",".join(labels), "--out", str(tmp_path), "--tag", "tiny"])
    rows = {r["variant"]: r for r in result["results"]}
    assert sorted(rows) == sorted(labels) and not result["skipped"]
    assert rows["lrfused fp32"]["time_vs_lrfused_fp32"] == 1.0
    expected = {"torch fused fp32": 8.0, "lrfused fp32": 8.0, "lrfused 8-bit": 2.0 + 8.0 / 256,
                "lrfused bf16 + SR": 4.0, "lrfused bf16 + master": 12.0,
                "lrfused bf16 + master + 8-bit": 4.0 + 2.0 + 8.0 / 256}
    for label, value in expected.items():
        assert rows[label]["state_bytes_per_param"] == pytest.approx(value), label
        assert rows[label]["params_finite"] and rows[label]["time_s"]["median"] > 0
    assert (tmp_path / "tiny.md").read_text().count("| lrfused") == 5
