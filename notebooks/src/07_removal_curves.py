# %% [markdown]
# # 07 · Removal curves: is the explanation faithful to the model?
#
# **What you will learn**
#
# * how to test a heatmap against the model it explains: remove the pixels it calls most
#   relevant (MoRF), least relevant (LeRF) or random ones, step by step, and watch the score of
#   the predicted class;
# * how to use the `RemovalExplorer` to slide the removed fraction, switch the order and the
#   baseline (what a removed pixel becomes) and see the input the model actually received;
# * AOPC, the area over the perturbation curve, and why the baseline has to be named with every
#   number;
# * the feature-removal paper's experiment (remove 15 % least / most relevant pixels) and its
#   efficiency claim: a model retrained on the most relevant half of the pixels keeps most of its
#   accuracy, far more than one retrained on a random half.

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt
from lrp_widgets import data, models, zoo
from lrp_widgets.removal import BASELINES, ORDERS, prune_inputs, removal_experiment
from lrp_widgets.train import accuracy, train
from lrp_widgets.widgets import RemovalExplorer

torch.manual_seed(0)
%matplotlib inline

# %% [markdown]
# ## 1. The model and the data
#
# The shipped digits CNN (two conv layers, two dense layers) and its test set: 8x8 handwritten
# digits scaled to [0, 1], 359 images.

# %%
model = zoo.load("digits_cnn")
test = zoo.dataset("digits_cnn").test
print(f"test images: {tuple(test.x.shape)}, test accuracy: {accuracy(model, test.x, test.y):.1%}")

# %% [markdown]
# ## 2. The explorer
#
# The explorer explains the first 128 test images once (LRP `epsilon_plus_flat`, the relevance of
# the predicted class) and computes, for every baseline, the three curves over those images: the
# mean probability of the originally predicted class after removing a fraction of the pixels
# (a second or two, with a progress bar). A control change then only perturbs one image and runs
# one forward pass:
#
# * **fraction** moves the dashed marker; the third panel is the current sample with that share
#   of its pixels removed, exactly as the curve fed it to the model, and the readout gives the
#   model's prediction for it with its confidence;
# * **order** picks MoRF, LeRF or random (its curve is drawn bold, the dotted line is the current
#   sample's own curve);
# * **baseline** picks what a removed pixel becomes: `zero`, the data `mean`, the sample's own
#   mean (`sample_mean`), a `blur` of the sample, or uniform `noise`;
# * **sample** picks the image.
#
# The legend carries each order's AOPC.

# %%
%matplotlib widget
explorer = RemovalExplorer()
explorer

# %% [markdown]
# ## 3. AOPC: one number per curve
#
# AOPC is the mean, over the steps `k = 0..L`, of how far the score has fallen:
# `mean_k (f(x) - f(x^(k)))`, averaged over the images. A faithful explanation puts the pixels the
# model needs at the top of its ranking, so removing them first (MoRF) makes the score fall
# fastest: the largest AOPC. LeRF removes the pixels with the most negative relevance first
# (evidence *against* the class) and should hurt least. A random order lies in between.

# %%
curves = explorer.curves_for("mean")
aopc = {order: curves[order].aopc for order in ORDERS}
for order in ORDERS:
    print(f"{curves[order].label:<28} AOPC {aopc[order]:.3f}")
assert aopc["morf"] > aopc["random"] > aopc["lerf"]

# %% [markdown]
# ## 4. The baseline is part of the result
#
# A removed pixel has to become *something*, and the model sees that something. The same
# ranking gives different curves with different baselines, so a removal curve is only
# comparable with curves made with the same baseline. Here are all five, as the explorer
# computed them.

# %%
by_baseline = {baseline: explorer.curves_for(baseline) for baseline in BASELINES}
print(f"{'baseline':<12}" + "".join(f"{order:>9}" for order in ("MoRF", "random", "LeRF")))
for baseline, result in by_baseline.items():
    print(f"{baseline:<12}" + "".join(f"{result[order].aopc:>9.3f}" for order in ("morf", "random", "lerf")))

fig, axes = plt.subplots(1, len(BASELINES), figsize=(12, 2.6), sharey=True)
colors = {"morf": "tab:red", "lerf": "tab:blue", "random": "0.45"}
for ax, (baseline, result) in zip(axes, by_baseline.items()):
    for order in ORDERS:
        ax.plot(result[order].fractions, result[order].mean_scores, color=colors[order], label=result[order].label.split(",")[0])
    ax.set_title(f"baseline {baseline!r}", fontsize=9)
    ax.set_xlabel("fraction removed", fontsize=8)
axes[0].set_ylabel("p(original class)", fontsize=8)
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %%
for baseline, result in by_baseline.items():
    assert result["morf"].aopc > result["random"].aopc > result["lerf"].aopc, baseline
# a blur keeps the coarse shape of the digit, so removal hurts far less than replacing by the mean
assert by_baseline["blur"]["morf"].aopc < 0.6 * by_baseline["mean"]["morf"].aopc

# %% [markdown]
# The order MoRF > random > LeRF holds for every baseline, but the numbers do not: the blur
# baseline keeps the coarse shape of the digit, so the model still recognises much of it, and
# the noise baseline hurts even when the least relevant pixels go (noise is unlike any digit),
# which lifts the LeRF curve's AOPC towards the others.
#
# ## 5. The paper's experiment: remove 15 %
#
# On the whole test set: remove the 15 % least relevant pixels, or the 15 % most relevant, or a
# random 15 % (baseline: the data mean), and classify again. *Confidence* is the mean
# probability of the class predicted after removal; *p(original)* that of the class predicted
# before; *changed* the share of predictions that changed.

# %%
table = removal_experiment(model, test, fraction=0.15, composite="epsilon_plus_flat", baseline="mean")
table

# %%
rows = table.to_dict()
print({condition: round(row["accuracy"], 3) for condition, row in rows.items()})
assert rows["least relevant"]["accuracy"] >= rows["none"]["accuracy"] - 0.02   # hardly any change
assert rows["most relevant"]["accuracy"] < rows["none"]["accuracy"] - 0.3     # a collapse
assert rows["most relevant"]["accuracy"] < rows["random"]["accuracy"] <= rows["least relevant"]["accuracy"]

# %% [markdown]
# Removing the least relevant 15 % leaves the model's accuracy where it was: those pixels did
# not matter to it. Removing the most relevant 15 % — about ten pixels of 64 — changes more than
# half of the predictions. A random 15 % lies in between, close to the harmless end.
#
# ## 6. Input pruning: how many pixels does a model need?
#
# The feature-removal paper's efficiency claim at the level of a data set: rank every pixel by
# its mean |relevance| over the training set, keep only the top share for every image, retrain,
# and compare with a model retrained on a random share of the same size. `prune_inputs` does
# that; we use a small MLP (32 hidden units) and a fast fit (8 epochs, a larger step and batch
# than the defaults) so that the seven models train in seconds. The ranking uses the epsilon rule
# (its relevance is zero where the input is zero, so it follows where the data is).

# %%
def fit(model, split_data):
    train(model, split_data, epochs=8, lr=1e-2, batch_size=128, seed=0, progress=False)


digits = data.digits()
pruning = prune_inputs(lambda shape: models.MLP(shape, 10, hidden=(32,)), digits, keep=(1.0, 0.5, 0.25),
                       composite="epsilon", fit=fit, progress=False)
pruning

# %%
fig, axes = plt.subplots(1, 3, figsize=(6.5, 2.3))
axes[0].imshow(pruning.importance, cmap="magma")
axes[0].set_title("mean |relevance|", fontsize=9)
for ax, q, mask in zip(axes[1:], pruning.keep[1:], pruning.keep_masks[1:]):
    ax.imshow(mask, cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"kept: {q:.0%}", fontsize=9)
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
fig.tight_layout()
plt.show()

# %%
full, half, quarter = pruning.accuracy
_, random_half, random_quarter = pruning.random_accuracy
print(f"all pixels {full:.3f}; most relevant half {half:.3f} vs random half {random_half:.3f}; "
      f"most relevant quarter {quarter:.3f} vs random quarter {random_quarter:.3f}")
assert half > random_half + 0.02 and quarter > random_quarter + 0.02
assert half > full - 0.05   # half the input, almost all of the accuracy

# %% [markdown]
# The relevance ranking picks the pixels where the strokes of the digits are (the blank border
# is dropped first), and a model retrained on that half loses only about a point of accuracy;
# a random half loses several points, and a random quarter much more.
#
# ## What you saw
#
# * Removing pixels in relevance order tests an explanation against the model: with LRP on the
#   digits CNN, MoRF makes the score fall fastest and LeRF slowest, for every baseline
#   (AOPC: MoRF > random > LeRF).
# * The baseline changes the numbers a lot (a blur hurts far less than the data mean), so a
#   removal curve or an AOPC must always say which baseline it used.
# * The 15 % experiment: the least relevant 15 % of the pixels can go without any loss of
#   accuracy, the most relevant 15 % cannot.
# * Input pruning: ranked by mean |relevance|, half of the pixels keep almost all of the
#   accuracy, clearly more than a random half.
# * The `RemovalExplorer` shows all of it for one image at a time: the input the model saw at
#   every fraction, and what it predicted.
