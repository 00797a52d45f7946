"""The one-pass teachers: the loss, each teacher's targets, and runs that train and resume with them."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifar_edge.train.config import TrainConfig
from cifar_edge.train.data.load import Splits
from cifar_edge.train.distill import SoftTargets, distillation_loss, mixed_loss
from cifar_edge.train.fit import TrainingInterrupted, fit
from cifar_edge.train.recipes import DEFAULT
from cifar_edge.train.state import StepEvent


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def test_the_loss_is_zero_exactly_when_the_student_matches_the_teacher() -> None:
    logits = torch.randn(8, 5)
    assert distillation_loss(logits, F.softmax(logits, dim=1)).item() == pytest.approx(0.0, abs=1e-6)
    other = F.softmax(torch.randn(8, 5), dim=1)
    assert distillation_loss(logits, other).item() > 1e-3


def test_gradients_reach_only_the_student() -> None:
    student = torch.randn(4, 3, requires_grad=True)
    teacher_logits = torch.randn(4, 3, requires_grad=True)
    distillation_loss(student, F.softmax(teacher_logits, dim=1)).backward()
    assert teacher_logits.grad is None and student.grad is not None and student.grad.abs().sum() > 0


def test_the_mix_is_the_label_loss_without_a_teacher() -> None:
    logits, hard = torch.randn(4, 3), torch.tensor(1.5)
    assert mixed_loss(hard, logits, None, 0.5) is hard
    teacher = F.softmax(torch.randn(4, 3), dim=1)
    expected = 0.5 * hard + 0.5 * distillation_loss(logits, teacher)
    assert mixed_loss(hard, logits, teacher, 0.5).item() == pytest.approx(expected.item())


def test_temporal_targets_average_each_images_past_predictions() -> None:
    targets = SoftTargets("temporal", _net(), train_images=4, num_classes=3, momentum=0.5, ema_decay=0.9)
    batch, indices = torch.randn(2, 3, 8, 8), torch.tensor([1, 3])
    assert targets.targets(_net(), batch, indices, contextlib.nullcontext) is None  # never seen yet
    first, second = torch.randn(2, 3), torch.randn(2, 3)
    targets.record(_net(), first, indices, global_step=1)
    torch.testing.assert_close(targets.targets(_net(), batch, indices, contextlib.nullcontext), F.softmax(first, 1))
    targets.record(_net(), second, indices, global_step=2)
    expected = (0.5 * 0.5 * F.softmax(first, 1) + 0.5 * F.softmax(second, 1)) / (1 - 0.5**2)
    torch.testing.assert_close(targets.targets(_net(), batch, indices, contextlib.nullcontext), expected)
    assert targets.targets(_net(), batch, torch.tensor([0, 1]), contextlib.nullcontext) is None  # image 0 unseen


def test_the_flip_teacher_is_the_model_on_the_mirror_image_in_inference_mode() -> None:
    model, batch = _net().train(), torch.randn(6, 3, 8, 8)
    targets = SoftTargets("flip", model, 10, 3, 0.6, 0.9)
    probs = targets.targets(model, batch, torch.arange(6), contextlib.nullcontext)
    assert model.training and not probs.requires_grad  # mode restored, no graph kept
    expected = F.softmax(model.eval()(batch.flip(3)), dim=1)
    torch.testing.assert_close(probs, expected)


def test_the_ema_teacher_follows_the_weights_slowly() -> None:
    model = _net()
    targets = SoftTargets("ema", model, 10, 3, 0.6, ema_decay=0.9)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    targets.record(model, torch.zeros(1, 3), torch.tensor([0]), global_step=1000)
    moved = next(targets.average.model.parameters()) - (next(model.parameters()) - 1.0)
    torch.testing.assert_close(moved, torch.full_like(moved, 0.1))  # 1 - decay of the step


def test_a_state_dict_of_another_mode_is_refused() -> None:
    state = SoftTargets("temporal", _net(), 4, 3, 0.6, 0.9).state_dict()
    with pytest.raises(ValueError, match="'temporal'"):
        SoftTargets("flip", _net(), 4, 3, 0.6, 0.9).load_state_dict(state)


@pytest.mark.parametrize("mode", ["temporal", "flip", "ema"])
def test_a_run_with_a_teacher_resumes_bit_identically(
    mode: str, tiny_splits: Splits, airnet_config: TrainConfig, tmp_path: Path
) -> None:
    overrides = {**airnet_config.recipe_overrides, "distill": mode, "distill_start": 0.25}
    config = replace(airnet_config, recipe_overrides=overrides)
    straight = fit(replace(config, run_dir=str(tmp_path / "straight")), tiny_splits)

    def press_ctrl_c(event: StepEvent) -> None:
        if event.global_step == 5:  # mid-epoch 2, after the teacher joined at step 2 of 8
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        fit(replace(config, run_dir=str(tmp_path / "split")), tiny_splits, on_step=press_ctrl_c)
    resumed = fit(TrainConfig(resume=str(tmp_path / "split"), quiet=True, threads=1), tiny_splits)
    states = [torch.load(r.checkpoint, weights_only=True) for r in (straight, resumed)]
    for name, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][name]), name
    assert states[0]["soft_targets"]["mode"] == mode
    # The teacher changed what was learned: a run without it ends elsewhere.
    plain = fit(replace(airnet_config, run_dir=str(tmp_path / "plain")), tiny_splits)
    plain_state = torch.load(plain.checkpoint, weights_only=True)["model"]
    assert any(not torch.equal(plain_state[name], states[0]["model"][name]) for name in plain_state)


def test_the_default_recipe_names_a_known_teacher() -> None:
    assert DEFAULT.distill in ("none", "temporal", "flip", "ema")
