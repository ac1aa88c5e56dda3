"""The graph path (engine/graph.py): models explained as they are written, identical to the hook path."""
import pytest
import torch
from torch import nn

import lrp_widgets
from lrp_widgets import composites, explain, rules, zoo
from lrp_widgets.engine import graph, operations
from lrp_widgets.engine.errors import CompositeError, FunctionalCallError, GraphTraceError, UnsupportedOperationError
from tests.operations_reference import Op

torch.set_num_threads(1)


# -- a ResNet-18-shaped network written the torchvision way (no torchvision) ---------------------------
class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class SumBlock(BasicBlock):
    """The same block rewritten for the hook path: the addition is an lrp_widgets.Sum module."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add = lrp_widgets.Sum()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(self.add(out, identity))


class ResNet(nn.Module):
    """ResNet-18's layout (2-2-2-2 BasicBlocks, downsampling 1x1 conv + BatchNorm) at small widths."""

    def __init__(self, block=BasicBlock, widths=(4, 8, 8, 16), num_classes=5, flatten=True):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, widths[0], 1)
        self.layer2 = self._make_layer(block, widths[1], 2)
        self.layer3 = self._make_layer(block, widths[2], 2)
        self.layer4 = self._make_layer(block, widths[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten() if not flatten else None
        self.fc = nn.Linear(widths[3], num_classes)

    def _make_layer(self, block, planes, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers.append(block(planes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = torch.flatten(x, 1) if self.flatten is None else self.flatten(x)
        return self.fc(x)


def _resnets():
    torch.manual_seed(0)
    written = ResNet()
    for module in written.modules():  # running statistics that are not the identity: folding matters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    rewritten = ResNet(block=SumBlock, flatten=False)
    rewritten.load_state_dict(written.state_dict())
    return written.double().eval(), rewritten.double().eval()


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon", "epsilon_alpha2_beta1"])
def test_torchvision_style_resnet_is_explained_as_written_and_equals_the_sum_rewrite(composite):
    written, rewritten = _resnets()
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    with pytest.raises(FunctionalCallError, match="`add_?`"):  # the hook path alone cannot
        explain(written, x, composite=composite, graph=False)
    result = explain(written, x, composite=composite)
    reference = explain(rewritten, x, composite=composite)
    torch.testing.assert_close(result.relevance, reference.relevance, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.output, reference.output)
    assert result.relevance.abs().sum() > 0
    # the conservation table lists the operations: 8 residual additions and the flatten
    names = result.conservation().names
    assert sum(name.startswith("add") for name in names) == 8 and "flatten" in names


def test_resnet_is_traced_once_and_later_calls_go_to_the_graph_directly():
    written, _ = _resnets()
    graph.clear_cache()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    first = explain(written, x)
    traced = graph.trace(written)
    assert graph._CACHE.lookup(id(written))[3]  # remembered: no hook-path attempt next time
    second = explain(written, x)
    assert graph.trace(written) is traced
    torch.testing.assert_close(first.relevance, second.relevance, rtol=0, atol=0)


# -- the two paths agree on every model both can explain -----------------------------------------------
ZOO = ["two_squares_mlp_l1_0", "two_squares_cnn_l1_0", "digits_cnn", "shapes_minivgg", "enso_mlp", "enso_cnn"]


def _zoo_input(name):
    architecture = zoo.info(name)["architecture"]
    if architecture["architecture"] == "MLP":
        shape = architecture["input_shape"]
    elif architecture["architecture"] == "MiniVGG":
        shape = [3, 32, 32]
    else:
        size = architecture["input_size"]
        shape = [architecture["in_channels"]] + ([size, size] if isinstance(size, int) else list(size))
    torch.manual_seed(1)
    return torch.rand(4, *shape)


@pytest.mark.filterwarnings("ignore:the flat rule")
@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "lrp0"])
def test_graph_and_hook_paths_agree_on_the_zoo(name, composite):
    model = zoo.load(name)
    x = _zoo_input(name)
    hook = explain(model, x, composite=composite, layers=True, graph=False)
    traced = explain(model, x, composite=composite, layers=True, graph=True)
    torch.testing.assert_close(traced.relevance, hook.relevance, rtol=0, atol=1e-6)
    assert list(traced.layers) == list(hook.layers)
    assert traced.conservation().names == hook.conservation().names


class _Functional(nn.Module):
    """Functional calls the hook path lets through (a view, torch.relu, a final Softmax module)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(12, 4)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(self.fc(self.pool(torch.relu(self.conv(x))).view(x.size(0), -1)))


def _small_models():
    torch.manual_seed(2)
    sum_net = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
    sum_model = _SumModel(sum_net)
    return [
        (nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 3)), (1, 4, 4)),
        (nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
                       nn.Upsample(scale_factor=2), nn.ConvTranspose2d(4, 2, 3, padding=1), nn.ReLU(),
                       nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 3)), (2, 6, 6)),
        (_Functional(), (1, 6, 6)),
        (sum_model, (6,)),
    ]


class _SumModel(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body, self.add, self.head = body, lrp_widgets.Sum(), nn.Linear(5, 2)
        self.skip = nn.Linear(6, 5)

    def forward(self, x):
        return self.head(self.add(self.body(x), self.skip(x)))


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_graph_and_hook_paths_agree_on_small_models(index, composite):
    model, shape = _small_models()[index]
    model = model.double().eval()
    x = torch.rand(3, *shape, dtype=torch.float64)
    hook = explain(model, x, composite=composite, graph=False)
    traced = explain(model, x, composite=composite, graph=True)
    torch.testing.assert_close(traced.relevance, hook.relevance, rtol=0, atol=1e-10)


def test_token_models_agree():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2)).double()
    tokens = torch.randint(0, 10, (3, 3))
    hook = explain(model, tokens, graph=False)
    traced = explain(model, tokens, graph=True)
    torch.testing.assert_close(traced.relevance, hook.relevance, rtol=0, atol=1e-10)


# -- layers, masks, composites -----------------------------------------------------------------------
class _Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.value, self.gate, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.value(x) * torch.sigmoid(self.gate(x))
        return self.head(h.mean(-1, keepdim=True) + h)


def test_layers_report_graph_nodes_and_masks_address_them():
    torch.manual_seed(4)
    model, x = _Gated().double(), torch.rand(3, 4, dtype=torch.float64)
    result = explain(model, x, layers=True)
    assert list(result.layers) == ["value", "gate", "sigmoid", "mul", "mean", "add", "head"]
    # signal takes all: the gate (and so its Linear layer) gets no relevance
    assert result.layers["sigmoid"].abs().max() == 0 and result.layers["gate"].abs().max() == 0
    masked = explain(model, x, layers=True, masks={"mean": torch.zeros(1)})
    assert masked.layers["mean"].abs().max() == 0
    with pytest.raises(Exception, match="masks name modules"):
        explain(model, x, masks={"nope": torch.zeros(1)})


def test_composites_address_operations_by_kind_and_by_node_name():
    torch.manual_seed(5)
    model, x = _Gated().double(), torch.rand(3, 4, dtype=torch.float64)
    default = explain(model, x, composite="epsilon", layers=True)
    uniform = explain(model, x, composite=composites.Composite({nn.Linear: rules.Epsilon(), operations.Product: operations.Uniform()}), layers=True)
    assert uniform.layers["sigmoid"].abs().max() > 0  # half of the product's relevance went to the gate
    by_name = explain(model, x, composite=composites.Composite({nn.Linear: rules.Epsilon()}, name_rules={"mul": operations.Uniform()}))
    torch.testing.assert_close(by_name.relevance, uniform.relevance)
    strong = explain(model, x, composite=composites.Composite({nn.Linear: rules.Epsilon(), operations.Add: rules.Epsilon(1.0)}), layers=True)
    assert not torch.allclose(strong.layers["add"][0], default.layers["add"][0])
    with pytest.raises(CompositeError, match="'add'.*Add"):
        explain(model, x, composite=composites.Composite(name_rules={"add": rules.ZPlus()}))


# -- errors, the cache, the model left alone ----------------------------------------------------------
class _Exp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(torch.exp(x))


def test_an_operation_without_rule_is_named_with_its_node_and_source_line():
    with pytest.raises(UnsupportedOperationError, match=r"`torch.exp` at graph node 'exp'.*test_graph.py.*torch.exp\(x\)"):
        explain(_Exp(), torch.rand(2, 3))


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            x = x + 1
        return self.fc(x)


class _Unpacking(nn.Module):
    def __init__(self, unpack=True):
        super().__init__()
        self.fc, self.out, self.unpack = nn.Linear(4, 6), nn.Linear(3, 2), unpack

    def forward(self, x):
        h = self.fc(x)
        if self.unpack:
            value, gate = h.chunk(2, dim=1)  # fx cannot unpack a traced value
        else:
            value, gate = h[:, :3], h[:, 3:]
        return self.out(value * torch.sigmoid(gate) + value.mean(1, keepdim=True))


def test_where_fx_cannot_trace_operations_are_caught_as_they_run():
    with pytest.raises(GraphTraceError, match="cannot trace _Branchy"):
        graph.trace(_Branchy())
    with pytest.raises(FunctionalCallError, match="`sum`"):
        explain(_Branchy(), torch.rand(2, 3), graph=False)
    torch.manual_seed(7)
    model, x = _Branchy().double(), torch.rand(2, 3, dtype=torch.float64)
    result = explain(model, x, composite="epsilon", layers=True)
    rewritten = explain(Op(lambda m, x: m.fc(x + 1), fc=model.fc), x, composite="epsilon")
    torch.testing.assert_close(result.relevance, rewritten.relevance)
    assert list(result.layers) == ["add", "fc"]
    unpacking = _Unpacking().double()
    indexing = _Unpacking(unpack=False).double()
    indexing.load_state_dict(unpacking.state_dict())
    x = torch.rand(3, 4, dtype=torch.float64)
    torch.testing.assert_close(explain(unpacking, x, layers=True).relevance, explain(indexing, x).relevance)
    assert explain(unpacking, x, layers=True).layers["sigmoid"].abs().max() == 0  # the gate gets none


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_caught_as_they_run_the_resnet_equals_the_sum_rewrite_too(monkeypatch, composite):
    written, rewritten = _resnets()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)

    def untraceable(model):
        raise GraphTraceError("pretend fx cannot trace it")

    monkeypatch.setattr(graph, "trace", untraceable)
    result = explain(written, x, composite=composite, graph=True)
    torch.testing.assert_close(result.relevance, explain(rewritten, x, composite=composite).relevance, atol=1e-6, rtol=0)
    assert sum(name.startswith("add") for name in result.conservation().names) == 8


class _EagerExp(_Branchy):
    def forward(self, x):
        if x.sum() > 0:
            x = torch.exp(x)
        return self.fc(x)


def test_caught_as_they_run_an_operation_without_rule_is_named():
    with pytest.raises(UnsupportedOperationError, match="calls `exp`"):
        explain(_EagerExp(), torch.rand(2, 3))


class _Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x * torch.tensor(2.0) + 1.0)


def test_the_model_is_not_changed_and_constants_get_no_relevance():
    model = _Constant()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attributes = set(model.__dict__)
    x = torch.rand(2, 3)
    result = explain(model, x, composite="epsilon", layers=True)
    assert set(model.__dict__) == attributes and not hasattr(model, "_tensor_constant0")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not model._forward_hooks and not model.fc._forward_pre_hooks
    # the constant 1.0 absorbs its share, as a bias does: R_x = x2 / (x2 + 1) R
    twice = x * 2
    torch.testing.assert_close(result.relevance, result.layers["mul"] * 1.0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.layers["mul"], twice / (twice + 1) * result.layers["fc"], rtol=1e-5, atol=1e-6)


def test_the_cache_is_bounded_and_traces_again_when_modules_change():
    graph.clear_cache()
    model = _Exp()
    traced = graph.trace(model)
    assert graph.trace(model) is traced
    model.fc = nn.Linear(3, 2)
    assert graph.trace(model) is not traced
    models = [_Constant() for _ in range(graph.CACHE_SIZE + 3)]
    for m in models:
        graph.trace(m)
    assert len(graph._CACHE) == graph.CACHE_SIZE


class _Scale(nn.Module):
    """A user's module without children and without a rule: traced through."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([2.0, -3.0, 0.5]))

    def forward(self, x):
        return x * self.weight


def test_a_users_module_without_a_rule_is_traced_through_and_torchs_own_keep_their_error():
    model = nn.Sequential(nn.Linear(3, 3), _Scale(), nn.ReLU(), nn.Linear(3, 2))
    x = torch.rand(2, 3)
    with pytest.raises(lrp_widgets.UnsupportedModuleError, match="'1' of type .*_Scale has no LRP rule"):
        explain(model, x, graph=False)
    result = explain(model, x, composite="epsilon", layers=True)
    assert list(result.layers) == ["0", "mul", "2", "3"]
    # a product with a parameter is a linear map: relevance passes it (epsilon)
    torch.testing.assert_close(result.layers["mul"], result.layers["2"], rtol=1e-4, atol=1e-6)
    with pytest.raises(lrp_widgets.UnsupportedModuleError, match="'1' of type torch.*Hardshrink has no LRP rule"):
        explain(nn.Sequential(nn.Linear(3, 3), nn.Hardshrink()), x)


class _InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        h.relu_()  # in place, as a statement: later uses of h see it
        h.mul_(2.0)
        return self.out(h)


def test_in_place_operations_as_statements_keep_the_models_output():
    torch.manual_seed(6)
    model, x = _InPlace(), torch.rand(4, 3)
    with torch.no_grad():
        expected = model(x)
    result = explain(model, x, composite="epsilon", layers=True)
    torch.testing.assert_close(result.output, expected)
    assert list(result.layers) == ["fc", "relu_", "mul_", "out"]


class _TorchNamespacedResidual(nn.Module):
    """A container fx keeps whole (its class looks like torch.nn's) whose forward adds outside any module."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x):
        return x + self.linear(x)


_TorchNamespacedResidual.__module__ = "torch.nn.modules.lrp_test"


def test_graph_run_still_watches_a_container_called_whole():
    # the traced run turns the functional-call watch off for its own nodes; a container it calls
    # whole runs a forward the graph never saw, so the watch must be back on there
    model = nn.Sequential(nn.Linear(8, 8), _TorchNamespacedResidual(), nn.Linear(8, 3)).eval()
    assert graph.trace(model).nodes[2].op == "call_module"
    with pytest.raises(FunctionalCallError, match="`add`"):
        explain(model, torch.randn(2, 8), target=0, graph=True)


@pytest.mark.parametrize("graph_path", [False, True])
def test_explain_leaves_no_reference_cycles(graph_path):
    # an explanation's calls, rules and tensors are freed when explain returns, not at the next gc run (a cycle
    # per call kept every relevance and activation of a transformer's explanation alive: memory, and page faults)
    import gc

    model = zoo.load("shapes_vit") if graph_path else zoo.load("shapes_minivgg")
    x = zoo.dataset("shapes_vit").test.x[:4] if graph_path else _zoo_input("shapes_minivgg")
    explain(model, x, composite="attnlrp" if graph_path else "epsilon_plus_flat")  # traced, cached
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        result = explain(model, x, composite="attnlrp" if graph_path else "epsilon_plus_flat", layers=True)
        del result
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()


def test_moves_ride_on_autograd_with_the_records_of_operation_calls(monkeypatch):
    """A move of one activation is left to autograd (its backward is the move's rule) and recorded by a hook on
    its node: the relevance, every record and the conservation table are those of OperationCalls."""
    from lrp_widgets.engine import operation_calls

    model = zoo.load("shapes_vit")
    x = zoo.dataset("shapes_vit").test.x[:3]
    moved = []
    original = operation_calls._moved

    def counted(*args):
        output = original(*args)
        moved.append(output is not None)
        return output

    monkeypatch.setattr(operation_calls, "_moved", counted)
    light = explain(model, x, composite="attnlrp", layers=True)
    # transposes, unflattens, permutes, the class token's getitem, flatten of a transposed tensor (through a copy)
    assert sum(moved) >= 10 and all(moved)
    monkeypatch.setattr(operation_calls, "_moved", lambda *args: None)
    calls = explain(model, x, composite="attnlrp", layers=True)
    assert torch.equal(light.relevance, calls.relevance)
    assert list(light.layers) == list(calls.layers)
    for name, value in calls.layers.items():
        same = light.layers[name]
        pairs = zip(same, value) if isinstance(value, tuple) else [(same, value)]
        assert all(torch.equal(a, b) for a, b in pairs), name
    assert light.conservation().names == calls.conservation().names
    torch.testing.assert_close(light.conservation().sums, calls.conservation().sums, rtol=1e-6, atol=1e-6)
    # a mask acts on a move's output relevance: that move stays an OperationCall
    masked = explain(model, x, composite="attnlrp", layers=True, masks={"transpose": torch.zeros(1)})
    assert masked.layers["transpose"].abs().max() == 0 and masked.relevance.abs().max() == 0


def test_a_move_that_returns_its_input_is_still_recorded():
    """``.contiguous()`` of a contiguous tensor makes no autograd node: the move is an OperationCall."""
    model = Op(lambda m, x: m.fc2(torch.relu(m.fc(x)).contiguous()), fc=nn.Linear(4, 5), fc2=nn.Linear(5, 2))
    model = model.double().eval()
    x = torch.rand(3, 4, dtype=torch.float64)
    result = explain(model, x, composite="epsilon", layers=True, graph=True)
    assert "contiguous" in result.layers
    torch.testing.assert_close(result.layers["contiguous"], result.layers["fc2"])


def test_the_graph_calls_modules_without_hooks_and_a_users_hooks_still_run(monkeypatch):
    """On the traced graph explain calls each leaf module itself (no hooks attached); a module with a hook of the
    user's is called as the user wrote it, with ours attached around it."""
    from lrp_widgets.engine import propagation

    model = zoo.load("shapes_vit")
    x = zoo.dataset("shapes_vit").test.x[:3]
    plain = explain(model, x, composite="attnlrp", layers=True)  # traced, then explained on the graph
    attached = []
    original = propagation.Session.hook_modules
    monkeypatch.setattr(propagation.Session, "hook_modules", lambda self: attached.append(1) or original(self))
    again = explain(model, x, composite="attnlrp", layers=True)
    assert not attached and torch.equal(again.relevance, plain.relevance)

    seen = []
    handle = model.head.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    try:
        hooked = explain(model, x, composite="attnlrp", layers=True)
    finally:
        handle.remove()
    assert seen == [torch.Size([3, 10])] and attached  # the user's hook ran, with ours attached for it
    assert torch.equal(hooked.relevance, plain.relevance) and list(hooked.layers) == list(plain.layers)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())

    # a hook that changes a module's output changes the model, and the explanation follows it
    handle = model.head.register_forward_hook(lambda module, args, output: 2 * output)
    try:
        doubled = explain(model, x, composite="attnlrp", target=plain.target)
        with torch.no_grad():
            expected = model(x)
    finally:
        handle.remove()
    torch.testing.assert_close(doubled.output, expected)
    torch.testing.assert_close(doubled.output, 2 * plain.output)


def test_a_move_of_the_input_itself_is_recorded():
    """The first operation reshapes x (a leaf: its gradient goes to an accumulator, not a grad_fn)."""
    torch.manual_seed(6)
    fc = nn.Linear(6, 2)
    written = Op(lambda m, x: m.fc(x.flatten(1)), fc=fc).double().eval()
    x = torch.rand(3, 2, 3, dtype=torch.float64)
    result = explain(written, x, composite="epsilon", layers=True, graph=True)
    hooks = explain(nn.Sequential(nn.Flatten(), fc).double().eval(), x, composite="epsilon")
    assert torch.equal(result.relevance, hooks.relevance)
    assert torch.equal(result.layers["flatten"], result.relevance)


def test_a_move_that_also_reads_a_parameter_is_recorded_as_an_operation_call_would(monkeypatch):
    """``torch.cat([x, parameter])``: the autograd node reads the parameter too; only x gets relevance."""
    from lrp_widgets.engine import operation_calls

    torch.manual_seed(7)
    model = Op(lambda m, x: m.fc(torch.cat([torch.relu(x), m.extra], 1)), fc=nn.Linear(6, 2)).double().eval()
    model.extra = nn.Parameter(torch.rand(3, 2, dtype=torch.float64))
    x = torch.rand(3, 4, dtype=torch.float64)
    light = explain(model, x, composite="epsilon", layers=True, graph=True)
    monkeypatch.setattr(operation_calls, "_moved", lambda *args: None)
    calls = explain(model, x, composite="epsilon", layers=True, graph=True)
    assert torch.equal(light.relevance, calls.relevance) and light.relevance.abs().sum() > 0
    assert torch.equal(light.layers["cat"], calls.layers["cat"]) and light.layers["cat"].shape == x.shape

