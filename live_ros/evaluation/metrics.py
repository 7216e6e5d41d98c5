"""The paper's streaming metrics (section 4.2), in the exact forms of the public release.

Everything here is a pure function of an encoded stream (:class:`~live_ros.model.format.Encoded`)
and the logits of one teacher-forced forward over it, so each metric can be checked on
hand-made logits. :mod:`live_ros.evaluation.offline` runs the model and feeds these functions.

Which positions a metric reads
------------------------------
An *assistant turn* (a gold response) owns:

- its **language positions**: the labelled positions of its assistant span, i.e. the last
  token of ``Assistant:`` (predicting the first word) through the last word (predicting
  eos). These are the release's ``lm`` tokens. (Per-frame and interleaved dialogue, the
  paper's baselines: see :func:`plan_turns`.)
- its **frames**: the frame list right before it, i.e. the frames received since the
  previous assistant or user turn. A turn right after a user question (or right after
  another response) has no frames: it has no timing component and, as in the release,
  is left out of TimeDiff and Fluency (it still counts for LM-PPL and LM-correctness).
- the frames of the *next* turn: the frames after it up to the next assistant turn (all
  frame lists in between, also those before a user turn). They are only used to look
  for a late response. The last assistant turn has none (the release: "no future
  frame"), even when the stream goes on with frames after it.

The frame decision and "speaks"
-------------------------------
At each frame's decision position the model either stays silent (streaming: the interval
token ``,``; per-frame dialogue: ``eos`` right after ``Assistant:``) or speaks. As in the
release (``argmax != frame_token_interval_id``), a frame **speaks when the argmax over the
whole vocabulary is not the silent token**: the closing token need not win, any other
token counts as speaking. With the inference threshold theta (section 3.4, release default
0.725) the rule is the engine's, :func:`live_ros.model.format.speaks`: the silent token is
kept when its probability is >= theta, else the frame speaks (``p(silent) < theta``; for
theta >= 0.5 the same frames as "argmax is not silent, or p(silent) < theta").
``theta=None`` or ``0`` is the plain argmax. In interleaved
dialogue every frame is followed by a response: every frame speaks.

The metrics (per assistant turn, then mean over turns, then mean over streams)
-----------------------------------------------------------------------------
- **LM-PPL** = exp(mean cross-entropy over the turn's language positions).
- **LM-correctness** = leading correctly predicted language tokens (argmax == label,
  up to the first miss) / language tokens.
- **frame_diff** (turns with frames; n = number of frames): the first frame of the turn
  that speaks, at index i, gives ``n - i - 1`` (0 = on time at the last frame, > 0 =
  early by that many frames). If none speaks, up to ``m = min(next turn's frames, n - 1)``
  future frames are appended (the release re-runs the model from the turn's last frame
  as if the response had not been given: ``future`` below) and the first of them that
  speaks, at index k, gives ``-(k + 1)`` (late); if none speaks, ``-m``. When ``m = 0``
  (the last turn, a one-frame turn, or no frames before the next turn) a turn that never
  speaks gets 0, exactly as in the release, and Fluency counts it as on time.
  :attr:`TurnResult.spoke` is False for every timed turn where the model never spoke and
  :attr:`StreamResult.missed` counts them, so a silent model is visible even where
  TimeDiff cannot see it.
- **TimeDiff** = mean |frame_diff| / fps, in seconds; **TimeDiff@theta** the same with
  the theta rule for "speaks".
- **Fluency** (turns with frames; N = frames + language tokens): on time ->
  (n + leading correct language tokens) / N; early by d -> (n - d) / N; late ->
  (n - 1) / N. Also computed with theta (``fluency_theta``).

Per stream each metric is the mean over the turns where it is defined; a stream where it
is defined for no turn reports None and is left out of the mean over streams (the release
would put 1, 0, 1, 1 there, which biases the means).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Sequence

import torch

from live_ros.model.format import IGNORE, Encoded
from live_ros.model.format import speaks as speaks_at_theta

Mode = Literal["streaming", "per_frame", "interleaved"]


@dataclass
class TurnPlan:
    """Where one assistant turn's metrics are read in an encoded stream."""

    turn: int  # ordinal of the assistant turn in the stream
    span: tuple[int, int]  # its assistant span [start, end)
    lang_positions: list[int]  # labelled positions (label = the next language token)
    frames: list[int]  # indices of its frames (frame list right before it)
    decision_positions: list[int]  # per frame: the position whose prediction is the decision
    future_frames: list[int]  # up to min(next turn's frames, n - 1) frames after it
    future_positions: list[int]  # their decision positions in this sequence (teacher forced)

    @property
    def timed(self) -> bool:
        return bool(self.frames)


@dataclass
class Timing:
    frame_diff: int
    spoke: bool  # the model spoke inside the turn or in the appended frames


@dataclass
class TurnResult:
    turn: int
    n_frames: int
    n_lang: int
    lm_ppl: float | None
    lm_correct: int  # leading correct language tokens
    lm_correctness: float | None
    frame_diff: int | None  # None: no frames (not timed)
    frame_diff_theta: int | None
    spoke: bool | None
    spoke_theta: bool | None
    fluency: float | None
    fluency_theta: float | None


@dataclass
class StreamResult:
    fps: float
    theta: float | None
    turns: list[TurnResult] = field(default_factory=list)

    @property
    def n_turns(self) -> int:
        return len(self.turns)

    @property
    def timed_turns(self) -> int:
        return sum(t.frame_diff is not None for t in self.turns)

    @property
    def missed(self) -> int:
        """Timed turns where the model never spoke (argmax rule)."""
        return sum(t.spoke is False for t in self.turns)

    @property
    def missed_theta(self) -> int:
        return sum(t.spoke_theta is False for t in self.turns)

    def _mean(self, values) -> float | None:
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    @property
    def lm_ppl(self) -> float | None:
        return self._mean(t.lm_ppl for t in self.turns)

    @property
    def lm_correctness(self) -> float | None:
        return self._mean(t.lm_correctness for t in self.turns)

    @property
    def time_diff(self) -> float | None:
        mean = self._mean(None if t.frame_diff is None else abs(t.frame_diff) for t in self.turns)
        return None if mean is None else mean / self.fps

    @property
    def time_diff_theta(self) -> float | None:
        mean = self._mean(None if t.frame_diff_theta is None else abs(t.frame_diff_theta) for t in self.turns)
        return None if mean is None else mean / self.fps

    @property
    def fluency(self) -> float | None:
        return self._mean(t.fluency for t in self.turns)

    @property
    def fluency_theta(self) -> float | None:
        return self._mean(t.fluency_theta for t in self.turns)

    def summary(self) -> dict:
        return {
            "lm_ppl": self.lm_ppl,
            "time_diff": self.time_diff,
            "time_diff_theta": self.time_diff_theta,
            "fluency": self.fluency,
            "fluency_theta": self.fluency_theta,
            "lm_correctness": self.lm_correctness,
            "turns": self.n_turns,
            "timed_turns": self.timed_turns,
            "missed": self.missed,
            "missed_theta": self.missed_theta,
        }

    def to_dict(self) -> dict:
        return {**self.summary(), "fps": self.fps, "theta": self.theta, "per_turn": [asdict(t) for t in self.turns]}


# -- where things are -------------------------------------------------------------------
def _frames_by_span(enc: Encoded) -> list[list[int]]:
    """For each turn span, the indices of the frames whose last token lies inside it."""
    out, f = [], 0
    for _, start, end in enc.turn_spans:
        idx = []
        while f < len(enc.frame_ends) and enc.frame_ends[f] < end:
            if enc.frame_ends[f] >= start:
                idx.append(f)
            f += 1
        out.append(idx)
    return out


def _labelled(enc: Encoded, start: int, end: int) -> list[int]:
    return [p for p in range(start, end) if enc.labels[p] != IGNORE]


def plan_turns(enc: Encoded, mode: Mode = "streaming") -> list[TurnPlan]:
    """The assistant turns of an encoded stream and the positions their metrics read.

    streaming: every assistant span is a turn; its frames are those of the stream span right
    before it; a frame's decision position is its last token (``frame_ends``).
    per_frame / interleaved (each frame is its own frame list followed by an assistant
    turn): the turns are the responses at their gold frames (``decision_labels == 1``); a
    turn's frames are the run of frames since the previous gold response or user turn; a
    frame's decision position is the last token of the ``Assistant:`` after it (the first
    labelled position of that span: eos there = silent). The language positions are those
    of the response at the gold frame (per_frame) or of the response's first copy, after
    the run's first frame (interleaved: the model speaks at every frame, so that is where
    it first says it; the later copies repeat text already in context). Encode with every
    frame learned (``learn_from_frame=0``) so the labels are there.
    """
    if mode not in ("streaming", "per_frame", "interleaved"):
        raise ValueError(f"unknown mode '{mode}': streaming, per_frame or interleaved")
    spans = enc.turn_spans
    frames_of = _frames_by_span(enc)
    # events: ("frames", [idx], [decision positions]) | ("user",) | ("turn", span)
    events: list[tuple] = []
    if mode == "streaming":
        for (role, start, end), idx in zip(spans, frames_of):
            if role == "stream":
                events.append(("frames", idx, [enc.frame_ends[f] for f in idx]))
            elif role == "user":
                events.append(("user",))
            else:
                events.append(("turn", (start, end)))
    else:
        run: list[int] = []
        run_pos: list[int] = []
        run_spans: list[tuple[int, int]] = []  # the assistant spans after the run's frames
        for k, ((role, start, end), idx) in enumerate(zip(spans, frames_of)):
            if role == "user":
                if run:
                    events.append(("frames", run, run_pos))
                    run, run_pos, run_spans = [], [], []
                events.append(("user",))
            elif role == "stream":
                (f,) = idx  # one frame per frame list in the baselines
                nxt = spans[k + 1] if k + 1 < len(spans) else None
                pos = None
                if nxt is not None and nxt[0] == "assistant":
                    labelled = _labelled(enc, nxt[1], nxt[2])
                    if not labelled:
                        raise ValueError("frame decisions are not labelled: encode with learn_from_frame=0")
                    pos = labelled[0]
                    run_spans.append((nxt[1], nxt[2]))
                run.append(f)
                run_pos.append(pos if pos is not None else enc.frame_ends[f])
                if enc.decision_labels[f] == 1 and nxt is not None and nxt[0] == "assistant":
                    events.append(("frames", run, run_pos))
                    # per-frame: the response at the gold frame; interleaved: its first copy
                    # (after the run's first frame, where it first speaks; later copies
                    # repeat text already in context)
                    events.append(("turn", run_spans[0] if mode == "interleaved" else (nxt[1], nxt[2])))
                    run, run_pos, run_spans = [], [], []
        if run:
            events.append(("frames", run, run_pos))

    plans: list[TurnPlan] = []
    for i, event in enumerate(events):
        if event[0] != "turn":
            continue
        start, end = event[1]
        prev = events[i - 1] if i > 0 else None
        frames, positions = (list(prev[1]), list(prev[2])) if prev and prev[0] == "frames" else ([], [])
        # The next turn's frames: every frame after this turn up to the next assistant turn.
        nxt_frames, nxt_pos, has_next = [], [], False
        for later in events[i + 1 :]:
            if later[0] == "turn":
                has_next = True
                break
            if later[0] == "frames":
                nxt_frames += later[1]
                nxt_pos += later[2]
        n_future = min(len(nxt_frames), max(0, len(frames) - 1)) if has_next else 0
        plans.append(
            TurnPlan(
                len(plans),
                (start, end),
                _labelled(enc, start, end),
                frames,
                positions,
                nxt_frames[:n_future],
                nxt_pos[:n_future],
            )
        )
    return plans


def needed_positions(plans: Sequence[TurnPlan], future_in_sequence: bool = True) -> list[int]:
    """The sorted positions whose logits the metrics read (pass them as ``positions``)."""
    wanted: set[int] = set()
    for p in plans:
        wanted.update(p.lang_positions)
        wanted.update(p.decision_positions)
        if future_in_sequence:
            wanted.update(p.future_positions)
    return sorted(wanted)


# -- the pieces -------------------------------------------------------------------------
def speaks(logits: torch.Tensor, silent_id: int | None, theta: float | None = None) -> torch.Tensor:
    """Per row of ``logits`` [K, V]: does the model speak? With theta, the engine's rule
    (:func:`live_ros.model.format.speaks`: silent while p(silent) >= theta); without
    (None or 0), the release's argmax: the argmax is not the silent token.
    ``silent_id=None``: always (interleaved)."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be [positions, vocab], got shape {tuple(logits.shape)}")
    if silent_id is None:
        return torch.ones(logits.shape[0], dtype=torch.bool)
    if theta:
        return speaks_at_theta(logits.float().softmax(dim=-1)[:, silent_id], theta).cpu()
    return (logits.argmax(dim=-1) != silent_id).cpu()


def frame_diff(in_turn: Sequence[bool], future: Callable[[], Sequence[bool]] | Sequence[bool], n_future: int) -> Timing:
    """The release's frame_diff from the turn's per-frame "speaks" and, only if none speaks,
    the appended future frames' (a callable is only called then)."""
    in_turn = [bool(s) for s in in_turn]
    n = len(in_turn)
    if n == 0:
        raise ValueError("frame_diff needs a turn with frames")
    if any(in_turn):
        return Timing(n - in_turn.index(True) - 1, True)
    if n_future <= 0:
        return Timing(0, False)  # release: no future frame to look at, counted as 0
    fut = [bool(s) for s in (future() if callable(future) else future)][:n_future]
    if len(fut) < n_future:
        raise ValueError(f"{n_future} future frames wanted, {len(fut)} given")
    if any(fut):
        return Timing(-(fut.index(True) + 1), True)
    return Timing(-n_future, False)


def fluency(n_frames: int, n_lang: int, lm_correct: int, diff: int) -> float:
    """Fluency of one timed turn (release): the share of its frame and language positions
    the model gets right before its first mistake."""
    total = n_frames + n_lang
    if diff == 0:
        good = n_frames + lm_correct
    elif diff > 0:
        good = n_frames - diff
    else:
        good = n_frames - 1
    return good / total


def language(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """(perplexity, leading correct tokens) of language logits [K, V] and their labels [K].

    The cross-entropy is computed in float64: its log-sum-exp adds V (about 49k) terms, and
    in float32 the rounding of that sum depends on how the CPU splits it into vector lanes
    (equal hand-made logits gave PPL 2.0000868 on one x86-64 CPU and 2.000266 on another).
    In float64 the metric is the same on every CPU to about 1e-12.
    """
    logits = logits.double()
    ce = float(torch.nn.functional.cross_entropy(logits, labels))
    wrong = (logits.argmax(dim=-1) != labels).nonzero()
    correct = int(wrong[0, 0]) if len(wrong) else int(labels.numel())
    return (math.exp(ce) if ce < 700 else math.inf), correct


# -- a whole stream ---------------------------------------------------------------------
FutureFn = Callable[[TurnPlan], torch.Tensor]


def stream_metrics(
    logits: torch.Tensor,
    enc: Encoded,
    *,
    silent_id: int | None,
    fps: float,
    theta: float | None = None,
    mode: Mode = "streaming",
    positions: Sequence[int] | None = None,
    future: FutureFn | None = None,
    plans: Sequence[TurnPlan] | None = None,
) -> StreamResult:
    """All metrics of one stream from one forward.

    logits: [L, V] (or [1, L, V]) for every position of ``enc``, or [K, V] for the
    positions listed in ``positions`` (see :func:`needed_positions`).
    silent_id: the token that means "stay silent" (streaming: ``tokens.interval_id``;
    per-frame dialogue: ``tokens.eos_id``; interleaved: None, every frame speaks).
    future: ``future(plan) -> logits [len(plan.future_frames), V]`` at the decision positions
    of the appended frames, continuing from the turn's last frame with the response left
    out (the release's re-run; :mod:`live_ros.evaluation.offline` does it on the KV cache). Without
    it the appended frames are read in this sequence (``plan.future_positions``), where
    the gold response is already in context: an approximation.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if logits.ndim == 3:
        if logits.shape[0] != 1:
            raise ValueError("stream_metrics takes one stream: logits [L, V] or [1, L, V]")
        logits = logits[0]
    if plans is None:
        plans = plan_turns(enc, mode)
    if positions is None:
        if logits.shape[0] != len(enc.input_ids):
            raise ValueError(
                f"logits have {logits.shape[0]} rows for {len(enc.input_ids)} positions: pass "
                f"`positions` when the logits cover only some positions"
            )
        row = None
    else:
        row = {p: k for k, p in enumerate(positions)}
        if len(row) != logits.shape[0]:
            raise ValueError(f"{len(row)} positions for {logits.shape[0]} logit rows")

    def rows(pos: Sequence[int]) -> torch.Tensor:
        if row is None:
            return logits[list(pos)]
        try:
            return logits[[row[p] for p in pos]]
        except KeyError as err:
            raise ValueError(f"no logits for position {err.args[0]}: include needed_positions(plans)") from None

    labels = torch.tensor(enc.labels)
    theta = theta or None
    result = StreamResult(fps=fps, theta=theta)
    future_cache: dict[int, torch.Tensor] = {}

    def future_logits(plan: TurnPlan) -> torch.Tensor:
        if plan.turn not in future_cache:
            future_cache[plan.turn] = future(plan) if future is not None else rows(plan.future_positions)
        return future_cache[plan.turn]

    for plan in plans:
        n_lang = len(plan.lang_positions)
        ppl = correctness = None
        correct = 0
        if n_lang:
            ppl, correct = language(rows(plan.lang_positions), labels[plan.lang_positions].to(logits.device))
            correctness = correct / n_lang
        diff = diff_t = spoke = spoke_t = flu = flu_t = None
        if plan.timed:
            decision = rows(plan.decision_positions)
            n_future = len(plan.future_frames)
            t = frame_diff(
                speaks(decision, silent_id).tolist(), lambda: speaks(future_logits(plan), silent_id).tolist(), n_future
            )
            tt = frame_diff(
                speaks(decision, silent_id, theta).tolist(),
                lambda: speaks(future_logits(plan), silent_id, theta).tolist(),
                n_future,
            )
            diff, spoke, diff_t, spoke_t = t.frame_diff, t.spoke, tt.frame_diff, tt.spoke
            if n_lang:
                flu = fluency(len(plan.frames), n_lang, correct, diff)
                flu_t = fluency(len(plan.frames), n_lang, correct, diff_t)
        result.turns.append(
            TurnResult(
                plan.turn, len(plan.frames), n_lang, ppl, correct, correctness, diff, diff_t, spoke, spoke_t, flu, flu_t
            )
        )
    return result


def mean_over_streams(streams: Sequence[StreamResult]) -> dict:
    """The release's aggregation: each metric's per-stream mean, averaged over the streams
    where it is defined (None where it is defined for none)."""
    out = {}
    for key in ("lm_ppl", "time_diff", "time_diff_theta", "fluency", "fluency_theta", "lm_correctness"):
        values = [getattr(s, key) for s in streams]
        values = [v for v in values if v is not None and not math.isnan(v)]
        out[key] = sum(values) / len(values) if values else None
    out["streams"] = len(streams)
    out["turns"] = sum(s.n_turns for s in streams)
    out["timed_turns"] = sum(s.timed_turns for s in streams)
    out["missed"] = sum(s.missed for s in streams)
    out["missed_theta"] = sum(s.missed_theta for s in streams)
    return out


__all__ = [
    "TurnPlan",
    "Timing",
    "TurnResult",
    "StreamResult",
    "plan_turns",
    "needed_positions",
    "speaks",
    "frame_diff",
    "fluency",
    "language",
    "stream_metrics",
    "mean_over_streams",
]
