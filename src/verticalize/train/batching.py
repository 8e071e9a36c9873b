"""Batches: packed (padding-free) or padded, in a deterministic order that a resumed run can replay.

Packing concatenates several examples into one row and gives each its own ``position_ids`` (0, 1, 2, … restarting
at every example) with no attention mask. Transformers (5.x, sdpa and eager) detects the restarts and builds a
block-diagonal causal mask, so packed examples never attend to each other; the last token of an example never
predicts the next example's first token. Methods that add virtual tokens (prefix, prompt tuning) cannot pack and
use padded batches of similar lengths instead.

The epoch plan depends only on (seed, epoch), so a resumed run rebuilds it and skips the batches already done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from verticalize.train.data import Example

IGNORE = -100


@dataclass(frozen=True)
class Batch:
    indices: tuple[int, ...]
    n_tokens: int  # real (non-padding) tokens
    n_targets: int  # tokens the loss is computed on


def _order(n: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    if not shuffle:
        return list(range(n))
    g = torch.Generator().manual_seed(seed * 1000003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def plan_batches(examples: Sequence[Example], batch_tokens: int, *, packing: bool, seed: int, epoch: int,
                 shuffle: bool = True) -> list[Batch]:
    """Greedy fill up to ``batch_tokens`` per micro-batch (padded: rows × longest row ≤ batch_tokens).

    An example longer than the budget gets a micro-batch of its own.
    """
    order = _order(len(examples), seed, epoch, shuffle)
    if not packing:
        # Sort within windows of 64 so padded rows have similar lengths while the order stays shuffled.
        order = [i for w in range(0, len(order), 64)
                 for i in sorted(order[w:w + 64], key=lambda j: len(examples[j]))]
    batches: list[Batch] = []
    cur: list[int] = []
    longest = 0

    def flush() -> None:
        if cur:
            batches.append(Batch(tuple(cur), sum(len(examples[i]) for i in cur),
                                 sum(examples[i].n_targets for i in cur)))

    for i in order:
        n = len(examples[i])
        cost = (sum(len(examples[j]) for j in cur) + n) if packing else (len(cur) + 1) * max(longest, n)
        if cur and cost > batch_tokens:
            flush()
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    flush()
    return batches


def shard(batches: list[Batch], rank: int, world: int, *, even: bool = True) -> list[Batch]:
    """This process's share: every ``world``-th batch. ``even`` cuts the tail so all ranks take as many steps
    (DDP needs every rank in every gradient all-reduce); evaluation shards need not be even."""
    usable = len(batches) - len(batches) % world if even else len(batches)
    return batches[rank:usable:world]


def windows(batches: list[Batch], grad_accum: int) -> list[list[Batch]]:
    """Micro-batches grouped per optimizer step."""
    return [batches[i:i + grad_accum] for i in range(0, len(batches), grad_accum)]


def _targets(ex: Example) -> list[int]:
    """Next-token targets: position t predicts token t+1 when that token is trained; the last predicts nothing."""
    ids, mask = ex.input_ids, ex.loss_mask
    return [ids[t + 1] if mask[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]


def collate(examples: Sequence[Example], batch: Batch, *, packing: bool, pad_id: int) -> dict[str, Any]:
    """Tensors for one micro-batch. Packed: one row + position_ids. Padded: rows + attention_mask (right pad)."""
    rows = [examples[i] for i in batch.indices]
    if packing:
        ids = [t for ex in rows for t in ex.input_ids]
        pos = [p for ex in rows for p in range(len(ex))]
        tgt = [t for ex in rows for t in _targets(ex)]
        return {"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([pos]),
                "targets": torch.tensor([tgt])}
    width = max(len(ex) for ex in rows)
    ids = [ex.input_ids + [pad_id] * (width - len(ex)) for ex in rows]
    att = [[1] * len(ex) + [0] * (width - len(ex)) for ex in rows]
    tgt = [_targets(ex) + [IGNORE] * (width - len(ex)) for ex in rows]
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(att), "targets": torch.tensor(tgt)}
