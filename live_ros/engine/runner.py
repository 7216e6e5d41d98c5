"""A KV-cached forward for Llama-family LLMs, made for streaming (paper section 3.4).

The engine, the baselines and the benchmark all run the LLM through :class:`KVRunner`, so
every mode gets the same optimisations:

- one preallocated key/value store per stream ``[layers, kv_heads, capacity, head_dim]``:
  nothing is re-allocated or concatenated per frame (transformers' DynamicCache copies
  the whole cache at every step);
- the LM head only where a logit is read (a frame decision reads one position);
- fused q/k/v and gate/up projections; on a CPU the weights are pre-packed for oneDNN
  (``torch.ops.mkldnn._linear_pointwise``: about 3-4x faster than plain ``F.linear`` for
  the narrow products of 1-20 tokens, same fp32 results to about 1e-6);
- cut back (``truncate``), eviction with re-compaction (keys rotated to their new RoPE
  positions) or re-prefill (kept tokens recomputed), both leaving positions contiguous.

It computes exactly what ``LlamaForCausalLM.forward`` computes (same RMSNorm, RoPE table,
SDPA with grouped-query attention), checked against it in the tests. It reads the
weights of the model in place (call :meth:`refresh_weights` after changing them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _mkldnn_ok(device: torch.device, dtype: torch.dtype) -> bool:
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


class _Linear:
    """``y = x W^T + b`` with the weight pre-packed for oneDNN where that is available."""

    __slots__ = ("weight", "bias", "packed")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, pack: bool):
        weight = weight.detach().contiguous()
        self.bias = None if bias is None else bias.detach().contiguous()
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
    return torch.cat([b if b is not None else torch.zeros(m.out_features, dtype=m.weight.dtype,
                                                           device=m.weight.device) for b, m in zip(biases, mods)])


class KVRunner:
    """The LLM of a :class:`~live_ros.model.live_model.LiveLlamaForCausalLM` (or any
    ``LlamaForCausalLM``) with a preallocated KV store of ``capacity`` tokens.

    ``forward(embeds, logits_at)`` appends ``embeds`` [n, hidden] at positions
    ``length .. length+n-1`` and returns fp32 logits at the chosen offsets of the chunk.
    The fed token ids and input embeddings are kept beside the keys and values, so kept
    tokens can be recomputed (re-prefill) and the sequence inspected (``ids``).
    """

    def __init__(self, model, capacity: int = 4096, *, pack: bool | None = None, grow: bool = True):
        self.model = model
        cfg = model.config
        self.config = cfg
        llm = model.model
        table = llm.embed_tokens.weight
        self.device, self.dtype = table.device, table.dtype
        self.n_layers = cfg.num_hidden_layers
        self.hidden = cfg.hidden_size
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or self.hidden // self.n_heads
        self.scale = self.head_dim ** -0.5
        self.pack = _mkldnn_ok(self.device, self.dtype) if pack is None else bool(pack)
        self.grow = grow
        self.rotary = llm.rotary_emb
        self.refresh_weights()
        self.capacity = 0
        self.length = 0
        self._alloc(int(capacity))

    # -- weights -------------------------------------------------------------------------
    def refresh_weights(self) -> None:
        """(Re)read the model's weights: fused projections, packed for the CPU."""
        llm = self.model.model
        pack = self.pack
        self.layers = []
        for layer in llm.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv = _Linear(torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]),
                          _cat_bias(att.q_proj, att.k_proj, att.v_proj), pack)
            gate_up = _Linear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
                              _cat_bias(mlp.gate_proj, mlp.up_proj), pack)
            self.layers.append((layer.input_layernorm.weight.detach(), layer.input_layernorm.variance_epsilon, qkv,
                                _Linear(att.o_proj.weight, att.o_proj.bias, pack),
                                layer.post_attention_layernorm.weight.detach(),
                                layer.post_attention_layernorm.variance_epsilon, gate_up,
                                _Linear(mlp.down_proj.weight, mlp.down_proj.bias, pack)))
        self.intermediate = llm.layers[0].mlp.gate_proj.out_features
        self.norm_w, self.norm_eps = llm.norm.weight.detach(), llm.norm.variance_epsilon
        head = self.model.lm_head
        self.lm_head = _Linear(head.weight, getattr(head, "bias", None), pack)
        self.act = llm.layers[0].mlp.act_fn

    # -- storage -------------------------------------------------------------------------
    def _alloc(self, capacity: int) -> None:
        old = (self.k, self.v, self.emb, self.ids) if self.capacity else None
        shape = (self.n_layers, self.n_kv, capacity, self.head_dim)
        # zeros() writes every page now: no page faults while streaming.
        self.k = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.v = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.emb = torch.zeros(capacity, self.hidden, dtype=self.dtype, device=self.device)
        self.ids = torch.zeros(capacity, dtype=torch.long)
        if old is not None and self.length:
            n = self.length
            self.k[:, :, :n] = old[0][:, :, :n]
            self.v[:, :, :n] = old[1][:, :, :n]
            self.emb[:n] = old[2][:n]
            self.ids[:n] = old[3][:n]
        with torch.inference_mode():
            pos = torch.arange(capacity, device=self.device)[None]
            cos, sin = self.rotary(self.emb[None, :1], pos)
        self.cos, self.sin = cos[0].to(self.dtype), sin[0].to(self.dtype)
        self.capacity = capacity

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` tokens (re-allocates only when it grows)."""
        if capacity > self.capacity:
            self._alloc(int(capacity))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.emb))

    # -- the forward ---------------------------------------------------------------------
    def embed(self, ids: list[int] | torch.Tensor, frame_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings [n, hidden] of ``ids`` with ``<v>`` slots filled by the connector."""
        ids_t = torch.as_tensor(ids, dtype=torch.long, device=self.device).reshape(1, -1)
        if hasattr(self.model, "embed"):
            return self.model.embed(ids_t, frame_tokens)[0]
        return self.model.model.embed_tokens(ids_t)[0]

    @torch.inference_mode()
    def forward(self, embeds: torch.Tensor, ids: list[int] | torch.Tensor | None = None,
                logits_at: list[int] | None = None) -> torch.Tensor | None:
        """Append ``embeds`` [n, hidden] to the cache; fp32 logits [len(logits_at), vocab]
        at those offsets of the chunk (negative offsets count from its end), or None."""
        n = embeds.shape[0]
        if n == 0:
            return None
        start = self.length
        end = start + n
        if end > self.capacity:
            if not self.grow:
                raise RuntimeError(f"KV store full ({self.capacity} tokens): raise the capacity or evict first")
            self._alloc(max(end, 2 * self.capacity))
        if ids is not None:
            self.ids[start:end] = torch.as_tensor(ids, dtype=torch.long)
        self.emb[start:end] = embeds
        self.length = end
        hidden = self._layers(embeds.to(self.dtype), start, end)
        if not logits_at:
            return None
        return self._head(hidden[torch.as_tensor(logits_at, device=hidden.device)])

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(hidden, (self.hidden,), self.norm_w, self.norm_eps)
        return self.lm_head(normed).float()

    def _layers(self, h: torch.Tensor, start: int, end: int) -> torch.Tensor:
        n = end - start
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        cos = self.cos[start:end]
        sin = self.sin[start:end]
        half = hd // 2
        mask = None
        if n > 1:
            mask = torch.ones(n, end, dtype=torch.bool, device=h.device).tril(diagonal=start)
        q_end, k_end = nh * hd, (nh + nkv) * hd
        inter = self.intermediate
        act = self.act
        for i, (ln1, eps1, qkv_l, o_l, ln2, eps2, gu_l, down_l) in enumerate(self.layers):
            x = F.rms_norm(h, (self.hidden,), ln1, eps1)
            qkv = qkv_l(x)
            q = qkv[:, :q_end].view(n, nh, hd).transpose(0, 1)
            k = qkv[:, q_end:k_end].view(n, nkv, hd).transpose(0, 1)
            v = qkv[:, k_end:].view(n, nkv, hd).transpose(0, 1)
            q = q * cos + torch.cat((-q[..., half:], q[..., :half]), -1) * sin
            k = k * cos + torch.cat((-k[..., half:], k[..., :half]), -1) * sin
            self.k[i, :, start:end] = k
            self.v[i, :, start:end] = v
            att = F.scaled_dot_product_attention(q[None], self.k[i:i + 1, :, :end], self.v[i:i + 1, :, :end],
                                                 attn_mask=mask, scale=self.scale, enable_gqa=nkv != nh)
            h = h + o_l(att[0].transpose(0, 1).reshape(n, nh * hd))
            x = F.rms_norm(h, (self.hidden,), ln2, eps2)
            gu = gu_l(x)
            h = h + down_l(act(gu[:, :inter]) * gu[:, inter:])
        return h

    # -- cache surgery -------------------------------------------------------------------
    def truncate(self, length: int) -> None:
        """Cut the cache back to its first ``length`` tokens (cut-back; O(1))."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {length}")
        self.length = length

    def reset(self) -> None:
        self.length = 0

    def can_recompact(self) -> bool:
        """Re-compaction rotates cached keys by a position offset; that is exact for the
        static RoPE variants (default, linear, llama3), not for dynamic ones."""
        rope_type = getattr(self.rotary, "rope_type", "default")
        return rope_type in ("default", "linear", "llama3")

    @torch.inference_mode()
    def compact(self, keep: torch.Tensor, method: str = "recompact", chunk: int = 512) -> None:
        """Keep the token indices ``keep`` (sorted) and make positions contiguous again.

        "recompact": move the kept keys/values and rotate each key from its old position
        to its new one (RoPE rotations compose: R(p - d) = R(-d) R(p)); cost linear in the
        kept cache, no model forward. "reprefill": recompute the kept tokens from their
        stored input embeddings; exact (the same as a fresh prefill of the kept tokens),
        costs a forward over all of them.
        """
        keep = torch.as_tensor(keep, dtype=torch.long)
        m = int(keep.numel())
        if m == self.length and (m == 0 or int(keep[-1]) == m - 1):
            return
        if method == "reprefill":
            emb = self.emb[keep.to(self.device)].clone()
            ids = self.ids[keep].clone()
            self.length = 0
            for s in range(0, m, chunk):
                self.forward(emb[s:s + chunk], ids[s:s + chunk])
            return
        if method != "recompact":
            raise ValueError(f"unknown eviction method '{method}': recompact or reprefill")
        if not self.can_recompact():
            raise ValueError(f"re-compaction needs a static RoPE (this model's is "
                             f"'{self.rotary.rope_type}'): use eviction='reprefill'")
        # Tokens before the first gap keep their places; only the rest moves and rotates.
        first = 0
        while first < m and int(keep[first]) == first:
            first += 1
        src = keep[first:].to(self.device)
        if src.numel():
            new_pos = torch.arange(first, m, device=self.device)
            delta = (src - new_pos).to(torch.float32)          # positions to move back by
            ang = delta[:, None] * self.rotary.inv_freq.to(self.device, torch.float32)[None]
            cos, sin = ang.cos().to(self.dtype), ang.sin().to(self.dtype)   # [r, half]
            half = self.head_dim // 2
            for layer in range(self.n_layers):    # per layer: small temporaries, cache friendly
                k = self.k[layer][:, src]                        # gathered copy [kv, r, hd]
                k1, k2 = k[..., :half], k[..., half:]
                out = self.k[layer, :, first:m]
                # R(-d): (x1, x2) -> (x1 cos d + x2 sin d, x2 cos d - x1 sin d)
                torch.mul(k1, cos, out=out[..., :half])
                out[..., :half].addcmul_(k2, sin)
                torch.mul(k2, cos, out=out[..., half:])
                out[..., half:].addcmul_(k1, sin, value=-1.0)
                self.v[layer, :, first:m] = self.v[layer][:, src]
            self.emb[first:m] = self.emb[src]
            self.ids[first:m] = self.ids[keep[first:]]
        self.length = m
