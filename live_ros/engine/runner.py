"""A KV-cached forward for Llama-family LLMs, made for streaming (paper section 3.4).

The engine, the baselines and the benchmark all run the LLM through :class:`KVRunner`, so
every mode gets the same optimisations:

- one preallocated key/value store per stream ``[layers, kv_heads, capacity, head_dim]``:
  nothing is re-allocated or concatenated per frame (transformers' DynamicCache copies
  the whole cache at every step); a store that fills up grows by a fixed ``step`` of
  tokens, never by doubling (a bounded stream is given its whole capacity at once);
- the LM head only where a logit is read (a frame decision reads one position);
- fused q/k/v and gate/up projections; on a CPU the weights are pre-packed for oneDNN
  (same fp32 results to about 1e-6); one copy per model, shared by every runner on it
  (every stream), in :class:`~live_ros.engine.weights.RunnerWeights` (weights.py);
- cut back (``truncate``), eviction with re-compaction (keys rotated to their new RoPE
  positions) or re-prefill (kept tokens recomputed), both leaving positions contiguous.

Everything but the matrix products is the model's own code: its RMSNorm modules (in
float32 as torch's fused ``rms_norm``, the same function), its rotary embedding and
``apply_rotary_pos_emb``, its MLP activation, and the attention function transformers
registers under ``config._attn_implementation`` (``sdpa``, ``eager``, a FlashAttention
kernel, or one registered with ``transformers.AttentionInterface``), called with the
model's attention module as ``LlamaAttention.forward`` calls it. So the library's SDPA or
FlashAttention kernels apply on a GPU, and ``model.set_attn_implementation(...)`` changes
what the runner uses. It computes what ``LlamaForCausalLM.forward`` computes, checked
against it (sdpa and eager, grouped-query and multi-head) in test/test_engine_runner.py.
It reads the model's weights once (call :meth:`refresh_weights` after changing them).
"""

from __future__ import annotations

import inspect

import torch

from live_ros.engine.weights import RunnerWeights


class KVRunner:
    """The LLM of a :class:`~live_ros.model.live_model.LiveLlamaForCausalLM` (or any
    ``LlamaForCausalLM``) with a preallocated KV store of ``capacity`` tokens.

    ``forward(embeds, logits_at)`` appends ``embeds`` [n, hidden] at positions
    ``length .. length+n-1`` and returns fp32 logits at the chosen offsets of the chunk.
    The fed token ids and input embeddings are kept beside the keys and values, so kept
    tokens can be recomputed (re-prefill) and the sequence inspected (``ids``).
    """

    def __init__(
        self,
        model,
        capacity: int = 4096,
        *,
        pack: bool | None = None,
        grow: bool = True,
        step: int = 512,
        weights: RunnerWeights | None = None,
    ):
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
        self.grow = grow
        if step < 1:
            raise ValueError(f"the growth step {step} must be >= 1 token")
        self.step = int(step)
        self.rotary = llm.rotary_emb
        # The model's own functions, from the module that defines its attention class.
        modeling = inspect.getmodule(type(llm.layers[0].self_attn))
        if modeling is None or not all(
            hasattr(modeling, f) for f in ("apply_rotary_pos_emb", "eager_attention_forward")
        ):
            raise TypeError(
                f"{getattr(modeling, '__name__', type(llm.layers[0].self_attn))} is not a Llama-family modeling module: the runner needs its "
                "apply_rotary_pos_emb and eager_attention_forward"
            )
        self._rope = modeling.apply_rotary_pos_emb
        self._eager = modeling.eager_attention_forward
        self.weights = weights if weights is not None else RunnerWeights.of(model, pack)
        self.batcher = None  # a ForwardBatcher (batching.py) when streams share forwards
        self.pack = self.weights.pack
        self.capacity = 0
        self.k: torch.Tensor  # [layers, kv heads, capacity, head_dim], allocated by _alloc
        self.v: torch.Tensor
        self.emb: torch.Tensor  # [capacity, hidden]: the input embedding of every position
        self.ids: torch.Tensor  # [capacity]: the token id of every position
        self.length = 0
        self._alloc(int(capacity))

    # -- weights -------------------------------------------------------------------------
    def refresh_weights(self) -> None:
        """Read the model's weights again after changing them (the new ones are shared by
        every runner built on the model from then on)."""
        self.weights = RunnerWeights.build(self.model, self.pack)

    # -- attention -----------------------------------------------------------------------
    @property
    def attn_implementation(self) -> str:
        """The attention the runner uses: the model config's, as the model's forward does."""
        return self.config._attn_implementation or "eager"

    def attention_function(self, name: str | None = None):
        """transformers' attention function registered under ``name`` (default: the
        config's), looked up as ``LlamaAttention.forward`` looks it up."""
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        name = name or self.attn_implementation
        if hasattr(ALL_ATTENTION_FUNCTIONS, "get_interface"):
            return ALL_ATTENTION_FUNCTIONS.get_interface(name, self._eager)
        return self._eager if name == "eager" else ALL_ATTENTION_FUNCTIONS[name]

    def _mask(self, name: str, start: int, end: int, groups: int) -> torch.Tensor | None:
        """The causal mask of a chunk at ``start .. end-1`` over keys ``0 .. end-1`` in the
        form the attention functions take: none for one query or for FlashAttention
        (causal by itself, aligned to the last key since flash-attn 2.1), else additive
        (0 or the dtype's minimum, as transformers' eager masks; SDPA takes it as it is,
        where a boolean one would be converted in every layer), rows repeated per folded
        group."""
        n = end - start
        if n == 1 or "flash" in name:
            return None
        blocked = torch.ones(n, end, dtype=torch.bool, device=self.device).triu_(diagonal=start + 1)
        if groups > 1:
            blocked = blocked.repeat(groups, 1)
        mask = torch.zeros(blocked.shape, dtype=self.dtype, device=self.device)
        return mask.masked_fill_(blocked, torch.finfo(self.dtype).min)[None, None]

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
    def forward(
        self, embeds: torch.Tensor, ids: list[int] | torch.Tensor | None = None, logits_at: list[int] | None = None
    ) -> torch.Tensor | None:
        """Append ``embeds`` [n, hidden] to the cache; fp32 logits [len(logits_at), vocab]
        at those offsets of the chunk (negative offsets count from its end), or None. With
        a :class:`~live_ros.engine.batching.ForwardBatcher` attached (``batcher``), the
        chunk joins the chunks other streams submit at the same time in one forward."""
        if self.batcher is not None:
            return self.batcher.forward(self, embeds, ids, logits_at)
        return forward_many([(self, embeds, ids, logits_at)])[0]

    def _append(self, embeds: torch.Tensor, ids) -> tuple[int, int]:
        """Room for a chunk (the store grows by fixed steps), its ids and embeddings
        written; the chunk's positions ``(start, end)``."""
        start = self.length
        end = start + embeds.shape[0]
        if end > self.capacity:
            if not self.grow:
                raise RuntimeError(f"KV store full ({self.capacity} tokens): raise the capacity or evict first")
            self._alloc(-(-end // self.step) * self.step)  # fixed steps: no doubling
        if ids is not None:
            self.ids[start:end] = torch.as_tensor(ids, dtype=torch.long)
        self.emb[start:end] = embeds
        self.length = end
        return start, end

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.weights.lm_head(self.weights.norm(hidden)).float()

    def _attention(self, i: int, qkv: torch.Tensor, start: int, end: int, plan: tuple) -> torch.Tensor:
        """Layer ``i``'s attention for this runner's chunk at ``start .. end-1`` from its
        fused q/k/v rows: keys and values written into the store, attention over the
        store's first ``end`` tokens; the output rows [n, heads * head_dim]."""
        n = end - start
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        attend, groups, mask, cos, sin = plan
        att, folded = self.weights.layers[i][2], self.weights.layers[i][3]
        q_end, k_end = nh * hd, (nh + nkv) * hd
        q = qkv[:, :q_end].view(n, nh, hd).transpose(0, 1)[None]
        k = qkv[:, q_end:k_end].view(n, nkv, hd).transpose(0, 1)[None]
        v = qkv[:, k_end:].view(n, nkv, hd).transpose(0, 1)
        q, k = self._rope(q, k, cos, sin)
        self.k[i, :, start:end] = k[0]
        self.v[i, :, start:end] = v
        keys, values = self.k[i : i + 1, :, :end], self.v[i : i + 1, :, :end]
        if groups > 1:  # [1, nh, n, hd] -> [1, nkv, groups * n, hd]: rows (group, token)
            out, _ = attend(
                folded,
                q.reshape(1, nkv, groups * n, hd),
                keys,
                values,
                mask,
                dropout=0.0,
                scaling=att.scaling,
                is_causal=False,  # the folded rows carry the causality in the mask
            )
            out = out.reshape(groups, n, nkv, hd).permute(1, 2, 0, 3)
        else:
            out, _ = attend(att, q, keys, values, mask, dropout=0.0, scaling=att.scaling)
        return out.reshape(n, nh * hd)

    def _plan(self, start: int, end: int) -> tuple:
        """What attention needs for a chunk at ``start .. end-1``, the same in every layer:
        the function, the query folding, the mask and the rotary angles."""
        name = self.attn_implementation
        # Fold grouped queries onto their key/value heads unless the function is a flash
        # kernel (which takes grouped-query attention and causality as they are).
        groups = self.n_heads // self.n_kv if self.n_kv != self.n_heads and "flash" not in name else 1
        mask = self._mask(name, start, end, groups)
        return self.attention_function(name), groups, mask, self.cos[None, start:end], self.sin[None, start:end]

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
                self.forward(emb[s : s + chunk], ids[s : s + chunk])
            return
        if method != "recompact":
            raise ValueError(f"unknown eviction method '{method}': recompact or reprefill")
        if not self.can_recompact():
            raise ValueError(
                f"re-compaction needs a static RoPE (this model's is "
                f"'{self.rotary.rope_type}'): use eviction='reprefill'"
            )
        # Tokens before the first gap keep their places; only the rest moves and rotates.
        first = 0
        while first < m and int(keep[first]) == first:
            first += 1
        src = keep[first:].to(self.device)
        if src.numel():
            new_pos = torch.arange(first, m, device=self.device)
            delta = (src - new_pos).to(torch.float32)  # positions to move back by
            ang = delta[:, None] * self.rotary.inv_freq.to(self.device, torch.float32)[None]
            cos, sin = ang.cos().to(self.dtype), ang.sin().to(self.dtype)  # [r, half]
            half = self.head_dim // 2
            for layer in range(self.n_layers):  # per layer: small temporaries, cache friendly
                k = self.k[layer][:, src]  # gathered copy [kv, r, hd]
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


@torch.inference_mode()
def forward_many(requests: list[tuple]) -> list[torch.Tensor | None]:
    """One forward for the chunks of several runners on the same weights (several streams
    of one model), each ``(runner, embeds, ids, logits_at)`` as :meth:`KVRunner.forward`
    takes it. The products (q/k/v, output, MLP, LM head) run once over all the chunks'
    rows, so the weights are read once per layer; rotary positions, keys, values and
    attention stay each runner's own, over its own cache. Returns each chunk's logits
    (or None), in order. One runner alone is :meth:`KVRunner.forward`."""
    live = [k for k, (_, e, _, _) in enumerate(requests) if e.shape[0]]
    out: list[torch.Tensor | None] = [None] * len(requests)
    if not live:
        return out
    first = requests[live[0]][0]
    weights = first.weights
    if any(requests[k][0].weights is not weights for k in live):
        raise ValueError("runners batched in one forward must share their weights (RunnerWeights.of(model))")
    segments = []
    for k in live:
        r, embeds, ids, _ = requests[k]
        start, end = r._append(embeds, ids)
        segments.append((r, start, end, r._plan(start, end)))
    chunks = [requests[k][1].to(first.dtype) for k in live]
    h = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    inter, act = weights.intermediate, weights.act
    for i, (ln1, qkv_l, _, _, o_l, ln2, gu_l, down_l) in enumerate(weights.layers):
        qkv = qkv_l(ln1(h))
        outs, row = [], 0
        for r, start, end, plan in segments:
            outs.append(r._attention(i, qkv[row : row + end - start], start, end, plan))
            row += end - start
        h = h + o_l(torch.cat(outs) if len(outs) > 1 else outs[0])
        gu = gu_l(ln2(h))
        h = h + down_l(act(gu[:, :inter]) * gu[:, inter:])
    picks, row = [], 0  # the rows whose logits are read, per chunk (negative offsets from its end)
    for k, (_, start, end, _) in zip(live, segments):
        at = requests[k][3]
        picks.append(row + torch.as_tensor(at or [], dtype=torch.long, device=h.device) % (end - start))
        row += end - start
    wanted = torch.cat(picks)
    if wanted.numel():
        logits = first._head(h[wanted])
        taken = 0
        for k, pick in zip(live, picks):
            if requests[k][3]:
                out[k] = logits[taken : taken + pick.numel()]
            taken += pick.numel()
    return out
