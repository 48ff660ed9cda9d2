"""The public API: ``from_bundle``'s keywords (a typo is refused by it, by name), one meaning
for ``max_objects`` (the answer grammar and the pipeline both take the value given), and the
names ``segzero_edge`` exports (lazily: ``import segzero_edge`` stays light)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import segzero_edge
from segzero_edge import DEFAULT_MAX_OBJECTS, SegZeroEdge, Status
from segzero_edge.backends import ReasonerOutput
from tests.fixtures.wrapped import StandInReasoner

ROOT = Path(__file__).resolve().parents[1]
FAST = {"n_gpu_layers": 0, "n_threads": 2, "max_new_tokens": 8, "think_budget": 4}


@pytest.mark.runtime
def test_from_bundle_refuses_a_typo_by_name() -> None:
    """An unknown keyword is a TypeError from from_bundle itself, before anything loads."""
    with pytest.raises(
        TypeError, match=r"from_bundle\(\) got an unexpected keyword argument 'n_thread'"
    ):
        SegZeroEdge.from_bundle("no-such-bundle", n_thread=2)  # type: ignore[call-arg]
    params = inspect.signature(SegZeroEdge.from_bundle).parameters
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params.values())
    kinds = {name: p.kind for name, p in params.items() if name != "path"}
    assert set(kinds.values()) == {inspect.Parameter.KEYWORD_ONLY}
    # every keyword is documented in the Args section
    doc = inspect.getdoc(SegZeroEdge.from_bundle) or ""
    for name in kinds:
        assert f"    {name}:" in doc, name
    assert "Returns:" in doc and "Raises:" in doc


@pytest.mark.runtime
def test_backend_keywords_have_one_home() -> None:
    """from_bundle and open_backends take the keywords of BackendOptions (one list): both
    signatures and Args sections show each with BACKEND_DEFAULTS' default, a typo is refused
    by the function's own name with the closest keyword, and a left-out keyword arrives with
    its default."""
    from segzero_edge.backend_options import BACKEND_DEFAULTS, BackendOptions, backend_keywords
    from segzero_edge.bundle import open_backends

    keys = list(BackendOptions.__annotations__)
    assert keys == list(BACKEND_DEFAULTS)
    for fn in (SegZeroEdge.from_bundle, open_backends):
        params = inspect.signature(fn).parameters
        for key in keys:
            assert params[key].kind is inspect.Parameter.KEYWORD_ONLY, key
            assert params[key].default == BACKEND_DEFAULTS[key], key  # type: ignore[literal-required]
        doc = inspect.getdoc(fn) or ""
        assert all(f"    {key}: " in doc for key in keys)
    with pytest.raises(
        TypeError,
        match=r"^open_backends\(\) got an unexpected keyword argument 'n_thred'; "
        r"did you mean 'n_threads'\?$",
    ):
        open_backends("no-such-bundle", n_thred=2)  # type: ignore[call-arg]

    @backend_keywords
    def opened(path: str, **options: Any) -> dict[str, Any]:
        return {"path": path, **options}

    got = opened("b", n_threads=3)
    assert got == {**BACKEND_DEFAULTS, "path": "b", "n_threads": 3}


@pytest.mark.runtime
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_threads", -1),
        ("n_threads", 0),
        ("n_threads", "4"),
        ("n_threads", True),
        ("n_batch", "512"),
        ("n_gpu_layers", "all"),
        ("n_gpu_layers", -7),
        ("max_new_tokens", "5"),
        ("think_budget", "10"),
        ("grammar", "no"),
        ("verify_hashes", "yes"),
        ("warmup", "no"),
        ("verbose", "x"),
        ("overlap", "yes"),
        ("extra_bufts", 1),
        ("use_mmap", "false"),
        ("answer_grammar", "root ::= x"),
    ],
)
def test_from_bundle_refuses_a_wrong_typed_keyword_by_name(
    tmp_path: Path, name: str, value: object
) -> None:
    """A keyword of the wrong type or range is a ValueError naming it, before the bundle is
    even read (a string flag such as grammar="no" is truthy: it would turn the grammar on)."""
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        SegZeroEdge.from_bundle(tmp_path / "no-such-bundle", **{name: value})  # type: ignore[arg-type]


class FiveObjects(StandInReasoner):
    """A reasoner answering five objects whatever it is asked (the pipeline's cut is tested)."""

    name = "five-objects"

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        items = [{"bbox_2d": [10 * i, 10, 10 * i + 60, 90], "point_2d": [10 * i + 30, 50]}
                 for i in range(5)]  # fmt: skip
        return ReasonerOutput(f"<think>x</think><answer>{json.dumps(items)}</answer>", False)

    def close(self) -> None:
        pass


@pytest.mark.runtime
@pytest.mark.parametrize("max_objects", [2, DEFAULT_MAX_OBJECTS])
def test_max_objects_reaches_the_grammar_and_the_pipeline(
    tiny_bundle: Path, max_objects: int
) -> None:
    with SegZeroEdge.from_bundle(tiny_bundle, max_objects=max_objects, **FAST) as model:
        family = model.family
        assert family.name == "multi-object"  # a list answer: max_objects bounds it
        reasoner = model.reasoner
        # the grammar llama.cpp samples under is the family's for this many objects
        assert reasoner.grammar_text == family.answer_grammar(max_objects).gbnf  # type: ignore[attr-defined]
        other = 3 if max_objects != 3 else 4
        assert reasoner.grammar_text != family.answer_grammar(other).gbnf  # type: ignore[attr-defined]
        assert model.max_objects == max_objects
        model.reasoner = FiveObjects()
        try:
            result = model.segment(np.zeros((96, 128, 3), np.uint8), "the boxes")
        finally:
            model.reasoner = reasoner
    assert result.status is Status.OK
    assert len(result.objects) == min(5, max_objects) == len(result.iou_predictions)


@pytest.mark.runtime
def test_bad_max_objects_is_refused_before_loading() -> None:
    with pytest.raises(ValueError, match="max_objects must be a whole number"):
        SegZeroEdge.from_bundle("no-such-bundle", max_objects=0)


PUBLIC = {
    "SegZeroEdge": "segzero_edge.pipeline",
    "Segmentation": "segzero_edge.types",
    "Status": "segzero_edge.types",
    "ObjectPrompt": "segzero_edge.types",
    "Tracker": "segzero_edge.tracker",
    "TrackedSegmentation": "segzero_edge.tracker",
    "NV12Frame": "segzero_edge.image",
    "BundleError": "segzero_edge.errors",
    "BackendError": "segzero_edge.errors",
    "TensorRTUnavailable": "segzero_edge.errors",
    "MissingExtra": "segzero_edge.errors",
    "ReasonerLoadError": "segzero_edge.errors",
}


@pytest.mark.runtime
def test_public_names_are_exported() -> None:
    import importlib

    for name, module in PUBLIC.items():
        assert name in segzero_edge.__all__, name
        assert getattr(segzero_edge, name) is getattr(importlib.import_module(module), name)
    assert set(segzero_edge.__all__) == {*segzero_edge._EXPORTS, "__version__"}
    assert set(segzero_edge.__all__) <= set(dir(segzero_edge))
    for name in segzero_edge.__all__:
        getattr(segzero_edge, name)  # every listed name resolves
    with pytest.raises(AttributeError, match="no attribute 'Segmentaton'"):
        segzero_edge.Segmentaton  # noqa: B018


@pytest.mark.runtime
def test_import_is_light() -> None:
    """``import segzero_edge`` loads none of the heavy libraries, not even numpy; the first
    use of a name loads its module."""
    code = (
        "import sys, segzero_edge\n"
        "heavy = {'torch', 'numpy', 'onnxruntime', 'llama_cpp', 'PIL', 'cv2'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "segzero_edge.BundleError\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "segzero_edge.SegZeroEdge\n"
        "print('torch' in sys.modules, 'llama_cpp' in sys.modules, 'onnxruntime' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.splitlines()
    assert out == ["[]", "[]", "False False False"], out
