"""The training loop of one run: seed, build, (resume), train, select, report, checkpoint, certify, plot.

Order per step: lr warm-up → fresh batch → loss = −mean log p (nats) + the model's regularisers → backward →
clip → optimiser step → ``hooks.after_optimizer_step`` → EMA update. Every ``log_every`` steps: metrics (with the
model's ``training_metrics``: NFE, solver iterations) and progress; every ``checkpoint_every`` steps and at the
end: a checkpoint holding everything needed for a bit-identical resume (model, optimiser, EMA, all RNG states
including the data generator, the selection so far, the test evaluations of the averaging window).

Selection and report (with EMA weights when ``train.ema`` is set):
- every ``eval_every`` steps and at the end the *validation* split is evaluated; the step with the lowest
  validation ``best_metric`` is the selected checkpoint (its weights are saved as the best checkpoint);
- at the end the *test* split is evaluated on the selected weights (result ``best``, rule ``val-best``) and on the
  final weights (``final``), and the certificates and plots are made from the selected weights, so every reported
  number of the run refers to one checkpoint;
- at each of the last ``eval.average_last`` evaluations the test split is evaluated too, and their mean is
  reported (``mean``, rule ``last-N-mean``: the toy papers' protocol). Nothing else reads the test split, so the
  test metric never decides anything.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nflab.flows import build, hooks
from nflab.flows.registry import family, preset_of

from . import checkpoint as ckpt
from .certificates import PROBE_SIZE, compute_certificates
from .datasource import DataSource
from .evaluate import evaluate
from .optim import Ema, clip_gradients, lr_at, make_optimizer, set_lr
from .plots import make_plots, run_title
from .seeding import capture_rng, make_generator, restore_rng, seed_everything
from .tracking import Tracker

STOP_ENV = "NFLAB_TEST_STOP_AFTER_STEP"  # test hook: simulate a crash after this step's checkpoint logic
Progress = Callable[[str, int, int, dict], None]


class RunFailure(Exception):
    """A run-level failure with a one-line reason (the run fails, the campaign goes on)."""


class SimulatedCrash(BaseException):
    """Raised by the test hook to stop a run abruptly, like a killed worker (never caught by execute_run)."""


@dataclass
class TrainState:
    """What the loop has produced so far; filled in even when the run fails part-way.

    ``best``: the selected evaluation (``{"step", "validation": eval, "test": eval}``, test filled at the end);
    ``last_eval``: the newest validation evaluation; ``final``: the validation and test evaluations of the final
    weights; ``tail``: the test evaluations of the averaging window; ``n_params`` and ``preset`` (the model's size
    class, ``nflab.flows.registry.preset_of``) for the budget; ``data_digest``: a running sha256 of every batch and
    held-out set the run read (equal for two runs that saw the same data stream).
    """

    step: int = 0
    resumed_from: int | None = None
    best: dict[str, Any] | None = None
    last_eval: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    tail: list[dict[str, Any]] = field(default_factory=list)
    certificates: dict[str, Any] = field(default_factory=dict)
    certificates_step: int | None = None
    plots: list[Path] = field(default_factory=list)
    n_params: int | None = None
    preset: str | None = None
    data_digest: str = ""


def evaluation_steps(total: int, every: int) -> list[int]:
    """The steps at which the loop evaluates: every ``every`` steps and the last one."""
    return sorted({*range(every, total + 1, every), total})


def chain_digest(digest: str, data: torch.Tensor) -> str:
    """sha256(previous digest ‖ the tensor's bytes): a running fingerprint of a data stream."""
    raw = data.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()
    return hashlib.sha256(digest.encode() + raw).hexdigest()


def section(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``spec["config"][name]``: a section of the resolved run config, trusted as is (``nflab.pipelines`` resolved
    every option once; the worker has no defaults of its own)."""
    return spec["config"][name]


def pick_device(train_cfg: Mapping[str, Any], resources: Mapping[str, Any]) -> torch.device:
    """``auto``: CUDA when available and the run asked for a GPU, else CPU."""
    want = str(train_cfg.get("device", "auto"))
    if want == "auto":
        gpu = float(resources.get("gpu") or 0)
        return torch.device("cuda" if gpu > 0 and torch.cuda.is_available() else "cpu")
    if want == "cuda" and not torch.cuda.is_available():
        raise RunFailure("train.device is cuda but no CUDA device is available")
    return torch.device(want)


def pick_dtype(train_cfg: Mapping[str, Any]) -> torch.dtype:
    name = str(train_cfg.get("dtype", "float32"))
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise RunFailure(f"train.dtype: {name!r} is not a floating-point torch dtype")
    return dtype


def build_model(model_cfg: Mapping[str, Any], shape: tuple[int, ...]) -> nn.Module:
    """``nflab.flows.build(family, shape, **options)`` from the resolved model section."""
    options = {k: v for k, v in model_cfg.items() if k != "family"}
    return build(model_cfg["family"], shape, **options)


def _stop_after(stop_after_step: int | None) -> int | None:
    if stop_after_step is not None:
        return stop_after_step
    env = os.environ.get(STOP_ENV)
    return int(env) if env else None


def _better(new: dict[str, Any], best: dict[str, Any] | None, metric: str) -> bool:
    return best is None or new[metric] < best["validation"][metric]


def train_run(
    spec: Mapping[str, Any],
    run_dir: Path,
    tracker: Tracker,
    state: TrainState,
    *,
    data_root: str | None = None,
    progress: Progress | None = None,
    stop_after_step: int | None = None,
    data: DataSource | None = None,
) -> TrainState:
    """Train (or resume) the run described by ``spec`` inside ``run_dir``; raises :class:`RunFailure`.

    ``data`` replaces the run's own :class:`DataSource` (tests hand in one with a poisoned test split).
    """
    tcfg, ecfg, model_cfg = section(spec, "train"), section(spec, "eval"), section(spec, "model")
    resources = section(spec, "resources")
    seed = int(spec["seed"])
    run_key, total = str(spec["run_key"]), int(tcfg["steps"])
    stop = _stop_after(stop_after_step)

    seed_everything(seed)
    device, dtype = pick_device(tcfg, resources), pick_dtype(tcfg)
    if device.type == "cuda" and family(model_cfg["family"]).tf32_off:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if data is None:
        data = DataSource(section(spec, "dataset"), seed=seed, dtype=dtype, device=device, data_root=data_root)
    model = build_model(model_cfg, data.shape).to(device=device, dtype=dtype)
    state.n_params = sum(p.numel() for p in model.parameters())
    state.preset = preset_of(model_cfg["family"], model_cfg, "images" if data.is_image else "vectors")
    optimizer = make_optimizer(model, tcfg)
    ema = Ema(model, float(tcfg["ema"])) if tcfg.get("ema") else None
    data_gen = make_generator(seed, "data")
    metric = "bpd" if data.is_image and ecfg.get("best_metric") == "bpd" else "nats"
    ckpt_dir = run_dir / "checkpoints"

    loaded = ckpt.load_latest(ckpt_dir, map_location=device)
    if loaded is not None:
        found, saved = loaded
        if saved.get("config_hash") != spec.get("config_hash"):
            raise RunFailure(f"checkpoint {found.path} belongs to another configuration")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None and saved.get("ema") is not None:
            ema.load_state_dict(saved["ema"])
        restore_rng(saved["rng"], data_gen)
        state.step = state.resumed_from = int(saved["step"])
        state.best, state.last_eval = saved.get("best"), saved.get("last_eval")
        state.tail, state.data_digest = list(saved.get("tail") or []), str(saved.get("data_digest") or "")
    else:
        model.train()
        state.data_digest = chain_digest(chain_digest("", data.validation), data.heldout)
        with torch.no_grad():  # data-dependent init (ActNorm) on a large, representative first batch
            init = data.init_batch(int(tcfg["batch_size"]), data_gen)
            state.data_digest = chain_digest(state.data_digest, init)
            model(init)
    model.train()

    def evaluate_now(split: str, *, as_is: bool = False) -> dict[str, Any]:
        """Evaluate ``split`` with the EMA weights swapped in (``as_is``: the weights the model holds)."""
        with ema.applied(model) if ema is not None and not as_is else nullcontext():
            result = evaluate(
                model,
                data,
                eval_cfg=ecfg,
                step=state.step,
                split=split,
                generator=make_generator(seed, "eval", device),
            )
        if not math.isfinite(result["nats"]):
            raise RunFailure(f"non-finite {split} nats ({result['nats']}) at step {state.step}")
        return result

    def save_checkpoint() -> None:
        ckpt.save_step(
            ckpt_dir,
            state.step,
            {
                "step": state.step,
                "config_hash": spec.get("config_hash"),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema": None if ema is None else ema.state_dict(),
                "rng": capture_rng(data_gen),
                "best": state.best,
                "last_eval": state.last_eval,
                "tail": state.tail,
                "data_digest": state.data_digest,
            },
        )

    params = [p for p in model.parameters() if p.requires_grad]
    log_every, eval_every, ckpt_every = (
        max(1, int(tcfg[k] or total)) for k in ("log_every", "eval_every", "checkpoint_every")
    )
    schedule, n_average = evaluation_steps(total, eval_every), int(ecfg.get("average_last") or 0)
    window = set(schedule[-n_average:]) if n_average else set()  # the test split is evaluated at these steps
    while state.step < total:
        lr = lr_at(state.step, float(tcfg["lr"]), tcfg.get("warmup_steps"))
        set_lr(optimizer, lr)
        x = data.train_batch(int(tcfg["batch_size"]), data_gen)
        state.data_digest = chain_digest(state.data_digest, x)
        optimizer.zero_grad(set_to_none=True)
        loss = -model.log_prob(x).mean()
        penalty = hooks.regularization_loss(model)
        if penalty is not None:
            loss = loss + penalty
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise RunFailure(f"non-finite loss ({loss_value}) at step {state.step + 1}")
        loss.backward()
        grad_norm = clip_gradients(params, tcfg.get("grad_clip"))
        if not math.isfinite(grad_norm):
            raise RunFailure(f"non-finite gradient norm ({grad_norm}) at step {state.step + 1}")
        extra = hooks.training_metrics(model)  # read before the next forward resets them (NFE, solver iterations)
        optimizer.step()
        hooks.after_optimizer_step(model)
        if ema is not None:
            ema.update(model)
        state.step += 1
        step = state.step
        metrics: dict[str, Any] = {"train_loss": loss_value, "lr": lr, "grad_norm": grad_norm, **extra}
        if step % eval_every == 0 or step == total:
            state.last_eval = evaluate_now("validation")
            if _better(state.last_eval, state.best, metric):
                state.best = {"step": step, "validation": state.last_eval, "test": None}
                weights = model.state_dict()
                if ema is not None:
                    with ema.applied(model):
                        weights = {k: v.clone() for k, v in model.state_dict().items()}
                ckpt.save_best(ckpt_dir, step, {"step": step, "model": weights, "eval": state.last_eval})
            metrics.update({f"val_{k}": state.last_eval[k] for k in ("nats", "bpd")})
            if step in window:
                state.tail.append(evaluate_now("test"))
                metrics.update({f"test_{k}": state.tail[-1][k] for k in ("nats", "bpd")})
        if step % log_every == 0 or step == total or "val_nats" in metrics:
            tracker.log_metrics(metrics, step)
            if progress is not None and (step % log_every == 0 or step == total or "val_nats" in metrics):
                progress(run_key, step, total, {k: v for k, v in metrics.items() if v is not None})
        if step % ckpt_every == 0 or step == total:
            save_checkpoint()
        if stop is not None and step >= stop:
            raise SimulatedCrash(f"test hook: stopped after step {step}")

    report(model, data, state, spec, run_dir, evaluate_now, ckpt_dir, device, seed)
    return state


def report(
    model: nn.Module,
    data: DataSource,
    state: TrainState,
    spec: Mapping[str, Any],
    run_dir: Path,
    evaluate_now: Callable[..., dict[str, Any]],
    ckpt_dir: Path,
    device: torch.device,
    seed: int,
) -> None:
    """The end of a run (module docstring): test on the final and on the selected weights, then certificates and
    plots of the selected weights."""
    if state.last_eval is None or state.last_eval["step"] != state.step:
        state.last_eval = evaluate_now("validation")
    test_final = state.tail[-1] if state.tail and state.tail[-1]["step"] == state.step else evaluate_now("test")
    state.final = {"step": state.step, "validation": state.last_eval, "test": test_final}
    best = ckpt.best_checkpoint(ckpt_dir)
    if state.best is None or best is None or best.step != state.best["step"]:
        raise RunFailure(
            f"the selected checkpoint of step {None if state.best is None else state.best['step']} is missing"
        )
    model.load_state_dict(torch.load(best.path, map_location=device, weights_only=False)["model"])
    state.best["test"] = {**evaluate_now("test", as_is=True), "step": state.best["step"]}
    probe = data.heldout[:PROBE_SIZE].to(device)
    model_cfg = section(spec, "model")
    state.certificates = compute_certificates(model, probe)
    state.certificates_step = state.best["step"]
    state.plots = make_plots(
        model,
        data.shape,
        run_dir,
        make_generator(seed, "plots", device),
        title=run_title(model_cfg, data.name, state.best["test"], run_key=str(spec["run_key"])),
    )
