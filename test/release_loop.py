"""A compact reference of the paper's public inference loop (section 3.4 and the release's
streaming demo), kept here to check the engine against it (test/test_engine_parity.py)
and to time it as the baseline of bench/bench_memory.py.

It is the release's way, on purpose: the model's own transformers forward with a growing
``DynamicCache`` and no eviction, every input embedded by the model's ``embed``, and the
sequence built as the release builds it:

- the first frame is fed after the stream's opening: bos where the preset's rule says
  (live_ros/model/format.py, ``FormatSpec.bos``), the system prompt and its newline, the
  standing instruction as a user turn, the opener of a frame list;
- every later frame is fed after the token chosen at the frame before it: the interval
  token after a silent frame; after a response, its end (eos) and the opener of a new
  frame list;
- at each frame the probability of the interval token is read at the frame's last
  position; below theta the model speaks: the list is closed, ``Assistant:`` fed and the
  response decoded greedily to eos (eos itself is fed with the next frame);
- a question due at a frame is asked after that frame is fed, before its decision is read
  (the release's order: the frame's decision is skipped); the question closes the list.

Only the text pieces come from the format spec's strings (the texts the release's chat
template writes); nothing here uses the engine, its runner or its grammar helpers.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


class ReleaseLoop:
    """One stream, the release's way. ``frame(tokens)`` returns ``(p_interval, response or
    None)``; ``ask(text)`` answers at once; ``ids`` is every token id fed, in order."""

    def __init__(self, model, tokenizer, spec, *, theta: float, instruction: str = "", max_new_tokens: int = 48):
        self.model, self.tok, self.spec = model, tokenizer, spec
        self.theta, self.max_new_tokens = theta, max_new_tokens
        self.cache = DynamicCache()
        self.ids: list[int] = []
        self.interval_id = self._text(spec.interval)[0]
        self.eos_id = tokenizer.eos_token_id
        self.frame_token_id = tokenizer.convert_tokens_to_ids(spec.frame_token)
        bos = (
            [tokenizer.bos_token_id]
            if spec.bos == "always" or (spec.bos == "auto" and getattr(tokenizer, "add_bos_token", False))
            else []
        )
        sep = spec.turn_separator
        start = bos + self._text(spec.system_prompt + "\n")
        if instruction:
            start += self._text(sep + spec.user_prefix) + self._text(spec.text_space + instruction)
        self.opener = self._text(sep + spec.stream_open)
        self.last_ids = start + self.opener  # fed with the first frame
        self.list_open = False

    def _text(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False, split_special_tokens=True).input_ids) if text else []

    @torch.inference_mode()
    def _forward(self, ids: list[int], frame_tokens: torch.Tensor | None = None) -> torch.Tensor:
        self.ids += ids
        embeds = self.model.embed(torch.tensor([ids]), frame_tokens)
        out = self.model(inputs_embeds=embeds, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[0, -1].float()

    def feed_frame(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        """Feed one frame [N, dim] after the token chosen before it; the logits at its end."""
        n = frame_tokens.shape[0]
        logits = self._forward(self.last_ids + [self.frame_token_id] * n, frame_tokens[None])
        self.list_open = True
        return logits

    def decide(self, logits: torch.Tensor) -> tuple[float, str | None]:
        p = float(logits.softmax(-1)[self.interval_id])
        if p >= self.theta:
            self.last_ids = [self.interval_id]
            return p, None
        spec = self.spec
        return p, self._respond(self._text(spec.stream_close) + self._text(spec.assistant_prefix))

    def frame(self, frame_tokens: torch.Tensor) -> tuple[float, str | None]:
        return self.decide(self.feed_frame(frame_tokens))

    def ask(self, text: str) -> str:
        """The question closes the open frame list (a fresh stream has none to close)."""
        spec = self.spec
        if self.list_open:
            head = self._text(spec.stream_close) + self._text(spec.user_prefix)
        else:
            head = self._text(spec.turn_separator + spec.user_prefix)
        head += self._text(spec.text_space + text)
        return self._respond(head + self._text(spec.turn_separator + spec.assistant_prefix))

    def _respond(self, head: list[int]) -> str:
        logits = self._forward(head)
        out: list[int] = []
        while True:
            tok = int(logits.argmax())
            if tok == self.eos_id:
                break
            out.append(tok)
            if len(out) >= self.max_new_tokens:
                raise RuntimeError("a response reached max_new_tokens: the release would go on without its eos")
            logits = self._forward([tok])
        self.last_ids = [self.eos_id] + self.opener
        self.list_open = False
        return self.tok.decode(out, skip_special_tokens=True).strip()
