# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Pure tensor functions of token Pruning & Pooling (PPT): score, choose, prune, pool, compress.

Nothing here holds model state; the model wires these in. Shapes use

    B  batch size              N  tokens (protected + non-protected)
    H  attention heads         P  protected tokens at the front (CLS, and DIST for distilled DeiT)
    D  hidden size             Np = N - P non-protected tokens
    r  tokens removed by one compression step

Every function is per sample and free of host-device syncs: no `.item()`, no `nonzero`, no Python loop over
samples, and output shapes depend only on input shapes and `r`, so `torch.compile(fullgraph=True)` can trace them.
(Two exceptions, both in eager mode only: `check_scores` looks at the values a user-registered score function
returned, and `compress` reads the policy of a batch of one on the CPU, where reading it costs nothing, to plan only
the policy that sample uses.)
The algorithm is PPT (Wu et al., arXiv 2310.01812), as the project's docs/ALGORITHM.md summarises it, following the
released PPT/ToMe code where the paper leaves a detail open.
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
    """PPT's clamp: at most half of the non-protected tokens can go in one step."""
    return max(0, min(int(r), (num_tokens - num_protected) // 2))


def choose_pruning(scores: torch.Tensor, prune_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample policy: `True` = prune (score variance >= tau), `False` = pool. Returns `(prune [B], var [B])`."""
    variance = torch.var(scores.float(), dim=-1)  # unbiased, as torch.var's default and the authors' code
    return variance >= prune_threshold, variance


# --------------------------------------------------------------------------------------------------------------------
# Token orders: both policies as one permutation of the input tokens
# --------------------------------------------------------------------------------------------------------------------
#
# A compression step reorders each sample's N tokens so that the N - r that stay come first, in output order, and the
# r that go come last. Pruning drops the last r; pooling adds each of them into a destination among the first N - r.
# So a batch that mixes both policies is one gather with per-sample orders plus one index_add whose rows are zeroed for
# the pruned samples: static shapes, no branch per sample, no host sync, and few kernels (at batch 1 the step's cost
# is the number of small kernels it launches, not their arithmetic).


def prune_order(scores: torch.Tensor, num_protected: int) -> torch.Tensor:
    """`[B, N]`: the protected tokens, then the non-protected ones by descending score (the authors' order). The first
    `N - r` are the tokens that pruning by `r` keeps. scores `[B, N - P]`."""
    by_score = torch.sort(scores, dim=-1, descending=True).indices + num_protected
    if num_protected == 0:
        return by_score
    protected = torch.arange(num_protected, device=scores.device).expand(scores.shape[0], num_protected)
    return torch.cat([protected, by_score], dim=1)


def prune_keep_indices(scores: torch.Tensor, r: int, num_protected: int) -> torch.Tensor:
    """Indices `[B, N - r]` of the tokens that survive pruning: the protected ones first, then the `Np - r`
    highest-scoring tokens in descending score order (as the authors' code keeps them)."""
    return prune_order(scores, num_protected)[:, : scores.shape[1] + num_protected - r]


def flat_token_index(index: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Per-sample token indices `[B, K]` as indices `[B * K]` into the `[B * N, ...]` rows of the batch."""
    if index.shape[0] == 1:  # no offsets to add (a static shape: traced graphs with a dynamic batch take the other path)
        return index.reshape(-1)
    offsets = torch.arange(0, index.shape[0] * num_tokens, num_tokens, device=index.device)
    return (index + offsets.unsqueeze(1)).view(-1)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x[b, index[b]]` for `x` of shape `[B, N]` or `[B, N, ...]` and `index` `[B, K]` -> `[B, K, ...]`.

    Rows are picked with `index_select` on the flattened batch: it copies whole rows, where `torch.gather` with an
    index expanded over the hidden size would index every element (several times slower on CPU).
    """
    batch, num_tokens = x.shape[:2]
    rows = x.reshape(batch * num_tokens, *x.shape[2:]).index_select(0, flat_token_index(index, num_tokens))
    return rows.view(*index.shape, *x.shape[2:])


# --------------------------------------------------------------------------------------------------------------------
# Pooling (ToMe bipartite soft matching, size-weighted)
# --------------------------------------------------------------------------------------------------------------------


class MergePlan(NamedTuple):
    """The `r` merges of ToMe's bipartite soft matching, as token positions.

    order: `[B, N]` a permutation of the input positions, `[CLS, (DIST), unmerged A-tokens in original order,
        B-tokens, merged A-tokens]`: the first `N - r` are the output tokens in output order, the last `r` the
        A-tokens merged away, most similar first.
    destination: `[B, r]` the output position (in `[0, N - r)`) each merged A-token is added into.
    num_protected: protected tokens P (CLS in A at position 0; DIST, if any, in B at position 0).

    Set A holds the even input positions, set B the odd ones; `merged_a`, `destination_b` and `unmerged_a` give the
    plan in ToMe's terms, as positions within A and B.
    """

    order: torch.Tensor
    destination: torch.Tensor
    num_protected: int

    @property
    def num_merged(self) -> int:
        return self.destination.shape[1]

    @property
    def merged_a(self) -> torch.Tensor:
        """`[B, r]` positions in A of the merged A-tokens, most similar first."""
        return self.order[:, self.order.shape[1] - self.num_merged :] // 2

    @property
    def destination_b(self) -> torch.Tensor:
        """`[B, r]` position in B that each merged A-token joins."""
        return self.order.gather(1, self.destination) // 2

    @property
    def unmerged_a(self) -> torch.Tensor:
        """`[B, |A| - r]` positions in A of the A-tokens that stay, ascending (CLS first)."""
        num_tokens, protected_in_a = self.order.shape[1], (self.num_protected + 1) // 2
        stay = (num_tokens + 1) // 2 - protected_in_a - self.num_merged
        return torch.cat([self.order[:, :protected_in_a], self.order[:, self.num_protected : self.num_protected + stay]], 1) // 2


def bipartite_soft_matching(metric: torch.Tensor, r: int, num_protected: int) -> MergePlan:
    """Plan the `r` merges of ToMe's bipartite soft matching on `metric` `[B, N, C]` (cosine similarity).

    CLS (index 0, in A) may not be a source; DIST (index 1, in B) may not be a destination.
    """
    batch, num_tokens = metric.shape[:2]
    protected_in_a, protected_in_b = (num_protected + 1) // 2, num_protected // 2
    # The plan is a set of indices: no gradient flows through it, so build it without an autograd graph.
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        # The protected tokens are left out of the matching (rather than given a -inf similarity): they can be
        # neither source nor destination, and the product is smaller.
        a = metric[:, 2 * protected_in_a :: 2]
        b = metric[:, 2 * protected_in_b + 1 :: 2]
        best_similarity, best_b = (a @ b.transpose(-1, -2)).max(dim=-1)  # [B, |A| - protected_in_a]
        edge_order = best_similarity.argsort(dim=-1, descending=True)
        a_positions = edge_order * 2 + 2 * protected_in_a  # input positions of the A-tokens, most similar first
        b_positions = torch.arange(2 * protected_in_b + 1, num_tokens, 2, device=metric.device)
        protected = torch.arange(num_protected, device=metric.device)
        order = torch.cat(
            [
                protected.expand(batch, num_protected),
                a_positions[:, r:].sort(dim=-1).values,  # unmerged A-tokens, in their original order
                b_positions.expand(batch, b_positions.shape[0]),
                a_positions[:, :r],
            ],
            dim=1,
        )
        # In the output, B-token j (counted after the protected ones) follows the protected and the unmerged A-tokens.
        destination = best_b.gather(1, edge_order[:, :r]) + (num_protected + a.shape[1] - r)
    return MergePlan(order, destination, num_protected)


def keep_and_add(
    values: torch.Tensor, order: torch.Tensor, destination: torch.Tensor, drop_added: torch.Tensor | None = None
) -> torch.Tensor:
    """Keep the first `K = N - r` tokens of `order` and add each of the last `r` into its `destination`:
    `out[b] = values[b, order[b, :K]]`, then `out[b, destination[b, i]] += values[b, order[b, K + i]]`.

    Both policies are this one operation: for the samples where `drop_added` (`[B]` bool) is True the last `r`
    tokens are dropped instead (pruning). values `[B, N, ...]` -> `[B, K, ...]`.
    """
    batch, num_tokens = values.shape[:2]
    num_kept = order.shape[1] - destination.shape[1]
    feature_shape = values.shape[2:]
    # One gather in the new order; the kept tokens then receive the added ones in place, in the same buffer.
    rows = values.reshape(batch * num_tokens, *feature_shape).index_select(0, flat_token_index(order, num_tokens))
    reordered = rows.view(batch, num_tokens, *feature_shape)
    added = reordered[:, num_kept:]
    if drop_added is None:
        added = added.clone()  # index_add_ may not read from the buffer it writes
    else:
        added = torch.where(drop_added.view(-1, *([1] * (added.dim() - 1))), 0.0, added)
    rows.index_add_(0, flat_token_index(destination, num_tokens), added.reshape(-1, *feature_shape))
    return reordered[:, :num_kept]


def weighted_keep_and_add(
    x: torch.Tensor,
    sizes: torch.Tensor,
    order: torch.Tensor,
    destination: torch.Tensor,
    drop_added: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`keep_and_add` as a size-weighted average: `x_B <- (s_B x_B + sum s_a x_a) / (s_B + sum s_a)`,
    `s_B <- s_B + sum s_a`. x `[B, N, D]`, sizes `[B, N]`."""
    hidden_size = x.shape[-1]
    # The sizes ride along as one more column, so that one gather and one index_add move tokens and sizes together.
    weighted = torch.cat([x * sizes.unsqueeze(-1), sizes.unsqueeze(-1)], dim=-1)
    out = keep_and_add(weighted, order, destination, drop_added)
    # Sizes are counts: detached, as they were before sharing a buffer with x (a size tensor that requires grad would
    # also make the next layers' attention mask require grad, which rules out SDPA's flash kernel when training).
    new_sizes = out[..., hidden_size].detach().contiguous()
    return out[..., :hidden_size] / out[..., hidden_size:], new_sizes


def weighted_keep(x: torch.Tensor, sizes: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`weighted_keep_and_add` with nothing added: the tokens `kept` `[B, K]`, as `(s x) / s`, which is what the
    mixed-policy path computes for a pruned sample (so a sample's output does not depend on the path taken)."""
    hidden_size = x.shape[-1]
    out = gather_tokens(torch.cat([x * sizes.unsqueeze(-1), sizes.unsqueeze(-1)], dim=-1), kept)
    return out[..., :hidden_size] / out[..., hidden_size:], out[..., hidden_size].detach().contiguous()


def _policy_is_free_to_read(pruned: torch.Tensor) -> bool:
    """Eager mode on the CPU: `bool(pruned[0])` neither breaks a traced graph nor waits for a device."""
    return pruned.device.type == "cpu" and not _is_traced()


def merge_weighted_average(x: torch.Tensor, sizes: torch.Tensor, plan: MergePlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted merge: `x_B <- (s_B x_B + sum s_a x_a) / (s_B + sum s_a)`, `s_B <- s_B + sum s_a`.

    x: `[B, N, D]`, sizes: `[B, N]`. Returns `([B, N - r, D], [B, N - r])`.
    """
    return weighted_keep_and_add(x, sizes, plan.order, plan.destination)


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
    batch, num_tokens = hidden_states.shape[:2]

    if batch == 1 and 0 < prune_threshold < math.inf and _policy_is_free_to_read(pruned):
        # Serving at batch 1 on the CPU: one sample has one policy, and reading it costs no device wait, so only that
        # policy is planned (about half the step's kernels). The outputs are those of the batch path below.
        if bool(pruned[0]):
            order = prune_order(scores, num_protected)[:, : num_tokens - r]
            new_x, new_sizes = weighted_keep(hidden_states, sizes, order)
            new_sources = gather_tokens(sources, order) if sources is not None else None
            return CompressionResult(new_x, new_sizes, new_sources, pruned, variance)
        prune_threshold = math.inf
    # tau = 0 and tau = inf are static choices, so the other policy is not even planned.
    if prune_threshold == 0:
        kept = flat_token_index(prune_keep_indices(scores, r, num_protected), num_tokens)

        def keep(values):
            rows = values.reshape(batch * num_tokens, *values.shape[2:]).index_select(0, kept)
            return rows.view(batch, num_tokens - r, *values.shape[2:])

        return CompressionResult(
            keep(hidden_states), keep(sizes), keep(sources) if sources is not None else None, pruned, variance
        )
    plan = bipartite_soft_matching(metric, r, num_protected)
    order, drop_added = plan.order, None
    if prune_threshold != math.inf:
        order = torch.where(pruned.unsqueeze(-1), prune_order(scores, num_protected), order)
        drop_added = pruned

    new_x, new_sizes = weighted_keep_and_add(hidden_states, sizes, order, plan.destination, drop_added)
    new_sources = keep_and_add(sources, order, plan.destination, drop_added) if sources is not None else None
    return CompressionResult(new_x, new_sizes, new_sources, pruned, variance)
