# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Pure tensor functions of token Pruning & Pooling (PPT): score, choose, prune, pool, compress.

Nothing here holds model state; the model wires these in. Shapes use

    B  batch size              N  tokens (protected + non-protected)
    H  attention heads         P  protected tokens at the front (CLS, and DIST for distilled DeiT)
    D  hidden size             Np = N - P non-protected tokens
    r  tokens removed by one compression step

Every function is per sample and free of host-device syncs: no `.item()`, no `nonzero`, no Python loop over
samples, and output shapes depend only on input shapes and `r`, so `torch.compile(fullgraph=True)` can trace them.
(One exception: `check_scores` looks at the values a user-registered score function returned, and does so only in
eager mode.)
The algorithm follows `PPT_SPEC.md` (Wu et al., arXiv 2310.01812) and the released PPT/ToMe code where the spec
defers to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch


# --------------------------------------------------------------------------------------------------------------------
# Significance scores
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreInputs:
    """What an attention layer hands to a score function.

    Attributes:
        cls_attention: `[B, H, N]` attention probabilities of the CLS query row (after the log-size term).
        value_norm: `[B, N]` L2 norm of each token's value vector, all heads concatenated.
        num_protected: number of protected tokens `P` at the front of the sequence.
        attention_probs: `[B, H, N, N]` full attention probabilities, only when the score function was registered
            with `needs_full_attention=True` (otherwise `None`, and the layer never materialises them).
    """

    cls_attention: torch.Tensor
    value_norm: torch.Tensor
    num_protected: int
    attention_probs: torch.Tensor | None = None


class ScoreFunction(NamedTuple):
    """A registered significance score: the function, whether it reads the full attention, its name, and whether its
    output is checked (user-registered functions are; the built-ins are tested and stay off the checks)."""

    fn: Callable[[ScoreInputs], torch.Tensor]
    needs_full_attention: bool
    name: str = ""
    check_output: bool = True


SCORE_FUNCTIONS: dict[str, ScoreFunction] = {}


def register_score_function(
    name: str,
    fn: Callable[[ScoreInputs], torch.Tensor] | None = None,
    *,
    needs_full_attention: bool = False,
    override: bool = False,
):
    """Register a significance-score function under `name`, so that `PPTDeiTConfig(score_function=name)` uses it.

    `fn(inputs: ScoreInputs) -> Tensor[B, Np]` returns one finite, non-negative value per non-protected token, in a
    floating dtype, with a positive sum per sample; it does not need to normalise (the model normalises every score to
    sum to 1 per sample). Set `needs_full_attention=True` if `fn` reads `inputs.attention_probs`; otherwise the layer
    only computes the CLS row of the attention and `inputs.attention_probs` is None. Usable as a decorator:
    `@register_score_function("mine")`.

    A name that is already registered (a built-in such as `"ats"`, or your own) is replaced only with
    `override=True`: the registry is process-wide, so a silent replacement would change every model using that name.

    What a registered function returns is checked on every call (see `check_scores`): its type, dtype and shape
    always, its values (finite, non-negative, positive sum per sample) in eager mode only: under `torch.compile`,
    `torch.export`, ONNX export or `torch.jit` tracing that value check is skipped, as it needs a host sync. The
    built-in functions are not checked.
    """

    def add(score_fn):
        if not callable(score_fn):
            raise TypeError(f"score function {name!r} must be callable, got {type(score_fn).__name__}")
        if name in SCORE_FUNCTIONS and not override:
            raise ValueError(
                f"a score function named {name!r} is already registered; pass override=True to replace it for the "
                "whole process, or choose another name"
            )
        SCORE_FUNCTIONS[name] = ScoreFunction(score_fn, bool(needs_full_attention), name, check_output=True)
        return score_fn

    if not isinstance(name, str) or not name:
        raise ValueError(f"score function name must be a non-empty string, got {name!r}")
    return add if fn is None else add(fn)


def _register_builtin(name: str, needs_full_attention: bool = False):
    def add(score_fn):
        SCORE_FUNCTIONS[name] = ScoreFunction(score_fn, needs_full_attention, name, check_output=False)
        return score_fn

    return add


def get_score_function(name: str) -> ScoreFunction:
    try:
        return SCORE_FUNCTIONS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        raise ValueError(
            f"unknown score_function {name!r}; registered: {sorted(SCORE_FUNCTIONS)} "
            "(add your own with register_score_function)"
        ) from None


def normalize_scores(scores: torch.Tensor) -> torch.Tensor:
    """Scale `[B, Np]` scores to sum to 1 per sample."""
    return scores / scores.sum(dim=-1, keepdim=True)


@_register_builtin("ats")
def ats_score(inputs: ScoreInputs) -> torch.Tensor:
    """ATS significance (the paper's and thesis's baseline): `sum_h A[b,h,CLS,t] * ||V_t||`."""
    p = inputs.num_protected
    return inputs.cls_attention[:, :, p:].sum(dim=1) * inputs.value_norm[:, p:]


@_register_builtin("cls_attention")
def cls_attention_score(inputs: ScoreInputs) -> torch.Tensor:
    """The thesis's "average": attention *from* CLS to each token, averaged over heads."""
    return inputs.cls_attention[:, :, inputs.num_protected :].mean(dim=1)


ENTROPY_EPS = 1e-12


@_register_builtin("entropy", needs_full_attention=True)
def entropy_score(inputs: ScoreInputs) -> torch.Tensor:
    """The thesis's "diversity": head-averaged entropy of token t's own attention row, times `||V_t||`."""
    p = inputs.num_protected
    probs = inputs.attention_probs[:, :, p:, :].float()
    row_entropy = -(probs * torch.log(probs + ENTROPY_EPS)).sum(dim=-1)  # [B, H, Np]
    return (row_entropy.mean(dim=1) * inputs.value_norm[:, p:].float()).to(inputs.value_norm.dtype)


def compute_scores(score_function: str | ScoreFunction, inputs: ScoreInputs) -> torch.Tensor:
    """Score the non-protected tokens with `score_function` (a registered name or entry), normalised: `[B, Np]`."""
    entry = get_score_function(score_function) if isinstance(score_function, str) else score_function
    if not entry.check_output:
        return normalize_scores(entry.fn(inputs))
    eager = not _is_traced()
    try:
        scores = entry.fn(inputs)
    except (TypeError, AttributeError) as error:
        if eager and inputs.attention_probs is None and "NoneType" in str(error):
            raise type(error)(
                f"score function {entry.name!r} failed ({error}); inputs.attention_probs is None because "
                f"{entry.name!r} was registered without needs_full_attention=True. If it reads the full attention, "
                f"register it again with register_score_function({entry.name!r}, fn, needs_full_attention=True, "
                "override=True)"
            ) from error
        raise
    check_scores(scores, entry.name, inputs, check_values=eager)
    return normalize_scores(scores)


def _is_traced() -> bool:
    """True under torch.compile and torch.export (dynamo, also behind `torch.onnx.export(dynamo=True)`) and under
    torch.jit tracing (also behind the TorchScript-based `torch.onnx.export`)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def check_scores(scores, name: str, inputs: ScoreInputs, check_values: bool = True) -> None:
    """Raise a clear error if what the score function `name` returned is not `[B, N - P]` non-negative finite
    floating-point scores with a positive sum per sample (what the normalisation and the variance need).

    Type, dtype and shape are checked from metadata (free, traceable). The values are checked only with
    `check_values`: that costs one small reduction and a host sync, so the model does it in eager mode only.
    """
    batch, num_tokens = inputs.value_norm.shape
    expected = (batch, num_tokens - inputs.num_protected)
    contract = (
        f"score function {name!r} must return a floating-point tensor of shape [batch, tokens - protected] = "
        f"{list(expected)}: one finite, non-negative value per non-protected token, with a positive sum per sample"
    )
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{contract}; it returned {type(scores).__name__}")
    if not scores.is_floating_point():
        raise TypeError(f"{contract}; it returned dtype {scores.dtype} (convert with .float())")
    if tuple(scores.shape) != expected:
        raise ValueError(f"{contract}; it returned shape {list(scores.shape)}")
    if not check_values:
        return
    finite = torch.isfinite(scores)
    if bool(finite.all() & (scores >= 0).all() & (scores.sum(dim=-1) > 0).all()):
        return
    if not finite.all():
        problem = f"{int((~finite).sum())} non-finite values (NaN or inf)"
    elif (scores < 0).any():
        problem = f"negative values (min {float(scores.min()):.3g})"
    else:
        samples = (scores.sum(dim=-1) <= 0).nonzero().flatten().tolist()
        problem = f"all-zero scores for samples {samples}"
    raise ValueError(f"{contract}; it returned {problem}")


# --------------------------------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------------------------------


def clamp_tokens_removed(r: int, num_tokens: int, num_protected: int) -> int:
    """The spec's clamp: at most half of the non-protected tokens can go in one step."""
    return max(0, min(int(r), (num_tokens - num_protected) // 2))


def choose_pruning(scores: torch.Tensor, prune_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample policy: `True` = prune (score variance >= tau), `False` = pool. Returns `(prune [B], var [B])`."""
    variance = torch.var(scores.float(), dim=-1)  # unbiased, as torch.var's default and the authors' code
    return variance >= prune_threshold, variance


# --------------------------------------------------------------------------------------------------------------------
# Pruning (top-k by score)
# --------------------------------------------------------------------------------------------------------------------


def prune_keep_indices(scores: torch.Tensor, r: int, num_protected: int) -> torch.Tensor:
    """Indices `[B, N - r]` of the tokens that survive pruning: the protected ones first, then the `Np - r`
    highest-scoring tokens in descending score order (as the authors' code keeps them)."""
    batch, num_scored = scores.shape
    order = torch.sort(scores, dim=-1, descending=True).indices[:, : num_scored - r] + num_protected
    protected = torch.arange(num_protected, device=scores.device).expand(batch, num_protected)
    return torch.cat([protected, order], dim=1)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x[b, index[b]]` for `x` of shape `[B, N]` or `[B, N, ...]` and `index` `[B, K]` -> `[B, K, ...]`.

    Rows are picked with `index_select` on the flattened batch: it copies whole rows, where `torch.gather` with an
    index expanded over the hidden size would index every element (several times slower on CPU).
    """
    batch, num_tokens = x.shape[:2]
    offsets = torch.arange(batch, device=index.device).unsqueeze(1) * num_tokens
    rows = x.reshape(batch * num_tokens, *x.shape[2:]).index_select(0, (index + offsets).reshape(-1))
    return rows.view(*index.shape, *x.shape[2:])


def add_tokens_(out: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """In place: `out[b, index[b, i]] += rows[b, i]` (repeated indices accumulate). out `[B, K, ...]`."""
    batch, num_tokens = out.shape[:2]
    offsets = torch.arange(batch, device=index.device).unsqueeze(1) * num_tokens
    flat = out.view(batch * num_tokens, *out.shape[2:])
    flat.index_add_(0, (index + offsets).reshape(-1), rows.reshape(-1, *out.shape[2:]))
    return out


# --------------------------------------------------------------------------------------------------------------------
# Pooling (ToMe bipartite soft matching, size-weighted)
# --------------------------------------------------------------------------------------------------------------------


class MergePlan(NamedTuple):
    """Which tokens of set A (even positions) merge into which tokens of set B (odd positions).

    unmerged_a: `[B, |A| - r]` positions in A of the A-tokens that stay, ascending (original order).
    merged_a:   `[B, r]` positions in A of the A-tokens that are merged away.
    destination_b: `[B, r]` position in B that each merged A-token joins.
    num_protected: protected tokens P (CLS in A at position 0; DIST, if any, in B at position 0).
    """

    unmerged_a: torch.Tensor
    merged_a: torch.Tensor
    destination_b: torch.Tensor
    num_protected: int


def bipartite_soft_matching(metric: torch.Tensor, r: int, num_protected: int) -> MergePlan:
    """Plan the `r` merges of ToMe's bipartite soft matching on `metric` `[B, N, C]` (cosine similarity).

    CLS (index 0, in A) may not be a source; DIST (index 1, in B) may not be a destination.
    """
    # The plan is a set of indices: no gradient flows through it, so build it without an autograd graph.
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2], metric[:, 1::2]
        similarity = a @ b.transpose(-1, -2)  # [B, |A|, |B|]
        protected_in_a, protected_in_b = (num_protected + 1) // 2, num_protected // 2
        if protected_in_a:
            similarity[:, :protected_in_a, :] = -math.inf
        if protected_in_b:
            similarity[:, :, :protected_in_b] = -math.inf
        best_similarity, best_b = similarity.max(dim=-1)  # [B, |A|]
        edge_order = best_similarity.argsort(dim=-1, descending=True)
        merged_a = edge_order[:, :r]
        unmerged_a = edge_order[:, r:].sort(dim=-1).values
        destination_b = best_b.gather(1, merged_a)
    return MergePlan(unmerged_a, merged_a, destination_b, num_protected)


def merge_layout(plan: MergePlan, num_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where a merge plan puts things, as indices into the input (`[B, N]`) and output (`[B, N - r]`) sequences.

    Returns `(kept, merged, destination)`: the input positions of the output tokens in output order
    `[CLS, (DIST), unmerged A in original order, B]`, `[B, N - r]`; the input positions of the merged A-tokens,
    `[B, r]`; and the output position each of them is added into, `[B, r]`.
    """
    batch, r = plan.merged_a.shape
    device = plan.merged_a.device
    size_a, size_b = (num_tokens + 1) // 2, num_tokens // 2
    protected_in_a, protected_in_b = (plan.num_protected + 1) // 2, plan.num_protected // 2
    unmerged = 2 * plan.unmerged_a  # A-token i sits at input position 2i, B-token j at 2j + 1
    b_positions = (2 * torch.arange(size_b, device=device) + 1).expand(batch, size_b)
    kept = torch.cat(
        [
            unmerged[:, :protected_in_a],
            b_positions[:, :protected_in_b],
            unmerged[:, protected_in_a:],
            b_positions[:, protected_in_b:],
        ],
        dim=1,
    )
    # In the output, protected B-tokens follow the protected A-tokens; the others follow all unmerged A-tokens.
    destination = torch.where(
        plan.destination_b < protected_in_b,
        protected_in_a + plan.destination_b,
        (size_a - r) + plan.destination_b,
    )
    return kept, 2 * plan.merged_a, destination


def keep_and_add(
    values: torch.Tensor,
    kept: torch.Tensor,
    merged: torch.Tensor,
    destination: torch.Tensor,
    add_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """`out[b] = values[b, kept[b]]`, then `out[b, destination[b, i]] += add_weight[b] * values[b, merged[b, i]]`.

    Both policies are this one operation: pooling adds the merged rows into their destinations, pruning adds
    nothing (`add_weight` 0 for the sample). values `[B, N, ...]` -> `[B, len(kept[b]), ...]`.
    """
    added = gather_tokens(values, merged)
    if add_weight is not None:
        added = added * add_weight.view(-1, *([1] * (added.dim() - 1)))
    return add_tokens_(gather_tokens(values, kept), destination, added)


def weighted_keep_and_add(
    x: torch.Tensor,
    sizes: torch.Tensor,
    kept: torch.Tensor,
    merged: torch.Tensor,
    destination: torch.Tensor,
    add_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`keep_and_add` as a size-weighted average: `x_B <- (s_B x_B + sum s_a x_a) / (s_B + sum s_a)`,
    `s_B <- s_B + sum s_a`. x `[B, N, D]`, sizes `[B, N]`."""
    new_sizes = keep_and_add(sizes, kept, merged, destination, add_weight)
    new_x = keep_and_add(x * sizes.unsqueeze(-1), kept, merged, destination, add_weight)
    return new_x / new_sizes.unsqueeze(-1), new_sizes


def merge_weighted_average(x: torch.Tensor, sizes: torch.Tensor, plan: MergePlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted merge: `x_B <- (s_B x_B + sum s_a x_a) / (s_B + sum s_a)`, `s_B <- s_B + sum s_a`.

    x: `[B, N, D]`, sizes: `[B, N]`. Returns `([B, N - r, D], [B, N - r])`.
    """
    return weighted_keep_and_add(x, sizes, *merge_layout(plan, x.shape[1]))


# --------------------------------------------------------------------------------------------------------------------
# One compression step
# --------------------------------------------------------------------------------------------------------------------


class CompressionResult(NamedTuple):
    hidden_states: torch.Tensor  # [B, N - r, D]
    sizes: torch.Tensor  # [B, N - r]
    sources: torch.Tensor | None  # [B, N - r, N0] or None
    pruned: torch.Tensor  # [B] bool, True where the sample was pruned
    score_variance: torch.Tensor  # [B]


def compress(
    hidden_states: torch.Tensor,
    sizes: torch.Tensor,
    scores: torch.Tensor,
    metric: torch.Tensor,
    r: int,
    prune_threshold: float,
    num_protected: int,
    sources: torch.Tensor | None = None,
) -> CompressionResult:
    """Remove `r` tokens from every sample, pruning the samples whose score variance is >= `prune_threshold` and
    pooling the others, with the batch kept rectangular.

    Args:
        hidden_states: `[B, N, D]` tokens after the attention residual.
        sizes: `[B, N]` how many original patches each token stands for.
        scores: `[B, N - P]` normalised significance of the non-protected tokens.
        metric: `[B, N, C]` pooling metric (this layer's keys averaged over heads).
        r: tokens to remove (already clamped).
        prune_threshold: tau; `0` always prunes, `inf` always pools (both skip the other policy's planning).
        num_protected: P.
        sources: optional `[B, N, N0]` 0/1 map of which original tokens each token covers.
    """
    pruned, variance = choose_pruning(scores, prune_threshold)
    if r == 0:
        return CompressionResult(hidden_states, sizes, sources, pruned, variance)
    num_tokens = hidden_states.shape[1]

    # Both policies are "keep N - r rows, then add some removed rows into kept ones": pruning adds nothing. So a
    # mixed batch is one gather with per-sample row indices plus one index_add whose rows are zeroed for the pruned
    # samples: no branch per sample, no host sync, static shapes, and no work done twice. tau = 0 and tau = inf are
    # static choices, so the other policy is not even planned.
    if prune_threshold == 0:
        kept = prune_keep_indices(scores, r, num_protected)
        return CompressionResult(
            gather_tokens(hidden_states, kept),
            gather_tokens(sizes, kept),
            gather_tokens(sources, kept) if sources is not None else None,
            pruned,
            variance,
        )
    kept, merged, destination = merge_layout(bipartite_soft_matching(metric, r, num_protected), num_tokens)
    add_weight = None
    if prune_threshold != math.inf:
        kept = torch.where(pruned.unsqueeze(-1), prune_keep_indices(scores, r, num_protected), kept)
        add_weight = (~pruned).to(hidden_states.dtype)

    new_x, new_sizes = weighted_keep_and_add(hidden_states, sizes, kept, merged, destination, add_weight)
    new_sources = keep_and_add(sources, kept, merged, destination, add_weight) if sources is not None else None
    return CompressionResult(new_x, new_sizes, new_sources, pruned, variance)
