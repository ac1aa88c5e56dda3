# %% [markdown]
# # 09 · Bring your own model and data
#
# **What you will learn**
#
# * what a model needs so that `lrp_widgets` can explain it: modules for every operation
#   (`lrp_widgets.Sum` for residual additions), and what the error says when something is off;
# * how to open every explorer on your own PyTorch model and data;
# * the notebook magics: `%lrp_explain` and `%lrp_explore` with names from your notebook.
#
# We use scikit-learn's handwritten digits (bundled, real) as "your" data and train two small
# models of our own in a few seconds.

# %%
import numpy as np
import torch
from torch import nn
import lrp_widgets
from lrp_widgets import explain, data
from lrp_widgets.train import train, accuracy

torch.manual_seed(0)
torch.set_num_threads(1)
%matplotlib widget

digits = data.digits()
test = digits.test
print(digits)

# %% [markdown]
# ## 1. Your model
#
# A small residual CNN with a custom `forward`. The addition of the skip connection goes through
# `lrp_widgets.Sum`, so the engine can split the relevance between the two branches; reshapes in
# `forward` are fine.

# %%
class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.add = lrp_widgets.Sum()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 10))

    def forward(self, x):
        h = self.stem(x)
        return self.head(self.pool(self.add(h, self.block(h))))


model = ResidualNet()
history = train(model, digits, epochs=8, lr=3e-3, progress=False)
print(f"test accuracy {accuracy(model, test):.1%}")
assert accuracy(model, test) > 0.85

# %%
result = explain(model, test.x[:4])
result

# %% [markdown]
# The picture above is the explanation's own display: any `Explanation` that ends a cell shows its
# heatmaps, and the text version names the target, the explained output and the conservation.
#
# ## 2. Models as you wrote them, and errors that say what to do
#
# An addition written as `h + self.block(h)` in `forward` is arithmetic outside modules, which
# hooks cannot see. `explain` then traces the model once (`torch.fx`) and gives the addition the
# same rule as `lrp_widgets.Sum` (split in proportion to the terms), so the plain version gives the
# same relevance as the one written with `Sum`, and the model is left as it was.

# %%
import torch


class PlainResidual(ResidualNet):
    def forward(self, x):
        h = self.stem(x)
        return self.head(self.pool(h + self.block(h)))


plain = PlainResidual()
plain.load_state_dict(model.state_dict())  # the same weights, written without Sum
as_written = explain(plain, test.x[:4])
difference = (as_written.relevance - result.relevance).abs().max().item()
print(f"largest difference to the Sum version: {difference:.2g}")
print("stages:", as_written.conservation().names)
assert difference < 1e-5

# %% [markdown]
# What cannot be explained is refused with a message that names the place and the fix:
# `graph=False` keeps to the module hooks (and names the functional call), and an operation with
# no LRP rule, such as `torch.exp` on the data, is named with the line that calls it.

# %%
class Exponential(ResidualNet):
    def forward(self, x):
        return self.head(self.pool(torch.exp(self.stem(x))))


messages = []
for bad, options in ((plain, {"graph": False}), (Exponential(), {})):
    try:
        explain(bad, test.x[:2], **options)
    except lrp_widgets.LRPError as error:
        print(type(error).__name__, ":", error, "\n")
        messages.append(str(error))
assert len(messages) == 2
assert "`add`" in messages[0] and "lrp_widgets.Sum" in messages[0]  # the call and the fix
assert "torch.exp" in messages[1] and "forward" in messages[1]  # the operation and where it is called

# %% [markdown]
# ## 3. Every explorer on your model and data
#
# Each explorer takes your objects as its first arguments.

# %%
from lrp_widgets.widgets import RuleExplorer, RemovalExplorer, PathExplorer, L1Explorer, LeakRateExplorer

rule_explorer = RuleExplorer(model, test, n_samples=16)
rule_explorer

# %%
removal_explorer = RemovalExplorer(model, test, n_samples=64, progress=False)
removal_explorer

# %%
aopc = removal_explorer.state["aopc"]
print({order: round(value, 3) for order, value in aopc.items()})
assert aopc["morf"] > aopc["lerf"]

# %% [markdown]
# `PathExplorer` walks the model as nested `nn.Sequential` blocks (messages between layers are
# computed block by block), so it takes a sequential version of your network:

# %%
sequential = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 16, 10))
train(sequential, digits, epochs=6, lr=3e-3, progress=False)
path_explorer = PathExplorer(sequential, test, n_samples=4, progress=False)
path_explorer

# %% [markdown]
# `L1Explorer` compares models trained with different L1 strengths; `LeakRateExplorer` fits an
# echo state network on your images fed column by column.

# %%
def small_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

sweep = {}
for l1 in (0.0, 1e-3, 1e-2):
    torch.manual_seed(0)
    sweep[l1] = small_mlp()
    train(sweep[l1], digits, epochs=6, l1=l1, lr=3e-3, progress=False)
l1_explorer = L1Explorer({"MLP": sweep}, test, n_samples=100, progress=False)
l1_explorer

# %%
sparsities = [l1_explorer.sweeps["MLP"][l1]["sparsity"] for l1 in sorted(sweep)]
print("sparsity by L1:", np.round(sparsities, 3))
assert sparsities[-1] > sparsities[0]

# %%
leak_explorer = LeakRateExplorer(digits, n_reservoir=60, n_explain=8, progress=False)
leak_explorer

# %% [markdown]
# ## 4. Magics
#
# `%load_ext lrp_widgets` adds two magics that look names up in your notebook:
# `%lrp_explain MODEL X [--composite NAME] [--target T]` shows an explanation, and
# `%lrp_explore EXPLORER [MODEL DATA]` opens an explorer on your objects.

# %%
%load_ext lrp_widgets

# %%
%lrp_explain model test.x[:3] --composite epsilon --target 1

# %%
%lrp_explore rule model test

# %% [markdown]
# ## What you saw
#
# * A model of your own, with a custom `forward`, is explained as soon as every operation is a
#   module; `lrp_widgets.Sum` makes residual additions explainable.
# * Problems are caught with messages that name the module or the call and say how to fix it.
# * All five explorers, and the magics, work on your model and data the same way they work on
#   the shipped examples.
