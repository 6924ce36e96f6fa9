"""Shared measurement machinery: timing, statistics, bandwidth probes, machine description, progress.

Everything here is independent of which optimizer is measured; `run.py` wires it to contenders and
workloads.
"""
import datetime
import gc
import os
import platform
import sys
import time

import numpy as np
import torch


# --------------------------------------------------------------------------------------------- machine

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_available_bytes(device):
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def memory_total_bytes():
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return None


def _module_version(name):
    try:
        mod = __import__(name)
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None
    return getattr(mod, "__version__", "unknown")


def machine_info(device):
    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_total_bytes": memory_total_bytes(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "gpu_name": None,
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_name"] = props.name
        info["gpu_memory_bytes"] = int(props.total_memory)
        info["gpu_sm_count"] = props.multi_processor_count
    return info


def versions(lrfused_version):
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": np.__version__,
        "lrfused": lrfused_version,
        "deepspeed": _module_version("deepspeed"),
        "apex": _module_version("apex"),
    }


def today():
    return datetime.date.today().isoformat()


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class BackgroundLoad:
    """How busy the machine was with *other* processes while we ran: CPU ticks of the whole machine
    (/proc/stat, incl. steal) minus this process's CPU time, as a fraction of all CPUs' wall time.
    On a shared 2-core machine this is the first thing to check when a spread looks wide."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.p0 = time.process_time()
        self.s0 = self._stat()
        self.l0 = self._loadavg()

    @staticmethod
    def _stat():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            busy = v[0] + v[1] + v[2] + v[5] + v[6]
            steal = v[7] if len(v) > 7 else 0
            return busy, steal
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _loadavg():
        try:
            return os.getloadavg()[0]
        except OSError:
            return None

    def finish(self):
        wall = time.perf_counter() - self.t0
        mine = time.process_time() - self.p0
        s1 = self._stat()
        out = {"loadavg_1min_before": self.l0, "loadavg_1min_after": self._loadavg(),
               "other_processes_cpu_fraction": None, "steal_fraction": None}
        if self.s0 is not None and s1 is not None and wall > 0:
            tick = os.sysconf("SC_CLK_TCK")
            ncpu = os.cpu_count() or 1
            busy = (s1[0] - self.s0[0]) / tick
            steal = (s1[1] - self.s0[1]) / tick
            out["other_processes_cpu_fraction"] = max(0.0, (busy - mine) / (wall * ncpu))
            out["steal_fraction"] = steal / (wall * ncpu)
        return out


# ---------------------------------------------------------------------------------------------- timing

def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class CacheFlusher:
    """Writes a buffer larger than the last-level cache between timed runs (outside the timed region),
    so that a small optimizer state is not measured hot in cache when a training loop would have evicted
    it with the forward/backward pass. triton.testing.do_bench does the same on GPUs."""

    def __init__(self, device, nbytes):
        self.buf = torch.empty(max(nbytes // 4, 1), dtype=torch.float32, device=device)

    def __call__(self):
        self.buf.zero_()


def summarize(samples):
    a = np.asarray(samples, dtype=np.float64)
    p10, p25, p50, p75, p90 = np.percentile(a, [10, 25, 50, 75, 90])
    return {
        "median": float(p50),
        "p10": float(p10),
        "p25": float(p25),
        "p75": float(p75),
        "p90": float(p90),
        "iqr": float(p75 - p25),
        "min": float(a.min()),
        "max": float(a.max()),
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
    }


def _warm_up(step, device, warmup_min, warmup_max, warmup_s):
    """At least warmup_min calls, continuing up to warmup_max while under warmup_s seconds."""
    t0 = time.perf_counter()
    n = 0
    while n < warmup_min or (n < warmup_max and time.perf_counter() - t0 < warmup_s):
        step()
        n += 1
        synchronize(device)
    return n


def _timed_call(step, is_cuda, samples, events):
    """One call of step: a perf_counter pair on CPU, a pair of CUDA events (read later) on GPU."""
    if is_cuda:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        events.append((start, end))
    else:
        a = time.perf_counter()
        step()
        samples.append(time.perf_counter() - a)


def time_steps(step, device, *, warmup_min, warmup_max, warmup_s, min_runs, max_runs, budget_s,
               flush=None):
    """Run `step` warm-up times, then time individual calls until `min_runs` are done and either
    `max_runs` are done or `budget_s` seconds of timed loop have passed.

    CPU: one time.perf_counter pair per call. CUDA: one pair of CUDA events per call, synchronized once
    at the end (the host is not serialized between steps, as in training). Host CPU time is
    time.process_time over the timed loop (all threads of the process) divided by the number of calls.
    Python's garbage collector is paused during the loop (a full collection costs ~0.4 s with torch
    loaded, so only the young generation is collected before it).
    """
    is_cuda = device.type == "cuda"
    warmup = _warm_up(step, device, warmup_min, warmup_max, warmup_s)
    gc.collect(0)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        samples = []
        events = []
        flush_s = 0.0
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        n = 0
        while n < max_runs and (n < min_runs or time.perf_counter() - wall0 - flush_s < budget_s):
            if flush is not None:
                f0 = time.perf_counter()
                flush()
                if not is_cuda:
                    flush_s += time.perf_counter() - f0
            _timed_call(step, is_cuda, samples, events)
            n += 1
        synchronize(device)
        cpu_s = time.process_time() - cpu0
        wall_s = time.perf_counter() - wall0
        if is_cuda:
            samples = [s.elapsed_time(e) / 1e3 for s, e in events]
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        "warmup": warmup,
        "runs": n,
        "samples_s": samples,
        "cpu_time_per_step_s": cpu_s / n,
        "loop_wall_s": wall_s,
    }


def time_interleaved(steps, device, *, warmup_min, warmup_max, warmup_s, min_runs, max_runs, budget_s,
                     flush=None):
    """time_steps for several contenders at once, one timed step of each in turn per round, so that a
    slow drift of the machine (memory bandwidth on a shared VM moves by ±15 % over tens of seconds) hits
    every contender alike instead of whichever ran during the dip. Meant for workloads far larger than
    the caches: interleaving evicts each contender's data between its steps. Returns one time_steps-
    shaped dict per contender, in order."""
    is_cuda = device.type == "cuda"
    warmups = [_warm_up(step, device, warmup_min, warmup_max, warmup_s) for step in steps]
    gc.collect(0)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    k = len(steps)
    samples = [[] for _ in steps]
    events = [[] for _ in steps]
    cpu = [0.0] * k
    try:
        wall0 = time.perf_counter()
        flush_s = 0.0
        n = 0
        # the same per-contender budget as time_steps, spent in rounds
        while n < max_runs and (n < min_runs or time.perf_counter() - wall0 - flush_s < budget_s * k):
            for i, step in enumerate(steps):
                if flush is not None:
                    f0 = time.perf_counter()
                    flush()
                    if not is_cuda:
                        flush_s += time.perf_counter() - f0
                c0 = time.process_time()
                _timed_call(step, is_cuda, samples[i], events[i])
                cpu[i] += time.process_time() - c0
            n += 1
        synchronize(device)
        wall_s = time.perf_counter() - wall0
        if is_cuda:
            samples = [[a.elapsed_time(b) / 1e3 for a, b in ev] for ev in events]
    finally:
        if gc_was_enabled:
            gc.enable()
    return [{"warmup": warmups[i], "runs": n, "samples_s": samples[i], "cpu_time_per_step_s": cpu[i] / n,
             "loop_wall_s": wall_s / k, "interleaved": True} for i in range(k)]


# ------------------------------------------------------------------------------------------- bandwidth

def measure_bandwidth(device, elems, runs=10, warmup=2):
    """STREAM-style copy (b = a: 8 B/elem, fp32) and triad (a = b + s*c: 12 B/elem) with torch ops on
    `device`. Arrays of `elems` fp32 each; pick them well beyond the last-level cache. Returns GB/s
    (1e9 bytes) for every run; `best` (the STREAM convention) is what the roofline uses."""
    a = torch.empty(elems, dtype=torch.float32, device=device)
    b = torch.full((elems,), 1.5, dtype=torch.float32, device=device)  # values do not matter here
    c = torch.full((elems,), 0.5, dtype=torch.float32, device=device)
    kernels = {
        "copy": (lambda: a.copy_(b), 8),
        "triad": (lambda: torch.add(b, c, alpha=3.0, out=a), 12),
    }
    out = {}
    for name, (fn, bytes_per_elem) in kernels.items():
        res = time_steps(fn, device, warmup_min=warmup, warmup_max=warmup, warmup_s=0.0,
                         min_runs=runs, max_runs=runs, budget_s=0.0)
        gbps = [bytes_per_elem * elems / t / 1e9 for t in res["samples_s"]]
        out[name] = {
            "bytes_per_elem": bytes_per_elem,
            "elements": elems,
            "runs": len(gbps),
            "gbps_runs": gbps,
            "median_gbps": float(np.median(gbps)),
            "best_gbps": float(np.max(gbps)),
        }
    del a, b, c
    return out


# -------------------------------------------------------------------------------------------- memory

def tensor_state_bytes(opt):
    """Bytes of the optimizer's per-parameter state tensors (unique storages, so a flat arena exposed
    as views is counted once)."""
    seen = set()
    total = 0

    def visit(v):
        nonlocal total
        if torch.is_tensor(v):
            st = v.untyped_storage()
            key = (st.data_ptr(), v.device.type, v.device.index)
            if key not in seen:
                seen.add(key)
                total += st.nbytes()
        elif isinstance(v, dict):
            for x in v.values():
                visit(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                visit(x)

    for st in opt.state.values():
        visit(st)
    return int(total)


# ------------------------------------------------------------------------------------------- progress

class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per item otherwise."""

    def __init__(self, total, stream=None, enabled=True):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, label):
        if not self.enabled:
            return
        width = 30
        frac = self.done / self.total
        filled = int(round(width * frac))
        bar = "#" * filled + "." * (width - filled)
        elapsed = time.perf_counter() - self.t0
        line = f"[{bar}] {self.done}/{self.total} {elapsed:6.1f}s  {label}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def advance(self, label=""):
        self.done += 1
        self.update(label)

    def close(self):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
