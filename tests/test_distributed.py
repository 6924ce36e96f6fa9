"""lrfused optimizers under torch.distributed on CPU (gloo, 2 processes): DDP, ZeroRedundancyOptimizer and
FSDP2 (fully_shard, DTensor parameters). Each run's final parameters equal a single-process run over the
same global batches."""
import os
import socket
import time
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import lrfused
from lrfused import schedules as S

WORLD = 2
STEPS = 12
GLOBAL_BATCH = 8
LR = 1e-2
WD = 0.05
TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _schedule():
    return S.SequentialLR([S.LinearLR(start_factor=0.2, total_iters=3),
                           S.CosineAnnealingLR(T_max=STEPS - 3, eta_min=1e-4)], milestones=[3])


def _model():
    torch.manual_seed(0)
    # first dim 33/17: uneven FSDP2 shards over two ranks
    return nn.Sequential(nn.Linear(6, 33), nn.Tanh(), nn.Linear(33, 17), nn.Tanh(), nn.Linear(17, 2))


def _global_batch(i):
    g = torch.Generator().manual_seed(1000 + i)
    return torch.randn(GLOBAL_BATCH, 6, generator=g), torch.randn(GLOBAL_BATCH, 2, generator=g)


def _local_batch(i, rank):
    x, y = _global_batch(i)
    n = GLOBAL_BATCH // WORLD
    return x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]


def _single_process_params():
    model = _model()
    opt = lrfused.AdamW(model.parameters(), lr=LR, weight_decay=WD, schedule=_schedule())
    for i in range(STEPS):
        x, y = _global_batch(i)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    return [p.detach().clone() for p in model.parameters()], opt.get_last_lr()


# ---- the per-rank programs (module level: spawned processes import them) ---------------------------

def _train(rank, model, opt, step_fn=None):
    for i in range(STEPS):
        x, y = _local_batch(i, rank)
        nn.functional.mse_loss(model(x), y).backward()
        (step_fn or opt.step)()
        opt.zero_grad()


def _run_ddp(rank):
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = DDP(_model())
    opt = lrfused.AdamW(model.parameters(), lr=LR, weight_decay=WD, schedule=_schedule())
    _train(rank, model, opt)
    return [p.detach().clone() for p in model.module.parameters()], opt.get_last_lr()


def _run_zero(rank):
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = DDP(_model())
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=lrfused.AdamW, lr=LR, weight_decay=WD,
                                  schedule=_schedule())
    assert isinstance(opt.optim, lrfused.AdamW)
    _train(rank, model, opt)
    # every rank's local optimizer stepped its shard through the same schedule
    return [p.detach().clone() for p in model.module.parameters()], opt.optim.get_last_lr()


def _run_fsdp2(rank):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (WORLD,))
    model = _model()
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    assert all(type(p).__name__ == "DTensor" for p in model.parameters())
    try:  # 8-bit state's block scales do not follow shards yet: refused, naming the option
        lrfused.AdamW(model.parameters(), lr=LR, optim_bits=8)
        raise AssertionError("optim_bits=8 with DTensor parameters was accepted")
    except ValueError as exc:
        assert "optim_bits=8 does not support DTensor" in str(exc), exc
    opt = lrfused.AdamW(model.parameters(), lr=LR, weight_decay=WD, schedule=_schedule())
    _train(rank, model, opt)
    assert all(type(opt.state[p]["exp_avg"]).__name__ == "DTensor" for p in model.parameters())
    return [p.full_tensor().detach().clone() for p in model.parameters()], opt.get_last_lr()


_PROGRAMS = {"ddp": _run_ddp, "zero": _run_zero, "fsdp2": _run_fsdp2}


def _worker(rank, port, program, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        params, lrs = _PROGRAMS[program](rank)
        torch.save({"params": params, "lrs": lrs}, os.path.join(out_dir, f"rank{rank}.pt"))
        # The last collective: after it, every rank has computed and saved its results and nothing is in
        # flight. Only on success, so a failing rank surfaces its own error instead of a hang.
        dist.barrier()
        open(os.path.join(out_dir, f"rank{rank}.done"), "w").close()
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(program, tmp_path):
    """Runs the ranks and judges them by what they computed. gloo can abort a process while it tears
    down (`terminate called without an active exception`; torch.optim.AdamW under
    ZeroRedundancyOptimizer does it too, about 1 run in 15): an abort after a rank's last collective
    (its .done marker) is reported as a warning, any earlier failure fails the test with the rank's error."""
    context = mp.start_processes(_worker, args=(_free_port(), program, str(tmp_path)), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    done = lambda r: (tmp_path / f"rank{r}.done").exists()  # noqa: E731
    while any(p.is_alive() for p in context.processes):
        failed_early = [r for r, p in enumerate(context.processes)
                        if not p.is_alive() and p.exitcode != 0 and not done(r)]
        if failed_early:
            context.join()  # raises with the failing rank's traceback (and stops the others)
        if time.monotonic() > deadline:
            for p in context.processes:
                p.terminate()
            pytest.fail(f"{program}: the {WORLD} ranks did not finish within {TIMEOUT_S} s")
        time.sleep(0.1)
    for r, p in enumerate(context.processes):
        if p.exitcode != 0:
            if not done(r):
                context.join()  # raises with the rank's error
                pytest.fail(f"{program}: rank {r} exited with code {p.exitcode} before its last collective")
            warnings.warn(f"{program}: rank {r} exited with code {p.exitcode} while tearing gloo down, after its "
                          f"last collective; its results are complete and are checked")
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


# lrfused against lrfused, fp32: gloo's all-reduce / reduce-scatter sums the two half-batch gradients in another
# order than the single-process backward; measured max abs difference after 12 steps: 6e-8.
TOL = dict(rtol=2e-6, atol=1e-7)  # tighter than lrfused.testing.TOLERANCE[float32] (1e-5): no torch on either side


@pytest.mark.parametrize("program", ["ddp", "zero", "fsdp2"])
def test_distributed_matches_single_process(program, tmp_path):
    results = _spawn(program, tmp_path)
    expected, expected_lrs = _single_process_params()
    schedule = _schedule()
    assert expected_lrs == [schedule.lr_at(STEPS - 1, LR)]
    for r, result in enumerate(results):
        assert result["lrs"] == expected_lrs
        assert len(result["params"]) == len(expected)
        for p, q in zip(result["params"], expected):
            torch.testing.assert_close(p, q, **TOL, msg=lambda m: f"{program} rank {r}: {m}")
    for p, q in zip(results[0]["params"], results[1]["params"]):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
