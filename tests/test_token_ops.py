"""Hand-checked small cases for the pure token functions (scores, policy, pruning, pooling, one compression step).

Expected values are written out by hand or computed with explicit Python loops over tokens, never by calling the
function under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from modeling_ppt_deit.token_ops import (
    ScoreInputs,
    bipartite_soft_matching,
    choose_pruning,
    clamp_tokens_removed,
    compress,
    compute_scores,
    merge_weighted_average,
    normalize_scores,
    prune_keep_indices,
)


# --------------------------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------------------------

# B=1, H=2, N=5: the CLS query rows of both heads and the value norms, small numbers so the results are exact.
CLS_ROWS = torch.tensor([[[0.2, 0.1, 0.3, 0.4, 0.0], [0.4, 0.3, 0.1, 0.0, 0.2]]])
VALUE_NORM = torch.tensor([[1.0, 2.0, 1.0, 0.5, 3.0]])


def test_ats_by_hand():
    # sum_h A[CLS, t] * ||V_t|| for t = 1..4: (0.4)*2, (0.4)*1, (0.4)*0.5, (0.2)*3 = 0.8, 0.4, 0.2, 0.6 -> / 2.0
    scores = compute_scores("ats", ScoreInputs(CLS_ROWS, VALUE_NORM, 1))
    torch.testing.assert_close(scores, torch.tensor([[0.4, 0.2, 0.1, 0.3]]))


def test_cls_attention_by_hand():
    # mean_h A[CLS, t] for t = 1..4: 0.2, 0.2, 0.2, 0.1 -> / 0.7
    scores = compute_scores("cls_attention", ScoreInputs(CLS_ROWS, VALUE_NORM, 1))
    torch.testing.assert_close(scores, torch.tensor([[2 / 7, 2 / 7, 2 / 7, 1 / 7]]))


def test_ats_with_distillation_token_skips_both_protected():
    # P = 2: tokens 2..4 only: 0.4, 0.2, 0.6 -> / 1.2
    scores = compute_scores("ats", ScoreInputs(CLS_ROWS, VALUE_NORM, 2))
    torch.testing.assert_close(scores, torch.tensor([[1 / 3, 1 / 6, 1 / 2]]))


def _random_attention(batch=2, heads=2, tokens=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(batch, heads, tokens, tokens, generator=g), dim=-1)
    value_norm = torch.rand(batch, tokens, generator=g) + 0.5
    return probs, value_norm


@pytest.mark.parametrize("num_protected", [1, 2])
@pytest.mark.parametrize("name", ["ats", "cls_attention", "entropy"])
def test_scores_match_explicit_loops(name, num_protected):
    probs, value_norm = _random_attention()
    B, H, N, _ = probs.shape
    expected = torch.zeros(B, N - num_protected)
    for b in range(B):
        for t in range(num_protected, N):
            if name == "ats":
                value = sum(probs[b, h, 0, t].item() for h in range(H)) * value_norm[b, t].item()
            elif name == "cls_attention":
                value = sum(probs[b, h, 0, t].item() for h in range(H)) / H
            else:
                entropies = []
                for h in range(H):
                    row = [probs[b, h, t, j].item() for j in range(N)]
                    entropies.append(-sum(p * math.log(p + 1e-12) for p in row))
                value = sum(entropies) / H * value_norm[b, t].item()
            expected[b, t - num_protected] = value
        expected[b] /= expected[b].sum()
    inputs = ScoreInputs(probs[:, :, 0], value_norm, num_protected, probs)
    scores = compute_scores(name, inputs)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores.sum(-1), torch.ones(B))


def test_entropy_uses_rows_of_the_scored_tokens_not_cls_row():
    # Token 1 attends uniformly (max entropy), token 2 one-hot (zero entropy): with equal value norms token 2 must
    # get (almost) zero score whatever the CLS row says.
    N = 3
    probs = torch.zeros(1, 1, N, N)
    probs[0, 0, 0] = torch.tensor([0.0, 0.0, 1.0])  # CLS looks only at token 2
    probs[0, 0, 1] = 1 / N
    probs[0, 0, 2] = torch.tensor([0.0, 0.0, 1.0])
    scores = compute_scores("entropy", ScoreInputs(probs[:, :, 0], torch.ones(1, N), 1, probs))
    torch.testing.assert_close(scores, torch.tensor([[1.0, 0.0]]), atol=1e-6, rtol=0)


def test_normalize_scores():
    torch.testing.assert_close(normalize_scores(torch.tensor([[1.0, 3.0], [2.0, 2.0]])),
                               torch.tensor([[0.25, 0.75], [0.5, 0.5]]))


# --------------------------------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------------------------------


def test_choose_pruning_unbiased_variance_and_threshold_is_inclusive():
    scores = torch.tensor([[0.4, 0.2, 0.1, 0.3], [0.25, 0.25, 0.25, 0.25]])
    prune, variance = choose_pruning(scores, 0.01)
    # deviations from 0.25: .15 -.05 -.15 .05 -> squares sum 0.05, / (4 - 1)
    torch.testing.assert_close(variance, torch.tensor([0.05 / 3, 0.0]))
    assert prune.dtype == torch.bool and prune.tolist() == [True, False]
    assert choose_pruning(scores, float(variance[0]))[0].tolist() == [True, False]  # S >= tau prunes
    assert choose_pruning(scores, 0.0)[0].tolist() == [True, True]  # tau = 0: even zero variance prunes
    assert choose_pruning(scores, math.inf)[0].tolist() == [False, False]


@pytest.mark.parametrize(
    "r, tokens, protected, expected",
    [(50, 197, 1, 50), (200, 197, 1, 98), (50, 65, 1, 32), (50, 66, 2, 32), (50, 65, 2, 31), (3, 2, 1, 0),
     (-4, 65, 1, 0), (8, 17, 1, 8), (9, 17, 1, 8)],
)
def test_clamp_tokens_removed(r, tokens, protected, expected):
    assert clamp_tokens_removed(r, tokens, protected) == expected  # floor((N - P) / 2)


# --------------------------------------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------------------------------------


def test_prune_keep_indices_by_hand():
    scores = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.3, 0.1, 0.2, 0.4]])
    # P = 1: token t has score index t - 1; keep CLS then the 3 best, in descending score
    assert prune_keep_indices(scores, 1, 1).tolist() == [[0, 2, 4, 3], [0, 4, 1, 3]]
    # P = 2: token t has score index t - 2
    assert prune_keep_indices(scores, 2, 2).tolist() == [[0, 1, 3, 5], [0, 1, 5, 2]]


def test_compress_prune_drops_tokens_with_their_sizes():
    x = torch.arange(5, dtype=torch.float32).view(1, 5, 1).expand(1, 5, 3).clone()
    sizes = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    scores = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    out = compress(x, sizes, scores, torch.randn(1, 5, 4), r=1, prune_threshold=0.0, num_protected=1)
    assert out.pruned.tolist() == [True]
    assert out.hidden_states[0, :, 0].tolist() == [0, 2, 4, 3]
    assert out.sizes.tolist() == [[1, 3, 5, 4]]  # sizes travel with their tokens, the dropped one's size is gone


# --------------------------------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------------------------------


def _unit(angles_deg):
    angles = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([angles.cos(), angles.sin()], dim=-1).float().unsqueeze(0)  # [1, N, 2]


def test_pooling_by_hand_cls_only():
    # A = {0, 2, 4, 6}, B = {1, 3, 5}. CLS (0) is identical to 1 but may not be a source. 2 and 4 both match 3
    # (cos 1 and cos 5deg), 6 matches 5 (cos 60deg).
    metric = _unit([0, 0, 90, 90, 95, 180, 240])
    sizes = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]])
    x = torch.randn(1, 7, 3)
    plan = bipartite_soft_matching(metric, 2, 1)
    pooled, new_sizes = merge_weighted_average(x, sizes, plan)
    # output order: CLS, unmerged A in original order (6), then B (1, 3, 5)
    assert new_sizes.tolist() == [[1, 7, 2, 12, 6]]
    expected = torch.stack([x[0, 0], x[0, 6], x[0, 1], (4 * x[0, 3] + 3 * x[0, 2] + 5 * x[0, 4]) / 12, x[0, 5]])
    torch.testing.assert_close(pooled[0], expected)

    plan = bipartite_soft_matching(metric, 3, 1)
    pooled, new_sizes = merge_weighted_average(x, sizes, plan)
    assert new_sizes.tolist() == [[1, 2, 12, 13]]
    torch.testing.assert_close(pooled[0, 3], (6 * x[0, 5] + 7 * x[0, 6]) / 13)
    torch.testing.assert_close(pooled[0, 0], x[0, 0])  # CLS untouched even though it is the closest pair


def test_pooling_by_hand_with_distillation_token():
    # P = 2: DIST (1) is in B but may not be a destination, although token 2 is identical to it.
    metric = _unit([0, 90, 90, 200, 190, 300, 0])
    sizes = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]])
    x = torch.randn(1, 7, 3)
    plan = bipartite_soft_matching(metric, 2, 2)
    pooled, new_sizes = merge_weighted_average(x, sizes, plan)
    # 4 -> 3 (cos 10deg), 6 -> 5 (cos 60deg); 2 stays (its best allowed partner is 3 at cos 110deg)
    assert new_sizes.tolist() == [[1, 2, 3, 9, 13]]
    expected = torch.stack([x[0, 0], x[0, 1], x[0, 2], (4 * x[0, 3] + 5 * x[0, 4]) / 9, (6 * x[0, 5] + 7 * x[0, 6]) / 13])
    torch.testing.assert_close(pooled[0], expected)


def _pool_by_loops(x, sizes, metric, r, num_protected):
    """ToMe bipartite matching written with Python loops over tokens. Returns (x_out [N-r, D], sizes_out [N-r],
    groups: list of lists of original token indices per output token)."""
    N = x.shape[0]
    unit = metric / metric.norm(dim=-1, keepdim=True)
    a_tokens = list(range(0, N, 2))
    b_tokens = list(range(1, N, 2))
    allowed_a = [t for t in a_tokens if t >= num_protected]  # CLS (and nothing else in A) is protected
    allowed_b = [t for t in b_tokens if t >= num_protected]  # DIST (index 1) only when P = 2
    best = {}
    for a in allowed_a:
        sims = [(float(unit[a] @ unit[b]), b) for b in allowed_b]
        best_sim = max(s for s, _ in sims)
        best_b = next(b for s, b in sims if s == best_sim)  # first maximum, as max() returns
        best[a] = (best_sim, best_b)
    merged = sorted(allowed_a, key=lambda a: -best[a][0])[:r]
    groups = {b: [b] for b in b_tokens}
    for a in merged:
        groups[best[a][1]].append(a)
    protected_a = [t for t in a_tokens if t < num_protected]
    protected_b = [t for t in b_tokens if t < num_protected]
    order = ([[t] for t in protected_a] + [groups[t] for t in protected_b]
             + [[a] for a in a_tokens if a >= num_protected and a not in merged]
             + [groups[t] for t in b_tokens if t >= num_protected])
    out_x = torch.stack([sum(sizes[t] * x[t] for t in g) / sum(sizes[t] for t in g) for g in order])
    out_s = torch.stack([sum(sizes[t] for t in g) for g in order])
    return out_x, out_s, order


@pytest.mark.parametrize("num_protected", [1, 2])
@pytest.mark.parametrize("tokens, r", [(9, 1), (9, 4), (12, 3), (17, 8), (16, 7)])
def test_pooling_matches_loops(tokens, r, num_protected):
    r = min(r, (tokens - num_protected) // 2)
    g = torch.Generator().manual_seed(tokens * 10 + r)
    B, D = 3, 5
    x = torch.randn(B, tokens, D, generator=g)
    sizes = torch.randint(1, 5, (B, tokens), generator=g).float()
    metric = torch.randn(B, tokens, 4, generator=g)
    pooled, new_sizes = merge_weighted_average(x, sizes, bipartite_soft_matching(metric, r, num_protected))
    assert pooled.shape == (B, tokens - r, D) and new_sizes.shape == (B, tokens - r)
    for b in range(B):
        ex, es, _ = _pool_by_loops(x[b], sizes[b], metric[b], r, num_protected)
        torch.testing.assert_close(pooled[b], ex, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(new_sizes[b], es)
        assert float(new_sizes[b].sum()) == float(sizes[b].sum())  # pooling loses no patch


def test_several_a_tokens_into_one_b_token_and_only_b_receives():
    # all A tokens closest to token 1, so every merge lands there
    metric = _unit([0, 10, 11, 100, 12, 200, 13, 300, 14])
    plan = bipartite_soft_matching(metric, 4, 1)
    sizes = torch.ones(1, 9)
    _, new_sizes = merge_weighted_average(torch.randn(1, 9, 2), sizes, plan)
    # CLS, then B = 1 (absorbs 2, 4, 6, 8), 3, 5, 7
    assert new_sizes.tolist() == [[1, 5, 1, 1, 1]]
    assert sorted(plan.merged_a[0].tolist()) == [1, 2, 3, 4]  # positions within A: tokens 2, 4, 6, 8
    assert plan.destination_b[0].tolist() == [0, 0, 0, 0]


# --------------------------------------------------------------------------------------------------------------------
# One compression step: per-sample policy, sources
# --------------------------------------------------------------------------------------------------------------------


def _mixed_batch(N=11, D=6, P=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, N, D, generator=g)
    sizes = torch.randint(1, 4, (2, N), generator=g).float()
    sizes[:, :P] = 1
    metric = torch.randn(2, N, 4, generator=g)
    peaked = torch.tensor([0.5, 0.2, 0.1, 0.05] + [0.15 / (N - P - 4)] * (N - P - 4))
    flat = torch.full((N - P,), 1.0 / (N - P)) + 1e-4 * torch.randn(N - P, generator=g)
    scores = normalize_scores(torch.stack([peaked[torch.randperm(N - P, generator=g)], flat]))
    return x, sizes, metric, scores


@pytest.mark.parametrize("num_protected", [1, 2])
def test_mixed_batch_each_sample_follows_its_own_policy(num_protected):
    N, r = 11, 3
    x, sizes, metric, scores = _mixed_batch(N=N, P=num_protected)
    variance = scores.var(dim=-1)
    assert variance[0] > 100 * variance[1]
    tau = float((variance[0] * variance[1]).sqrt())
    sources = torch.eye(N).expand(2, N, N)
    out = compress(x, sizes, scores, metric, r, tau, num_protected, sources)
    assert out.pruned.tolist() == [True, False]
    torch.testing.assert_close(out.score_variance, variance)

    alone_prune = compress(x[:1], sizes[:1], scores[:1], metric[:1], r, 0.0, num_protected, sources[:1])
    alone_pool = compress(x[1:], sizes[1:], scores[1:], metric[1:], r, math.inf, num_protected, sources[1:])
    for field in ("hidden_states", "sizes", "sources"):
        torch.testing.assert_close(getattr(out, field)[:1], getattr(alone_prune, field))
        torch.testing.assert_close(getattr(out, field)[1:], getattr(alone_pool, field))

    # sample 0, pruned: protected first, then by descending score, sizes kept
    keep = list(range(num_protected)) + [num_protected + int(i) for i in scores[0].argsort(descending=True)[: N - num_protected - r]]
    torch.testing.assert_close(out.hidden_states[0], x[0, keep])
    torch.testing.assert_close(out.sizes[0], sizes[0, keep])
    # sample 1, pooled: the loop implementation
    ex, es, groups = _pool_by_loops(x[1], sizes[1], metric[1], r, num_protected)
    torch.testing.assert_close(out.hidden_states[1], ex, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.sizes[1], es)
    expected_sources = torch.zeros(N - r, N)
    for row, group in enumerate(groups):
        expected_sources[row, group] = 1
    torch.testing.assert_close(out.sources[1], expected_sources)


@pytest.mark.parametrize("num_protected", [1, 2])
def test_batch_of_one_plans_only_its_policy_with_the_batch_paths_outputs(num_protected, monkeypatch):
    """At batch 1 on the CPU in eager mode, `compress` reads the sample's policy and plans only that one (a pruned
    sample runs no matching, a pooled one no score sort); each sample alone gives bit for bit its row of the mixed
    batch (sizes > 1, as after an earlier pooling, so the size weighting is exercised), sources included."""
    from modeling_ppt_deit import token_ops

    N, r = 11, 3
    x, sizes, metric, scores = _mixed_batch(N=N, P=num_protected)
    variance = scores.var(dim=-1)
    tau = float((variance[0] * variance[1]).sqrt())
    sources = torch.eye(N).expand(2, N, N)
    batch = compress(x, sizes, scores, metric, r, tau, num_protected, sources)
    assert batch.pruned.tolist() == [True, False]

    def refuse(name):
        def fail(*args, **kwargs):
            raise AssertionError(f"{name} ran for a sample of the other policy")
        return fail

    for sample, unused in ((0, "bipartite_soft_matching"), (1, "prune_order")):
        with monkeypatch.context() as patch:
            patch.setattr(token_ops, unused, refuse(unused))
            alone = compress(x[sample : sample + 1], sizes[sample : sample + 1], scores[sample : sample + 1],
                             metric[sample : sample + 1], r, tau, num_protected, sources[sample : sample + 1])
        assert alone.pruned.tolist() == [sample == 0]
        for field in ("hidden_states", "sizes", "sources", "score_variance"):
            assert torch.equal(getattr(alone, field), getattr(batch, field)[sample : sample + 1]), (sample, field)


def test_threshold_zero_always_prunes_and_inf_always_pools():
    x, sizes, metric, scores = _mixed_batch()
    scores = torch.full_like(scores, 1.0 / scores.shape[1])  # zero variance
    ones = torch.ones_like(sizes)
    out = compress(x, ones, scores, metric, 3, 0.0, 1)
    assert out.pruned.tolist() == [True, True]
    assert out.sizes.eq(1).all()  # pruning never grows a token
    scores = normalize_scores(torch.rand(2, scores.shape[1]) ** 8)  # large variance
    out = compress(x, ones, scores, metric, 3, math.inf, 1)
    assert out.pruned.tolist() == [False, False]
    assert out.sizes.sum(-1).tolist() == [11.0, 11.0] and out.sizes.max() > 1


@pytest.mark.parametrize("tau", [0.0, math.inf, "mixed"])
def test_sources_consistent_with_sizes(tau):
    N, r = 13, 5
    x, sizes, metric, scores = _mixed_batch(N=N)
    if tau == "mixed":
        variance = scores.var(-1)
        tau = float((variance[0] * variance[1]).sqrt())
    sources = torch.eye(N).expand(2, N, N)
    out = compress(x, torch.ones(2, N), scores, metric, r, tau, 1, sources)
    torch.testing.assert_close(out.sources.sum(-1), out.sizes)  # row sums == sizes
    assert out.sources.sum(1).le(1).all()  # every input token is in at most one output token
    for b in range(2):
        covered = out.sources[b].sum(0)
        if out.pruned[b]:
            dropped = 1 + scores[b].argsort(descending=True)[N - 1 - r:]
            assert covered[dropped].eq(0).all() and covered.sum() == N - r
        else:
            assert covered.eq(1).all()  # pooling covers every input token exactly once


@pytest.mark.parametrize("tau", [0.0, math.inf, "mixed"])
def test_sizes_carry_no_gradient(tau):
    """Sizes are counts: when the tokens require grad (training), the sizes that leave a step must not, or the next
    layers' log-size attention mask would require grad too (and SDPA would leave its flash kernel for that)."""
    x, sizes, metric, scores = _mixed_batch()
    if tau == "mixed":
        variance = scores.var(-1)
        tau = float((variance[0] * variance[1]).sqrt())
    x.requires_grad_(True)
    out = compress(x, sizes, scores, metric, 3, tau, 1)
    assert out.hidden_states.requires_grad and not out.sizes.requires_grad
    assert out.sizes.is_contiguous()
    out.hidden_states.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
