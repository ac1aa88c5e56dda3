"""Layers a new user's model brings (issue 16), each checked against an independent slow reference:
the layer's explicit matrix (built from unit vectors, float64, tiny sizes) with the rule written
out by hand, plus conservation."""
import pytest
import torch
from torch import nn

import lrp_widgets
from lrp_widgets import Composite, rules
from lrp_widgets.engine.errors import CompositeError, UnsupportedModuleError

EPS = 1e-6


@pytest.fixture(autouse=True, scope="module")
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def matrix_of(function, shape):
    """The explicit matrix M of a linear map of one sample: ``function(x).flatten() = M x.flatten()``."""
    n = int(torch.tensor(shape).prod())
    columns = [function(torch.eye(n, dtype=torch.float64)[j].reshape(1, *shape)).flatten() for j in range(n)]
    return torch.stack(columns, 1)


def stabilized(z):
    return torch.where(z >= 0, z + EPS, z - EPS)


def epsilon_reference(M, b, a, R):
    """R_j = sum_k a_j M_kj R_k / stab(z_k), z = M a + b, for one sample (flattened)."""
    z = M @ a + b
    return a * (M.T @ (R / stabilized(z)))


def zplus_reference(M, b, a, R):
    contributions = (a[None, :] * M).clamp(min=0)  # (k, j)
    denominator = contributions.sum(1) + b.clamp(min=0)
    denominator = torch.where(denominator >= 0, denominator + EPS, denominator - EPS)
    return (contributions / denominator[:, None] * R[:, None]).sum(0)


def explain_map(module, x, R, composite):
    """The engine's relevance at ``module``'s input for output relevance ``R`` (a Flatten follows)."""
    model = nn.Sequential(module, nn.Flatten())
    return lrp_widgets.explain(model, x, composite=composite, initial_relevance=R)


LINEAR_MAPS = {
    "convtranspose1d": lambda: nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1, output_padding=1),
    "convtranspose2d": lambda: nn.ConvTranspose2d(2, 2, (2, 3), stride=(2, 1), padding=(0, 1), dilation=(1, 2)),
    "convtranspose2d_groups": lambda: nn.ConvTranspose2d(2, 4, 2, stride=2, groups=2),
}
SHAPES = {"convtranspose1d": (2, 4), "convtranspose2d": (2, 3, 3), "convtranspose2d_groups": (2, 2, 3)}


@pytest.mark.parametrize("name", list(LINEAR_MAPS))
@pytest.mark.parametrize("rule", ["epsilon", "zplus"])
def test_conv_transpose_matches_its_explicit_matrix(name, rule):
    torch.manual_seed(0)
    layer = LINEAR_MAPS[name]()
    shape = SHAPES[name]
    x = torch.randn(2, *shape)
    with torch.no_grad():
        M = matrix_of(lambda t: layer(t) - layer.bias.reshape(1, -1, *([1] * (len(shape) - 1))), shape)
        out = layer(x)
    bias = layer.bias.detach().reshape(-1, *([1] * (len(shape) - 1))).expand(out.shape[1:]).flatten()
    R = torch.randn(out.flatten(1).shape)
    chosen = rules.Epsilon(EPS) if rule == "epsilon" else rules.ZPlus()
    result = explain_map(layer, x, R, Composite({nn.ConvTranspose1d: chosen, nn.ConvTranspose2d: chosen}))
    reference = epsilon_reference if rule == "epsilon" else zplus_reference
    for n in range(2):
        expected = reference(M, bias, x[n].flatten(), R[n])
        torch.testing.assert_close(result.relevance[n].flatten(), expected, rtol=1e-10, atol=1e-10)


def test_conv_transpose_given_an_output_size_keeps_it():
    torch.manual_seed(1)
    layer = nn.ConvTranspose2d(1, 1, 3, stride=2, bias=False)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.up, self.flat = layer, nn.Flatten()

        def forward(self, x):
            return self.flat(self.up(x, output_size=[8, 8]))  # output padding 1, not the module's 0

    x = torch.rand(1, 1, 3, 3)
    result = lrp_widgets.explain(Model(), x, composite="lrp0")
    M = matrix_of(lambda t: layer(t, output_size=[8, 8]), (1, 3, 3))
    R = torch.zeros(64)
    R[result.target.item()] = result.output[0, result.target.item()]
    z = M @ x.flatten()
    expected = x.flatten() * (M.T @ torch.where(z == 0, 0.0, R / torch.where(z == 0, 1.0, z)))  # LRP-0
    torch.testing.assert_close(result.relevance.flatten(), expected, rtol=1e-10, atol=1e-12)
    # no bias, LRP-0: conserved
    torch.testing.assert_close(result.relevance.sum(), result.output[0, result.target.item()])


@pytest.mark.parametrize(
    "upsample",
    [nn.Upsample(scale_factor=2, mode="nearest"), nn.Upsample(size=(5, 7), mode="bilinear", align_corners=False),
     nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), nn.UpsamplingNearest2d(scale_factor=3)],
    ids=["nearest", "bilinear-size", "bilinear-corners", "UpsamplingNearest2d"],
)
def test_upsample_matches_its_explicit_matrix_and_conserves(upsample):
    torch.manual_seed(2)
    x = torch.rand(2, 2, 3, 3) + 0.1
    with torch.no_grad():
        M = matrix_of(upsample, (2, 3, 3))
        R = torch.randn(upsample(x).flatten(1).shape)
    result = explain_map(upsample, x, R, "epsilon")
    for n in range(2):
        expected = epsilon_reference(M, torch.zeros(M.shape[0]), x[n].flatten(), R[n])
        torch.testing.assert_close(result.relevance[n].flatten(), expected, rtol=1e-10, atol=1e-10)
    lrp0 = explain_map(upsample, x, R, "lrp0")
    torch.testing.assert_close(lrp0.relevance.flatten(1).sum(1), R.sum(1))  # positive weights, no bias


def layer_norm_matrix(x_row, weight, eps):
    """A = diag(w / std) (I - 11^T / n): LayerNorm over one row with its std held constant."""
    n = x_row.numel()
    std = torch.sqrt(x_row.var(unbiased=False) + eps)
    centre = torch.eye(n) - torch.full((n, n), 1.0 / n)
    return torch.diag(weight / std) @ centre


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_is_epsilon_on_the_map_with_the_std_held_constant(affine):
    torch.manual_seed(3)
    norm = nn.LayerNorm(5, elementwise_affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.copy_(torch.rand(5) + 0.5)
            norm.bias.copy_(torch.randn(5))
    x = torch.randn(3, 5)
    R = torch.randn(3, 5)
    result = lrp_widgets.explain(nn.Sequential(norm), x, composite="epsilon", initial_relevance=R)
    weight = norm.weight.detach() if affine else torch.ones(5)
    bias = norm.bias.detach() if affine else torch.zeros(5)
    for n in range(3):
        A = layer_norm_matrix(x[n], weight, norm.eps)
        torch.testing.assert_close(result.relevance[n], epsilon_reference(A, bias, x[n], R[n]), rtol=1e-9, atol=1e-10)
    if not affine:  # no bias, LRP-0: the centring map conserves relevance (sum_j A_ij x_j = y_i)
        lrp0 = lrp_widgets.explain(nn.Sequential(norm), x, composite="lrp0", initial_relevance=R)
        torch.testing.assert_close(lrp0.relevance.sum(1), R.sum(1), rtol=1e-9, atol=1e-10)


def test_group_norm_is_layer_norm_per_group():
    torch.manual_seed(4)
    norm = nn.GroupNorm(2, 4)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(4) + 0.5)
        norm.bias.copy_(torch.randn(4))
    x = torch.randn(2, 4, 3)
    R = torch.randn(2, 12)
    result = explain_map(norm, x, R, "epsilon")
    for n in range(2):
        blocks = []
        for g in range(2):
            rows = x[n, 2 * g: 2 * g + 2].flatten()
            weight = norm.weight.detach()[2 * g: 2 * g + 2].repeat_interleave(3)
            blocks.append(layer_norm_matrix(rows, weight, norm.eps))
        A = torch.block_diag(*blocks)
        bias = norm.bias.detach().repeat_interleave(3)
        torch.testing.assert_close(result.relevance[n].flatten(), epsilon_reference(A, bias, x[n].flatten(), R[n]),
                                   rtol=1e-9, atol=1e-10)


def test_a_norm_in_a_model_conserves_with_lrp0_and_no_bias():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 8, bias=False), nn.LayerNorm(8, bias=False), nn.GELU(), nn.Linear(8, 3, bias=False))
    x = torch.randn(4, 6)
    result = lrp_widgets.explain(model, x, composite="lrp0")
    table = result.conservation()
    torch.testing.assert_close(torch.as_tensor(table.sums[-1]), torch.as_tensor(table.sums[0]), rtol=1e-6, atol=1e-9)


ACTIVATIONS = [nn.GELU(), nn.SiLU(), nn.ELU(), nn.Softplus()]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda m: type(m).__name__)
def test_activations_pass_relevance_by_default_and_take_any_rule_by_type_or_name(activation):
    torch.manual_seed(6)
    first, last = nn.Linear(4, 5), nn.Linear(5, 3)
    model = nn.Sequential(first, activation, last)
    x = torch.randn(2, 4)
    with torch.no_grad():
        h = first(x)
        g = activation(h)
        out = last(g)
    target = out.argmax(1)
    R_out = torch.zeros_like(out).scatter_(1, target[:, None], out.gather(1, target[:, None]))
    W1, b1, W2, b2 = first.weight.detach(), first.bias.detach(), last.weight.detach(), last.bias.detach()
    R_g = torch.stack([epsilon_reference(W2, b2, g[n], R_out[n]) for n in range(2)])
    leaf = h.clone().requires_grad_(True)
    (derivative,) = torch.autograd.grad(activation(leaf).sum(), leaf)

    def relevance_with(R_h):
        return torch.stack([epsilon_reference(W1, b1, x[n], R_h[n]) for n in range(2)])

    by_default = lrp_widgets.explain(model, x, composite="epsilon")
    torch.testing.assert_close(by_default.relevance, relevance_with(R_g))  # identity (Pass) rule
    by_type = lrp_widgets.explain(model, x, composite=Composite({nn.Linear: rules.Epsilon(EPS), type(activation): rules.Gradient()}))
    torch.testing.assert_close(by_type.relevance, relevance_with(derivative * R_g))
    by_name = lrp_widgets.explain(model, x, composite=Composite({nn.Linear: rules.Epsilon(EPS)}, name_rules={"1": rules.Epsilon(EPS)}))
    torch.testing.assert_close(by_name.relevance, relevance_with(h * derivative * R_g / stabilized(g)))


def test_a_final_softmax_starts_the_explanation_from_the_logits():
    torch.manual_seed(7)
    logits = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(5, 4)
    plain = lrp_widgets.explain(logits, x, composite="epsilon")
    for final in (nn.Softmax(dim=1), nn.LogSoftmax(dim=-1)):
        result = lrp_widgets.explain(nn.Sequential(logits, final), x, composite="epsilon")
        assert torch.equal(result.target, plain.target)
        torch.testing.assert_close(result.relevance, plain.relevance)
        torch.testing.assert_close(result.output, final(plain.output))


def test_a_softmax_inside_the_model_is_refused_clearly():
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1), nn.Linear(3, 2))
    with pytest.raises(UnsupportedModuleError, match=r"'1' \(Softmax\) is supported only as the model's last layer"):
        lrp_widgets.explain(model, torch.randn(2, 4))


def test_adaptive_max_pool_is_max_pool():
    torch.manual_seed(8)
    head = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    conv = nn.Conv2d(1, 2, 3, padding=1)
    x = torch.randn(3, 1, 4, 4)
    adaptive = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveMaxPool2d(2), head)
    fixed = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), head)
    found = []
    for composite in ("epsilon", Composite({nn.Conv2d: rules.Epsilon(EPS), nn.Linear: rules.Epsilon(EPS)}, maxpool="average")):
        found.append(lrp_widgets.explain(adaptive, x, composite=composite).relevance)
        torch.testing.assert_close(found[-1], lrp_widgets.explain(fixed, x, composite=composite).relevance)
    assert not torch.allclose(found[0], found[1])  # winner-takes-all and average differ


def test_multihead_attention_is_explained_through_the_graph():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(4, 2, batch_first=True)
            self.flat = nn.Flatten()

        def forward(self, x):
            return self.flat(self.attention(x, x, x)[0])

    # issue 19: AttnLRP through the traced graph (tests/test_attention.py); the hook path alone names the graph
    assert lrp_widgets.explain(Attention(), torch.randn(2, 3, 4)).relevance.shape == (2, 3, 4)
    with pytest.raises(UnsupportedModuleError, match=r"'attention' \(torch.nn.MultiheadAttention\).*graph=True"):
        lrp_widgets.explain(Attention(), torch.randn(2, 3, 4), graph=False)


def test_a_rule_a_module_cannot_take_is_a_composite_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2), nn.Softmax(dim=1))
    x = torch.randn(2, 4)
    with pytest.raises(CompositeError, match=r"ZPlus.*'1' \(LayerNorm\), which cannot take it"):
        lrp_widgets.explain(model, x, composite=Composite(name_rules={"1": rules.ZPlus()}))
    with pytest.raises(CompositeError, match=r"'3' \(Softmax\)"):
        lrp_widgets.explain(model, x, composite=Composite(name_rules={"3": rules.Epsilon()}))
    # a glob skips them: Gamma reaches the Linear layers only
    globbed = lrp_widgets.explain(model, x, composite=Composite(name_rules={"*": rules.Gamma(0.5)}))
    named = lrp_widgets.explain(model, x, composite=Composite(name_rules={"0": rules.Gamma(0.5), "2": rules.Gamma(0.5)}))
    torch.testing.assert_close(globbed.relevance, named.relevance)


class TokenModel(nn.Module):
    """Token embedding plus a position embedding (a constant: its input is not the model's)."""

    def __init__(self, vocabulary=7, dim=3, length=4, classes=2):
        super().__init__()
        self.tokens = nn.Embedding(vocabulary, dim, padding_idx=0)
        self.positions = nn.Embedding(length, dim)
        self.add = lrp_widgets.Sum()
        self.flat = nn.Flatten()
        self.head = nn.Linear(length * dim, classes)

    def forward(self, x):
        where = torch.arange(x.shape[1])
        return self.head(self.flat(self.add(self.tokens(x), self.positions(where)[None].expand(x.shape[0], -1, -1))))


@pytest.mark.parametrize("rule", [rules.Epsilon(EPS), rules.Gamma(0.5)], ids=["epsilon", "gamma"])
def test_embedding_is_a_lookup_explained_as_a_one_hot_linear_map(rule):
    torch.manual_seed(9)
    model = TokenModel()
    tokens = torch.tensor([[3, 1, 0, 6], [2, 2, 5, 4]])
    result = lrp_widgets.explain(model, tokens, composite=Composite({nn.Linear: rules.Epsilon(EPS)}, name_rules={"tokens": rule}),
                                 layers=True)
    assert result.relevance.shape == tokens.shape and result.relevance.dtype == torch.float64
    W = model.tokens.weight.detach()
    vocabulary, dim = W.shape
    # the lookup of one sequence as an explicit matrix on the flattened one-hot input (L*V -> L*D)
    M = torch.kron(torch.eye(4), W.T.contiguous())
    if isinstance(rule, rules.Gamma):
        M = M + rule.gamma * M.clamp(min=0)
    R_embedding = result.layers["add"][0]  # relevance the Sum gave the token embedding's output
    for n in range(2):
        one_hot = torch.nn.functional.one_hot(tokens[n], vocabulary).double().flatten()
        expected = epsilon_reference(M, torch.zeros(4 * dim), one_hot, R_embedding[n].flatten()).reshape(4, vocabulary).sum(1)
        torch.testing.assert_close(result.relevance[n], expected, rtol=1e-10, atol=1e-12)
    assert result.relevance[0, 2] == 0  # the padding token's vector is zero: no relevance
    # the position embedding is a constant input: its share is what the Sum leaves out
    assert torch.allclose(result.relevance.sum(1), R_embedding.flatten(1).sum(1), atol=1e-5)


def test_embedding_with_lrp0_conserves_what_reaches_it():
    torch.manual_seed(10)
    model = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(), nn.Linear(6, 2, bias=False))
    result = lrp_widgets.explain(model, torch.tensor([[1, 4], [3, 3]]), composite="lrp0")
    torch.testing.assert_close(result.relevance.sum(1), result.output.gather(1, result.target[:, None])[:, 0])


@pytest.mark.skipif(not hasattr(nn, "RMSNorm"), reason="torch has no nn.RMSNorm")
def test_rms_norm_is_epsilon_on_the_map_with_the_rms_held_constant():
    torch.manual_seed(11)
    norm = nn.RMSNorm(4, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(4) + 0.5)
    x, R = torch.randn(3, 4), torch.randn(3, 4)
    result = lrp_widgets.explain(nn.Sequential(norm), x, composite="epsilon", initial_relevance=R)
    for n in range(3):
        A = torch.diag(norm.weight.detach() / torch.sqrt(x[n].pow(2).mean() + 1e-5))
        torch.testing.assert_close(result.relevance[n], epsilon_reference(A, torch.zeros(4), x[n], R[n]), rtol=1e-9, atol=1e-10)


def test_token_ids_not_read_by_an_embedding_are_a_clear_error():
    class Converts(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.flat = nn.Embedding(5, 2), nn.Flatten()

        def forward(self, x):
            return self.flat(self.embed(x.clone()))  # the embedding reads a copy, not x

    with pytest.raises(lrp_widgets.InputError, match="no nn.Embedding read x itself"):
        lrp_widgets.explain(Converts(), torch.tensor([[1, 2]]))
