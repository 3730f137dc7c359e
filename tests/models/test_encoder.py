"""GCN-LSTM against a dense reference: dense normalised adjacency and a separate nn.LSTM."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dyngnn.models import GCNLSTM, GraphInput, gcn, normalize, structural_features
from dyngnn.models import lstm as lstm_stage
from dyngnn.models.inputs import NEVER, Adjacency, active_mask, first_activity
from dyngnn.models.lstm import DormantGroups, lstm_by_steps
from dyngnn.models.steps import ActiveSteps, GroupedSteps, take_rows

# 4 nodes, 3 snapshots: (src, dst, weight); snapshot 1 has a self-loop of weight 3
SEQ = [
    [(0, 1, 1.0), (1, 2, 2.0), (2, 0, 0.5)],
    [(0, 1, 1.0), (3, 3, 3.0), (1, 0, 1.0), (2, 3, 1.5)],
    [(3, 0, 1.0)],
]
N = 4


def dense_norm(edges):
    """D^-1/2 (A + I on nodes without a loop) D^-1/2 with A[dst, src] = w (messages flow src -> dst)."""
    a = torch.zeros(N, N, dtype=torch.float64)
    for s, d, w in edges:
        a[d, s] += w
    for i in range(N):
        if a[i, i] == 0:
            a[i, i] = 1.0
    dinv = a.sum(1).pow(-0.5)
    return dinv[:, None] * a * dinv[None, :]


def graphs(x):
    out = []
    for t, edges in enumerate(SEQ):
        ei = torch.tensor([[s for s, _, _ in edges], [d for _, d, _ in edges]])
        w = torch.tensor([w for _, _, w in edges])
        out.append(GraphInput(t, normalize(ei, w, N, torch.float64), x[t]))
    return out


@pytest.mark.parametrize("checkpoint_every", [0, 2])
def test_forward_and_gradients_match_dense_reference(checkpoint_every):
    torch.manual_seed(0)
    x = torch.randn(3, N, 2, dtype=torch.float64)
    model = GCNLSTM(
        N,
        2,
        hidden=5,
        gcn_layers=2,
        lstm_layers=2,
        activation="tanh",
        embedding_dim=3,
        checkpoint_every=checkpoint_every,
    ).double()
    ref_lstm = torch.nn.LSTM(5, 5, num_layers=2, batch_first=True).double()  # node-major, as a check
    ref_lstm.load_state_dict(model.lstm.state_dict())
    w1, b1 = (
        model.convs[0].lin.weight.detach().clone().requires_grad_(),
        model.convs[0].bias.detach().clone().requires_grad_(),
    )
    w2, b2 = (
        model.convs[1].lin.weight.detach().clone().requires_grad_(),
        model.convs[1].bias.detach().clone().requires_grad_(),
    )
    emb = model.embedding.detach().clone().requires_grad_()

    h = model(graphs(x))
    zs = []
    for t, edges in enumerate(SEQ):
        a = dense_norm(edges)
        inp = torch.cat([x[t], emb], dim=1)
        z = torch.tanh(a @ (inp @ w1.T) + b1)
        zs.append(a @ (z @ w2.T) + b2)
    ref, _ = ref_lstm(torch.stack(zs).transpose(0, 1))
    ref = ref.transpose(0, 1)  # [T, N, H]
    torch.testing.assert_close(h, ref, rtol=1e-10, atol=1e-12)

    target = torch.randn_like(h)
    ((h - target) ** 2).sum().backward()
    ((ref - target) ** 2).sum().backward()
    for mine, theirs in [
        (model.convs[0].lin.weight.grad, w1.grad),
        (model.convs[0].bias.grad, b1.grad),
        (model.convs[1].lin.weight.grad, w2.grad),
        (model.convs[1].bias.grad, b2.grad),
        (model.embedding.grad, emb.grad),
    ] + [(p.grad, q.grad) for p, q in zip(model.lstm.parameters(), ref_lstm.parameters(), strict=True)]:
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)


def test_keyed_dropout_is_reproducible_and_checkpoint_safe():
    torch.manual_seed(1)
    x = torch.randn(3, N, 2, dtype=torch.float64)
    plain = GCNLSTM(N, 2, hidden=4, dropout=0.5).double().train()
    ckpt = GCNLSTM(N, 2, hidden=4, dropout=0.5, checkpoint_every=1).double().train()
    ckpt.load_state_dict(plain.state_dict())
    a, b = plain(graphs(x), key=(7, 1)), ckpt(graphs(x), key=(7, 1))
    torch.testing.assert_close(a, b)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(plain.convs[0].lin.weight.grad, ckpt.convs[0].lin.weight.grad)
    assert not torch.allclose(plain(graphs(x), key=(7, 2)), a)  # another epoch, other masks


def test_batched_path_equals_gcnconv_per_snapshot():
    torch.manual_seed(2)
    x = torch.randn(3, N, 2, dtype=torch.float64)
    model = GCNLSTM(N, 2, hidden=6, gcn_layers=3, dropout=0.25, embedding_dim=2).double().train()
    per_snapshot = torch.stack([model.gcn(g, key=(1, 4)) for g in graphs(x)])
    batched = model.gcn_batched(graphs(x), key=(1, 4))
    torch.testing.assert_close(batched, per_snapshot, rtol=1e-12, atol=1e-14)
    weights = torch.randn_like(batched)
    (per_snapshot * weights).sum().backward()
    expected = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    (model.gcn_batched(graphs(x), key=(1, 4)) * weights).sum().backward()
    got = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(got) == len(expected) == 7  # three GCN layers' weights and biases, the embedding
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fused", [False, True])
def test_lstm_by_steps_equals_nn_lstm(fused):
    """Plain and fused (torch.compile) steps against nn.LSTM, outputs and all gradients."""
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(3, 4, num_layers=2).double()
    x = torch.randn(5, 6, 3, dtype=torch.float64, requires_grad=True)
    ref = lstm(x)[0]
    ref.pow(2).sum().backward()
    grads = [p.grad.clone() for p in lstm.parameters()] + [x.grad.clone()]
    lstm.zero_grad()
    x.grad = None
    mine = lstm_by_steps(lstm, x, fused=fused)
    mine.pow(2).sum().backward()
    torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-14)
    for a, b in zip([p.grad for p in lstm.parameters()] + [x.grad], grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    with torch.no_grad():  # evaluation: no graph kept
        torch.testing.assert_close(lstm_by_steps(lstm, x, fused=fused), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("compile", "large_step"), [("auto", 2**21), ("off", 1), ("on", 2**21), ("auto", 1)])
def test_every_cpu_lstm_path_gives_nn_lstm_numbers(monkeypatch, compile, large_step):
    """float32: oneDNN's whole sequence (small steps), torch.lstm_cell steps, fused steps."""
    monkeypatch.setattr(lstm_stage, "LARGE_STEP", large_step)
    paths, real = [], lstm_stage.lstm_by_steps

    def spy(lstm, x, fused=False, hx=None):
        paths.append(fused)
        return real(lstm, x, fused, hx)

    monkeypatch.setattr(lstm_stage, "lstm_by_steps", spy)
    torch.manual_seed(6)
    model = GCNLSTM(N, 2, hidden=4, lstm_layers=2, compile=compile)
    z = torch.randn(5, N, 4, requires_grad=True)
    ref = model.lstm(z)[0]
    (ref_grad,) = torch.autograd.grad(ref.pow(2).sum(), z)
    out = model.temporal(z)
    (grad,) = torch.autograd.grad(out.pow(2).sum(), z)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    # the path each setting takes: nn.LSTM (none by steps), plain steps, fused steps
    expected = {("auto", 2**21): [], ("off", 1): [False], ("on", 2**21): [True], ("auto", 1): [True]}
    assert paths == expected[compile, large_step]


def test_a_fused_step_that_cannot_be_built_falls_back_with_one_warning(monkeypatch, caplog):
    def no_compiler(*args):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n(details)")

    failing = lstm_stage.FusedStep(compiler=lambda fn: no_compiler)
    monkeypatch.setattr(lstm_stage, "fused_step", failing)
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(3, 4).double()
    x = torch.randn(5, 6, 3, dtype=torch.float64)
    with caplog.at_level("WARNING", logger="dyngnn"):
        out = lstm_by_steps(lstm, x, fused=True)
        again = lstm_by_steps(lstm, x, fused=True)
    torch.testing.assert_close(out, lstm(x)[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(again, out)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "model.compile: no fused LSTM kernel (InvalidCxxCompiler: No working C++ compiler found); using torch.lstm_cell"
    ]


@pytest.mark.parametrize("sorted_by_source", [True, False])
def test_sparse_and_scatter_propagation_agree(sorted_by_source):
    torch.manual_seed(4)
    n, blocks = 50, []
    for _ in range(3):  # three snapshots as one block-diagonal matrix
        src, dst = torch.randint(0, n, (300,)), torch.randint(0, n, (300,))
        if sorted_by_source:
            order = torch.argsort(src)
            src, dst = src[order], dst[order]
        keep = src != dst  # the diagonal is given apart
        src, dst = src[keep], dst[keep]
        w, loops = torch.rand(len(src), dtype=torch.float64), torch.rand(n, dtype=torch.float64)
        blocks.append(Adjacency(torch.stack([src, dst]), w, loops))
    dense = torch.block_diag(
        *[torch.diag(a.loop_weight).index_put_((a.edge_index[1], a.edge_index[0]), a.edge_weight, True) for a in blocks]
    )
    h = torch.randn(3 * n, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3 * n, 4, dtype=torch.float64)
    for sparse in (True, False):
        out = gcn.propagation(blocks, sparse=sparse)(h)
        torch.testing.assert_close(out, dense @ h)
        (grad,) = torch.autograd.grad(out, h, g)
        torch.testing.assert_close(grad, dense.T @ g)


@pytest.mark.parametrize("weighted", [True, False])
def test_normalize_gives_the_numbers_of_pyg_gcn_norm(weighted):
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    torch.manual_seed(5)
    n = 40
    keys = torch.unique(torch.randint(0, n * n, (300,)))  # unique pairs, some of them self-loops
    ei = torch.stack([keys // n, keys % n])
    assert bool((ei[0] == ei[1]).any())
    w = torch.rand(ei.shape[1], dtype=torch.float64) + 0.5 if weighted else None
    adj = normalize(ei, w, n, torch.float64)
    ref_ei, ref_w = gcn_norm(ei, w, n, add_self_loops=True, dtype=torch.float64)
    ref = torch.zeros(n, n, dtype=torch.float64).index_put_((ref_ei[1], ref_ei[0]), ref_w, accumulate=True)
    mine = torch.diag(adj.loop_weight).index_put_((adj.edge_index[1], adj.edge_index[0]), adj.edge_weight, True)
    torch.testing.assert_close(mine, ref, rtol=1e-14, atol=0)
    assert not bool((adj.edge_index[0] == adj.edge_index[1]).any())
    assert sorted(adj.edge_index.T.tolist()) == sorted(p for p in ei.T.tolist() if p[0] != p[1])


def test_signed_weights_normalise_by_absolute_degrees():
    """Signed weights (ratings -10..10): D from |A|, so the matrix keeps A's signs, every
    entry is finite, and a node of degree 0 gets zeros."""
    ei = torch.tensor([[0, 1, 2, 3, 1], [1, 2, 0, 3, 0]])
    w = torch.tensor([-3.0, 2.0, -1.0, 0.0, -4.0], dtype=torch.float64)  # node 3: a self-loop of weight 0 only
    adj = normalize(ei, w, 4, torch.float64)
    a = torch.zeros(4, 4, dtype=torch.float64)
    a[ei[1], ei[0]] = w
    a[0, 0] = a[1, 1] = a[2, 2] = 1.0  # the nodes without a self-loop get one of weight 1
    deg = a.abs().sum(1)
    dinv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    ref = dinv[:, None] * a * dinv[None, :]
    mine = torch.diag(adj.loop_weight).index_put_((adj.edge_index[1], adj.edge_index[0]), adj.edge_weight, True)
    torch.testing.assert_close(mine, ref, rtol=1e-14, atol=0)
    assert bool(torch.isfinite(mine).all()) and float(mine[3].abs().sum()) == 0.0
    assert float(mine[1, 0]) < 0 and float(mine[0, 2]) < 0


def test_structural_features():
    ei = torch.tensor([[0, 0, 1], [1, 2, 2]])
    f = structural_features(ei, 4, torch.float64)
    expected_in, expected_out = torch.tensor([0.0, 1, 2, 0]), torch.tensor([2.0, 1, 0, 0])
    torch.testing.assert_close(f, torch.log1p(torch.stack([expected_in, expected_out], 1)).double())


def test_bad_arguments_name_the_class():
    with pytest.raises(ValueError, match="GCNLSTM"):
        GCNLSTM(4, 0)
    with pytest.raises(ValueError, match=r"GCNLSTM.*activation"):
        GCNLSTM(4, 2, activation="swish")


# -- dormant nodes: one shared LSTM trajectory ------------------------------------

ARRIVAL = [3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10, 10]


def arriving(dtype, steps=12, n=30):
    """Nodes 0-23 get their first edges at ``ARRIVAL`` (a ring over the nodes arrived so
    far); node 24 has only a self-loop of weight 2 at t = 0..2 (its loop weight stays 1,
    its in/out degree inputs do not); nodes 25-29 never have an edge."""
    out = []
    for t in range(steps):
        live = [i for i, a in enumerate(ARRIVAL) if a <= t]
        src, dst = live + [24] * (t < 3), live[1:] + live[:1] + [24] * (t < 3)
        ei = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
        w = torch.tensor([1.0] * len(live) + [2.0] * (t < 3))
        out.append(GraphInput(t, normalize(ei, w, n, dtype), structural_features(ei, n, dtype)))
    return out


def random_biases(model: GCNLSTM) -> GCNLSTM:
    """GCNConv starts with zero biases, where a dormant node's GCN output is 0 and a
    misplaced dormant row could go unseen."""
    with torch.no_grad():
        for conv in model.convs:
            conv.bias.normal_()
    return model


def test_first_activity_is_the_first_edge_or_non_zero_input():
    g = arriving(torch.float64)
    assert first_activity(g).tolist() == ARRIVAL + [0] + [NEVER] * 5
    g[6].x[27, 1] = 0.5  # an input alone makes a node active
    assert first_activity(g).tolist() == [*ARRIVAL, 0, NEVER, NEVER, 6, NEVER, NEVER]
    # positions in the sequence given, whatever the snapshots' t
    later = [0] * 9 + [a - 5 for a in ARRIVAL[9:]] + [NEVER, NEVER, NEVER, 1, NEVER, NEVER]
    assert first_activity(g[5:]).tolist() == later


@given(
    st.lists(st.integers(0, 14), min_size=1, max_size=60),
    st.integers(1, 12),
    st.integers(0, 8),
    st.sampled_from([2, 3, 512]),
)
def test_a_plan_runs_every_node_from_its_group_and_marks_its_dormant_rows(arrival, steps, overhead, candidates):
    DormantGroups.OVERHEAD, DormantGroups.CANDIDATES = overhead, candidates
    try:
        plan = DormantGroups.plan(torch.tensor(arrival), steps)
    finally:
        DormantGroups.OVERHEAD, DormantGroups.CANDIDATES = 64, 512
    a = [min(x, steps) for x in arrival]
    n = len(a)
    if plan is None:
        if len(set(a) - {steps}) <= candidates:  # then no grouping costs less than WORTH; one group per arrival:
            per_arrival = sum(steps - x for x in a) + overhead * sum(steps - v for v in set(a) - {steps})
            assert per_arrival >= 0.7 * n * steps
        return
    assert plan.dormant_steps == max(a)
    seen = sorted([i for nodes in plan.nodes for i in nodes.tolist()] + plan.never.tolist())
    assert seen == list(range(n))
    assert plan.starts == sorted(set(plan.starts)) and all(a[i] == steps for i in plan.never.tolist())
    late = set()
    for s, nodes, (t, rows, flat) in zip(plan.starts, plan.nodes, plan.late, strict=True):
        nodes = nodes.tolist()
        assert s == 0 or min(a[i] for i in nodes) == s
        late |= {(int(u), nodes[r % len(nodes)]) for u, r in zip(t, rows, strict=True)}
        assert [(r // len(nodes)) + s for r in rows.tolist()] == t.tolist()
        assert flat.tolist() == [u * n + nodes[r % len(nodes)] for u, r in zip(t.tolist(), rows.tolist(), strict=True)]
    in_groups = {i for nodes in plan.nodes for i in nodes.tolist()}
    group_start = {i: s for s, nodes in zip(plan.starts, plan.nodes, strict=True) for i in nodes.tolist()}
    assert late == {(u, i) for i in in_groups for u in range(group_start[i], a[i])}
    assert plan.node_steps == sum(len(nodes) * (steps - s) for s, nodes in zip(plan.starts, plan.nodes, strict=True))
    assert plan.node_steps + overhead * sum(steps - s for s in plan.starts) < 0.7 * n * steps


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("overhead", [0, 1])
def test_dormant_nodes_share_one_trajectory_with_the_same_numbers(monkeypatch, dtype, overhead):
    """The model's forward pass (sharing) against its GCN and LSTM over every node:
    outputs and every parameter's gradient, two LSTM layers, nodes that never arrive."""
    monkeypatch.setattr(DormantGroups, "OVERHEAD", overhead)
    torch.manual_seed(2)
    g = arriving(dtype)
    plan = DormantGroups.plan(first_activity(g), len(g))
    assert plan is not None and len(plan.starts) > 2 and len(plan.never) == 5
    assert plan.node_steps < 0.6 * 30 * len(g)
    model = random_biases(GCNLSTM(30, 2, hidden=5, lstm_layers=2).to(dtype))
    w = torch.randn(len(g), 30, 5, dtype=dtype)
    shared = model(g)
    grads = torch.autograd.grad((shared * w).sum(), list(model.parameters()))
    every = model.temporal(model.encode_snapshots(g, skip_idle=False))
    ref_grads = torch.autograd.grad((every * w).sum(), list(model.parameters()))
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(shared, every, **tol)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize(("compile", "large_step"), [("off", 2**21), ("off", 1), ("on", 1)])
def test_dormant_states_start_every_cpu_lstm_path(monkeypatch, compile, large_step, grouped):
    """Groups through oneDNN's whole sequence, torch.lstm_cell steps and fused steps, from
    the dormant states, against nn.LSTM over every node (as the model runs where grouping
    saves too little)."""
    monkeypatch.setattr(lstm_stage, "LARGE_STEP", large_step)
    monkeypatch.setattr(DormantGroups, "OVERHEAD", 1)
    monkeypatch.setattr(DormantGroups, "WORTH", 0.7 if grouped else 0.0)
    torch.manual_seed(7)
    model = random_biases(GCNLSTM(30, 2, hidden=4, lstm_layers=2, compile=compile))
    arrival = torch.tensor([*ARRIVAL, 0] + [NEVER] * 5)
    dormant = (torch.arange(12).unsqueeze(1) < arrival.clamp(max=12).unsqueeze(0)).unsqueeze(2)  # [T, N, 1]
    active = torch.randn(12, 30, 4, requires_grad=True)
    params = [active, *model.parameters()]

    def grads(out):
        return torch.autograd.grad(out.pow(2).sum(), params, allow_unused=True)

    ref = model.lstm(torch.where(dormant, model.dormant_input(), active))[0]
    ref_grads = grads(ref)
    plan = DormantGroups.plan(arrival, 12)
    assert (plan is not None) == grouped
    out = model.temporal(torch.where(dormant, model.dormant_input(), active), plan)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    if grouped:  # one dormant state
        assert torch.equal(out[:3, 25], out[:3, 0]) and torch.equal(out[:, 25], out[:, 29])
    for a, b in zip(grads(out), ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_no_sharing_under_dropout_masks_or_with_an_embedding(monkeypatch):
    monkeypatch.setattr(DormantGroups, "OVERHEAD", 0)
    g = arriving(torch.float64)
    model = GCNLSTM(30, 2, hidden=5, dropout=0.3).double()
    assert not model.shares_dormant  # training: every node has its own mask
    torch.testing.assert_close(
        model(g, key=(0, 1)), model.temporal(model.encode_snapshots(g, (0, 1), skip_idle=False)), rtol=0, atol=0
    )
    model.eval()
    assert model.shares_dormant
    assert not GCNLSTM(30, 2, hidden=5, embedding_dim=2).shares_dormant


def test_nodes_dormant_throughout_take_the_lstm_of_the_dormant_input():
    torch.manual_seed(8)
    model = random_biases(GCNLSTM(6, 2, hidden=3, lstm_layers=2).double())

    def inputs():
        return model.dormant_input().expand(5, 6, 3)

    out = model.temporal(inputs(), DormantGroups.plan(torch.full((6,), NEVER), 5))
    ref = model.lstm(inputs())[0]
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    (g,) = torch.autograd.grad(out.sum(), model.convs[1].bias)
    (g_ref,) = torch.autograd.grad(ref.sum(), model.convs[1].bias)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-14)
    # the inputs still get their (zero) gradient: across ranks, a backward pass through the
    # all-to-all that gave them must run on every rank
    z = inputs().detach().requires_grad_()
    (gz,) = torch.autograd.grad(model.temporal(z, DormantGroups.plan(torch.full((6,), NEVER), 5)).sum(), z)
    assert torch.equal(gz, torch.zeros_like(z))


def test_sharing_follows_positions_in_the_sequence_whatever_the_snapshot_ids(monkeypatch):
    """Snapshots given every other one (t = 0, 2, 4, ...): dormancy is by position."""
    monkeypatch.setattr(DormantGroups, "OVERHEAD", 0)
    torch.manual_seed(9)
    g = [GraphInput(2 * i, x.adj, x.x) for i, x in enumerate(arriving(torch.float64))]
    model = random_biases(GCNLSTM(30, 2, hidden=5).double())
    torch.testing.assert_close(
        model(g), model.temporal(model.encode_snapshots(g, skip_idle=False)), rtol=1e-12, atol=1e-14
    )


# -- idle node-steps: the GCN over the active ones only -----------------------------


def sparse_snapshots(dtype, steps=9, n=40, seed=11, growing=False):
    """A few random weighted edges per snapshot, so that most node-steps are idle, and
    nodes go idle again after being active (``growing``: among nodes ``< 4 + 4 t`` only,
    so that they arrive over time); at t = 2 node 0 has a weight-0 self-loop
    (its loop weight is 0, not 1) and zero inputs, at t = 4 node 1 an input of its own."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        src, dst = torch.randint(0, min(n, 4 + 4 * t) if growing else n, (2, 6), generator=gen)
        src, dst = src[src != dst], dst[src != dst]
        w = torch.rand(len(src), generator=gen, dtype=dtype) + 0.5
        if t == 2:
            keep = (src != 0) & (dst != 0)
            src, dst, w = src[keep], dst[keep], w[keep]
            src, dst, w = (
                torch.cat([src, torch.tensor([0])]),
                torch.cat([dst, torch.tensor([0])]),
                torch.cat([w, w.new_zeros(1)]),
            )
        ei = torch.stack([src, dst])
        x = torch.cat([structural_features(ei, n, dtype), torch.zeros(n, 1, dtype=dtype)], 1)
        if t == 2:
            x[0] = 0.0  # active by its loop weight alone
        if t == 4:
            x[1, 2] = 0.7
        out.append(GraphInput(t, normalize(ei, w, n, dtype), x))
    return out


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("checkpoint_every", [0, 4])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_gcn_over_active_node_steps_gives_gcnconv_numbers(monkeypatch, sparse, checkpoint_every, dtype):
    """Idle node-steps skipped (CSR and message propagation, with activation
    checkpointing) against PyG's GCNConv over every node of every snapshot: outputs and
    every parameter's gradient."""
    monkeypatch.setattr(gcn, "uses_csr", lambda device: sparse)
    calls, real = [], gcn.active_part

    def spy(*args):
        calls.append(len(args[0]))
        return real(*args)

    monkeypatch.setattr(gcn, "active_part", spy)
    torch.manual_seed(12)
    g = sparse_snapshots(dtype)
    assert bool(active_mask(g[2])[0]) and bool(active_mask(g[4])[1])
    model = random_biases(GCNLSTM(40, 3, hidden=5, gcn_layers=3, activation="tanh", checkpoint_every=checkpoint_every))
    model = model.to(dtype)
    w = torch.randn(len(g), 40, 5, dtype=dtype)
    z = model.encode_snapshots(g)
    assert calls == ([4, 4, 1] if checkpoint_every else [9])  # the active part was taken, chunk by chunk
    grads = torch.autograd.grad((z * w).sum(), list(model.convs.parameters()))
    ref = torch.stack([model.gcn(x) for x in g])
    ref_grads = torch.autograd.grad((ref * w).sum(), list(model.convs.parameters()))
    # float32: the weight gradients sum 360 rows, in another order than GCNConv's
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(z, ref, **tol)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("sequence", ["arriving", "sparse"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_states_from_active_rows_and_groups_equal_the_lstm_over_every_node(monkeypatch, dense, sequence, dtype):
    """GCN outputs held as active rows (:class:`ActiveSteps`) into grouped LSTMs, the
    states dense or held as the groups' outputs (:class:`GroupedSteps`): rows (every one,
    and a random sample with repeats) and every parameter's gradient against the GCN and
    the LSTM over every node-step."""
    monkeypatch.setattr(DormantGroups, "OVERHEAD", 1)
    torch.manual_seed(13)
    g = arriving(dtype) if sequence == "arriving" else sparse_snapshots(dtype, steps=12, growing=True)
    n = g[0].adj.num_nodes
    model = random_biases(GCNLSTM(n, g[0].x.shape[1], hidden=5, lstm_layers=2).to(dtype))
    z = model.encode_snapshots(g, dense=False)
    assert isinstance(z, ActiveSteps) and len(z.rows) < 0.5 * n * len(g)
    plan = DormantGroups.plan(first_activity(g), len(g))
    assert len(plan.starts) > 2
    out = model.temporal(z, plan, dense=dense)
    assert isinstance(out, torch.Tensor if dense else GroupedSteps)
    if not dense:  # bit for bit the dense states: dormant node-steps hold the dormant state
        every = take_rows(out, torch.arange(len(g) * n))
        assert torch.equal(every, model.temporal(z, plan).reshape(-1, 5))
    ref = model.temporal(model.encode_snapshots(g, skip_idle=False))
    rows = torch.cat([torch.arange(len(g) * n), torch.randint(0, len(g) * n, (300,))])
    w = torch.randn(len(rows), 5, dtype=dtype)
    got, expected = take_rows(out, rows), take_rows(ref, rows)
    grads = torch.autograd.grad((got * w).sum(), list(model.parameters()))
    ref_grads = torch.autograd.grad((expected * w).sum(), list(model.parameters()))
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(got, expected, **tol)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, **tol)
