# %% [markdown]
# # 02 · Rules and composites on a CNN
#
# **What you will learn**
#
# * how to drive the `RuleExplorer`: pick a composite, slide epsilon and gamma, pick an image,
#   and watch the heatmap and the per-layer relevance sums change;
# * how the composites differ on a MiniVGG (the slides' [1] architecture, narrowed) trained on
#   coloured shapes, measured as the share of positive relevance that lands on the object;
# * that our epsilon rule agrees with Captum's LRP [3] (an independent implementation). The rules
#   and composites are those of the LRP overview [2].

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt
from lrp_widgets import explain, composites, zoo
from lrp_widgets.widgets import RuleExplorer

torch.manual_seed(0)
%matplotlib widget

# %% [markdown]
# ## 1. The explorer
#
# Built with no arguments it uses the shipped MiniVGG and the shapes test set. The bars on the
# right are the relevance sum at every layer, from the output (top) to the input (bottom):
# equal bars mean relevance is conserved. Try `epsilon` and slide epsilon up: the stabilizer
# absorbs more and more relevance and the bars shrink towards the input.

# %%
explorer = RuleExplorer()
explorer

# %% [markdown]
# Everything the explorer shows is in `explorer.state`, and its controls can be set from code —
# which is also how the tests drive it:

# %%
explorer.controls["composite"].value = "epsilon"
explorer.controls["epsilon"].value = 1e-6
small = explorer.state["stage_sums"].copy()
explorer.controls["epsilon"].value = 1.0
large = explorer.state["stage_sums"].copy()
print("input relevance with eps=1e-6:", small[-1].round(4), " with eps=1:", large[-1].round(4))
assert abs(large[-1]) < abs(small[-1])

# %% [markdown]
# ## 2. Which composite puts relevance on the object?
#
# The shapes data set knows where each object is (`masks`). For a faithful heatmap most of the
# positive relevance should fall inside the object. We measure the share for every composite
# over 200 test images and compare it with the share of the image the objects cover.

# %%
model = zoo.load("shapes_minivgg")
test = zoo.dataset("shapes_minivgg").test
x, masks = test.x[:200], np.asarray(test.masks[:200], dtype=bool)
print(f"objects cover {masks.mean():.1%} of the image on average")
shares = {}
for name in composites.NAMES:
    relevance = explain(model, x, composite=name).relevance.sum(1).numpy()
    positive = np.clip(relevance, 0, None)
    shares[name] = (positive * masks).sum() / positive.sum()
    print(f"{name:>22}: {shares[name]:.1%} of positive relevance on the object")
assert shares["epsilon_plus_flat"] > masks.mean() + 0.1

# %%
fig, axes = plt.subplots(3, len(composites.NAMES) + 1, figsize=(12, 5.5))
for row in range(3):
    axes[row, 0].imshow(x[row].permute(1, 2, 0).clamp(0, 1))
    for col, name in enumerate(composites.NAMES, start=1):
        heat = explain(model, x[row:row + 1], composite=name).relevance[0].sum(0).numpy()
        limit = np.abs(heat).max() + 1e-12
        axes[row, col].imshow(heat, cmap="bwr", vmin=-limit, vmax=limit)
        axes[0, col].set_title(name, fontsize=7)
for ax in axes.flat:
    ax.set_xticks([]); ax.set_yticks([])
plt.show()

# %% [markdown]
# ## 3. Agreement with Captum on the epsilon rule
#
# Captum's `LRP` uses the epsilon rule (epsilon = 1e-9) on every layer. It rejects `nn.Flatten`,
# so we give it the same weights in a copy that flattens with a view (and uses plain ReLUs).

# %%
import copy
from captum.attr import LRP


class CaptumCopy(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.features = copy.deepcopy(model.features)
        self.classifier = copy.deepcopy(model.classifier[1:])
        for module in self.modules():
            if isinstance(module, torch.nn.ReLU):
                module.inplace = False

    def forward(self, x):
        return self.classifier(self.features(x).view(x.shape[0], -1))


images = x[:8].double()
ours = explain(model.double(), images, composite=composites.epsilon(1e-9))
theirs = LRP(CaptumCopy(model).eval()).attribute(images.clone(), target=ours.target)
model.float()
difference = (ours.relevance - theirs).abs().max() / theirs.abs().max()
print(f"largest difference relative to the largest relevance: {difference:.2e}")
assert difference < 1e-5

# %% [markdown]
# ## What you saw
#
# * The `RuleExplorer` shows the heatmap and the relevance sum per layer for any composite;
#   a larger epsilon absorbs more relevance (the bars shrink).
# * On the shapes, every composite puts more positive relevance on the object than the object's
#   share of the image; the measured shares are printed above.
# * Our epsilon rule matches Captum's LRP to float64 precision.
#
# ## References
#
# 1. J. Á. Piñeiro Acevedo. *Layer-Wise Relevance Propagation.* Lecture slides, 18 December 2024 (no public link known; the project keeps a copy of the text it used).
# 2. G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller. *Layer-Wise Relevance Propagation: An Overview.* In: Explainable AI: Interpreting, Explaining and Visualizing Deep Learning, LNCS 11700, Springer, 2019, 193–209. <https://doi.org/10.1007/978-3-030-28954-6_10>
# 3. N. Kokhlikyan, V. Miglani, M. Martin, E. Wang, B. Alsallakh, J. Reynolds, A. Melnikov, N. Kliushkina, C. Araya, S. Yan, O. Reblitz-Richardson. *Captum: A unified and generic model interpretability library for PyTorch.* arXiv:2009.07896, 2020. <https://arxiv.org/abs/2009.07896>
