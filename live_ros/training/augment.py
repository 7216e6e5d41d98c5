"""The training augmentation of VideoLLM-online's released code: randomly insert a wrong
or an empty assistant turn followed by a correction, delay a response, or drop a
response. Optional in training (config ``augment: {p_wrong, p_empty, p_delay,
p_drop}``); all zero by default. Streaming format only.

Which responses are touched: the *frame-decided* ones, i.e. assistant turns that directly
follow a frame (the model chose to speak there). Answers right after a user question are
never changed (the user, not the model, closed the frame list there). Each frame-decided
response R (said after frame f) draws one pattern, independently, with the given
probabilities (at most one pattern per response; the four probabilities must sum to at
most 1):

``wrong`` (p_wrong)
    A wrong assistant turn W (the text of another response of the same stream, or of
    another stream of the training set) is inserted, context only, followed by the
    correction R (learned). Two placements, drawn evenly among those that fit:

    - *late*: W is said after frame f (R's time) and R moves one frame later, after
      frame f + 1::

          [... f] Assistant: W<eos> [f+1] Assistant: R<eos>

    - *early*: W is said after a frame g < f of R's segment; R stays at f::

          [... g] Assistant: W<eos> [g+1 ... f] Assistant: R<eos>

``empty`` (p_empty)
    The same with an empty assistant turn (only eos): the model opened a turn and said
    nothing; the correction follows.

``delay`` (p_delay)
    R moves 1 or 2 frames later (up to ``max_delay``; only as far as the next turn and the
    end of the stream allow). R stays learned at its new time. The release also learns
    silence at the frames R skipped (its event's frame included); with ``catch_up`` (our
    option, off by default) their decisions are context only (:attr:`Augmented.unlearned_frames`):
    the model learns to report an event it missed late, not to stay silent at it.
    Teacher forcing alone never shows the model a missed event, so after one miss it tends
    to stay silent until the next event.

``drop`` (p_drop)
    R is removed: its frames join the next frame list, the model learns silence there.

A pattern that does not fit (no frame left before the next turn, nothing to place W
after) is skipped for that response. A ``wrong`` pattern with no other text available
becomes ``empty``.

"Not learned" (context only): :class:`Augmented` lists the indices of the context-only
assistant turns in its ``turns``; :func:`mask_context_only` post-processes the
:class:`~live_ros.model.format.Encoded` of those turns (``StreamTokenizer.encode`` has no
per-turn learn flag): every label of the turn's span (``Encoded.turn_spans``: the
``Assistant:`` prefix predicting the first text token, the text, eos) becomes IGNORE with
weight 0, and so does the frame decision that opened the turn (the "speak" label at the
last frame before it, its ``decision_labels`` entry set to -1). The correction keeps all
its labels: the decision that opens it and its text.

Deterministic: the same turns, config and seed give the same result
(:func:`augment_turns` takes a seed or a ``numpy.random.Generator``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Sequence

from live_ros.model.format import IGNORE, Encoded, Role, StreamTokenizer, Turn

if TYPE_CHECKING:  # numpy is imported inside the functions: `live-ros --help` stays instant
    import numpy as np

PATTERNS = ("wrong", "empty", "delay", "drop")


@dataclass
class AugmentConfig:
    """Per frame-decided response: the probability of each pattern (sum <= 1)."""

    p_wrong: float = 0.0
    p_empty: float = 0.0
    p_delay: float = 0.0
    p_drop: float = 0.0
    max_delay: int = 2  # frames a delayed response moves: 1..max_delay
    catch_up: bool = False  # delay: the skipped frames' decisions are context only (not the release's)
    enabled: bool = True  # False: keep the probabilities in the config but apply nothing

    def __post_init__(self):
        for name in ("p_wrong", "p_empty", "p_delay", "p_drop"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"augment.{name} must be a probability in [0, 1], got {value!r}")
        if self.p_wrong + self.p_empty + self.p_delay + self.p_drop > 1.0 + 1e-9:
            raise ValueError(
                "augment: p_wrong + p_empty + p_delay + p_drop must be <= 1 (one pattern per response at most)"
            )
        if not (isinstance(self.max_delay, int) and self.max_delay >= 1):
            raise ValueError(f"augment.max_delay must be an int >= 1, got {self.max_delay!r}")
        if not isinstance(self.catch_up, bool):
            raise ValueError(f"augment.catch_up must be true or false, got {self.catch_up!r}")

    @property
    def active(self) -> bool:
        return bool(self.enabled) and self.p_wrong + self.p_empty + self.p_delay + self.p_drop > 0

    @classmethod
    def from_dict(cls, data: dict | None) -> "AugmentConfig":
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"augment: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Augmented:
    """Turns after augmentation. ``context_only``: indices (into ``turns``) of assistant
    turns that are context only (not learned). ``applied``: (pattern, index of the
    response among the original turns) for every pattern applied; for ``wrong``/``empty``
    the pattern reads ``wrong:late``, ``wrong:early``, ``empty:late`` or ``empty:early``.
    ``unlearned_frames``: frames whose decision is context only (``catch_up``: the frames a
    delayed response skipped)."""

    turns: list[Turn]
    context_only: list[int] = field(default_factory=list)
    applied: list[tuple[str, int]] = field(default_factory=list)
    unlearned_frames: list[int] = field(default_factory=list)


@dataclass
class _Item:
    after: int  # the text turn is said after this frame (-1: before any frame)
    role: Role
    text: str
    time: float | None
    source: int  # index in the original turns (-1: inserted)
    learn: bool = True
    moved: bool = False


def _items(turns: Sequence[Turn]) -> tuple[list[_Item], int]:
    items, frames = [], 0
    for i, turn in enumerate(turns):
        if turn.role == "stream":
            frames += turn.num_frames
        else:
            items.append(_Item(frames - 1, turn.role, turn.text, turn.time, i))
    return items, frames


def _rebuild(items: Sequence[_Item], frames: int, fps: float | None) -> tuple[list[Turn], list[int]]:
    out: list[Turn] = []
    context_only = []
    taken = 0

    def stream(upto: int) -> None:
        nonlocal taken
        if upto > taken:
            out.append(Turn("stream", num_frames=upto - taken, time=taken / fps if fps else None))
            taken = upto

    for item in items:
        stream(item.after + 1)
        time = item.after / fps if (item.moved and fps and item.after >= 0) else item.time
        if not item.learn:
            context_only.append(len(out))
        out.append(Turn(item.role, item.text, time=time))
    stream(frames)
    return out, context_only


def _frame_decided(items: Sequence[_Item], j: int) -> bool:
    """Item j directly follows a frame: the first text turn after its frame."""
    return items[j].after >= 0 and (j == 0 or items[j - 1].after < items[j].after)


def augment_turns(
    turns: Sequence[Turn],
    config: AugmentConfig,
    rng: np.random.Generator | int | None = 0,
    wrong_texts: Sequence[str] = (),
    fps: float | None = None,
) -> Augmented:
    """Apply the patterns (module docstring) to a stream's turns.

    ``wrong_texts``: texts to draw wrong responses from besides the stream's own other
    responses (e.g. all responses of the training set). ``fps``: when given, moved and
    inserted turns get the time of their new frame.
    """
    import numpy as np

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    turns = list(turns)
    if not config.active:
        return Augmented(turns)
    items, frames = _items(turns)
    own_texts = [it.text for it in items if it.role == "assistant" and it.text]
    applied: list[tuple[str, int]] = []
    unlearned: list[int] = []
    cuts = np.cumsum([config.p_wrong, config.p_empty, config.p_delay, config.p_drop])
    candidates = [it for j, it in enumerate(items) if it.role == "assistant" and _frame_decided(items, j)]
    for response in candidates:
        u = float(rng.random())
        pattern = next((p for p, cut in zip(PATTERNS, cuts) if u < cut), None)
        if pattern is None:
            continue
        j = next(k for k, it in enumerate(items) if it is response)
        f = response.after
        next_after = items[j + 1].after if j + 1 < len(items) else frames  # frames < next_after are free
        prev_after = items[j - 1].after if j > 0 else -1
        if pattern == "drop":
            del items[j]
            applied.append(("drop", response.source))
        elif pattern == "delay":
            room = next_after - 1 - f
            if room < 1:
                continue
            k = int(rng.integers(1, min(config.max_delay, room) + 1))
            response.after, response.moved = f + k, True
            applied.append(("delay", response.source))
            if config.catch_up:
                unlearned.extend(range(f, f + k))
        else:  # wrong / empty
            placements = []
            if f + 1 < next_after:
                placements.append("late")
            if max(prev_after + 1, 0) <= f - 1:
                placements.append("early")
            if not placements:
                continue
            where = placements[int(rng.integers(len(placements)))]
            text = ""
            if pattern == "wrong":
                wrong = _wrong_text(response.text, own_texts, wrong_texts, rng)
                if wrong is None:
                    pattern = "empty"
                else:
                    text = wrong
            if where == "late":
                at = f
                response.after, response.moved = f + 1, True
            else:
                at = int(rng.integers(max(prev_after + 1, 0), f))
            items.insert(j, _Item(at, "assistant", text, None, -1, learn=False, moved=True))
            applied.append((f"{pattern}:{where}", response.source))
    out, context_only = _rebuild(items, frames, fps)
    return Augmented(out, context_only, applied, sorted(unlearned))


def _wrong_text(right: str, own: Sequence[str], pool: Sequence[str], rng: np.random.Generator) -> str | None:
    """Another response of the same stream (half of the time, when there is one) or of the
    pool; never the right text. None when there is none."""
    own = [t for t in own if t and t != right]
    sources = [s for s in (own, pool) if s]
    if own and pool:
        sources = [own] if rng.random() < 0.5 else [pool]
    for source in sources:
        for _ in range(8):  # the pool may hold the right text: a few tries, then give up on it
            text = source[int(rng.integers(len(source)))]
            if text and text != right:
                return text
    return None


def mask_context_only(
    enc: Encoded, turns: Sequence[Turn], context_only: Sequence[int], frames: Sequence[int] = ()
) -> Encoded:
    """Unlearn the context-only assistant turns of a streaming encoding, in place: their
    span's labels (prefix, text, eos) and the decision of the frame that opened them; and
    the decisions of ``frames`` (those past the encoding's frames are ignored)."""
    for frame in frames:
        if frame < enc.num_frames:
            _unlearn_decision(enc, frame)
    if not context_only:
        return enc
    import numpy as np

    if len(enc.turn_spans) != len(turns):
        raise ValueError(
            f"{len(enc.turn_spans)} turn spans for {len(turns)} turns: context-only turns can be "
            f"masked in the streaming format only (augmentation is streaming-only)"
        )
    frames_before = np.cumsum([0] + [t.num_frames if t.role == "stream" else 0 for t in turns])
    for idx in context_only:
        role, start, end = enc.turn_spans[idx]
        if role != "assistant" or turns[idx].role != "assistant":
            raise ValueError(f"turn {idx} is a {role} turn: only assistant turns can be context only")
        for pos in range(start, end):
            enc.labels[pos] = IGNORE
            enc.weights[pos] = 0.0
        if idx > 0 and turns[idx - 1].role == "stream":
            _unlearn_decision(enc, int(frames_before[idx]) - 1)
    return enc


def _unlearn_decision(enc: Encoded, frame: int) -> None:
    pos = enc.frame_ends[frame]
    enc.labels[pos] = IGNORE
    enc.weights[pos] = 0.0
    enc.decision_labels[frame] = -1


def encode_augmented(tokens: StreamTokenizer, augmented: Augmented, stream_weight: float = 1.0) -> Encoded:
    """The streaming encoding of augmented turns with the context-only turns and frames unlearned."""
    enc = tokens.encode(augmented.turns, "streaming", stream_weight)
    return mask_context_only(enc, augmented.turns, augmented.context_only, augmented.unlearned_frames)


__all__ = ["AugmentConfig", "Augmented", "PATTERNS", "augment_turns", "mask_context_only", "encode_augmented"]
