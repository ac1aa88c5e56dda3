"""AttnLRP and CP-LRP on attention (engine/attention.py) against LXT's explicit rules."""
import pytest
import torch
from torch import nn

import lrp_widgets
from lrp_widgets.engine.errors import UnsupportedConfigurationError, UnsupportedModuleError

try:  # LXT's explicit rules (installed with --no-deps by .ci/run); only the reference tests need it
    from tests import attention_reference as reference
except ImportError:
    reference = None
needs_lxt = pytest.mark.skipif(reference is None, reason="lxt is not installed (pip install --no-deps lxt==2.1)")
EPS = 1e-12


class Encoder(nn.Module):
    """Encoder layers, then a Linear on the first token (as a class token)."""

    def __init__(self, d=8, heads=2, layers=2, classes=3, norm_first=False, activation="gelu", seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, heads, dim_feedforward=16, dropout=0.0, activation=activation,
                                       batch_first=True, norm_first=norm_first) for _ in range(layers))
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x[:, 0])


def _model(**kwargs):
    return Encoder(**kwargs).double().eval()


@needs_lxt
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_attnlrp_equals_lxt_reference(norm_first, activation):
    model = _model(norm_first=norm_first, activation=activation)
    x = torch.randn(4, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 2, 1])
    ours = lrp_widgets.explain(model, x, target=target, composite=lrp_widgets.composites.attnlrp(EPS))
    expected, output = reference.relevance(model, x, target, EPS)
    torch.testing.assert_close(ours.output, output, rtol=0, atol=1e-10)
    torch.testing.assert_close(ours.relevance, expected, rtol=0, atol=1e-8)
    assert ours.relevance.abs().sum() > 0.1


def test_attnlrp_by_name_and_cp_lrp_differs():
    model = _model()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    by_name = lrp_widgets.explain(model, x, composite="attnlrp")
    cp = lrp_widgets.explain(model, x, composite="cp_lrp")
    assert by_name.relevance.shape == cp.relevance.shape == x.shape
    assert not torch.allclose(by_name.relevance, cp.relevance)


def _cp_reference(model, x, target):
    """CP-LRP by hand: the LXT reference with the attention weights detached and all relevance to v."""
    from lxt.explicit import functional as lf

    original = reference.attention

    def attention(mha, h, epsilon):
        E, heads, d = mha.embed_dim, mha.num_heads, mha.head_dim
        w, b = mha.in_proj_weight, mha.in_proj_bias
        q = h.detach() @ (w[:E] * d ** -0.5).T + b[:E] * d ** -0.5
        k = h.detach() @ w[E:2 * E].T + b[E:2 * E]
        v = lf.linear_epsilon(h, w[2 * E:], b[2 * E:], epsilon)
        n, t = h.shape[:2]
        q, k, v = (a.reshape(n, t, heads, d).transpose(1, 2) for a in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2), -1).detach()
        # epsilon rule on the linear map v -> weights @ v
        out = _LinearInV.apply(weights, v, epsilon).transpose(1, 2).reshape(n, t, E)
        return lf.linear_epsilon(out, mha.out_proj.weight, mha.out_proj.bias, epsilon)

    reference.attention = attention
    try:
        return reference.relevance(model, x, target, EPS)[0]
    finally:
        reference.attention = original


class _LinearInV(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights, v, epsilon):
        z = weights @ v
        ctx.save_for_backward(weights, v, z)
        return z

    @staticmethod
    def backward(ctx, R):
        weights, v, z = ctx.saved_tensors
        return None, v * (weights.transpose(-1, -2) @ (R / (z + 1e-12))), None


@needs_lxt
def test_cp_lrp_equals_attention_held_constant():
    model = _model()
    x = torch.randn(3, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([2, 0, 1])
    ours = lrp_widgets.explain(model, x, target=target, composite=lrp_widgets.composites.cp_lrp(EPS))
    torch.testing.assert_close(ours.relevance, _cp_reference(model, x, target), rtol=0, atol=1e-8)


def test_conservation_without_biases_up_to_the_softmax():
    """Every linear map here is bias-free, so relevance is kept except at the softmax (its Taylor term)."""
    model = _model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name:
                p.zero_()
    x = torch.randn(4, 5, 8, dtype=torch.float64)
    # CP-LRP sends no relevance through the softmax: conserved exactly apart from the LayerNorm bias (0 here)
    cp = lrp_widgets.explain(model, x, composite=lrp_widgets.composites.cp_lrp(EPS))
    explained = cp.output.gather(1, cp.target[:, None])[:, 0]
    torch.testing.assert_close(cp.relevance.sum((1, 2)), explained, rtol=1e-8, atol=1e-8)
    table = lrp_widgets.explain(model, x, composite=lrp_widgets.composites.cp_lrp(EPS), layers=True).conservation()
    # the residual stream (each layer's norms and sums, the head, the input) keeps all relevance
    stream = [i for i, name in enumerate(table.names) if name.startswith(("add", "head", "input")) or "norm" in name]
    assert len(stream) >= 2 * 4 + 2
    assert abs(table.sums[stream] - table.sums[0]).max() < 1e-8
    # the query/key branch gets none: the attention weights are held constant
    scores = [i for i, name in enumerate(table.names) if name.startswith("attention_scores")]
    assert len(scores) == 2 and abs(table.sums[scores]).max() == 0


def test_mha_batch_first_false_and_key_padding_mask():
    class Tokens(nn.Module):
        def __init__(self, batch_first):
            super().__init__()
            torch.manual_seed(0)
            self.batch_first = batch_first
            self.embedding = nn.Embedding(10, 8)
            self.attention = nn.MultiheadAttention(8, 2, batch_first=batch_first)
            self.head = nn.Linear(8, 2)

        def forward(self, tokens):
            mask = tokens == 0
            h = self.embedding(tokens)
            if not self.batch_first:
                h = h.transpose(0, 1)
            h, _ = self.attention(h, h, h, key_padding_mask=mask)
            if not self.batch_first:
                h = h.transpose(0, 1)
            return self.head(h.mean(1))

    tokens = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    results = []
    for batch_first in (True, False):
        model = Tokens(batch_first).double().eval()
        with torch.no_grad():
            expected = model(tokens)
        result = lrp_widgets.explain(model, tokens, composite="attnlrp")
        torch.testing.assert_close(result.output, expected)
        assert result.relevance.shape == tokens.shape
        results.append(result.relevance)
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("call, what", [
    (lambda m, h: m(h, h, h, attn_mask=torch.zeros(5, 5, dtype=torch.bool)), "attn_mask"),
    (lambda m, h: m(h, h, h, is_causal=True, attn_mask=torch.ones(5, 5).triu(1).bool()), "attn_mask"),
])
def test_unsupported_attention_options_name_the_module(call, what):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(call(self.attention, x)[0][:, 0])

    with pytest.raises(UnsupportedConfigurationError, match=rf"'attention'.*MultiheadAttention.*{what}"):
        lrp_widgets.explain(Model(), torch.randn(2, 5, 8))


def test_bias_k_is_refused_and_hook_path_only_names_the_graph():
    class Model(nn.Module):
        def __init__(self, **options):
            super().__init__()
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True, **options)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.attention(x, x, x)[0][:, 0])

    with pytest.raises(UnsupportedConfigurationError, match=r"'attention'.*bias_k"):
        lrp_widgets.explain(Model(add_bias_kv=True), torch.randn(2, 5, 8))
    with pytest.raises(UnsupportedModuleError, match=r"'attention'.*graph=True"):
        lrp_widgets.explain(Model(), torch.randn(2, 5, 8), graph=False)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        lrp_widgets.explain(_model(), torch.full((2, 5, 8), float("nan"), dtype=torch.float64), composite="attnlrp")


def test_model_is_not_changed():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lrp_widgets.explain(model, torch.randn(2, 5, 8, dtype=torch.float64), composite="attnlrp")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("batch_first", [True, False])
def test_self_attention_takes_one_projection_with_the_relevance_of_three(monkeypatch, batch_first):
    """q, k, v of self-attention come from one F.linear: epsilon stabilizes each output on its own, so the
    relevance equals that of three projections (summed in another order)."""
    from lrp_widgets.engine import attention, graph

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.attention = nn.MultiheadAttention(8, 2, batch_first=batch_first)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            h = x if batch_first else x.transpose(0, 1)
            h = self.attention(h, h, h, need_weights=False)[0]
            return self.head((h if batch_first else h.transpose(0, 1)).mean(1))

    model = SelfAttention().double().eval()
    x = torch.randn(4, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    fused = lrp_widgets.explain(model, x, composite="attnlrp", layers=True)
    linears = [n for n in graph.trace(model).nodes if n.target is torch.nn.functional.linear]
    assert len(linears) == 1 and "linear" in fused.layers

    def three(module, h):  # the projections one by one, as for cross-attention
        (wq, wk, wv), (bq, bk, bv) = attention._projections(module)
        heads, d = module.num_heads, module.head_dim
        return tuple(torch.nn.functional.linear(h, w, b).unflatten(-1, (heads, d)).transpose(1, 2)
                     for w, b in ((wq, bq), (wk, bk), (wv, bv)))

    monkeypatch.setattr(attention, "_fused_projection", three)
    graph.clear_cache()
    separate = lrp_widgets.explain(model, x, composite="attnlrp", layers=True)
    graph.clear_cache()
    assert "linear_2" in separate.layers
    torch.testing.assert_close(fused.output, separate.output, rtol=0, atol=1e-12)
    torch.testing.assert_close(fused.relevance, separate.relevance, rtol=0, atol=1e-12)
    assert fused.relevance.abs().sum() > 0.1
