"""The LLM's weights as :class:`~live_ros.engine.runner.KVRunner` computes with them, held
once per model.

Per decoder layer: the two RMSNorms, the fused q/k/v projection, the output projection,
the fused gate/up projection and the down projection; then the final norm and the LM
head. On a CPU the products are pre-packed for oneDNN
(``torch.ops.mkldnn._linear_pointwise``: on 2 cores about 1.8x faster per silent frame
of the embedded model than plain ``F.linear``, 1.5x per decoded token); elsewhere they
are plain fused tensors.

One copy in memory. :meth:`RunnerWeights.of` builds them once per model and every runner
on the model shares them (every stream of a node). The fused or packed products are a
second copy of the model's projection weights, so a process that streams only
(live_llm, ``live-ros evaluate-online``) calls :func:`stream_only`: the model's own
projection weights are dropped (with the memory map of the checkpoint file they were read
from), and its ``forward`` refuses with a message saying why. A tied LM head stays
where it is (it is the embedding table, which the runner reads to embed text) and its
packed copy is the one duplicate kept: about 113 MB for SmolLM2-135M, 5 ms saved per
frame on 2 cores (4.7 ms for one row against 10.1 ms plain).
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F

PROJECTIONS = (
    ("self_attn", "q_proj"),
    ("self_attn", "k_proj"),
    ("self_attn", "v_proj"),
    ("self_attn", "o_proj"),
    ("mlp", "gate_proj"),
    ("mlp", "up_proj"),
    ("mlp", "down_proj"),
)

RELEASED = (
    "this model's projection weights were handed to the streaming engine (one copy in memory: "
    "live_ros/engine/weights.py) and its own forward cannot run; stream through StreamEngine / "
    "KVRunner, or load the model again to call it directly"
)


def mkldnn_ok(device: torch.device, dtype: torch.dtype) -> bool:
    """True where oneDNN's packed linear runs and agrees with a plain product."""
    if device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16):
        return False
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    try:
        w = torch.randn(8, 4, dtype=dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
        x = torch.randn(3, 4, dtype=dtype)
        out = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return bool(torch.allclose(out.float(), (x @ w.t()).float(), atol=1e-2))
    except (RuntimeError, AttributeError):
        return False


class Linear:
    """``y = x W^T + b`` with the weight pre-packed for oneDNN where that is available."""

    __slots__ = ("weight", "bias", "packed")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, pack: bool):
        weight = weight.detach().contiguous()
        self.bias = None if bias is None else bias.detach().clone()  # its own memory (release_model_copies)
        # Packed: only the packed copy is kept (the fused plain copy is dropped).
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 16) if pack else None
        self.weight = None if pack else weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


def _cat_bias(*mods) -> torch.Tensor | None:
    biases = [m.bias for m in mods]
    if all(b is None for b in biases):
        return None
    return torch.cat(
        [
            b if b is not None else torch.zeros(m.out_features, dtype=m.weight.dtype, device=m.weight.device)
            for b, m in zip(biases, mods)
        ]
    )


def _rms_norm(module, dtype: torch.dtype):
    """The model's RMSNorm module; in float32 the same function as torch's fused
    ``F.rms_norm`` with the module's weight and epsilon (``w * x / sqrt(mean(x^2) + eps)``),
    which is used there: the module's five element-wise operations cost about 4 % of a
    silent frame on a CPU. Other dtypes keep the module (it rounds to the dtype before
    the weight, as the model does)."""
    weight, eps = getattr(module, "weight", None), getattr(module, "variance_epsilon", None)
    if dtype != torch.float32 or weight is None or eps is None:
        return module
    # the module's weight read at each call: it may move to memory of its own (release_model_copies)
    return lambda x: F.rms_norm(x, (x.shape[-1],), module.weight, eps)


class GroupedQueries:
    """An attention module as the attention function sees it when the runner folds the
    query heads of each key/value head into one head of ``groups * n`` queries: grouped-
    query attention as plain multi-head attention, so the keys and values are read in
    place (transformers' ``repeat_kv`` would copy the whole cache for a chunk of more than
    one token with a mask). Every other attribute is the module's own."""

    num_key_value_groups = 1

    def __init__(self, module):
        self.module = module

    def __getattr__(self, name):
        return getattr(self.module, name)


def _give_back_to_the_system() -> None:
    """glibc keeps freed heap memory for reuse; ``malloc_trim`` returns it (about 50 MB
    after release_model_copies on the embedded model). Elsewhere: nothing to do."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _released(module, args, kwargs):
    raise RuntimeError(RELEASED)


class RunnerWeights:
    """The weights of one ``LlamaForCausalLM``-shaped model in the runner's form (see the
    module's docstring). ``layers[i]`` is ``(ln1, qkv, attention module, its folded view,
    o, ln2, gate_up, down)``."""

    def __init__(self, model, pack: bool | None = None):
        if getattr(model, "_live_weights_released", False):
            raise RuntimeError(f"cannot read the weights again: {RELEASED}")
        llm = model.model
        table = llm.embed_tokens.weight
        self.device, self.dtype = table.device, table.dtype
        self.pack = mkldnn_ok(self.device, self.dtype) if pack is None else bool(pack)
        self.layers = []
        for layer in llm.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv = Linear(
                torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]),
                _cat_bias(att.q_proj, att.k_proj, att.v_proj),
                self.pack,
            )
            gate_up = Linear(
                torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
                _cat_bias(mlp.gate_proj, mlp.up_proj),
                self.pack,
            )
            self.layers.append(
                (
                    _rms_norm(layer.input_layernorm, self.dtype),
                    qkv,
                    att,
                    GroupedQueries(att),
                    Linear(att.o_proj.weight, att.o_proj.bias, self.pack),
                    _rms_norm(layer.post_attention_layernorm, self.dtype),
                    gate_up,
                    Linear(mlp.down_proj.weight, mlp.down_proj.bias, self.pack),
                )
            )
        self.intermediate = llm.layers[0].mlp.gate_proj.out_features
        self.norm = _rms_norm(llm.norm, self.dtype)
        head = model.lm_head
        self.lm_head = Linear(head.weight, getattr(head, "bias", None), self.pack)
        self.act = llm.layers[0].mlp.act_fn

    @classmethod
    def of(cls, model, pack: bool | None = None) -> "RunnerWeights":
        """The model's runner weights, built on first use and shared from then on (a
        different ``pack`` than the shared ones' builds new ones, which are then shared)."""
        have = getattr(model, "_live_runner_weights", None)
        if have is not None and (pack is None or have.pack == bool(pack)):
            return have
        return cls.build(model, pack)

    @classmethod
    def build(cls, model, pack: bool | None = None) -> "RunnerWeights":
        """Read the model's weights again (after changing them) and share the new ones."""
        weights = cls(model, pack)
        object.__setattr__(model, "_live_runner_weights", weights)  # not a submodule or a parameter
        return weights

    def release_model_copies(self, model) -> int:
        """Drop the model's own projection weights (and an untied LM head), which this
        object holds in the runner's form: one copy of the weights in the process. The
        model's forward refuses from then on (:data:`RELEASED`). Returns the bytes dropped."""
        if getattr(model, "_live_runner_weights", None) is not self:
            raise ValueError("these are not the weights the model shares: use RunnerWeights.of(model)")
        if getattr(model, "_live_weights_released", False):
            return 0
        linears = [getattr(getattr(layer, part), name) for layer in model.model.layers for part, name in PROJECTIONS]
        head = model.lm_head
        if head.weight is not model.model.embed_tokens.weight:
            linears.append(head)
        freed = 0
        for lin in linears:
            freed += lin.weight.numel() * lin.weight.element_size()
            lin.weight = torch.nn.Parameter(lin.weight.new_empty(0), requires_grad=False)
        # What is left (the embedding table, norms, connector) may live in the memory map of
        # the checkpoint file the weights were read from, which stays mapped, all of it, while
        # any tensor points into it: copied out, the map goes and the dropped weights with it.
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                if t.numel():
                    t.data = t.data.clone()
        object.__setattr__(model, "_live_weights_released", True)
        model.register_forward_pre_hook(_released, with_kwargs=True)
        _give_back_to_the_system()
        return freed


def stream_only(model, pack: bool | None = None) -> int:
    """For a process that only streams (the node, ``live-ros evaluate-online``): build the
    model's shared runner weights and drop the model's own copies of them. Returns the
    bytes dropped."""
    return RunnerWeights.of(model, pack).release_model_copies(model)
