"""Model families: the prompt, answer grammar, SAM2 prompt and coordinate mapping a checkpoint
was trained and evaluated with, each taken from that family's reference script.

Seg-Zero's public checkpoints come in two families (``dvlab-research/Seg-Zero`` at commit
42a33455283ba041a3099cf154a708116f300cec; VisionReasoner at
``dvlab-research/VisionReasoner`` a455092a8d57d96f5d6e77597fb5a8741b8f3880):

- ``segzero-v1``: the paper's models (``Ricky06662/Seg-Zero-7B``,
  ``Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest``, ``Ricky06662/Seg-Zero-3B``).
  Reference: ``inference_scripts/infer.py`` and ``evaluation_scripts/evaluation.py``.
- ``multi-object``: ``Ricky06662/VisionReasoner-7B``. Reference:
  ``inference_scripts/infer_multi_object.py`` and
  ``evaluation_scripts/evaluation_visionreasoner.py``. Its prompt follows the latter
  (``text.lower().strip(".\"?!")``, also VisionReasoner's
  ``vision_reasoner/models/vision_reasoner_model.py``).
- ``multi-object-infer``: the same checkpoint and answer, with the prompt of
  ``inference_scripts/infer_multi_object.py`` (``text.lower().strip(".")``: a query ending in
  ``?``, ``!`` or ``"`` keeps it).

Every family states which script its prompt follows (``prompt_reference``) and which script's
scoring ``segzero-edge eval --protocol segzero`` reproduces for it (``evaluation_reference``,
applied by :meth:`ModelFamily.evaluation_objects`).

Both references resize the image to 840 x 840 (PIL bilinear), decode greedily with up to 1024
new tokens, and use SAM2.0 ``facebook/sam2-hiera-large`` with ``multimask_output=True``,
keeping the highest-scored mask. A new family is one more :class:`ModelFamily` in
:data:`FAMILIES` (and its hub ids in :data:`CHECKPOINT_FAMILIES`).

Qwen3-VL checkpoints see the image resized to a square whose side is a multiple of 32 pixels
(16 px patches, 2 x 2 merge) and ground in coordinates relative to the image on a 0-1000 grid
per axis; their family says so with ``resize_size``, ``patch_merge`` and ``coord_range``:

- ``qwen3vl-grounding``: a generic family for Qwen3-VL base / instruct checkpoints (no
  reasoning-segmentation training of their own): the multi-object prompt and answer schema
  with coordinates on the 0-1000 grid and ``[]`` for a query with no target. A trained
  Qwen3-VL reasoning-segmentation checkpoint gets its own family here, with its reference's
  prompt and schema.

The project's own micro model (``python -m segzero_train.micro``, trained from scratch on the
scene task) has a family too:

- ``micro-scene``: the multi-object answer schema, reward, SAM2 prompt and mapping, with a
  336 x 336 resize for the reasoner (12 x 12 image tokens: CPU training is practical) and a
  short prompt (every prompt token costs each training step). Its answers keep Seg-Zero's 840
  coordinate range (``coord_range`` 840), so the training rewards' pixel thresholds (10 px box
  L1, 100 px point distance) keep their Seg-Zero meaning; the runtime maps them with
  ``v * W / 840``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .answer import (
    AnswerObject,
    Mapping,
    format_list_answer,
    format_v1_answer,
    map_half_up,
    map_round_int,
    parse_answer,
)
from .answer import to_image_pixels as _to_image_pixels
from .layout import (
    DEFAULT_MAX_OBJECTS,
    PATCH_MERGE,
    QWEN3VL_COORD_RANGE,
    QWEN3VL_PATCH_MERGE,
    QWEN3VL_RESIZE_SIZE,
    REASONER_SIZE,
)
from .prompt import normalise_query
from .reasoner.defaults import DEFAULT_MAX_NEW_TOKENS
from .reasoner.grammar import (
    AnswerGrammar,
    list_answer_grammar,
    v1_answer_grammar,
)
from .segmenter.prompts import Sam2PromptRule
from .types import ObjectPrompt, Status


@dataclass(frozen=True)
class ModelFamily:
    """Everything that depends on how a checkpoint was trained.

    ``question_template`` has the reference's own placeholders ``{Question}`` and ``{Answer}``;
    ``query_strip`` are the characters ``str.strip`` removes after ``lower()``;
    ``schema`` is ``"object"`` (one dict) or ``"list"`` (a list of dicts); ``mapping`` maps one
    answer coordinate to an image pixel; ``max_new_tokens`` is the reference's decode
    budget; ``sam2_checkpoint`` the SAM2 the reference pairs it with; ``reward`` the
    ``segzero_train.rewards`` set its reference training used; ``prompt_reference`` the
    script whose prompt :meth:`build_prompt` reproduces byte for byte; ``evaluation_reference``
    the script whose scoring :meth:`evaluation_objects` reproduces.

    The backbone's geometry (defaults: Qwen2.5-VL at Seg-Zero's 840): ``resize_size`` is the
    side of the square (pixels) the image is resized to for the reasoner (the reference
    scripts' ``resize_size``), a multiple of ``patch_merge`` (pixels per image token side: 28
    for Qwen2.5-VL, 32 for Qwen3-VL); ``coord_range`` is the range the answer's coordinates
    span per axis (``None``: the resize's pixels; 1000 for Qwen3-VL's relative grid);
    ``architecture`` the HF architecture of the checkpoints (the exporter refuses another).
    """

    name: str
    checkpoints: tuple[str, ...]
    reference: str
    prompt_reference: str
    evaluation_reference: str
    question_template: str
    example_answer: str
    query_strip: str
    schema: str
    sam2: Sam2PromptRule
    mapping: Mapping
    max_new_tokens: int
    sam2_checkpoint: str
    reward: str
    grammar_fn: Callable[[int], AnswerGrammar]
    resize_size: int = REASONER_SIZE
    patch_merge: int = PATCH_MERGE
    coord_range: int | None = None
    architecture: str = "Qwen2_5_VLForConditionalGeneration"

    def __post_init__(self) -> None:
        if self.resize_size <= 0 or self.resize_size % self.patch_merge:
            raise ValueError(
                f"family {self.name!r}: resize_size {self.resize_size} is not a positive "
                f"multiple of patch_merge {self.patch_merge}"
            )

    @property
    def image_tokens(self) -> int:
        """Image tokens of one ``resize_size`` x ``resize_size`` image:
        ``(resize_size / patch_merge) ** 2``."""
        return (self.resize_size // self.patch_merge) ** 2

    @property
    def coord_span(self) -> int:
        """The span of the answer's coordinates per axis (``coord_range``, else
        ``resize_size``): what the mapping divides by (``x_factor = W / coord_span``)."""
        return self.coord_range or self.resize_size

    @property
    def units_per_pixel(self) -> float:
        """Answer units per pixel of the resize (``coord_span / resize_size``): 1 where the
        answer is in the resize's pixels, 1000 / 832 for Qwen3-VL's grid on its 832 resize.
        Training scales Seg-Zero's pixel thresholds by it."""
        return self.coord_span / self.resize_size

    def normalise_query(self, query: str) -> str:
        """``query.lower().strip(query_strip)`` (``ValueError`` for an empty or huge query)."""
        return normalise_query(query, self.query_strip)

    def build_prompt(self, query: str) -> str:
        """The user-turn text after the image, exactly as the reference script formats it."""
        return self.question_template.format(
            Question=self.normalise_query(query), Answer=self.example_answer
        )

    def answer_grammar(self, max_objects: int = DEFAULT_MAX_OBJECTS) -> AnswerGrammar:
        """The GBNF of this family's answer (``max_objects`` applies to list schemas)."""
        return self.grammar_fn(max_objects)

    def evaluation_objects(self, text: str, image_hw: tuple[int, int]) -> list[ObjectPrompt] | None:
        """The objects (image pixels) :attr:`evaluation_reference` segments for the generation
        ``text`` on an H x W image, ``None`` where that script scores a parse failure.

        The one parser's strict rule for this family's schema
        (``parse_answer(text, strict=True, schema=self.schema)``), mapped with this family's
        mapping; ``[]`` for an answer with no object (an empty mask).
        """
        parsed = parse_answer(text, strict=True, schema=self.schema)
        if parsed.status not in (Status.OK, Status.NO_OBJECT):
            return None
        return self.to_image_pixels(parsed.objects, image_hw)

    def to_image_pixels(
        self, objects: Sequence[AnswerObject], image_hw: tuple[int, int]
    ) -> list[ObjectPrompt]:
        """Answer objects (resize coordinates, or Qwen3-VL's 0-1000 grid: :attr:`coord_span`)
        to an H x W image's pixels with this family's mapping (``v * W / coord_span``); see
        :func:`segzero_edge.answer.to_image_pixels`."""
        return _to_image_pixels(objects, image_hw, self.mapping, self.coord_span)

    def format_answer(self, objects: Sequence[AnswerObject], reasoning: str = "") -> str:
        """The generation a well-behaved model of this family writes for ``objects`` (resize
        coordinates): the v1 form takes the first object and needs two points."""
        if self.schema == "object":
            if not objects:
                raise ValueError("a Seg-Zero v1 answer has exactly one object")
            return format_v1_answer(objects[0], reasoning)
        return format_list_answer(objects, reasoning)


_REFERENCE = "dvlab-research/Seg-Zero@42a33455283ba041a3099cf154a708116f300cec"

SEGZERO_V1 = ModelFamily(
    name="segzero-v1",
    checkpoints=(
        "Ricky06662/Seg-Zero-7B",
        "Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest",
        "Ricky06662/Seg-Zero-3B",
    ),
    reference=f"{_REFERENCE} inference_scripts/infer.py, evaluation_scripts/evaluation.py",
    # infer.py builds the same prompt
    prompt_reference=f"{_REFERENCE} evaluation_scripts/evaluation.py",
    evaluation_reference=f"{_REFERENCE} evaluation_scripts/evaluation.py",
    # infer.py / evaluation.py QUESTION_TEMPLATE (the string pieces joined without spaces)
    question_template=(
        "Please find '{Question}' with bbox and points."
        "Compare the difference between objects and find the most closely matched one."
        "Output the thinking process in <think> </think> and final answer in <answer> </answer>"
        " tags."
        "Output the one bbox and points of two largest inscribed circles inside the interested "
        "object in JSON format."
        "i.e., <think> thinking process here </think>"
        "<answer>{Answer}</answer>"
    ),
    example_answer="{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}",
    query_strip=".",  # text.lower().strip(".")
    schema="object",
    sam2=Sam2PromptRule(point_labels=(1, 1)),  # predict(point_coords=points, point_labels=[1,1])
    mapping=map_round_int,  # round(int(v) * x_factor)
    max_new_tokens=DEFAULT_MAX_NEW_TOKENS,  # generate(max_new_tokens=1024, do_sample=False)
    sam2_checkpoint="sam2_hiera_large",  # --segmentation_model_path facebook/sam2-hiera-large
    reward="segzero-v1",  # verl/utils/reward_score/seg.py
    grammar_fn=lambda _max_objects: v1_answer_grammar(),
)

MULTI_OBJECT = ModelFamily(
    name="multi-object",
    checkpoints=("Ricky06662/VisionReasoner-7B",),
    reference=(
        f"{_REFERENCE} inference_scripts/infer_multi_object.py, "
        "evaluation_scripts/evaluation_visionreasoner.py"
    ),
    prompt_reference=f"{_REFERENCE} evaluation_scripts/evaluation_visionreasoner.py",
    evaluation_reference=f"{_REFERENCE} evaluation_scripts/evaluation_visionreasoner.py",
    question_template=(
        'Please find "{Question}" with bboxs and points.'
        "Compare the difference between object(s) and find the most closely matched object(s)."
        "Output the thinking process in <think> </think> and final answer in <answer> </answer>"
        " tags."
        "Output the bbox(es) and point(s) inside the interested object(s) in JSON format."
        "i.e., <think> thinking process here </think>"
        "<answer>{Answer}</answer>"
    ),
    example_answer=(
        '[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
        '{"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]'
    ),
    query_strip='."?!',  # item["text"].lower().strip(".\"?!")
    schema="list",
    sam2=Sam2PromptRule(point_labels=(1,)),  # predict(point_coords=[point], point_labels=[1])
    mapping=map_half_up,  # int(v * x_factor + 0.5)
    max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
    sam2_checkpoint="sam2_hiera_large",
    reward="multi-object",  # verl/utils/reward_score/vision_reasoner.py
    grammar_fn=list_answer_grammar,
)

MULTI_OBJECT_INFER = replace(
    MULTI_OBJECT,
    name="multi-object-infer",
    checkpoints=(),  # a prompt variant: the hub ids resolve to ``multi-object``
    prompt_reference=f"{_REFERENCE} inference_scripts/infer_multi_object.py",
    query_strip=".",  # args.text.lower().strip(".")
)
"""``multi-object`` with the prompt of ``infer_multi_object.py`` (only ``.`` stripped)."""

QWEN3VL_GROUNDING = ModelFamily(
    name="qwen3vl-grounding",
    checkpoints=(),  # generic: any Qwen3-VL-2B/4B/8B base or instruct checkpoint, by --family
    reference=(
        f"{_REFERENCE} inference_scripts/infer_multi_object.py (prompt and answer schema), "
        "evaluation_scripts/evaluation_visionreasoner.py (its answer rule, on the 0-1000 grid); "
        "QwenLM/Qwen3-VL grounding convention (bbox_2d / point_2d relative on a 0-1000 grid)"
    ),
    # the prompt is infer_multi_object.py's with the 0-1000 grid and the empty answer stated:
    # no reference script formats it byte for byte, so this family names the one it adapts
    prompt_reference=f"{_REFERENCE} inference_scripts/infer_multi_object.py (adapted)",
    evaluation_reference=f"{_REFERENCE} evaluation_scripts/evaluation_visionreasoner.py",
    question_template=(
        'Please find "{Question}" with bboxs and points.'
        "Compare the difference between object(s) and find the most closely matched object(s)."
        "Output the thinking process in <think> </think> and final answer in <answer> </answer>"
        " tags."
        "Output the bbox(es) and point(s) inside the interested object(s) in JSON format, "
        "coordinates relative to the image on a 0-1000 grid; output [] if there is no such "
        "object."
        "i.e., <think> thinking process here </think>"
        "<answer>{Answer}</answer>"
    ),
    example_answer=(
        '[{"bbox_2d": [12,119,238,250], "point_2d": [36,131]}, '
        '{"bbox_2d": [268,352,840,936], "point_2d": [360,488]}]'
    ),
    query_strip='."?!',
    schema="list",
    sam2=Sam2PromptRule(point_labels=(1,)),
    mapping=map_half_up,  # int(v * W / 1000 + 0.5)
    max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
    sam2_checkpoint="sam2_hiera_large",
    reward="multi-object",
    grammar_fn=lambda n: list_answer_grammar(n, QWEN3VL_COORD_RANGE),
    resize_size=QWEN3VL_RESIZE_SIZE,
    patch_merge=QWEN3VL_PATCH_MERGE,
    coord_range=QWEN3VL_COORD_RANGE,
    architecture="Qwen3VLForConditionalGeneration",
)

MICRO_RESIZE_SIZE = 336
"""The micro family's ``resize_size`` (pixels; 12 x 12 image tokens of 28 px)."""

MICRO_SCENE = replace(
    MULTI_OBJECT,
    name="micro-scene",
    checkpoints=(),  # trained by segzero_train.micro; bundles name the family
    reference=(
        f"{_REFERENCE} evaluation_scripts/evaluation_visionreasoner.py (answer schema, SAM2 "
        "prompt, mapping; trained from scratch by segzero_train.micro)"
    ),
    # no reference script writes this prompt: it shortens evaluation_visionreasoner.py's
    prompt_reference=f"{_REFERENCE} evaluation_scripts/evaluation_visionreasoner.py (shortened)",
    question_template=(
        'Find "{Question}". Output the thinking process in <think> </think> and the bbox(es) '
        "and point(s) of the object(s) in <answer>{Answer}</answer>, [] if none."
    ),
    example_answer='[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}]',
    sam2_checkpoint="sam2.1_hiera_micro",  # segzero_export.micro_sam2, trained beside it
    resize_size=MICRO_RESIZE_SIZE,
    coord_range=REASONER_SIZE,
)
"""The micro reasoner's family (see the module docstring)."""

FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (SEGZERO_V1, MULTI_OBJECT, MULTI_OBJECT_INFER, QWEN3VL_GROUNDING, MICRO_SCENE)
}
"""Every known family by name."""

CHECKPOINT_FAMILIES: dict[str, str] = {
    hub_id.lower(): f.name for f in FAMILIES.values() for hub_id in f.checkpoints
}
"""Known Hugging Face hub ids (lower case) -> family name."""


def get_family(family: str | ModelFamily) -> ModelFamily:
    """The :class:`ModelFamily` named ``family`` (a ModelFamily is returned as is).

    Raises ``ValueError`` naming the known families for anything else.
    """
    if isinstance(family, ModelFamily):
        return family
    if isinstance(family, str) and family in FAMILIES:
        return FAMILIES[family]
    raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")


def build_prompt(query: str, family: str | ModelFamily) -> str:
    """The user-turn text after the image for ``query`` and ``family`` (a name or a family).

    Raises ``ValueError`` for a bad query (see :func:`segzero_edge.prompt.normalise_query`) or
    an unknown family.
    """
    return get_family(family).build_prompt(query)


def family_of_checkpoint(source: str) -> str | None:
    """The family of a known hub id (case-insensitive), ``None`` for anything else."""
    return CHECKPOINT_FAMILIES.get(str(source).strip().lower())


__all__ = [
    "CHECKPOINT_FAMILIES",
    "FAMILIES",
    "MICRO_RESIZE_SIZE",
    "MICRO_SCENE",
    "MULTI_OBJECT",
    "MULTI_OBJECT_INFER",
    "QWEN3VL_GROUNDING",
    "SEGZERO_V1",
    "ModelFamily",
    "build_prompt",
    "family_of_checkpoint",
    "get_family",
]
