"""What the assistant says about an object it was not trained to name.

A world annotation keeps every object's true noun (the ground truth scored by
:mod:`live_ros.evaluation.truth`). The words the model learns come from its *spoken*
view (:func:`spoken_annotation`): every object outside the vocabulary it is taught to name
becomes :data:`GENERIC_NOUN`, and its events read "Something I can't name appears.",
"The object I can't name moves to the left.", ... so that an unfamiliar object gets an
honest "I don't know" instead of the nearest trained name. The scorer's generic phrases
(:data:`live_ros.evaluation.claims.GENERIC_PHRASES`) read these sentences as the generic
object (``test/test_data_generic.py`` checks every one).
"""

from __future__ import annotations

import copy
from typing import Iterable

from live_ros.data.annotations import Event, VideoAnnotation

GENERIC_NOUN = "object I can't name"
GENERIC_APPEARS = "Something I can't name appears."


def generic_event(e: Event) -> Event:
    """``e`` as said about an object the model cannot name (same time, kind and meta)."""
    out = copy.copy(e)
    out.meta = dict(e.meta)
    out.meta.setdefault("true_object", e.object)
    out.object = GENERIC_NOUN
    out.text = GENERIC_APPEARS if e.kind == "appears" else _renamed(e.text, e.object)
    if e.end_text:
        out.end_text = _renamed(e.end_text, e.object)
    return out


def _renamed(text: str, noun: str) -> str:
    for old in (f"The {noun}", f"the {noun}"):
        if old in text:
            return text.replace(old, f"{old[:3]} {GENERIC_NOUN}")
    return text


def spoken_annotation(annotation: VideoAnnotation, vocabulary: Iterable[str]) -> VideoAnnotation:
    """``annotation`` with every event of an object outside ``vocabulary`` said generically
    (:func:`generic_event`); the annotation itself is left as it is."""
    known = set(vocabulary)
    if all(not e.object or e.object in known for e in annotation.events):
        return annotation
    out = copy.copy(annotation)
    out.events = [e if not e.object or e.object in known else generic_event(e) for e in annotation.events]
    out.objects = sorted({(o if o in known else GENERIC_NOUN) for o in (annotation.objects or [])})
    return out
