"""opt.scheduler (lrfused.scheduler_handle.LRSchedulerHandle) under real trainers: HuggingFace Trainer and
Lightning, plus the handle's LRScheduler protocol on its own."""
import copy

import pytest
import torch
from torch import nn

import lrfused
from lrfused import schedules as S
from lrfused.scheduler_handle import LRSchedulerHandle, PlateauSchedulerHandle

BASE_LR = 1e-2
STEPS = 20
WARMUP = 4


def _warmup_cosine(total=STEPS):
    return S.SequentialLR([S.LinearLR(start_factor=0.1, total_iters=WARMUP),
                           S.CosineAnnealingLR(T_max=total - WARMUP, eta_min=1e-4)], milestones=[WARMUP])


def _torch_warmup_cosine(opt, total=STEPS):
    L = torch.optim.lr_scheduler
    return L.SequentialLR(opt, [L.LinearLR(opt, start_factor=0.1, total_iters=WARMUP),
                                L.CosineAnnealingLR(opt, T_max=total - WARMUP, eta_min=1e-4)], milestones=[WARMUP])


def _train_a_bit(opt, model, steps):
    for i in range(steps):
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(i))
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()


# ---- the handle on its own ------------------------------------------------------------------------

def test_handle_is_an_lr_scheduler_without_side_effects():
    model = nn.Linear(6, 3)
    opt = lrfused.AdamW(model.parameters(), lr=BASE_LR, schedule=_warmup_cosine())
    step_fn = opt.step
    groups_before = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    h = opt.scheduler
    assert h is opt.scheduler
    assert isinstance(h, torch.optim.lr_scheduler.LRScheduler)
    assert not isinstance(h, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert h.optimizer is opt
    # the handle writes nothing (the optimizer itself keeps torch's initial_lr / lr convention)
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups_before
    assert opt.param_groups[0]["initial_lr"] == BASE_LR
    assert opt.step == step_fn and not hasattr(opt.step, "_wrapped_by_lr_sched")
    assert h.base_lrs == [BASE_LR]
    assert h.last_epoch == 0
    assert h.get_last_lr() == [pytest.approx(_warmup_cosine().lr_at(0, BASE_LR), rel=1e-15)]
    with pytest.raises(TypeError, match="lrfused optimizer"):
        LRSchedulerHandle(torch.optim.SGD(model.parameters(), lr=0.1))


def test_handle_step_never_advances_and_tracks_the_optimizer():
    sched = _warmup_cosine()
    model = nn.Linear(6, 3)
    opt = lrfused.AdamW(model.parameters(), lr=BASE_LR, schedule=sched)
    h = opt.scheduler
    for k in range(STEPS):
        assert h.get_lr() == [pytest.approx(sched.lr_at(k, BASE_LR), rel=1e-15)]
        _train_a_bit(opt, model, 1)
        assert h.last_epoch == k + 1
        assert h.get_last_lr() == [sched.lr_at(k, BASE_LR)]
        h.step()
        h.step(epoch=3)
        h.step(7)
        assert h.last_epoch == k + 1
        assert opt.get_last_lr() == [sched.lr_at(k, BASE_LR)]
    assert h._step_count == 3 * STEPS


def test_handle_state_dict_round_trip_with_the_optimizer():
    sched = _warmup_cosine()
    model = nn.Linear(6, 3)
    opt = lrfused.AdamW(model.parameters(), lr=BASE_LR, schedule=sched)
    _train_a_bit(opt, model, 7)
    opt.scheduler.step()
    opt_sd, h_sd = copy.deepcopy(opt.state_dict()), copy.deepcopy(opt.scheduler.state_dict())
    assert h_sd == {"_step_count": 1}

    model2 = copy.deepcopy(model)
    opt2 = lrfused.AdamW(model2.parameters(), lr=BASE_LR, schedule=sched)
    opt2.load_state_dict(opt_sd)
    opt2.scheduler.load_state_dict(h_sd)
    assert opt2.scheduler.state_dict() == h_sd
    assert opt2.scheduler.last_epoch == 7
    assert opt2.scheduler.get_last_lr() == opt.scheduler.get_last_lr()
    # a torch scheduler's state dict is accepted (the position comes from the optimizer)
    opt2.scheduler.load_state_dict({"last_epoch": 3, "base_lrs": [1.0], "_step_count": 4})
    assert opt2.scheduler.last_epoch == 7 and opt2.scheduler._step_count == 4
    with pytest.raises(AttributeError, match="cannot be set"):
        opt2.scheduler.last_epoch = 0


def test_plateau_handle_forwards_the_metric():
    model = nn.Linear(6, 3)
    plateau = S.ReduceLROnPlateau(mode="min", factor=0.5, patience=1)
    opt = lrfused.SGD(model.parameters(), lr=0.1, momentum=0.9, schedule=plateau)
    h = opt.scheduler
    assert isinstance(h, PlateauSchedulerHandle)
    assert isinstance(h, torch.optim.lr_scheduler.ReduceLROnPlateau)
    torch_opt = torch.optim.SGD(nn.Linear(6, 3).parameters(), lr=0.1, momentum=0.9)
    torch_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_opt, mode="min", factor=0.5, patience=1)
    for metric in [1.0, 0.9, 0.95, 0.97, 0.99, 0.5, 0.6, 0.7, 0.8]:
        _train_a_bit(opt, model, 1)
        h.step(metric)
        torch_sched.step(metric)
        assert h.num_bad_epochs == torch_sched.num_bad_epochs
        assert h.best == torch_sched.best
        assert h.get_lr() == torch_sched.get_last_lr()
    _train_a_bit(opt, model, 1)
    assert h.get_last_lr() == torch_sched.get_last_lr()
    with pytest.raises(TypeError, match="needs the metric"):
        h.step()


# ---- HuggingFace Trainer --------------------------------------------------------------------------

class _Regression(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x, labels=None):
        out = self.net(x).squeeze(-1)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


class _Data(torch.utils.data.Dataset):
    def __init__(self, n=64):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x.sum(-1).sin()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def _hf_trainer(tmp_path, model, opt, sched, callbacks=(), eval_dataset=None, **kw):
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    args = dict(output_dir=str(tmp_path), max_steps=STEPS, report_to=[], use_cpu=True, per_device_train_batch_size=4,
                logging_steps=1, save_strategy="no", disable_tqdm=True, seed=0, data_seed=0,
                dataloader_num_workers=0)
    args.update(kw)
    return Trainer(model=model, args=TrainingArguments(**args), optimizers=(opt, sched), train_dataset=_Data(),
                   eval_dataset=eval_dataset, callbacks=list(callbacks))


def _recorder(opt):
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def __init__(self):
            self.applied, self.positions = [], []

        def on_optimizer_step(self, args, state, control, **kwargs):
            # after optimizer.step(), before the trainer's scheduler.step()
            self.applied.append(opt.get_last_lr()[0])
            self.positions.append(opt.scheduler.last_epoch)

    return Record()


@pytest.mark.parametrize("accumulation", [1, 2])
def test_hf_trainer_applies_the_schedule_once_per_optimizer_step(tmp_path, accumulation):
    sched = _warmup_cosine()
    torch.manual_seed(0)
    model = _Regression()
    reference = copy.deepcopy(model)
    opt = lrfused.AdamW(model.parameters(), lr=BASE_LR, weight_decay=0.01, schedule=sched)
    rec = _recorder(opt)
    trainer = _hf_trainer(tmp_path, model, opt, opt.scheduler, callbacks=[rec],
                          gradient_accumulation_steps=accumulation)
    trainer.train()

    expected = [sched.lr_at(k, BASE_LR) for k in range(STEPS)]
    assert rec.applied == expected
    assert rec.positions == list(range(1, STEPS + 1))
    assert opt.scheduler.last_epoch == STEPS
    logged = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    assert logged == expected
    # same run with torch's AdamW and the torch scheduler through the same Trainer: same parameters
    torch_opt = torch.optim.AdamW(reference.parameters(), lr=BASE_LR, weight_decay=0.01)
    torch_trainer = _hf_trainer(tmp_path / "torch", reference, torch_opt, _torch_warmup_cosine(torch_opt),
                                gradient_accumulation_steps=accumulation)
    torch_trainer.train()
    torch_logged = [e["learning_rate"] for e in torch_trainer.state.log_history if "learning_rate" in e]
    assert logged == pytest.approx(torch_logged, rel=1e-12)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=2e-6, atol=1e-7)


def test_hf_trainer_resumes_from_its_checkpoint(tmp_path):
    sched = _warmup_cosine()
    torch.manual_seed(0)
    model = _Regression()
    init = copy.deepcopy(model.state_dict())
    opt = lrfused.AdamW(model.parameters(), lr=BASE_LR, schedule=sched)
    _hf_trainer(tmp_path / "full", model, opt, opt.scheduler).train()

    first = _Regression()
    first.load_state_dict(init)
    opt1 = lrfused.AdamW(first.parameters(), lr=BASE_LR, schedule=sched)
    _hf_trainer(tmp_path / "ckpt", first, opt1, opt1.scheduler, max_steps=STEPS, save_strategy="steps",
                save_steps=STEPS // 2).train()
    resumed = _Regression()
    resumed.load_state_dict(init)
    opt2 = lrfused.AdamW(resumed.parameters(), lr=BASE_LR, schedule=sched)
    rec = _recorder(opt2)
    _hf_trainer(tmp_path / "ckpt", resumed, opt2, opt2.scheduler, callbacks=[rec]).train(
        resume_from_checkpoint=str(tmp_path / "ckpt" / f"checkpoint-{STEPS // 2}"))
    assert rec.applied == [sched.lr_at(k, BASE_LR) for k in range(STEPS // 2, STEPS)]
    assert opt2.scheduler.last_epoch == STEPS
    for p, q in zip(resumed.parameters(), model.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=0)


# ---- Lightning ------------------------------------------------------------------------------------

def _lightning_module(schedule, interval="step", monitor=None):
    L = pytest.importorskip("lightning")

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _Regression().net
            self.applied, self.positions, self.val_losses = [], [], []

        def training_step(self, batch, batch_idx):
            out = self.net(batch["x"]).squeeze(-1)
            loss = nn.functional.mse_loss(out, batch["labels"])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            out = self.net(batch["x"]).squeeze(-1)
            loss = nn.functional.mse_loss(out, batch["labels"])
            self.log("val_loss", loss)
            self.val_losses.append(float(loss))

        def on_train_batch_end(self, outputs, batch, batch_idx):
            # after optimizer.step(), before Lightning's scheduler.step()
            opt = self.optimizers().optimizer
            self.applied.append(opt.get_last_lr()[0])
            self.positions.append(opt.scheduler.last_epoch)

        def configure_optimizers(self):
            opt = lrfused.AdamW(self.parameters(), lr=BASE_LR, schedule=schedule)
            config = {"scheduler": opt.scheduler, "interval": interval}
            if monitor is not None:
                config["monitor"] = monitor
            return {"optimizer": opt, "lr_scheduler": config}

    return L, Module()


def _loader(n=64):
    return torch.utils.data.DataLoader(_Data(n), batch_size=4, shuffle=False)


def test_lightning_configure_optimizers_step_interval(tmp_path):
    sched = _warmup_cosine()
    L, module = _lightning_module(sched)
    trainer = L.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(module, _loader())
    assert module.applied == [sched.lr_at(k, BASE_LR) for k in range(STEPS)]
    assert module.positions == list(range(1, STEPS + 1))
    config = trainer.lr_scheduler_configs[0]
    assert config.scheduler is trainer.optimizers[0].scheduler
    assert config.scheduler.last_epoch == STEPS
    assert config.scheduler._step_count == STEPS


def test_lightning_plateau_monitor(tmp_path):
    L, module = _lightning_module(S.ReduceLROnPlateau(factor=0.5, patience=0), interval="epoch", monitor="val_loss")
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=str(tmp_path))
    trainer.fit(module, _loader(), _loader(16))
    opt = trainer.optimizers[0]
    assert opt.schedule_state.plateau["num_reports"] == 3  # one report per validation epoch
    assert opt.scheduler.last_epoch == 3 * 16
    # Lightning reported each epoch's mean val_loss (4 equal batches): replay them into torch's scheduler
    epoch_means = [sum(module.val_losses[i:i + 4]) / 4 for i in range(0, 12, 4)]
    torch_opt = torch.optim.AdamW(nn.Linear(1, 1).parameters(), lr=BASE_LR)
    torch_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_opt, factor=0.5, patience=0)
    for m in epoch_means:
        torch_sched.step(m)
    assert opt.scheduler.best == pytest.approx(torch_sched.best, rel=1e-6)
    assert opt.scheduler.num_bad_epochs == torch_sched.num_bad_epochs
    assert opt.scheduler.get_lr() == pytest.approx(torch_sched.get_last_lr(), rel=1e-12)


# ---- what loggers read from param_groups, against torch ------------------------------------------

def _lr_monitor_log(tmp_path, make_opt_and_sched):
    """The lr values Lightning's LearningRateMonitor logs per step (it reads param_groups[i]["lr"] at each
    batch start)."""
    L = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers.logger import Logger

    class Collect(Logger):
        def __init__(self):
            super().__init__()
            self.lrs = []

        @property
        def name(self):
            return "collect"

        @property
        def version(self):
            return 0

        def log_hyperparams(self, *args, **kwargs):
            pass

        def log_metrics(self, metrics, step=None):
            self.lrs += [v for k, v in sorted(metrics.items()) if k.startswith("lr-")]

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = _Regression().net

        def training_step(self, batch, batch_idx):
            return nn.functional.mse_loss(self.net(batch["x"]).squeeze(-1), batch["labels"])

        def configure_optimizers(self):
            opt, sched = make_opt_and_sched(self.parameters())
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    logger = Collect()
    trainer = L.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                        callbacks=[LearningRateMonitor(logging_interval="step")], log_every_n_steps=1)
    trainer.fit(Module(), _loader())
    return logger.lrs


def test_lightning_learning_rate_monitor_logs_what_it_logs_with_torch(tmp_path):
    def with_lrfused(params):
        opt = lrfused.AdamW(params, lr=BASE_LR, schedule=_warmup_cosine())
        return opt, opt.scheduler

    def with_torch(params):
        opt = torch.optim.AdamW(params, lr=BASE_LR)
        return opt, _torch_warmup_cosine(opt)

    ours, theirs = _lr_monitor_log(tmp_path / "a", with_lrfused), _lr_monitor_log(tmp_path / "b", with_torch)
    assert len(ours) == len(theirs) == STEPS
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert len(set(ours)) > 3  # the schedule moved, and the log followed it


def test_hf_trainer_logs_a_plateau_schedule_as_with_torch(tmp_path):
    """Under ReduceLROnPlateau the Trainer logs param_groups[0]["lr"] and steps the scheduler with the
    evaluation metric: lrfused's groups show the reduced lr as torch's do."""
    def run(path, make):
        torch.manual_seed(0)
        model = _Regression()
        opt, sched = make(model)
        trainer = _hf_trainer(path, model, opt, sched, eval_dataset=_Data(16), eval_strategy="steps", eval_steps=4,
                              metric_for_best_model="eval_loss", learning_rate=BASE_LR)
        trainer.train()
        return [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]

    def with_lrfused(model):
        # threshold=10: no evaluation counts as an improvement, so every one after the first reduces the lr
        opt = lrfused.AdamW(model.parameters(), lr=BASE_LR,
                            schedule=S.ReduceLROnPlateau(factor=0.5, patience=0, threshold=10.0))
        return opt, opt.scheduler

    def with_torch(model):
        opt = torch.optim.AdamW(model.parameters(), lr=BASE_LR)
        return opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=10.0)

    ours, theirs = run(tmp_path / "a", with_lrfused), run(tmp_path / "b", with_torch)
    assert len(ours) == len(theirs) == STEPS
    assert [float(x) for x in ours] == pytest.approx(theirs, rel=1e-12)
    assert min(theirs) < BASE_LR  # the plateau reduced the lr during the run


# ---- accelerate ------------------------------------------------------------------------------------

def _accelerate_run(make_opt_and_sched, accumulation=2, mixed_precision="bf16"):
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    torch.manual_seed(0)
    model = _Regression()
    opt, sched = make_opt_and_sched(model)
    acc = accelerate.Accelerator(gradient_accumulation_steps=accumulation, mixed_precision=mixed_precision, cpu=True)
    loader = torch.utils.data.DataLoader(_Data(48), batch_size=4, shuffle=False)
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    lrs = []
    for batch in loader:
        with acc.accumulate(model):
            out = model(**batch)
            acc.backward(out["loss"])
            opt.step()
            sched.step()
            opt.zero_grad()
            if acc.sync_gradients:
                lrs.append(float(opt.optimizer.param_groups[0]["lr"]))
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return [p.detach().clone() for p in acc.unwrap_model(model).parameters()], lrs


def test_accelerate_prepare_with_accumulation_and_mixed_precision():
    def with_lrfused(model):
        opt = lrfused.AdamW(model.parameters(), lr=BASE_LR, schedule=_warmup_cosine(12))
        return opt, opt.scheduler

    def with_torch(model):
        opt = torch.optim.AdamW(model.parameters(), lr=BASE_LR)
        return opt, _torch_warmup_cosine(opt, 12)

    ours, our_lrs = _accelerate_run(with_lrfused)
    theirs, their_lrs = _accelerate_run(with_torch)
    assert len(our_lrs) == len(their_lrs) == 6  # 12 batches, an optimizer step every 2
    assert our_lrs == pytest.approx(their_lrs, rel=1e-12)
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
