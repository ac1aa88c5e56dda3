# %% [markdown]
# # 01 · LRP basics: the worked example, the rules, conservation
#
# **What you will learn**
#
# * how Layer-wise Relevance Propagation (LRP) redistributes a prediction backwards, layer by
#   layer, with the rule `R_j = sum_k z_jk / sum_j' z_j'k * R_k` — by hand, on the slides' [1]
#   2-4-3 network, and then with `lrp_widgets.explain`;
# * what the rules (LRP-0, epsilon, gamma, alpha-beta, z+, zB, flat; LRP [2], the rules [3]) do to a heatmap of a real
#   model (a small CNN trained on handwritten digits, shipped with the package);
# * what *conservation* means and how to check it: the relevance sum at every layer;
# * how an instructor turns an explorer into one HTML page that runs without a kernel.

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt
import lrp_widgets
from lrp_widgets import explain, composites, rules, zoo

torch.manual_seed(0)
%matplotlib inline

# %% [markdown]
# ## 1. The slides' worked example, by hand
#
# Two inputs, four hidden neurons, three outputs. The output relevances are given:
# `R(o1..o3) = 0.5, 0.3, 0.2`. The contributions `z_jk` of each hidden neuron `j` to each output
# `k` are known; each output's relevance is split in proportion to them. Row `h1` is the one on
# the slide (0.8, 0.1, 0.5, with column sums 2, 1, 2); the other rows are chosen to give the
# slide's totals.

# %%
Z = np.array([[0.8, 0.1, 0.5],   # h1 -> o1, o2, o3
              [0.4, 0.5, 0.2],   # h2
              [0.5, 0.2, 0.6],   # h3
              [0.3, 0.2, 0.7]])  # h4
R_out = np.array([0.5, 0.3, 0.2])
R_hidden = (Z / Z.sum(0)) @ R_out
print("R(h1..h4) =", R_hidden.round(4))
print("R(x1), R(x2) from h1 =", 0.6 / 1 * 0.28, 0.4 / 1 * 0.28)
assert np.allclose(R_hidden, [0.28, 0.27, 0.245, 0.205])

# %% [markdown]
# ## 2. The same with the engine
#
# We build the network with those contributions (hidden activations are all 1 for the input
# (1, 1), so `z_jk` is simply the weight), start from the same output relevance, and ask for
# the relevance at every layer (`layers=True`). LRP-0 is the rule the slides use.

# %%
net = torch.nn.Sequential(torch.nn.Linear(2, 4, bias=False), torch.nn.ReLU(), torch.nn.Linear(4, 3, bias=False)).double()
with torch.no_grad():
    net[0].weight.copy_(torch.tensor([[0.6, 0.4], [0.5, 0.5], [0.3, 0.7], [0.9, 0.1]]))
    net[2].weight.copy_(torch.tensor(Z.T))
x = torch.ones(1, 2, dtype=torch.float64)
result = explain(net, x, composite="lrp0", layers=True, initial_relevance=torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64))
print("relevance at the last layer's input, R(h):", result.layers["2"][0].numpy().round(4))
print("relevance of the inputs, R(x):", result.relevance[0].numpy().round(4))
assert np.allclose(result.layers["2"][0].numpy(), [0.28, 0.27, 0.245, 0.205])
result.conservation()

# %% [markdown]
# Every stage of the table sums to 1.0: with LRP-0 and no biases, relevance is **conserved** —
# nothing is created or lost on the way down.
#
# ## 3. The rules side by side, on a real model
#
# The package ships a small CNN trained on scikit-learn's 8x8 handwritten digits. We explain
# the same test images with six composites (a composite says which rule each layer gets).
# Red is evidence for the predicted digit, blue against it; each map has its own symmetric scale.

# %%
model = zoo.load("digits_cnn")
test = zoo.dataset("digits_cnn").test
x = test.x[:6]
names = ["lrp0", "epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"]
maps = {name: explain(model, x, composite=name).relevance[:, 0].numpy() for name in names}

fig, axes = plt.subplots(len(x), len(names) + 1, figsize=(1.4 * (len(names) + 1), 1.4 * len(x)))
for row in range(len(x)):
    axes[row, 0].imshow(x[row, 0], cmap="gray")
    for col, name in enumerate(names, start=1):
        heat = maps[name][row]
        limit = np.abs(heat).max() + 1e-12
        axes[row, col].imshow(heat, cmap="bwr", vmin=-limit, vmax=limit)
for ax in axes.flat:
    ax.set_xticks([]); ax.set_yticks([])
for col, name in enumerate(["input"] + names):
    axes[0, col].set_title(name, fontsize=7)
plt.show()

# %% [markdown]
# LRP-0 and epsilon follow the gradient and are noisy; z+ (in `epsilon_plus`) keeps only
# positive evidence; the flat first layer spreads relevance over each receptive field; gamma
# and alpha-beta favour positive contributions. How similar are they? The correlation between
# maps tells:

# %%
def correlation(a, b):
    return np.corrcoef(a.ravel(), b.ravel())[0, 1]

for name in names[1:]:
    print(f"{name:>22}: correlation with lrp0 = {correlation(maps['lrp0'], maps[name]):+.2f}")
# epsilon with a tiny epsilon is LRP-0 up to the stabilizer
assert correlation(maps["lrp0"], maps["epsilon"]) > 0.99

# %% [markdown]
# ## 4. Conservation, layer by layer
#
# `conservation()` lists the relevance sum per sample at every layer, from the explained output
# down to the input. Biases and the epsilon stabilizer absorb part of it, so the trained model
# does not conserve exactly; a bias-free ReLU network with LRP-0 does, to float precision.

# %%
table = explain(model, x[:3], composite="epsilon").conservation()
print(table)

bias_free = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=False), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 36, 10, bias=False)).double()
check = explain(bias_free, x.double(), composite="lrp0")
logit = check.output.gather(1, check.target[:, None]).squeeze(1)
print("input relevance sums:", check.relevance.sum((1, 2, 3)).numpy().round(6))
print("explained logits:    ", logit.numpy().round(6))
assert torch.allclose(check.relevance.sum((1, 2, 3)), logit)

# %% [markdown]
# ## 5. For instructors: an explorer as a web page, no kernel needed
#
# Course pages and nbviewer run no kernel. `to_html` precomputes an explorer's pictures over a
# grid of control values and writes one self-contained HTML file (pictures embedded, a few
# kilobytes of JavaScript, nothing fetched from the network) with the same sliders, dropdowns
# and readout. `grid` narrows the values; the other controls keep their default grid. A small
# grid keeps this fast; the command line writes every explorer with its default grid:
# `lrp-widgets export --all --out DIR` (or one: `lrp-widgets export rule --out rule.html`).

# %%
import tempfile
from pathlib import Path
from lrp_widgets.widgets import RuleExplorer

explorer = RuleExplorer()
folder = Path(tempfile.mkdtemp())
report = explorer.to_html(folder / "rule.html", grid={"composite": ["lrp0", "epsilon", "epsilon_gamma_box"],
                                                      "epsilon": [1e-6, 0.1], "gamma": [0.1, 1.0], "sample": [0, 1]})
print(report)
print("each panel is stored for the controls it depends on:", report.depends_on)
page = report.path.read_text()
assert report.size < 1_000_000 and "https://" not in page and "http://" not in page
assert report.depends_on["input"] == ["sample"]  # one input picture per sample, whatever the rule

# %% [markdown]
# Open the file in any browser (or put it on a course page): moving a control swaps the
# precomputed pictures at once. LRP-0 ignores epsilon and gamma, so its pictures are stored once.
#
# ## What you saw
#
# * LRP splits each neuron's relevance among its inputs in proportion to their contributions;
#   the engine reproduces the slides' numbers exactly (R(h) = 0.28, 0.27, 0.245, 0.205).
# * The rules give visibly different heatmaps for the same prediction: the choice of composite
#   is part of the explanation.
# * Conservation holds exactly for LRP-0 on bias-free ReLU networks; with biases and epsilon
#   the per-layer table shows where relevance is absorbed.
# * An explorer exported with `to_html` is one small HTML page that works without a kernel:
#   the size, the grid and what each panel depends on are printed above.
#
# Next: `02_rules_and_composites` lets you slide the rule parameters yourself.
#
# ## References
#
# 1. J. Á. Piñeiro Acevedo. *Layer-Wise Relevance Propagation.* Lecture slides, 18 December 2024 (no public link known; the project keeps a copy of the text it used).
# 2. S. Bach, A. Binder, G. Montavon, F. Klauschen, K.-R. Müller, W. Samek. *On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation.* PLoS ONE 10(7): e0130140, 2015. <https://doi.org/10.1371/journal.pone.0130140>
# 3. G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller. *Layer-Wise Relevance Propagation: An Overview.* In: Explainable AI: Interpreting, Explaining and Visualizing Deep Learning, LNCS 11700, Springer, 2019, 193–209. <https://doi.org/10.1007/978-3-030-28954-6_10>
