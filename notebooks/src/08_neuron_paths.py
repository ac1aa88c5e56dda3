# %% [markdown]
# # 08 · Neuron paths: which chains of neurons carry a prediction
#
# **What you will learn**
#
# * how to drive the `PathExplorer`: slide `k` and watch the k most relevant *paths* of neurons
#   (one neuron per layer, from the explained output down to the first conv block) appear in the
#   neuron graph, with the heatmap that only those neurons explain;
# * how a **relevance** heatmap differs from an **activation** heatmap of the same channels, and
#   what a **deconvolution** (Zeiler and Fergus) of a channel shows — measured on the objects'
#   masks, not just looked at;
# * how close k paths come to the full explanation (MSE and SMAPE against k), and why that curve
#   is guaranteed to fall only when every layer uses the z+ rule.
#
# The model is the package's MiniVGG trained on coloured shapes (the slides' architecture,
# narrowed). Definitions, in short (`lrp_widgets.paths` has them in full): the neurons of a layer
# are its output channels (or units); the *message* from neuron `k` to neuron `j` one chosen layer
# below is the relevance `j` receives when only `k` passes relevance; an edge's *share* is its
# message divided by `R_k`; a path's relevance is the output's relevance times the product of
# its shares, and only positive shares count.

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt
from torch import nn
from lrp_widgets import Composite, rules, zoo
from lrp_widgets.paths import PathFinder, deconvolve
from lrp_widgets.widgets import PathExplorer

torch.manual_seed(0)
torch.set_num_threads(1)  # tiny convolutions: one thread is fastest on a shared 2-core machine
%matplotlib widget

# %% [markdown]
# ## 1. The explorer
#
# Built with no arguments it uses the shipped MiniVGG and the shapes test set; we ask for 40
# samples so that the measurements below can use it too. Top row: the neuron graph (columns
# are the chosen layers, the orange band is the layer the bottom panels look at; edge width is
# the relevance flowing along the edge, summed over the k paths that use it) and the fidelity
# curves with the current k marked. Bottom row: the input, the relevance that flows through the
# neurons of the k paths only, the activation of the channels on the paths at the chosen layer
# (upsampled to the input) and their deconvolution.

# %%
model = zoo.load("shapes_minivgg")
test = zoo.dataset("shapes_minivgg").test
explorer = PathExplorer(n_samples=40, progress=False)
explorer

# %% [markdown]
# Everything the explorer shows is in `explorer.state`, and its controls can be set from code
# (which is also how the tests drive it). More paths light up more of the graph, and their
# heatmap comes closer to the full one:

# %%
explorer.controls["sample"].value = 0
explorer.controls["k"].value = 1
one = dict(explorer.state)
explorer.controls["k"].value = 20
twenty = dict(explorer.state)
print(f"k=1:  {len(one['paths'])} path,  {len(one['edges'])} edges, MSE {one['mse']:.3g}, SMAPE {one['smape']:.0f}%")
print(f"k=20: {len(twenty['paths'])} paths, {len(twenty['edges'])} edges, MSE {twenty['mse']:.3g}, SMAPE {twenty['smape']:.0f}%")
assert len(one["paths"]) == 1 and len(twenty["paths"]) == 20
assert len(twenty["edges"]) > len(one["edges"])
assert twenty["mse"] < one["mse"] and twenty["smape"] < one["smape"]

# %% [markdown]
# ## 2. The paths themselves
#
# The explorer holds one `PathFinder` per sample: it computes the messages once, and a new `k`
# is then a small exact k-best search. Each path lists one neuron per layer, top (the dense
# layer nearest the output) first; `shares` are the fractions of relevance passed along its
# edges, the first one being the top neuron's share of the output.

# %%
x = test.x[0:1]
finder = PathFinder(model, x)
print("explained class:", test.classes[finder.target], " output relevance f =", round(finder.output_relevance, 3))
for path in finder.paths(5):
    neurons = "  ->  ".join(f"{layer}[{index}]" for layer, index in path.neurons)
    print(f"{neurons:<52} shares {np.round(path.shares, 3)}  relevance {path.relevance:.3f}")
first = finder.paths(5)[0]
assert all(share > 0 for share in first.shares)  # a path carries positive relevance only
assert np.isclose(first.relevance, finder.output_relevance * np.prod(first.shares))

# %% [markdown]
# ## 3. Relevance heatmaps and activation heatmaps
#
# Both start from the same neurons, the channels on the k paths, but answer different questions.
# The **relevance** heatmap is a backward quantity: how much each pixel contributed to *this*
# class's output through those neurons. The **activation** heatmap is a forward quantity: where
# those channels fire, whatever they are used for. The shapes data set knows where each object
# is, so we can measure which of the two lands on the object: the share of positive mass inside
# the object's mask, over the explorer's 40 samples, with k = 5.

# %%
masks = np.asarray(test.masks[:40], dtype=bool)
area = masks.mean()


def object_share(heat, mask):
    positive = np.clip(heat, 0, None)
    return (positive * mask).sum() / max(positive.sum(), 1e-30)


explorer.controls["k"].value = 5
shares = {"full LRP": [], "k-path relevance": [], "activation features.10": [], "activation features.4": [],
          "deconvolution features.10": [], "deconvolution features.4": []}
for sample in range(40):
    explorer.controls["sample"].value = sample
    for layer in ("features.10", "features.4"):
        explorer.controls["layer"].value = layer
        state = explorer.state
        shares[f"activation {layer}"].append(object_share(state["activation_map"], masks[sample]))
        shares[f"deconvolution {layer}"].append(object_share(np.abs(state["deconvolution"]).sum(0), masks[sample]))
    shares["full LRP"].append(object_share(state["full_heatmap"], masks[sample]))
    shares["k-path relevance"].append(object_share(state["path_heatmap"], masks[sample]))
shares = {name: np.array(values) for name, values in shares.items()}
print(f"objects cover {area:.1%} of the image on average")
for name, values in shares.items():
    print(f"{name:>26}: {values.mean():.1%} of the positive mass on the object")

# %%
assert shares["full LRP"].mean() > 3 * area and shares["k-path relevance"].mean() > 2 * area
assert shares["k-path relevance"].mean() > shares["activation features.4"].mean() + 0.1
assert shares["activation features.10"].mean() > shares["activation features.4"].mean()
assert min(values.mean() for values in shares.values()) > area  # all of them prefer the object

# %% [markdown]
# The relevance maps concentrate on the object: the full explanation puts several times the
# object's area share of its positive mass there, and five paths already most of that. The
# activation maps of the very same channels depend on the layer. At the first conv block
# (`features.4`) the path channels fire over the background texture too, so their activation
# is spread out: where a channel fires is not what counted for the class. The deeper block's
# (`features.10`) channels are more object-specific and their activation lands on the object
# about as much as the path relevance does (by how much depends on the trained weights: read the
# printed numbers). A picture of one sample, with k = 5:

# %%
explorer.controls["sample"].value = 1
fig, axes = plt.subplots(1, 5, figsize=(11, 2.6))
axes[0].imshow(test.x[1].permute(1, 2, 0).clamp(0, 1))
axes[0].set_title("input", fontsize=8)
for ax, key, title in ((axes[1], "full_heatmap", "full LRP"), (axes[2], "path_heatmap", "5-path relevance")):
    heat = explorer.state[key]
    limit = np.abs(heat).max() + 1e-12
    ax.imshow(heat, cmap="bwr", vmin=-limit, vmax=limit)
    ax.set_title(title, fontsize=8)
for ax, layer in zip(axes[3:], ("features.10", "features.4")):
    explorer.controls["layer"].value = layer
    ax.imshow(explorer.state["activation_map"], cmap="magma")
    ax.set_title(f"activation, path channels of {layer}", fontsize=8)
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
plt.show()

# %% [markdown]
# ## 4. Deconvolution
#
# Zeiler and Fergus's deconvnet reconstructs in pixel space what one channel responds to: keep
# that channel's activation, zero all others, and walk back through max-unpooling (with the
# forward pass's switches), ReLU and the transposed convolutions. The explorer shows the sum of
# the reconstructions of the channels on the paths; here each channel of the first path at both
# conv layers on its own (grey is zero):

# %%
explorer.controls["sample"].value = 1
finder = PathFinder(model, test.x[1:2])
path = finder.paths(1)[0]
fig, axes = plt.subplots(1, 3, figsize=(7, 2.6))
axes[0].imshow(test.x[1].permute(1, 2, 0).clamp(0, 1))
axes[0].set_title("input", fontsize=8)
for ax, (layer, channel) in zip(axes[1:], [n for n in path.neurons if n[0].startswith("features")]):
    image = deconvolve(model, test.x[1:2], layer, channel)[0]
    image = image / (2 * image.abs().max() + 1e-12) + 0.5
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(f"{layer}, channel {channel}", fontsize=8)
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
plt.show()

# %% [markdown]
# The reconstructions are not explanations of the class (they do not depend on it), but they
# show what the path's channels see. Measured above as the share of |deconvolution| on the
# object, they prefer the object, the deeper block's channels much more than the first block's:

# %%
print(f"deconvolution on the object: features.10 {shares['deconvolution features.10'].mean():.1%}, "
      f"features.4 {shares['deconvolution features.4'].mean():.1%} (area {area:.1%})")
assert shares["deconvolution features.10"].mean() > 2 * area
assert shares["deconvolution features.10"].mean() > shares["deconvolution features.4"].mean() > area

# %% [markdown]
# ## 5. How close do k paths come? MSE and SMAPE against k
#
# The k-path heatmap masks every path layer to the neurons of the k best paths. The k best are
# the first k of one ranking, so the kept neurons only grow with k, and one would expect the
# heatmap to approach the full one steadily. We measure it on all 40 samples, first with the
# default composite (`epsilon_plus_flat`: flat first layer, z+ in the other conv layers,
# epsilon in the dense layers), then with **z+ everywhere**. (SMAPE is at most 200%, reached at
# every pixel where the k-path heatmap is zero and the full one is not, which is most pixels for
# small k; it is a scale-free view, while MSE is dominated by the strongest pixels.)

# %%
def curves(explorer):
    mse, smape = [], []
    for sample in range(explorer.controls["sample"].max + 1):
        explorer.controls["sample"].value = sample
        mse.append(explorer.state["mse_curve"])
        smape.append(explorer.state["smape_curve"])
    return np.array(mse), np.array(smape)


def never_rises(curve):
    return np.all(np.diff(curve, axis=1) <= 1e-12 * np.abs(curve).max(axis=1, keepdims=True), axis=1)


zplus = Composite(layer_rules={(nn.Conv2d, nn.Linear): rules.ZPlus()}, name="z+ everywhere")
explorer_zplus = PathExplorer(n_samples=40, composite=zplus, progress=False)
results = {"epsilon_plus_flat": curves(explorer), "z+ everywhere": curves(explorer_zplus)}
for name, (mse, smape) in results.items():
    print(f"{name:>18}: MSE never rises with k in {never_rises(mse).sum()}/40 samples, SMAPE in "
          f"{never_rises(smape).sum()}/40; MSE(k=20) < MSE(k=1) in {(mse[:, -1] < mse[:, 0]).sum()}/40; "
          f"mean MSE(20)/MSE(1) = {(mse[:, -1] / mse[:, 0]).mean():.2f}")

# %%
ks = explorer.state["ks"]
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, (name, (mse, _)) in zip(axes, results.items()):
    relative = mse / mse[:, :1]
    rises = ~never_rises(mse)
    ax.plot(ks, relative[~rises].T, color="0.7", lw=0.8)
    if rises.any():
        ax.plot(ks, relative[rises].T, color="tab:red", lw=1.2)
    ax.set_title(f"{name}: MSE(k) / MSE(1) ({rises.sum()} curves rise somewhere, red)", fontsize=8)
    ax.set_xlabel("k", fontsize=8)
plt.show()

# %% [markdown]
# With the default composite more paths help (the MSE at k = 20 is well below the MSE at k = 1,
# about half on average) but the curve is **not monotone** for every sample: adding a path sometimes
# moves the heatmap away from the full one. The reason is the sign of the messages. The dense
# layer uses the epsilon rule, whose messages can be negative: a newly kept dense neuron can send
# negative relevance to conv channels that are already kept, and the neurons with negative
# relevance — which shape the full heatmap — are never on a path, because paths carry positive
# relevance only. With **z+ everywhere** every message is non-negative (ReLU activations and
# pixels are >= 0), so the k-path heatmap is a sum of a growing subset of the full heatmap's
# non-negative terms: every pixel climbs from 0 towards its full value, and MSE and SMAPE can
# only fall. That is exactly what we measured, and we can check it pixel by pixel:

# %%
mse_zplus, smape_zplus = results["z+ everywhere"]
mse_default, _ = results["epsilon_plus_flat"]
assert never_rises(mse_zplus).all() and never_rises(smape_zplus).all()
assert (mse_default[:, -1] < mse_default[:, 0]).mean() >= 0.9  # more paths help on average
assert never_rises(mse_default).sum() < 40  # ... but not monotonically for every sample

finder = PathFinder(model, test.x[0:1], composite=zplus)
h1, h5, h20, full = finder.heatmap(1), finder.heatmap(5), finder.heatmap(20), finder.full_heatmap
tolerance = 1e-6 * float(full.abs().max())
assert bool((h1 >= -tolerance).all() and (h1 <= h5 + tolerance).all() and (h5 <= h20 + tolerance).all()
            and (h20 <= full + tolerance).all())
print("z+ everywhere: 0 <= heatmap(1) <= heatmap(5) <= heatmap(20) <= full heatmap, pixel by pixel")

# %% [markdown]
# ## What you saw
#
# * The `PathExplorer` finds the k most relevant chains of neurons exactly and draws them as a
#   graph whose edge widths are the relevance they carry; a `k` change is a cached search and a
#   cached heatmap, so the slider is instant.
# * Relevance through the paths' neurons lands on the object (objects cover 16% of the image;
#   five paths put several times that share of their positive relevance there). The activation
#   maps of the very same channels are spread over the background at the first conv block:
#   activation says where a channel fires, relevance says what counted for the class.
# * A deconvolution shows what a path's channel responds to in pixel space, independently of the
#   explained class; the deeper block's channels respond to the object much more selectively.
# * Fidelity against k: with the default composite more paths help on average but MSE is not
#   monotone in k for every sample, because the epsilon rule in the dense layer sends negative
#   messages; with z+ everywhere all messages are non-negative and MSE and SMAPE fall with k for
#   every sample, pixel by pixel.
#
# Next: `09_your_own_model` brings your own PyTorch model into every explorer.
