"""The two baselines of the paper's Table 1, on the same model, runner and frames.

- :class:`PerFrameDialogue`: every frame is its own frame list followed by an assistant
  turn; the model decides by decoding: eos means silent. The eos turns stay in context
  (``\\n[<v>..]\\nAssistant:<eos>`` per silent frame), as in the paper.
- :class:`InterleavedDialogue`: a response after every frame (as long as the training
  responses).

Both share :class:`~live_ros.engine.stream.TokenStream` with the streaming engine: the same
KV runner (preallocated cache, LM head only where read, packed weights), the same greedy
decoding and the same pending-token trick (the eos of a turn is fed with the next
frame's forward, as the interval token is in streaming). ``eos_with_next_frame=False``
feeds it at once instead: two forwards per frame, what a plain ``generate()`` loop does.
The token sequences are those of :meth:`StreamTokenizer.encode` in modes "per_frame" and
"interleaved".
"""

from __future__ import annotations

import time
from typing import cast

from live_ros.engine.cache import FRAME, OPEN, TEXT
from live_ros.engine.config import EngineConfig
from live_ros.engine.events import Event, ResponseEvent, SilentEvent
from live_ros.engine.stream import TokenStream


class _Dialogue(TokenStream):
    def __init__(self, model, tokens, config: EngineConfig | None = None, **kwargs):
        super().__init__(model, tokens, config, **kwargs)
        self.reset()

    def reset(self) -> None:
        self._index = 0
        self._list_id = 0
        self._first_stamp = None
        self._start()

    def _frame_turn(self, frame_tokens, stamp):
        tk = self.tokens
        t = self._check_frame_tokens(frame_tokens)
        index = self._index
        self._index += 1
        stamp = float(index / self.cfg.fps if stamp is None else stamp)
        if self._first_stamp is None:
            self._first_stamp = stamp
        self._list_id += 1
        unit = self._new_unit()
        meta = {"unit": unit, "role": "assistant"}
        # the frame's chunk in both baselines (tk.frame_chunk_ids(mode)), recorded as three spans
        pieces: list[tuple[str, list[int], dict]] = [
            (OPEN, tk.open_ids(), {"list_id": self._list_id}),
            (FRAME, list(tk.frame_ids), {"frame": index, "list_id": self._list_id}),
            (TEXT, tk.speak_ids(), meta),
        ]
        self._make_room(sum(len(p) for _, p, _ in pieces))
        t0 = time.perf_counter()
        logits = self._feed(pieces, [t], [-1])
        return index, stamp, meta, logits, t0

    def _response(self, index, stamp, meta, logits, t0, min_new=None, max_new=None) -> ResponseEvent:
        out = self._greedy(logits, meta, max_new=max_new, min_new=min_new)
        now = time.perf_counter()
        self.stats.responses += 1
        self.stats.frames_taken += 1
        ev = ResponseEvent(
            meta["unit"],
            0,
            "narration",
            self.tokens.decode(out),
            True,
            index,
            stamp,
            stamp - self._first_stamp,
            True,
            len(out),
            timings={"decode_s": now - t0, "tokens": len(out)},
        )
        self._emit(ev)
        return ev


class PerFrameDialogue(_Dialogue):
    """Per-frame dialogue with EOS turns (paper Table 1). ``script(frame, p_eos)`` may fix
    the decisions (benchmarks: the same response frames in every mode); a scripted
    response bans eos for ``min_new_tokens`` tokens, a scripted silence decodes eos."""

    def __init__(
        self, model, tokens, config: EngineConfig | None = None, *, eos_with_next_frame: bool = True, **kwargs
    ):
        self.eos_with_next_frame = eos_with_next_frame
        super().__init__(model, tokens, config, **kwargs)

    def take_frame(self, frame_tokens, stamp: float | None = None) -> list[Event]:
        index, stamp, meta, logits, t0 = self._frame_turn(frame_tokens, stamp)
        eos = self.tokens.silent_id("per_frame")
        p_eos = float(logits[-1].float().softmax(-1)[eos])
        speak = self.script(index, p_eos) if self.script is not None else int(logits[-1].argmax()) != eos
        if speak:
            return [self._response(index, stamp, meta, logits, t0)]
        self._pending = [(TEXT, self.tokens.end_ids(), meta)]  # the EOS turn stays in context
        if not self.eos_with_next_frame:
            self._feed([])
        self.stats.frames_taken += 1
        first = cast(float, self._first_stamp)  # set by _frame_turn
        ev = SilentEvent(index, stamp, stamp - first, 1.0 - p_eos, timings={"forward_s": time.perf_counter() - t0})
        self._emit(ev)
        return [ev]


class InterleavedDialogue(_Dialogue):
    """Interleaved dialogue (paper Table 1): a response after every frame, of
    ``min_new_tokens``..``max_new_tokens`` tokens (set both to the training responses'
    length for the benchmark)."""

    def take_frame(self, frame_tokens, stamp: float | None = None) -> list[Event]:
        index, stamp, meta, logits, t0 = self._frame_turn(frame_tokens, stamp)
        return [self._response(index, stamp, meta, logits, t0)]
