"""Queries about a drawn scene (:mod:`segzero_train.scenes`) in Seg-Zero's three styles, and the
splits that keep some compositions and phrasings out of training.

Families (:attr:`Query.family`):

- ``name``: an object by colour and kind, "the red cup", asked only when the kind has another
  instance in the scene (so the kind alone does not say which one);
- ``relation``: an object of a kind with several instances by its place relative to a uniquely
  named object ("the cup left of the plate", "the cup closest to the blue book") or among its
  kind ("the leftmost cup"); decided on the centroids of the visible masks with a margin, so that
  exactly one instance qualifies and every other instance clearly does not;
- ``use``: reasoning about use, "the thing I can use to cut the bread", "something to drink
  from": every object of the kinds that afford it (one or several targets);
- ``multi``: several targets by kind or colour, "all the cups", "all the red things";
- ``none``: an object that is not there ("the green cup" where only red and blue cups are).

Splits (:data:`SPLITS`): ``train`` and ``heldout_scenes`` draw scenes without the
:data:`HELDOUT_PAIRS` (colour, kind) pairs and ask with the training phrasings only;
``heldout_compositions`` asks, about scenes that hold a held-out pair, queries that name a
held-out pair or use a held-out phrasing (:data:`TEMPLATES` marked held-out), none of which
training ever shows. Which object a query means is independent of where it is: positions are
drawn uniformly, so the query alone cannot give the box (the query-only control,
:mod:`segzero_train.scene_controls`, measures it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .scenes import KIND_COLOURS, KINDS, RenderedScene, random_scene

SPLITS = ("train", "heldout_scenes", "heldout_compositions")
SPLIT_SALT = {"train": 11, "heldout_scenes": 23, "heldout_compositions": 37}
"""Mixed into every sample's seed, so that two splits never draw the same scene."""

HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("red", "cup"), ("green", "apple"), ("blue", "book"), ("red", "scissors"),
     ("green", "bottle"), ("white", "knife")}
)  # fmt: skip
"""(colour, kind) pairs that the training split never draws nor names."""

FAMILIES = ("name", "relation", "use", "multi", "none")
FAMILY_WEIGHTS = {"name": 0.28, "relation": 0.28, "use": 0.22, "multi": 0.12, "none": 0.10}

PLURAL = {k: ("knives" if k == "knife" else k if k == "scissors" else f"{k}s") for k in KINDS}

# template id -> (format, is_sentence, held_out). Fields: {colour} {kind} {kinds} {ref_name}.
TEMPLATES: dict[str, tuple[str, bool, bool]] = {
    "name.the": ("the {colour} {kind}", False, False),
    "name.where": ("Where is the {colour} {kind}?", True, False),
    "name.segment": ("Please segment the {colour} {kind} in this picture.", True, False),
    "name.that_is": ("the {kind} that is {colour}", False, True),
    "name.find": ("Can you find the {colour} {kind} for me?", True, True),
    "rel.left": ("the {kind} left of the {ref_name}", False, False),
    "rel.right": ("the {kind} right of the {ref_name}", False, False),
    "rel.above": ("the {kind} above the {ref_name}", False, False),
    "rel.below": ("the {kind} below the {ref_name}", False, False),
    "rel.nearest": ("the {kind} closest to the {ref_name}", False, False),
    "rel.left.q": ("Which {kind} is to the left of the {ref_name}?", True, False),
    "rel.nearest.q": ("Which {kind} is nearest to the {ref_name}?", True, False),
    "rel.left.side": ("the {kind} on the left side of the {ref_name}", False, True),
    "rel.right.side": ("the {kind} on the right side of the {ref_name}", False, True),
    "rel.above.higher": ("the {kind} higher up than the {ref_name}", False, True),
    "rel.nearest.next": ("the {kind} right next to the {ref_name}", False, True),
    "rel.leftmost": ("the leftmost {kind}", False, False),
    "rel.rightmost": ("the rightmost {kind}", False, False),
    "rel.topmost": ("the {kind} at the top", False, False),
    "rel.lowest": ("the lowest {kind}", False, False),
    "rel.leftmost.far": ("the {kind} furthest to the left", False, True),
    "multi.kind": ("all the {kinds}", False, False),
    "multi.kind.q": ("Where are the {kinds}?", True, False),
    "multi.colour": ("all the {colour} things", False, False),
    "multi.kind.each": ("each of the {kinds} on the table", False, True),
    "multi.colour.every": ("everything that is {colour}", False, True),
    "none.name": ("the {colour} {kind}", False, False),
    "none.name.where": ("Where is the {colour} {kind}?", True, False),
    "none.name.that_is": ("the {kind} that is {colour}", False, True),
}
"""Every phrasing but the ``use`` ones (:data:`USES`)."""

RELATION_OF = {
    "rel.left": "left", "rel.right": "right", "rel.above": "above", "rel.below": "below",
    "rel.nearest": "nearest", "rel.left.q": "left", "rel.nearest.q": "nearest",
    "rel.left.side": "left", "rel.right.side": "right", "rel.above.higher": "above",
    "rel.nearest.next": "nearest", "rel.leftmost": "leftmost", "rel.rightmost": "rightmost",
    "rel.topmost": "topmost", "rel.lowest": "lowest", "rel.leftmost.far": "leftmost",
}  # fmt: skip

# use id -> (kinds that afford it, training phrasings, held-out phrasings)
USES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "cut_bread": (
        ("knife",),
        ("the thing I can use to cut the bread", "something sharp to slice food with",
         "What can I use to spread butter?"),
        ("what could I slice the loaf with?",),
    ),
    "drink": (
        ("cup",),
        ("something to drink from", "What can I pour my coffee into?"),
        ("I am thirsty, what should I drink out of?",),
    ),
    "pour": (
        ("bottle",),
        ("the container I can pour water from", "something that holds a drink"),
        ("what can I refill my glass from?",),
    ),
    "serve": (
        ("plate",),
        ("something to put food on", "Where can I serve the cake?"),
        ("what should I put my sandwich on?",),
    ),
    "cut_paper": (
        ("scissors",),
        ("the tool for cutting paper", "What can I use to cut this ribbon?"),
        ("something to trim a piece of string with",),
    ),
    "read": (
        ("book",),
        ("something to read", "What can I read before bed?"),
        ("something with stories in it",),
    ),
    "stir": (
        ("spoon",),
        ("something to stir my tea with", "What can I eat soup with?"),
        ("what could I scoop yoghurt with?",),
    ),
    "fruit": (
        ("apple", "banana"),
        ("the fruit", "Which things here are fruit?"),
        ("something fruity to snack on",),
    ),
    "food": (
        ("apple", "banana", "bread"),
        ("everything I could eat", "the food on the table"),
        ("what here is edible?",),
    ),
    "sandwich": (
        ("bread",),
        ("something to make a sandwich with",),
        ("what could I toast for breakfast?",),
    ),
}  # fmt: skip
"""Reasoning about use: which kinds afford it, its training and its held-out phrasings."""

USE_REASONS = {
    "cut_bread": "A knife cuts bread.",
    "drink": "People drink from a cup.",
    "pour": "A bottle holds a drink to pour.",
    "serve": "Food is served on a plate.",
    "cut_paper": "Scissors cut paper.",
    "read": "A book is for reading.",
    "stir": "A spoon stirs and scoops.",
    "fruit": "Apples and bananas are fruit.",
    "food": "Apples, bananas and bread can be eaten.",
    "sandwich": "A sandwich is made with bread.",
}
"""The one fact each use query needs (the start of its thinking text)."""

RELATION_WORDS = {
    "left": "left of", "right": "right of", "above": "above", "below": "below",
    "nearest": "closest to",
}  # fmt: skip


@dataclass(frozen=True)
class Query:
    """One query about a scene: ``text``; ``family`` (:data:`FAMILIES`); ``targets``, indexes
    into the scene's objects (empty for ``none``); ``template`` the phrasing's id;
    ``is_sentence``; ``held_out_phrasing``; ``pairs`` the (colour, kind) pairs the text names;
    ``ref`` the index of the reference object of a relation (``None`` otherwise)."""

    text: str
    family: str
    targets: tuple[int, ...]
    template: str
    is_sentence: bool
    held_out_phrasing: bool
    pairs: frozenset[tuple[str, str]] = frozenset()
    ref: int | None = None

    @property
    def novel(self) -> bool:
        """Whether training never shows this query's phrasing or a pair it names."""
        return self.held_out_phrasing or bool(self.pairs & HELDOUT_PAIRS)


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Placed:
    """Where an object is seen: centroid ``(cx, cy)`` of its visible mask, in pixels."""

    kind: str
    colour: str
    cx: float
    cy: float


def placements(scene: RenderedScene) -> list[Placed]:
    """Visible-mask centroid of every object of ``scene``."""
    out = []
    for k, obj in enumerate(scene.objects):
        ys, xs = np.nonzero(scene.mask(k))
        out.append(Placed(obj.kind, obj.colour, float(xs.mean()), float(ys.mean())))
    return out


def unique_name(objs: list[Placed], k: int) -> tuple[str, frozenset[tuple[str, str]]] | None:
    """The shortest name that picks only ``objs[k]`` (its kind, else colour + kind), with the
    pairs it names; ``None`` when neither is unique."""
    o = objs[k]
    if sum(p.kind == o.kind for p in objs) == 1:
        return o.kind, frozenset()
    if sum(p.kind == o.kind and p.colour == o.colour for p in objs) == 1:
        return f"{o.colour} {o.kind}", frozenset({(o.colour, o.kind)})
    return None


def relation_target(
    objs: list[Placed], kind: str, relation: str, ref: int | None, margin: float
) -> int | None:
    """The one object of ``kind`` in ``relation`` to ``objs[ref]`` (left/right/above/below/
    nearest) or among its kind (leftmost/rightmost/topmost/lowest), every other instance of the
    kind clearly not (by ``margin`` pixels, or 1.5 x the distance for nearest); else ``None``."""
    cands = [k for k, p in enumerate(objs) if p.kind == kind and k != ref]
    if len(cands) < 2:
        return None
    if relation in ("leftmost", "rightmost", "topmost", "lowest"):
        key = {
            "leftmost": lambda p: p.cx,
            "rightmost": lambda p: -p.cx,
            "topmost": lambda p: p.cy,
            "lowest": lambda p: -p.cy,
        }[relation]
        ranked = sorted(cands, key=lambda k: key(objs[k]))
        return ranked[0] if key(objs[ranked[1]]) - key(objs[ranked[0]]) > margin else None
    if ref is None:
        raise ValueError(f"relation {relation!r} needs a reference object")
    r = objs[ref]
    if relation == "nearest":
        d = sorted(cands, key=lambda k: math.hypot(objs[k].cx - r.cx, objs[k].cy - r.cy))
        d0 = math.hypot(objs[d[0]].cx - r.cx, objs[d[0]].cy - r.cy)
        d1 = math.hypot(objs[d[1]].cx - r.cx, objs[d[1]].cy - r.cy)
        return d[0] if d1 > 1.5 * d0 + margin else None
    offset = {
        "left": lambda p: r.cx - p.cx,
        "right": lambda p: p.cx - r.cx,
        "above": lambda p: r.cy - p.cy,
        "below": lambda p: p.cy - r.cy,
    }[relation]
    yes = [k for k in cands if offset(objs[k]) > margin]
    no = [k for k in cands if offset(objs[k]) < -margin]
    return yes[0] if len(yes) == 1 and len(no) == len(cands) - 1 else None


# --------------------------------------------------------------------------- candidates


def _fmt(template: str, **fields: str) -> tuple[str, bool, bool]:
    text, sentence, held = TEMPLATES[template]
    return text.format(**fields), sentence, held


def candidates(scene: RenderedScene, family: str) -> list[Query]:
    """Every well-posed query of ``family`` about ``scene`` (all phrasings)."""
    objs = placements(scene)
    w, h = scene.image.shape[1], scene.image.shape[0]
    margin = 0.04 * min(w, h)
    out: list[Query] = []
    kinds_here = sorted({o.kind for o in objs})

    def add(template: str, family: str, targets: tuple[int, ...], pairs=frozenset(), ref=None, **f):
        text, sentence, held = _fmt(template, **f)
        out.append(Query(text, family, targets, template, sentence, held, frozenset(pairs), ref))

    if family == "name":
        for k, o in enumerate(objs):
            same_kind = sum(p.kind == o.kind for p in objs)
            same = sum(p.kind == o.kind and p.colour == o.colour for p in objs)
            if same == 1 and same_kind >= 2:
                for t in ("name.the", "name.where", "name.segment", "name.that_is", "name.find"):
                    add(t, "name", (k,), {(o.colour, o.kind)}, colour=o.colour, kind=o.kind)
    elif family == "relation":
        for t, rel in RELATION_OF.items():
            for kind in kinds_here:
                if rel in ("leftmost", "rightmost", "topmost", "lowest"):
                    hit = relation_target(objs, kind, rel, None, margin)
                    if hit is not None:
                        add(t, "relation", (hit,), kind=kind)
                    continue
                for ref in range(len(objs)):
                    named = unique_name(objs, ref)
                    if named is None or objs[ref].kind == kind:
                        continue
                    hit = relation_target(objs, kind, rel, ref, margin)
                    if hit is not None:
                        add(t, "relation", (hit,), named[1], ref, kind=kind, ref_name=named[0])
    elif family == "use":
        for use, (kinds, train, held) in USES.items():
            hits = tuple(k for k, o in enumerate(objs) if o.kind in kinds)
            if not hits:
                continue
            for j, text in enumerate(train + held):
                held_out = j >= len(train)
                out.append(Query(text, "use", hits, f"use.{use}.{j}", text.endswith("?"), held_out))
    elif family == "multi":
        for kind in kinds_here:
            hits = tuple(k for k, o in enumerate(objs) if o.kind == kind)
            if len(hits) >= 2:
                for t in ("multi.kind", "multi.kind.q", "multi.kind.each"):
                    add(t, "multi", hits, kinds=PLURAL[kind])
        for colour in sorted({o.colour for o in objs}):
            hits = tuple(k for k, o in enumerate(objs) if o.colour == colour)
            if len(hits) >= 2:
                for t in ("multi.colour", "multi.colour.every"):
                    add(t, "multi", hits, colour=colour)
    elif family == "none":
        for kind in kinds_here:
            present = {o.colour for o in objs if o.kind == kind}
            for colour in KIND_COLOURS[kind]:
                if colour not in present:
                    for t in ("none.name", "none.name.where", "none.name.that_is"):
                        add(t, "none", (), {(colour, kind)}, colour=colour, kind=kind)
    else:
        raise ValueError(f"unknown query family {family!r}; known: {', '.join(FAMILIES)}")
    return out


def reasoning(scene: RenderedScene, query: Query) -> str:
    """A short thinking text for ``query`` on ``scene`` (the SFT target's ``<think>``): the fact
    or the comparison the query needs, then what is picked."""
    objs = scene.objects
    hits = [objs[k] for k in query.targets]
    picked = ", ".join(f"the {o.name}" for o in hits)
    if query.family == "name":
        o = hits[0]
        n = sum(p.kind == o.kind for p in objs)
        return f"There are {n} {PLURAL[o.kind]}. Only one is {o.colour}: the {o.name}."
    if query.family == "relation":
        o = hits[0]
        rel = RELATION_OF[query.template]
        if query.ref is None:
            return f"I compare the {PLURAL[o.kind]}; the {rel} one is the {o.name}."
        return (
            f"I find the {objs[query.ref].name}, then the {o.kind} {RELATION_WORDS[rel]} it: "
            f"the {o.name}."
        )
    if query.family == "use":
        use = query.template.split(".")[1]
        return f"{USE_REASONS[use]} I see {picked}."
    if query.family == "multi":
        return f"There are {len(hits)} of them: {picked}."
    return "There is no such object in the picture."


def allowed(query: Query, split: str) -> bool:
    """Whether ``split`` may ask ``query``: training-like splits only seen phrasings and pairs,
    ``heldout_compositions`` only novel ones (:attr:`Query.novel`)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return query.novel if split == "heldout_compositions" else not query.novel


def sample_scene_query(
    rng: np.random.Generator,
    split: str,
    size: tuple[int, int] = (448, 336),
    n_objects: tuple[int, int] = (4, 7),
    tries: int = 50,
) -> tuple[RenderedScene, Query]:
    """A random scene of ``split`` and one query about it: the family by
    :data:`FAMILY_WEIGHTS`, then a uniformly chosen allowed query of that family (new scenes
    until one has an allowed query of that family; ``RuntimeError`` after ``tries`` scenes).
    ``heldout_compositions`` scenes always hold one held-out pair."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    names = list(FAMILY_WEIGHTS)
    weights = np.array([FAMILY_WEIGHTS[f] for f in names])
    family = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    for _ in range(tries):
        if split == "heldout_compositions":
            pairs = sorted(HELDOUT_PAIRS)
            required = pairs[int(rng.integers(len(pairs)))]
            scene = random_scene(rng, size, n_objects=n_objects, required=required)
        else:
            scene = random_scene(rng, size, n_objects=n_objects, excluded=HELDOUT_PAIRS)
        pool = [q for q in candidates(scene, family) if allowed(q, split)]
        if pool:
            return scene, pool[int(rng.integers(len(pool)))]
    raise RuntimeError(f"no allowed query in {tries} scenes of split {split!r}")


__all__ = [
    "FAMILIES",
    "HELDOUT_PAIRS",
    "SPLITS",
    "TEMPLATES",
    "USES",
    "Query",
    "allowed",
    "candidates",
    "placements",
    "reasoning",
    "relation_target",
    "sample_scene_query",
    "unique_name",
]
