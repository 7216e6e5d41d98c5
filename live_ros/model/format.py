"""The streaming sequence format of LIVE, its labels and its decision rule (paper
sections 3.2-3.4): the one grammar that training labels (:meth:`StreamTokenizer.encode`),
the streaming engine, the baselines and the evaluation all build their sequences from.

A stream is a list of turns: frame lists, user turns and assistant turns. Rendered with
the release's template::

    <system>\\n
    \\nUser: <instruction>               the standing instruction, if any
    \\n[<v>*N,<v>*N,...,<v>*N]        frames, interval token "," between frames
    \\nUser: <question>
    \\nAssistant: <response><eos>
    \\n[<v>*N,...

Tokenizer-agnostic: each piece is tokenized on its own and the ids are concatenated, so
training sequences and the engine's incremental feeding agree token for token, whatever
the tokenizer merges (Llama-3 has ``]\\n`` as one token, SmolLM2 as two). User text is
tokenized with special tokens split: ``<v>``, ``<|im_end|>`` or ``\\nAssistant:`` typed by
a user stay plain text.

The streaming EOS objective (section 3.3): at the last token of every frame the target
is the interval token (stay silent) or the closing token (a response follows). The last
frame before a user turn is not learned (the user, not the model, closes the list there).
Assistant turns learn their text and eos. Nothing else is learned.

Two baselines of the paper's Table 1, same model and tokens, for the ablation and the
speed benchmark: per-frame dialogue (every frame is followed by an assistant turn, an
empty one that only decodes eos when silent, kept in context) and interleaved dialogue
(every frame is followed by a response).

The decision at a frame (section 3.4, probability correction): the model stays silent
while the probability of the mode's silent token is at least theta (:func:`speaks`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence

IGNORE = -100

DEFAULT_SYSTEM_PROMPT = (
    "A multimodal AI assistant is helping users with some activities. Below is their "
    "conversation, interleaved with the list of video frames received by the assistant."
)

# The standing instruction live_llm opens every stream with (a narration request, as in the
# paper's narration streams, section 3.2); "" keeps the model silent until asked.
DEFAULT_INSTRUCTION = "Narrate what you see."

Role = Literal["stream", "user", "assistant"]
Mode = Literal["streaming", "per_frame", "interleaved"]
MODES: tuple[Mode, ...] = ("streaming", "per_frame", "interleaved")

RELEASE_THETA = 0.725  # the release's default threshold of the decision (section 3.4)


def speaks(p_silent, theta: float):
    """THE decision at a frame (paper section 3.4, probability correction): the silent
    token is kept when its probability is at least ``theta``; otherwise the model speaks.
    ``p_silent`` is a float (True = speak) or a tensor / array (elementwise). A NaN
    probability speaks here: callers that can get one (a broken model) check it first."""
    silent = p_silent >= theta
    return not silent if isinstance(silent, bool) else ~silent


@dataclass
class Turn:
    """One turn of a stream: ``num_frames`` frames (role "stream") or a text turn."""

    role: Role
    text: str = ""
    num_frames: int = 0
    time: float | None = None  # video time of the turn (seconds), for metrics and tools

    def __post_init__(self):
        if self.role not in ("stream", "user", "assistant"):
            raise ValueError(f"unknown turn role '{self.role}': use stream, user or assistant")
        if self.role == "stream" and self.num_frames < 1:
            raise ValueError("a stream turn needs num_frames >= 1")


@dataclass
class FormatSpec:
    """The live settings that shape sequences (stored with a checkpoint; the release does
    not store them, so its loader supplies the values of ``videollm-online-8b-v1plus``)."""

    frame_token: str = "<v>"
    frame_num_tokens: int = 10  # 1 pooled + 3x3 spatial
    interval: str = ","  # between frames: "stay silent"
    stream_open: str = "["
    # Closes the frame list ("respond now") together with the separator of the next turn:
    # Llama-3 has "]\n" as one token (the release's decision token), SmolLM2 two ("]", "\n").
    # The decision compares the interval token with the first token of this text.
    stream_close: str = "]\n"
    turn_separator: str = "\n"  # before every turn, except right after stream_close
    user_prefix: str = "User:"
    assistant_prefix: str = "Assistant:"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    text_space: str = " "  # between a prefix and its text
    # The bos token before the system prompt: "auto" where the tokenizer adds one
    # (``add_bos_token``; SmolLM2's does not, and the embedded checkpoint was trained so),
    # "always" (the release's chat template writes ``bos_token`` itself, and its checkpoint
    # was trained with it; Llama-3's fast tokenizer does not say it adds one), "never".
    bos: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Encoded:
    """A tokenized stream: ids, labels, per-position loss weights and where frames are."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    frame_ends: list[int] = field(default_factory=list)  # position of each frame's last token
    decision_labels: list[int] = field(default_factory=list)  # per frame: 1 speak, 0 silent, -1 unlearned
    turn_spans: list[tuple[str, int, int]] = field(default_factory=list)  # (role, start, end)

    @property
    def num_frames(self) -> int:
        return len(self.frame_ends)


class StreamTokenizer:
    """Turns a :class:`FormatSpec` into token ids with a Hugging Face tokenizer.

    The frame placeholder must be in the tokenizer's vocabulary (added as a special token:
    ``add_frame_token``). The interval token must be a single token; so must the first
    token of the closing text, which is what the frame decision compares against.
    """

    def __init__(self, tokenizer, spec: FormatSpec | None = None):
        self.tokenizer = tokenizer
        self.spec = spec or FormatSpec()
        self.frame_token_id = tokenizer.convert_tokens_to_ids(self.spec.frame_token)
        unk = getattr(tokenizer, "unk_token_id", None)
        if self.frame_token_id is None or self.frame_token_id == unk:
            raise ValueError(
                f"the tokenizer has no frame placeholder '{self.spec.frame_token}': add it with "
                f"live_ros.model.format.add_frame_token(tokenizer) (the release saves its tokenizer "
                f"with it; a base LLM's tokenizer needs it added)"
            )
        interval = self.text_ids(self.spec.interval)
        if len(interval) != 1:
            raise ValueError(
                f"the interval text {self.spec.interval!r} is {len(interval)} tokens "
                f"for this tokenizer; choose a text that is one token"
            )
        self.interval_id = interval[0]
        self.close_ids = self.text_ids(self.spec.stream_close)
        if not self.close_ids or self.close_ids[0] == self.interval_id:
            raise ValueError(
                f"the closing text {self.spec.stream_close!r} must start with a token other than the interval token"
            )
        self.close_id = self.close_ids[0]
        self.eos_id = tokenizer.eos_token_id
        if self.eos_id is None:
            raise ValueError("the tokenizer has no eos token; set tokenizer.eos_token")
        self.bos_ids = self._bos_ids(tokenizer)
        self.prefix_ids = self.system_ids()
        # Each turn's opening piece, tokenized as one piece (so "\n[" merges where the
        # tokenizer merges it), in two variants: after a closed frame list or not.
        sep = self.spec.turn_separator
        self._open = {after: self.text_ids(("" if after else sep) + self.spec.stream_open) for after in (False, True)}
        self._user = {after: self.text_ids(("" if after else sep) + self.spec.user_prefix) for after in (False, True)}
        self._assistant = {
            after: self.text_ids(("" if after else sep) + self.spec.assistant_prefix) for after in (False, True)
        }
        self.frame_ids = [self.frame_token_id] * self.spec.frame_num_tokens

    def _bos_ids(self, tokenizer) -> list[int]:
        rule = self.spec.bos
        if rule not in ("auto", "always", "never"):
            raise ValueError(f"format bos {rule!r} is unknown: use 'auto', 'always' or 'never'")
        bos = tokenizer.bos_token_id
        if rule == "always" and bos is None:
            raise ValueError("the format asks for a bos token (bos 'always') but the tokenizer has none")
        wanted = rule == "always" or (rule == "auto" and bool(getattr(tokenizer, "add_bos_token", False)))
        return [bos] if wanted and bos is not None else []

    # -- text ------------------------------------------------------------------------------
    def text_ids(self, text: str) -> list[int]:
        """Plain text: no special tokens added, and special-token strings split (so a
        ``<v>`` or ``<|im_end|>`` typed by a user never becomes a control token)."""
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids)

    # -- the grammar: every piece a stream is made of ----------------------------------------
    def system_ids(self, prompt: str | None = None) -> list[int]:
        """The stream's opening (the attention sink): bos where the tokenizer adds one, then
        the system prompt (``None``: the spec's) and its newline. Never empty."""
        return self.bos_ids + self.text_ids((self.spec.system_prompt if prompt is None else prompt) + "\n")

    def instruction_ids(self, text: str) -> list[int]:
        """The standing instruction: a user turn right after the system prompt, before the
        first frame list (what :meth:`encode` gives a stream whose first turn is that user
        turn). Empty text: none."""
        return self.user_ids(text) if text else []

    def open_ids(self, after_close: bool = False) -> list[int]:
        """Opens a frame list (the first frame's tokens follow)."""
        return self._open[after_close]

    def frame_chunk_ids(self, mode: Mode = "streaming", lead: bool = False) -> list[int]:
        """One frame as fed in ``mode``, ending at the position whose logits decide.

        streaming: the frame's placeholders, after the interval token when the frame
        follows a silent frame of the same list (``lead``; a list's first frame follows
        :meth:`open_ids` instead). per_frame / interleaved: a frame list of its own,
        closed, and the assistant prefix (:meth:`open_ids` + ``frame_ids`` +
        :meth:`speak_ids`)."""
        if mode == "streaming":
            return ([self.interval_id] if lead else []) + self.frame_ids
        _check_mode(mode)
        return self.open_ids() + self.frame_ids + self.speak_ids()

    def silent_id(self, mode: Mode = "streaming") -> int | None:
        """The token that means "stay silent" at a frame decision in ``mode``: the interval
        token (streaming), eos (per_frame: an empty assistant turn), None (interleaved:
        every frame gets a response)."""
        _check_mode(mode)
        return {"streaming": self.interval_id, "per_frame": self.eos_id, "interleaved": None}[mode]

    def next_frame_ids(self, mode: Mode = "streaming") -> list[int]:
        """After a frame's decision to stay silent, up to the next frame's decision
        position: the silent token (in interleaved, the eos of the frame's response) and
        the next frame's chunk."""
        if mode == "streaming":
            return self.frame_chunk_ids(mode, lead=True)
        return self.end_ids() + self.frame_chunk_ids(mode)

    def speak_ids(self) -> list[int]:
        """The model speaks at a frame: the frame list closes and the assistant turn opens
        (the response is decoded after it)."""
        return self.close_ids + self.assistant_prefix_ids(after_close=True)

    def user_ids(self, text: str, after_close: bool = False) -> list[int]:
        """A whole user turn (a frame list before it must be closed by the caller)."""
        return self._user[after_close] + self.text_ids(self.spec.text_space + text)

    def user_turn_ids(self, text: str, list_open: bool) -> list[int]:
        """A user turn inserted into the stream: closes the frame list when one is open."""
        return (self.close_ids + self.user_ids(text, after_close=True)) if list_open else self.user_ids(text)

    def assistant_prefix_ids(self, after_close: bool = False) -> list[int]:
        """What is fed before the model decodes a response."""
        return self._assistant[after_close]

    def response_ids(self, text: str) -> list[int]:
        """The assistant's text and eos (what is learned / decoded after the prefix)."""
        return self.text_ids(self.spec.text_space + text) + self.end_ids() if text else self.end_ids()

    def end_ids(self) -> list[int]:
        """Closes an assistant turn (a response, or the empty turn of a silent per-frame
        frame): eos. The engine feeds it with the next forward."""
        return [self.eos_id]

    def first_token_ids(self, phrases: Sequence[str]) -> set[int]:
        """The first token of each phrase as it appears inside a response (after a space)."""
        return {self.text_ids(" " + phrase)[0] for phrase in phrases}

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    # -- whole streams ------------------------------------------------------------------
    def encode(
        self, turns: Sequence[Turn], mode: Mode = "streaming", stream_weight: float = 1.0, learn_from_frame: int = 0
    ) -> Encoded:
        """Tokenize a stream with its labels.

        mode: "streaming" (LIVE), "per_frame" (each frame followed by an assistant turn,
        eos only when silent) or "interleaved" (each frame followed by the response of the
        segment it belongs to). ``stream_weight`` is the paper's w for frame-decision
        positions. Frames before ``learn_from_frame`` are context only.
        """
        _check_mode(mode)
        out = Encoded()
        self._add(out, self.prefix_ids, None)
        if mode == "streaming":
            self._encode_streaming(out, list(turns), stream_weight, learn_from_frame)
        else:
            self._encode_baseline(out, list(turns), mode, learn_from_frame)
        return out

    def _add(self, out: Encoded, ids: Sequence[int], labels: Sequence[int] | None, weight: float = 1.0) -> None:
        out.input_ids.extend(ids)
        if labels is None:
            out.labels.extend([IGNORE] * len(ids))
            out.weights.extend([0.0] * len(ids))
        else:
            out.labels.extend(labels)
            out.weights.extend([weight if label != IGNORE else 0.0 for label in labels])

    def _add_assistant(self, out: Encoded, text: str, learn: bool, after_close: bool) -> None:
        start = len(out.input_ids)
        self._add(out, self.assistant_prefix_ids(after_close), None)
        ids = self.response_ids(text)
        # The label of position i is the token at i + 1: the prefix's last token predicts
        # the response's first token, the response's last token is eos (predicts nothing).
        if learn:
            out.labels[-1] = ids[0]
            out.weights[-1] = 1.0
        self._add(out, ids, (ids[1:] + [IGNORE]) if learn else None)
        out.turn_spans.append(("assistant", start, len(out.input_ids)))

    def _encode_streaming(self, out: Encoded, turns: list[Turn], w: float, learn_from: int) -> None:
        frame = 0
        after_close = False
        for i, turn in enumerate(turns):
            nxt = turns[i + 1].role if i + 1 < len(turns) else None
            if turn.role == "stream":
                start = len(out.input_ids)
                self._add(out, self.open_ids(after_close), None)
                for k in range(turn.num_frames):
                    last = k == turn.num_frames - 1
                    learn = frame >= learn_from
                    self._add(out, self.frame_chunk_ids("streaming", lead=k > 0), None)
                    out.frame_ends.append(len(out.input_ids) - 1)
                    if not last:
                        decision = 0
                    elif nxt == "assistant":
                        decision = 1
                    else:  # before a user turn (or at the end): not the model's decision
                        decision = -1
                    if learn and decision >= 0:
                        out.labels[-1] = self.close_id if decision else self.interval_id
                        out.weights[-1] = w
                    out.decision_labels.append(decision if learn else -1)
                    frame += 1
                after_close = nxt is not None
                if after_close:
                    self._add(out, self.close_ids, None)
                out.turn_spans.append(("stream", start, len(out.input_ids)))
            elif turn.role == "user":
                start = len(out.input_ids)
                self._add(out, self.user_ids(turn.text, after_close), None)
                out.turn_spans.append(("user", start, len(out.input_ids)))
                after_close = False
            else:
                self._add_assistant(out, turn.text, frame >= learn_from, after_close)
                after_close = False

    def _encode_baseline(self, out: Encoded, turns: list[Turn], mode: Mode, learn_from: int) -> None:
        # Each frame is its own frame list followed by an assistant turn.
        frame = 0
        for i, turn in enumerate(turns):
            if turn.role == "user":
                start = len(out.input_ids)
                self._add(out, self.user_ids(turn.text), None)
                out.turn_spans.append(("user", start, len(out.input_ids)))
                continue
            if turn.role == "assistant":
                if i > 0 and turns[i - 1].role == "stream":
                    continue  # consumed by the frames before it
                self._add_assistant(out, turn.text, frame >= learn_from, after_close=False)  # answers a question
                continue
            nxt_text = _next_response(turns, i)
            for k in range(turn.num_frames):
                last = k == turn.num_frames - 1
                learn = frame >= learn_from
                start = len(out.input_ids)
                opening = self.open_ids()
                # frame_chunk_ids(mode) up to the assistant prefix, which opens the turn below
                self._add(out, opening + self.frame_ids + self.close_ids, None)
                out.frame_ends.append(start + len(opening) + len(self.frame_ids) - 1)
                responds = last and i + 1 < len(turns) and turns[i + 1].role == "assistant"
                out.decision_labels.append((1 if responds else 0) if learn else -1)
                out.turn_spans.append(("stream", start, len(out.input_ids)))
                frame += 1
                if mode == "per_frame":
                    text = turns[i + 1].text if responds else ""
                else:  # interleaved: the segment's response after every frame
                    if nxt_text is None:
                        continue
                    text = nxt_text
                self._add_assistant(out, text, learn, after_close=True)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}': streaming, per_frame or interleaved")


def _next_response(turns: list[Turn], i: int) -> str | None:
    """The response that closes the segment of frames at ``i`` (None when a question or
    the end of the stream comes first)."""
    for turn in turns[i + 1 :]:
        if turn.role == "assistant":
            return turn.text
        if turn.role == "user":
            return None
    return None


def weight_targets(enc: Encoded, token_ids: set[int], weight: float) -> int:
    """Multiply the loss weight of every labelled position whose target is in ``token_ids``
    (e.g. the first token of an object's name: ``objective.name_weight``); returns how many."""
    count = 0
    for i, label in enumerate(enc.labels):
        if label in token_ids:
            enc.weights[i] *= weight
            count += 1
    return count


def add_frame_token(tokenizer, frame_token: str = "<v>") -> int:
    """Add the frame placeholder as a special token (as the release does) and return its
    id. The embedding matrix is not resized: ids are clamped for the lookup and the
    placeholder positions overwritten with connector outputs."""
    if frame_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [frame_token]})
    return tokenizer.convert_tokens_to_ids(frame_token)


def collate(batch: Sequence[Encoded], frame_tokens: Sequence, pad_id: int) -> dict:
    """Right-pad a batch of encoded streams for ``LiveLlamaForCausalLM.forward``.

    ``frame_tokens[b]`` holds stream b's frames [F_b, N, dim]; they are concatenated in
    batch order, which is the order of the placeholders in the padded ``input_ids``.
    """
    import torch

    length = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE, dtype=torch.long)
    weights = torch.zeros((len(batch), length))
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for b, e in enumerate(batch):
        n = len(e.input_ids)
        ids[b, :n] = torch.tensor(e.input_ids)
        labels[b, :n] = torch.tensor(e.labels)
        weights[b, :n] = torch.tensor(e.weights)
        mask[b, :n] = 1
    frames = torch.cat([torch.as_tensor(f) for f in frame_tokens]) if len(frame_tokens) else None
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "loss_weights": weights, "frame_tokens": frames}
