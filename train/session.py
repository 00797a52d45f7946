"""Building a training session: recipe, data, contract, model, optimizer, fresh or restored from a checkpoint."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cifar_edge.runtime.common.names import CHECKPOINT_FILE
from cifar_edge.runtime.contract import Contract, unnormalized_contract
from cifar_edge.train.augment import WHITENING_PICK_EPOCH, epoch_seed, normalize
from cifar_edge.train.budget.plan import current_total_steps
from cifar_edge.train.budget.policy import existing_folder, plan_session
from cifar_edge.train.budget.probe import ProbeInputs
from cifar_edge.train.budget.size import Sized, plan_with_size
from cifar_edge.train.config import CUDA_GRAPH_COMPILE_MODES, TrainConfig
from cifar_edge.train.distill import SoftTargets
from cifar_edge.train.distributed import (
    DistributedContext,
    data_parallel_wrapper,
    local_batch_size,
    main_first,
    steps_per_epoch,
)
from cifar_edge.train.distributed import start as start_distributed
from cifar_edge.train.distributed import stop as stop_distributed
from cifar_edge.train.environment import configure_threads, resolve_device, resolve_precision, tune_malloc
from cifar_edge.train.loop import Trainer
from cifar_edge.train.models import ArchitectureError, available_models, build_model, check_model_arguments
from cifar_edge.train.optim.averaging import LookaheadAverage, WeightAverage
from cifar_edge.train.optim.groups import build_optimizer
from cifar_edge.train.optim.schedule import LrSchedule
from cifar_edge.train.recipes import Recipe, epochs_within_budget, resolve_recipe
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.resume import restore, resumed_config
from cifar_edge.train.run.checkpoint import read_checkpoint
from cifar_edge.train.run.folder import resolve_resume_dir
from cifar_edge.train.state import DeviceData, EpochTotals, Position
from cifar_edge.train.training_data import check_splits, obtain_splits, plain_json

if TYPE_CHECKING:
    # The data module imports torchvision (slow to import): loaded only when fit() has to load data itself.
    from cifar_edge.train.data.load import Splits


@dataclass
class Session:
    config: TrainConfig  # effective: what run.json records and --resume restores
    recipe: Recipe  # resolved: every knob's actual value
    contract: Contract
    architecture: dict[str, Any]
    data_record: dict[str, Any]  # {"spec": load_splits kwargs or None, "summary": splits.description}
    trainer: Trainer
    train_data: DeviceData
    val_data: DeviceData
    run_dir: Path | None  # None until training starts (a fresh run's folder is created late: nothing empty is left)
    position: Position = field(default_factory=Position)
    totals: EpochTotals = field(default_factory=EpochTotals)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    previous_wall_time_s: float = 0.0  # spent by earlier sessions of a resumed run
    threads: int = 1
    malloc_tuned: bool = False  # environment.tune_malloc took effect in this process
    distributed: DistributedContext = field(default_factory=DistributedContext)  # torchrun's rank and world
    plan: dict[str, Any] | None = None  # a budgeted run's plan (budget/plan.py: Plan.record); None = fixed length
    clock_s: float = 0.0  # the training clock at the last epoch's end, all sessions (budget/clock.py)
    previous_clock_s: float = 0.0  # the training clock's seconds in earlier sessions of a resumed run
    stopped: dict[str, Any] | None = None  # where --stop-after ended the run (budget/clock.py), None = not


def open_session(
    config: TrainConfig, splits: Splits | None, reporter: Reporter, clock: Callable[[], float] = time.perf_counter
) -> Session:
    """Validate options, load or accept data, build everything; ValueError (one line) for bad options or data.
    A run with a time budget measures this machine first (by ``clock``) and plans its steps (budget/).

    Under torchrun this also joins the process group (``session.distributed``; released by ``close_session``).
    """
    config.validate()
    device = resolve_device(config.device)
    distributed = start_distributed(device.type)
    try:
        if distributed.enabled and device.type == "cuda":
            device = torch.device("cuda", distributed.local_rank)  # one GPU per process
        return _build_session(config, splits, device, distributed, (clock, reporter))
    except BaseException:
        stop_distributed(distributed)
        raise


def close_session(session: Session) -> None:
    stop_distributed(session.distributed)


def _build_session(
    config: TrainConfig,
    splits: Splits | None,
    device: torch.device,
    distributed: DistributedContext,
    planning: tuple[Callable[[], float], Reporter],
) -> Session:
    config, recipe, run_dir, saved = _resolve_run(config)
    threads, malloc_tuned = _configure_process(config, recipe, device, distributed)
    splits, spec, recipe, contract = _prepare_data(config, splits, saved, recipe, distributed)
    train_data = DeviceData.from_arrays(splits.train_images, splits.train_labels, device)
    val_data = DeviceData.from_arrays(splits.val_images, splits.val_labels, device)
    mean = torch.tensor(contract.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(contract.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    build = partial(_fresh_model, config.seed, contract, train_data, (mean, std), fresh=saved is None)
    if saved is None:
        # The probe runs on the real model and data, before the optimizer exists (the plan may change the batch).
        scratch = existing_folder(run_dir or Path(config.runs_root))  # the run's writes are timed on its own disk
        precision = resolve_precision(config.precision, device)
        probe = (train_data, val_data, mean, std, precision, device, distributed.world_size, scratch)

        def budget(for_recipe: Recipe, model: nn.Module) -> tuple[Recipe, dict[str, Any] | None]:
            return plan_session(config, for_recipe, ProbeInputs(model, *probe), distributed, *planning)

        recipe, plan, sized = plan_with_size(config, recipe, build, budget)
    else:
        sized, plan = build(recipe), saved.get("plan")
    model, architecture = sized.model, sized.architecture
    total_steps = 0 if plan is None else current_total_steps(plan)
    trainer, schedule = _build_trainer(
        config, recipe, model, (len(train_data), contract.num_classes), mean, std, device, distributed, total_steps
    )
    summary = plain_json(splits.description)
    session = Session(
        config=config,
        recipe=recipe,
        contract=contract,
        architecture=architecture,
        data_record={"spec": spec, "summary": summary},
        trainer=trainer,
        train_data=train_data,
        val_data=val_data,
        run_dir=run_dir,
        threads=threads,
        malloc_tuned=malloc_tuned,
        distributed=distributed,
        plan=plan,
    )
    if saved is not None:
        restore(session, saved, schedule)
    return session


def _resolve_run(config: TrainConfig) -> tuple[TrainConfig, Recipe, Path | None, dict[str, Any] | None]:
    """(effective config, recipe, run folder or None, the checkpoint read back when resuming or None)."""
    if config.resume:
        run_dir = resolve_resume_dir(config.resume)
        saved = read_checkpoint(run_dir / CHECKPOINT_FILE)
        config, recipe, saved["plan"] = resumed_config(config, saved, run_dir)
        try:  # the checkpoint's architecture, checked before anything is built: one line naming the file
            check_model_arguments(recipe.model, dict(recipe.model_kwargs))
        except ArchitectureError as error:
            raise ValueError(f"{run_dir / CHECKPOINT_FILE}: architecture: {error}") from None
        return config, recipe, run_dir, saved
    recipe = resolve_recipe(config)
    if recipe.model not in available_models():
        raise ValueError(f"unknown model {recipe.model!r}; available: {', '.join(available_models())}")
    fresh_dir = Path(config.run_dir) if config.run_dir else None
    if fresh_dir is not None and (fresh_dir / CHECKPOINT_FILE).exists():
        raise ValueError(f"--run-dir {fresh_dir} already holds a run; continue it with --resume {fresh_dir}")
    return config, recipe, fresh_dir, None


def _configure_process(
    config: TrainConfig, recipe: Recipe, device: torch.device, distributed: DistributedContext
) -> tuple[int, bool]:
    """Check the options that depend on the device and world, set threads, malloc and cuDNN; (threads, tuned)."""
    local_batch_size(recipe.batch_size, distributed.world_size)  # ValueError unless the batch splits evenly
    if config.sync_batchnorm and distributed.enabled and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA (torch's SyncBatchNorm does not run on the CPU); drop it on the CPU")
    if config.stop_after_s is not None and distributed.enabled:  # each rank's clock would stop it at another step
        raise ValueError("--stop-after runs in one process only; drop it under torchrun")
    threads = configure_threads(device, config.threads, processes=distributed.local_world_size)
    malloc_tuned = config.tune_malloc and device.type == "cpu" and tune_malloc()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return threads, malloc_tuned


def _prepare_data(
    config: TrainConfig,
    splits: Splits | None,
    saved: dict[str, Any] | None,
    recipe: Recipe,
    distributed: DistributedContext,
) -> tuple[Splits, dict[str, Any] | None, Recipe, Contract]:
    """(checked splits, their load_splits arguments, the recipe fitted to the image budget, the contract)."""
    base_contract = Contract() if recipe.normalization == "cifar10" else unnormalized_contract()
    if saved is not None:
        base_contract = Contract.from_dict(saved["contract"])
    # Under torchrun rank 0 decodes (and caches) the data first; the other ranks then read its cache.
    splits, spec = main_first(distributed, lambda: obtain_splits(config, splits, saved, base_contract))
    check_splits(splits, base_contract)
    if saved is None and config.epochs is None and config.budget_s is None and "epochs" not in config.recipe_overrides:
        recipe = epochs_within_budget(recipe, len(splits.train_labels))
    contract = base_contract.with_classes(splits.class_names)
    if saved is not None and tuple(saved["contract"]["class_names"]) != contract.class_names:
        raise ValueError(
            f"the data's classes {list(contract.class_names)} differ from the run's {saved['contract']['class_names']}"
        )
    return splits, spec, recipe, contract


def _fresh_model(
    seed: int,
    contract: Contract,
    train_data: DeviceData,
    normalization: tuple[torch.Tensor, torch.Tensor],
    recipe: Recipe,
    *,
    fresh: bool,
) -> Sized:
    """``recipe``'s model, initialised from ``seed`` alone, and its whitening stem from the training images (with
    the contract's ``normalization``: mean, std) when the run is ``fresh``."""
    _seed_everything(seed)
    model, architecture = _build_model(recipe, contract, train_data.images.device)
    if fresh and recipe.whitening_images > 0 and hasattr(model, "init_whitening"):
        generator = torch.Generator().manual_seed(epoch_seed(seed, WHITENING_PICK_EPOCH))
        pick = torch.randperm(len(train_data), generator=generator)[: recipe.whitening_images]
        images = train_data.images[pick.to(train_data.images.device)].permute(0, 3, 1, 2)
        model.init_whitening(normalize(images, *normalization))
    return Sized(model, architecture)


def _build_model(recipe: Recipe, contract: Contract, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    kwargs = {**recipe.model_kwargs, "num_classes": contract.num_classes}
    model = build_model(recipe.model, **kwargs).to(device=device, memory_format=torch.channels_last)
    architecture: dict[str, Any] = {"name": recipe.model, "kwargs": kwargs}
    if recipe.tta != "none":
        architecture["tta"] = recipe.tta
    return model, architecture


def _build_trainer(
    config: TrainConfig,
    recipe: Recipe,
    model: nn.Module,
    shape: tuple[int, int],
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
    distributed: DistributedContext,
    total_steps: int = 0,
) -> tuple[Trainer, LrSchedule]:
    """The optimizer, its learning-rate schedule, the weight averages and the (wrapped) model, as one Trainer;
    ``shape``: (training images, classes); ``total_steps``: a planned run's length (0 = recipe.epochs whole epochs)."""
    train_images, num_classes = shape
    optimizer = build_optimizer(model, recipe)
    epoch_steps = steps_per_epoch(train_images, recipe.batch_size, distributed.world_size)
    warmup_steps = round(recipe.warmup_epochs * epoch_steps)
    schedule = LrSchedule(
        recipe.schedule,
        total_steps or recipe.epochs * epoch_steps,
        warmup_steps,
        recipe.lr_start_factor,
        recipe.lr_peak_fraction,
        recipe.lr_end_factor,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    average = WeightAverage(model, recipe.ema_decay) if recipe.ema_decay > 0 else None
    lookahead = None
    if recipe.lookahead_every > 0:
        lookahead = LookaheadAverage(recipe.lookahead_every, recipe.lookahead_decay, recipe.lookahead_power)
    if config.sync_batchnorm and distributed.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same parameters, same state_dict names
    wrap = data_parallel_wrapper(distributed, device, config.compile, config.compile_mode)
    trainer = Trainer(
        model,
        wrap(model),
        optimizer,
        scheduler,
        recipe,
        config.seed,
        device,
        mean,
        std,
        average,
        lookahead,
        distributed,
        wrap if distributed.enabled else None,
        resolve_precision(config.precision, device),
        cuda_graphs=config.compile and config.compile_mode in CUDA_GRAPH_COMPILE_MODES and device.type == "cuda",
        total_steps=total_steps,
        soft_targets=_soft_targets(recipe, model, train_images, num_classes, device),
    )
    return trainer, schedule


def _soft_targets(
    recipe: Recipe, model: nn.Module, train_images: int, num_classes: int, device: torch.device
) -> SoftTargets | None:
    if recipe.distill == "none":
        return None
    targets = SoftTargets(
        recipe.distill, model, train_images, num_classes, recipe.distill_momentum, recipe.distill_ema_decay
    )
    return targets.to(device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
