"""Fuzzing the model's contract metadata: every mutation opens as a usable model or is a one-line ModelError."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_helpers import TINY_CLASSES, build_colour_model, save_model

from cifar_edge.runtime import Classifier, ModelError
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, unnormalized_contract
from cifar_edge.runtime.model_file import read_contract

BASE = unnormalized_contract(class_names=TINY_CLASSES).to_dict()
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 2, 3, 32, 255, 256, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)


@st.composite
def mutated_contracts(draw: st.DrawFn) -> dict:
    contract = dict(BASE)
    for key in draw(st.lists(st.sampled_from(sorted(BASE)), max_size=4, unique=True)):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            del contract[key]
        elif choice == 1:
            contract[key] = draw(json_values)
        elif isinstance(BASE[key], list) and BASE[key]:  # one element of a list field replaced
            items = list(BASE[key])
            items[draw(st.integers(0, len(items) - 1))] = draw(json_values)
            contract[key] = items
        else:
            contract[key] = draw(json_values)
    if draw(st.booleans()):
        contract[draw(st.text(max_size=6))] = draw(json_values)
    return contract


def _one_line(error: Exception) -> None:
    text = str(error)
    assert text and "\n" not in text and len(text) < 2000, text


@FUZZ
@given(contract=mutated_contracts(), cut=st.integers(min_value=0, max_value=400), damage=st.booleans())
def test_read_contract_never_raises_anything_else(contract: dict, cut: int, damage: bool) -> None:
    text = json.dumps(contract)
    if damage:
        text = text[:cut]
    try:
        parsed = read_contract({CONTRACT_METADATA_KEY: text}, "model.onnx")
    except ModelError as error:
        _one_line(error)
        return
    assert all(math.isfinite(value) for value in (*parsed.mean, *parsed.std))
    assert all(isinstance(side, int) and 1 <= side <= 1024 for side in parsed.image_size)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contract=mutated_contracts())
def test_classifier_opens_a_usable_model_or_refuses_it(contract: dict, tmp_path: Path) -> None:
    path = save_model(
        build_colour_model(None, metadata={CONTRACT_METADATA_KEY: json.dumps(contract)}), tmp_path / "fuzz.onnx"
    )
    try:
        classifier = Classifier(path, "cpu", decode_workers=1, intra_op_threads=1)
    except ModelError as error:
        _one_line(error)
        return
    with classifier:
        (result,) = classifier.predict_iter([np.full((32, 32, 3), 200, dtype=np.uint8)])
    # Either a prediction with a finite probability, or a clean per-input failure: never NaN.
    probability = getattr(result, "probability", None)
    assert probability is None or math.isfinite(probability)
