"""A small GPT-style character language model in PyTorch, class-conditional, on CPU.

One record is one text with its category (the fortunes corpus). The model is a
decoder-only transformer (pre-norm blocks, causal self-attention, learned
positions) over characters; every sequence is ``[BOS, category, c_1 .. c_L, EOS]``,
so the category is a token the text is conditioned on. The category itself is
drawn from the training set's category frequencies (the MLE, as the n-gram model
does), so a category that a generation stops producing is lost to the next
unless real data brings it back; the transformer writes the text.

Training and sampling are deterministic given the seed: ``fit(records, seed=)``
seeds a ``torch.Generator`` for the initial weights and the mini-batches (the
loop passes the manifest's seed), sampling seeds its own generator, and both run
on ``threads`` intra-op threads (1 by default: the lab runs one job per core).
Texts are cut to ``max_len`` characters, so the whole text sits in one context
window; sampling caches keys and values, one new character per step for all
texts at once. Needs the optional ``[torch]`` extra (the CPU build is enough).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import ConfigError, InputError
from tailguard.lab.models.base import ModelBase
from tailguard.records import Origin, make_records

#: Token ids: end/padding, start, then the categories, then the characters.
EOS, BOS, _FIRST_LABEL = 0, 1, 2


class Transformer(ModelBase):
    """A ``n_layer`` x ``d_model`` causal transformer over characters, ``steps`` of AdamW.

    ``temperature`` divides the logits when sampling (characters) and tempers the
    category frequencies (``p ** (1 / temperature)``): below 1 it favours the
    frequent, above 1 the rare.
    """

    name = "transformer"
    seeded_fit = True  # the loop passes the manifest's seed to fit
    _param_names = (
        "n_layer", "n_head", "d_model", "max_len", "steps", "batch_size", "lr",
        "temperature", "threads", "seed",
    )  # fmt: skip

    def __init__(
        self,
        *,
        n_layer: int = 2,
        n_head: int = 4,
        d_model: int = 48,
        max_len: int = 48,
        steps: int = 150,
        batch_size: int = 32,
        lr: float = 3e-3,
        temperature: float = 1.0,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        for key, value in (("n_layer", n_layer), ("n_head", n_head), ("d_model", d_model),
                           ("max_len", max_len), ("steps", steps), ("batch_size", batch_size),
                           ("threads", threads)):  # fmt: skip
            if int(value) != value or value < 1:
                raise ConfigError(f"transformer {key} must be an integer >= 1, got {value!r}")
        if d_model % n_head:
            raise ConfigError(f"d_model ({d_model}) must be a multiple of n_head ({n_head})")
        if not lr > 0:
            raise ConfigError(f"transformer lr must be > 0, got {lr}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.n_layer, self.n_head, self.d_model = n_layer, n_head, d_model
        self.max_len, self.steps, self.batch_size = max_len, steps, batch_size
        self.lr, self.temperature, self.threads, self.seed = lr, temperature, threads, seed
        self.chars_: np.ndarray | None = None  # sorted code points of the vocabulary
        self.labels_: pa.Array | None = None
        self.label_cum_: np.ndarray | None = None
        self.net_: Any = None
        self.final_loss_: float | None = None

    # -- encoding ---------------------------------------------------------------------------
    def _codes(self, content: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Texts as a ``n x max_len`` matrix of code points, 0-padded (no per-text loop)."""
        cut = pc.utf8_slice_codeunits(content, 0, self.max_len)
        cut = pc.replace_substring(cut, "\x00", " ").to_numpy(zero_copy_only=False)
        fixed = np.asarray(cut, dtype=f"<U{self.max_len}")
        return fixed.view(np.uint32).reshape(len(fixed), self.max_len).astype(np.int64)

    def _n_vocab(self) -> int:
        assert self.chars_ is not None and self.labels_ is not None
        return _FIRST_LABEL + len(self.labels_) + len(self.chars_)

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, records: pa.Table, *, seed: int | None = None) -> Self:
        """Train from scratch on ``records`` (``seed`` defaults to the model's ``seed``)."""
        import torch

        if records.num_rows == 0:
            raise InputError("cannot fit a transformer on no texts")
        records = records.sort_by("id") if "id" in records.column_names else records
        codes = self._codes(records.column("content"))
        self.chars_ = np.unique(codes[codes > 0])
        if self.chars_.size == 0:
            raise InputError("cannot fit a transformer on empty texts")
        lab = pc.dictionary_encode(pc.fill_null(records.column("label"), "")).combine_chunks()
        self.labels_ = lab.dictionary
        label_ids = lab.indices.to_numpy().astype(np.int64)
        self.label_cum_ = np.cumsum(np.bincount(label_ids, minlength=len(self.labels_))).astype(
            float
        )
        first_char = _FIRST_LABEL + len(self.labels_)
        body = np.where(codes > 0, np.searchsorted(self.chars_, codes) + first_char, EOS)
        seqs = np.concatenate(
            [np.full((len(codes), 1), BOS), (label_ids + _FIRST_LABEL)[:, None], body,
             np.full((len(codes), 1), EOS)], axis=1,
        )  # fmt: skip
        # Predict every token after BOS up to and including the first EOS.
        lengths = (codes > 0).sum(axis=1)
        target_mask = np.arange(seqs.shape[1] - 1)[None, :] <= lengths[:, None] + 1
        with _threads(self.threads):
            gen = torch.Generator().manual_seed(int(self.seed if seed is None else seed))
            torch.manual_seed(int(gen.initial_seed()))  # weight init draws from the global RNG
            net = _GPT(self._n_vocab(), self.d_model, self.n_head, self.n_layer, seqs.shape[1])
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=0.01)
            steps = self.steps

            def warm_cos(s: int) -> float:  # 20 steps of warm-up, then a cosine decay
                return min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, warm_cos)
            x_all = torch.from_numpy(seqs)
            m_all = torch.from_numpy(target_mask)
            net.train()
            loss = torch.tensor(float("nan"))
            for _ in range(self.steps):
                idx = torch.randint(len(seqs), (self.batch_size,), generator=gen)
                x, m = x_all[idx], m_all[idx]
                logits = net(x[:, :-1])
                loss = torch.nn.functional.cross_entropy(logits[m], x[:, 1:][m])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                sched.step()
        self.net_ = net.eval()
        self.final_loss_ = float(loss.item())
        return self

    # -- sampling ---------------------------------------------------------------------------
    def sample_texts(self, n: int, seed: int) -> tuple[pa.Array, pa.Array]:
        """``n`` sampled (texts, categories): the category from its tempered frequency."""
        import torch

        self._require_fitted("net_")
        assert self.label_cum_ is not None and self.chars_ is not None
        rng = np.random.default_rng(seed)
        p = np.diff(self.label_cum_, prepend=0.0) ** (1.0 / self.temperature)
        cum = np.cumsum(p)
        labels = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(p) - 1)
        first_char = _FIRST_LABEL + len(self.labels_)
        out = np.zeros((n, self.max_len), dtype=np.int64)
        with _threads(self.threads), torch.no_grad():
            gen = torch.Generator().manual_seed(int(seed))
            tok = torch.from_numpy(np.stack([np.full(n, BOS), labels + _FIRST_LABEL], axis=1))
            cache: list[Any] = [None] * self.n_layer
            logits = self.net_(tok, cache=cache)[:, -1]
            active = torch.ones(n, dtype=torch.bool)
            for t in range(self.max_len):
                logits = logits / self.temperature
                logits[:, _FIRST_LABEL:first_char] = -math.inf  # a category only comes second
                logits[:, BOS] = -math.inf
                if t == 0:
                    logits[:, EOS] = -math.inf  # no empty texts
                nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen)[:, 0]
                nxt = torch.where(active, nxt, torch.zeros_like(nxt))
                out[:, t] = nxt.numpy()
                active &= nxt != EOS
                if not bool(active.any()):
                    break
                logits = self.net_(nxt[:, None], cache=cache, offset=t + 2)[:, -1]
        body = np.where(out >= first_char, self.chars_[np.maximum(out - first_char, 0)], 0)
        texts = body.astype(np.uint32).view(f"<U{self.max_len}").ravel()
        label_text = pc.take(self.labels_, pa.array(labels))
        label_text = pc.if_else(pc.equal(label_text, ""), pa.scalar(None, pa.string()), label_text)
        return pa.array(texts.tolist(), pa.string()), label_text

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table:  # noqa: A002
        texts, labels = self.sample_texts(n, seed)
        return make_records(
            texts, origin=Origin.SYNTHETIC, source="lab", generator=self.name,
            generation=generation, round=round, label=labels,
        )  # fmt: skip

    def statistics(self) -> dict[str, float]:
        """The last training batch's cross-entropy (nats per token)."""
        self._require_fitted("net_")
        return {"train_loss": float(self.final_loss_ or 0.0)}


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _GPT(n_vocab: int, d_model: int, n_head: int, n_layer: int, context: int) -> Any:  # noqa: N802
    """Build the network (torch is imported only when a transformer is trained)."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.proj = nn.Linear(d_model, d_model)
            self.mlp = nn.Sequential(
                nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
            )

        def forward(self, x: Any, cache: list[Any] | None, layer: int) -> Any:
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d_model, dim=-1)
            q, k, v = (z.view(b, t, n_head, -1).transpose(1, 2) for z in (q, k, v))
            if cache is not None:
                if cache[layer] is not None:
                    k = torch.cat([cache[layer][0], k], dim=2)
                    v = torch.cat([cache[layer][1], v], dim=2)
                cache[layer] = (k, v)
            # With a cache, one new query attends to every cached key: no mask needed.
            causal = t > 1
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, d_model))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(n_vocab, d_model)
            self.pos = nn.Embedding(context, d_model)
            self.blocks = nn.ModuleList(Block() for _ in range(n_layer))
            self.ln = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, n_vocab, bias=False)

        def forward(self, x: Any, cache: list[Any] | None = None, offset: int = 0) -> Any:
            pos = torch.arange(offset, offset + x.shape[1])
            h = self.tok(x) + self.pos(pos)[None]
            for i, block in enumerate(self.blocks):
                h = block(h, cache, i)
            return self.head(self.ln(h))

    return GPT()
