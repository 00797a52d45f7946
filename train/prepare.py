"""Opening a training session: options and recipe, process settings, data and contract, a budget's plan, the model
and its trainer; fresh, or restored from the run's checkpoint (--resume).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cifar_edge.runtime.common.names import CHECKPOINT_FILE
from cifar_edge.runtime.contract import Contract, unnormalized_contract
from cifar_edge.train.augment import WHITENING_PICK_EPOCH, epoch_seed, normalize
from cifar_edge.train.budget.plan import Extension, Plan
from cifar_edge.train.budget.policy import SessionBudget, Sized, choose_size, existing_folder
from cifar_edge.train.budget.probe import ProbeInputs
from cifar_edge.train.checkpoint import read_checkpoint
from cifar_edge.train.config import CUDA_GRAPH_COMPILE_MODES, TrainConfig, resolve_recipe
from cifar_edge.train.distributed import (
    DistributedContext,
    check_options,
    data_parallel_wrapper,
    main_first,
    prepare_model,
    start,
    steps_per_epoch,
    stop,
)
from cifar_edge.train.environment import configure_threads, resolve_device, resolve_precision, tune_malloc
from cifar_edge.train.loop import Trainer
from cifar_edge.train.models import ArchitectureError, available_models, build_model, check_model_arguments
from cifar_edge.train.optim import LookaheadAverage, LrSchedule, build_optimizer
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.run_folder import resolve_resume_dir
from cifar_edge.train.session import Session, resumed_config
from cifar_edge.train.state import DeviceData

if TYPE_CHECKING:
    # The data module imports torchvision (slow to import): loaded only when fit() has to load data itself.
    from cifar_edge.train.data.load import Splits


def open_session(
    config: TrainConfig, splits: Splits | None, reporter: Reporter, clock: Callable[[], float] = time.perf_counter
) -> Session:
    """Validate options, load or accept data, build everything; ValueError (one line) for bad options or data.
    A run with a time budget measures this machine first (by ``clock``) and plans its steps (budget/).

    Under torchrun this also joins the process group (``session.distributed``; released by ``close_session``).
    """
    config.validate()
    distributed, device = start(resolve_device(config.device))
    try:
        return _build_session(config, splits, device, distributed, planning=(clock, reporter))
    except BaseException:
        stop(distributed)
        raise


def close_session(session: Session) -> None:
    stop(session.distributed)


def _build_session(
    config: TrainConfig,
    splits: Splits | None,
    device: torch.device,
    distributed: DistributedContext,
    planning: tuple[Callable[[], float], Reporter],
) -> Session:
    run = _resolve_run(config)
    config, recipe, run_dir, saved = run.config, run.recipe, run.run_dir, run.saved
    check_options(distributed, recipe.batch_size, config.sync_batchnorm, device)
    threads = configure_threads(device, config.threads, processes=distributed.local_world_size)
    malloc_tuned = config.tune_malloc and device.type == "cpu" and tune_malloc()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    base_contract = Contract() if recipe.normalization == "cifar10" else unnormalized_contract()
    if saved is not None:
        base_contract = Contract.from_dict(saved["contract"])
    # Under torchrun rank 0 decodes (and caches) the data first; the other ranks then read its cache.
    splits, spec = main_first(distributed, lambda: _obtain_splits(config, splits, saved, base_contract))
    contract = _checked_contract(splits, base_contract, saved)
    train_data = DeviceData.from_arrays(splits.train_images, splits.train_labels, device)
    val_data = DeviceData.from_arrays(splits.val_images, splits.val_labels, device)
    mean = torch.tensor(contract.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(contract.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    build = partial(_fresh_model, config.seed, contract, train_data, (mean, std), fresh=saved is None)
    if saved is None:
        # The probe runs on the real model and data, before the optimizer exists (the plan may change the batch).
        inputs = ProbeInputs(
            train_data=train_data,
            val_data=val_data,
            mean=mean,
            std=std,
            precision=resolve_precision(config.precision, device),
            device=device,
            world_size=distributed.world_size,
            scratch_dir=existing_folder(run_dir or Path(config.runs_root)),  # writes are timed on the run's disk
        )
        budget = SessionBudget(config, inputs, distributed, *planning)
        recipe, plan, sized = choose_size(config, recipe, build, budget.plan)
    else:
        sized = build(recipe)
        plan = _extended(run.plan, saved, steps_per_epoch(len(train_data), recipe.batch_size, distributed.world_size))
    trainer = _build_trainer(
        config,
        recipe,
        sized.model,
        normalization=(mean, std),
        distributed=distributed,
        train_images=len(train_data),
        total_steps=0 if plan is None else plan.current_total_steps,
    )
    session = Session(
        config=config,
        contract=contract,
        architecture=sized.architecture,
        data_record={"spec": spec, "summary": plain_json(splits.description)},
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
        session.restore(saved)
    return session


@dataclass(frozen=True)
class _Run:
    """Which run a session trains: its effective config and recipe, its folder, and what a resume continues."""

    config: TrainConfig
    recipe: Recipe
    run_dir: Path | None  # None: a fresh run's folder is chosen when training starts
    saved: dict[str, Any] | None = None  # the checkpoint read back when resuming
    plan: Plan | None = None  # the resumed run's budget plan


def _resolve_run(config: TrainConfig) -> _Run:
    if config.resume:
        run_dir = resolve_resume_dir(config.resume)
        saved = read_checkpoint(run_dir / CHECKPOINT_FILE)
        config, recipe, plan = resumed_config(config, saved, run_dir)
        try:  # the checkpoint's architecture, checked before anything is built: one line naming the file
            check_model_arguments(recipe.model, dict(recipe.model_kwargs))
        except ArchitectureError as error:
            raise ValueError(f"{run_dir / CHECKPOINT_FILE}: architecture: {error}") from None
        return _Run(config, recipe, run_dir, saved, plan)
    recipe = resolve_recipe(config)
    if recipe.model not in available_models():
        raise ValueError(f"unknown model {recipe.model!r}; available: {', '.join(available_models())}")
    fresh_dir = Path(config.run_dir) if config.run_dir else None
    if fresh_dir is not None and (fresh_dir / CHECKPOINT_FILE).exists():
        raise ValueError(f"--run-dir {fresh_dir} already holds a run; continue it with --resume {fresh_dir}")
    return _Run(config, recipe, fresh_dir)


def _extended(plan: Plan | None, saved: dict[str, Any], epoch_steps: int) -> Plan | None:
    """A resumed plan that --epochs N extended: the steps of its completed epochs plus whole epochs up to N."""
    if plan is None or plan.extended is None:
        return plan
    position = saved["position"]
    completed = position["global_step"] - position["step"]  # every step of the epochs done
    epochs = plan.extended.epochs
    return replace(plan, extended=Extension(epochs, completed + (epochs - position["epoch"]) * epoch_steps))


def _obtain_splits(
    config: TrainConfig, splits: Splits | None, saved: dict[str, Any] | None, contract: Contract
) -> tuple[Splits, dict[str, Any] | None]:
    """The splits and the exact ``load_splits`` keyword arguments that reproduce them (None when unknown).

    The data module records its canonical arguments (paths made absolute) as ``description["spec"]``; those are
    preferred. Caller-provided splits without that record get None: fit did not load them and cannot know how.
    """
    if splits is not None:
        return splits, plain_json(splits.description.get("spec"))
    if saved is not None:
        spec = saved["data"]["spec"]
        if spec is None:
            raise ValueError("this run's data was passed to fit() directly; resume it with fit(config, splits)")
    else:
        spec = {
            "data": config.data if config.data == "cifar10" else str(Path(config.data).expanduser().resolve()),
            "data_root": None if config.data_root is None else str(Path(config.data_root).expanduser().resolve()),
            "val_fraction": config.val_fraction,
            "seed": config.seed,
            "image_size": list(contract.image_size),
            "resize_method": contract.resize_method,
        }
        if config.cache_dir is not None:
            spec["cache_dir"] = str(Path(config.cache_dir).expanduser().resolve())
        if config.limit_per_class is not None:
            spec["limit_per_class"] = config.limit_per_class
    from cifar_edge.train.data.load import load_splits

    splits = load_splits(**{**spec, "image_size": tuple(spec["image_size"])}, show_progress=not config.quiet)
    return splits, plain_json(splits.description.get("spec") or spec)


def _checked_contract(splits: Splits, base: Contract, saved: dict[str, Any] | None) -> Contract:
    """``base`` with the data's classes, once the splits are usable (and, resuming, the run's classes)."""
    height, width = base.image_size
    for name, images, labels in (
        ("train", splits.train_images, splits.train_labels),
        ("val", splits.val_images, splits.val_labels),
    ):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (height, width, 3):
            raise ValueError(
                f"{name} images must be uint8 (N, {height}, {width}, 3), got {images.dtype} {images.shape}"
            )
        if len(labels) != len(images):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(splits.class_names)):
            raise ValueError(f"{name} labels must be in [0, {len(splits.class_names)})")
    if len(splits.train_labels) == 0:
        raise ValueError("no training images")
    if len(splits.class_names) < 2:
        raise ValueError(f"need at least 2 classes, got {len(splits.class_names)}")
    contract = base.with_classes(splits.class_names)
    if saved is not None and tuple(saved["contract"]["class_names"]) != contract.class_names:
        raise ValueError(
            f"the data's classes {list(contract.class_names)} differ from the run's {saved['contract']['class_names']}"
        )
    return contract


def plain_json(value: Any) -> Any:
    """Round-trip through JSON so records hold only plain types (numpy scalars and paths become numbers/strings)."""

    def convert(item: Any) -> Any:
        if isinstance(item, np.generic):
            return item.item()
        if isinstance(item, np.ndarray):
            return item.tolist()
        return str(item)

    return json.loads(json.dumps(value, default=convert))


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
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    kwargs = {**recipe.model_kwargs, "num_classes": contract.num_classes}
    model = build_model(recipe.model, **kwargs).to(train_data.images.device).to(memory_format=torch.channels_last)
    architecture: dict[str, Any] = {"name": recipe.model, "kwargs": kwargs}
    if recipe.tta != "none":
        architecture["tta"] = recipe.tta
    init_whitening = getattr(model, "init_whitening", None)  # models with a whitening stem
    if fresh and recipe.whitening_images > 0 and init_whitening is not None:
        generator = torch.Generator().manual_seed(epoch_seed(seed, WHITENING_PICK_EPOCH))
        pick = torch.randperm(len(train_data), generator=generator)[: recipe.whitening_images]
        images = train_data.images[pick.to(train_data.images.device)].permute(0, 3, 1, 2)
        init_whitening(normalize(images, *normalization))
    return Sized(model, architecture)


def _build_trainer(
    config: TrainConfig,
    recipe: Recipe,
    model: torch.nn.Module,
    *,
    normalization: tuple[torch.Tensor, torch.Tensor],
    distributed: DistributedContext,
    train_images: int,
    total_steps: int,
) -> Trainer:
    """The optimizer, its learning-rate schedule, the lookahead average and the (wrapped) model, as one Trainer;
    ``total_steps``: a planned run's length (0 = recipe.epochs whole epochs of ``train_images``)."""
    device = normalization[0].device
    optimizer = build_optimizer(model, recipe)
    epoch_steps = steps_per_epoch(train_images, recipe.batch_size, distributed.world_size)
    schedule = LrSchedule.for_recipe(recipe, total_steps or recipe.epochs * epoch_steps)
    lookahead = None
    if recipe.lookahead_every > 0:
        lookahead = LookaheadAverage(recipe.lookahead_every, recipe.lookahead_decay, recipe.lookahead_power)
    model = prepare_model(model, distributed, config.sync_batchnorm)
    wrap = data_parallel_wrapper(distributed, device, config.compile, config.compile_mode)
    return Trainer(
        model=model,
        train_model=wrap(model),
        optimizer=optimizer,
        schedule=schedule,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
        recipe=recipe,
        seed=config.seed,
        device=device,
        mean=normalization[0],
        std=normalization[1],
        lookahead=lookahead,
        distributed=distributed,
        wrap=wrap if distributed.enabled else None,
        precision=resolve_precision(config.precision, device),
        cuda_graphs=config.compile and config.compile_mode in CUDA_GRAPH_COMPILE_MODES and device.type == "cuda",
        total_steps=total_steps,
    )
