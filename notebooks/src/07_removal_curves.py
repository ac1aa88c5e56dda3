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
# * AOPC, the area over the perturbation curve [2], and why the baseline has to be named with
#   every number;
# * the feature-removal paper's experiment [1] (remove 15 % least / most relevant pixels) and its
#   efficiency claim: a model retrained on the most relevant pixels keeps most of its accuracy;
#   and whether LRP ranks pixels better for that than simpler rankings (gradient, gradient x
#   input, pixel variance) or only better than a random subset.
#
# Every number a finding rests on is a **mean ± sd over 5 seeds**: each seed draws its own
# train/test split and trains its own model.

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from lrp_widgets import data, models, zoo
from lrp_widgets.zoo.studies import findings_table
from lrp_widgets.removal import BASELINES, ORDERS, RANKINGS, prune_inputs, removal_curve, removal_experiment
from lrp_widgets.train import accuracy, train
from lrp_widgets.widgets import RemovalExplorer

torch.manual_seed(0)
torch.set_num_threads(1)  # small models: a single thread is fastest here
%matplotlib widget

SEEDS = range(5)


def mean_sd(values, digits=3):
    """'mean ± sd' of per-seed values (sample sd)."""
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def lower(values, n_sd=2):
    """mean - n_sd * sd: the lower end of the interval an assert is made on."""
    return np.mean(values) - n_sd * np.std(values, ddof=1)


def upper(values, n_sd=2):
    return np.mean(values) + n_sd * np.std(values, ddof=1)

# %% [markdown]
# ## 1. The models and the data
#
# The shipped digits CNN (two conv layers, two dense layers) on scikit-learn's 8x8 handwritten
# digits scaled to [0, 1]. Seed 0 is the zoo's model; seeds 1-4 are trained with the zoo's
# recipe on their own train/test splits (a few seconds each).

# %%
recipe = zoo.build.RECIPES["digits_cnn"]
cnns = {}
for seed in SEEDS:
    split = data.digits(seed=seed)
    if seed == 0:
        model = zoo.load("digits_cnn")
    else:
        torch.manual_seed(seed)
        model = models.build(recipe.architecture)
        train(model, split, epochs=recipe.epochs, lr=recipe.lr, batch_size=recipe.batch_size, seed=seed, progress=False)
    cnns[seed] = (model.eval(), split)
test_accuracy = [accuracy(model, split.test.x, split.test.y) for model, split in cnns.values()]
print(f"{len(cnns)} CNNs, test images per split: {len(cnns[0][1].test.x)}, test accuracy {mean_sd(test_accuracy)}")

# %% [markdown]
# ## 2. The explorer
#
# The explorer explains the first test images of the zoo model once (LRP `epsilon_plus_flat`,
# the relevance of the predicted class) and computes, for every baseline, the three curves over
# those images: the mean probability of the originally predicted class after removing a
# fraction of the pixels (a second or two; `progress=True` would show a bar). A control change then only
# perturbs one image and runs one forward pass:
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
explorer = RemovalExplorer(progress=False)
explorer

# %% [markdown]
# ## 3. AOPC: one number per curve, for every baseline
#
# AOPC is the mean, over the steps `k = 0..L`, of how far the score has fallen:
# `mean_k (f(x) - f(x^(k)))`, averaged over the images. A faithful explanation puts the pixels the
# model needs at the top of its ranking, so removing them first (MoRF) makes the score fall
# fastest: the largest AOPC. LeRF removes the pixels with the most negative relevance first
# (evidence *against* the class) and should hurt least. A random order lies in between.
#
# A removed pixel has to become *something*, and the model sees that something, so every AOPC
# is given with its baseline. All five, for every seed's model on its whole test set:

# %%
curves = {}  # (seed, baseline, order) -> RemovalCurve
for seed, (model, split) in cnns.items():
    for baseline in BASELINES:
        for order in ORDERS:
            curves[seed, baseline, order] = removal_curve(model, split.test.x, order=order, baseline=baseline,
                                                          data_mean=split.train.x.mean(0), seed=seed)
aopc = {(baseline, order): np.array([curves[seed, baseline, order].aopc for seed in SEEDS]) for baseline in BASELINES for order in ORDERS}
rows = ["| baseline | MoRF | random | LeRF | MoRF - random | random - LeRF |", "|---|---|---|---|---|---|"]
for baseline in BASELINES:
    morf, rand, lerf = (aopc[baseline, order] for order in ("morf", "random", "lerf"))
    rows.append(f"| {baseline} | {mean_sd(morf)} | {mean_sd(rand)} | {mean_sd(lerf)} | {mean_sd(morf - rand)} | {mean_sd(rand - lerf)} |")
display(Markdown(f"AOPC of p(original class), mean ± sd over {len(SEEDS)} seeds (differences paired by seed)\n\n" + "\n".join(rows)))

# %%
fig, axes = plt.subplots(1, len(BASELINES), figsize=(12, 2.6), sharey=True)
colors = {"morf": "tab:red", "lerf": "tab:blue", "random": "0.45"}
for ax, baseline in zip(axes, BASELINES):
    for order in ORDERS:
        scores = np.stack([curves[seed, baseline, order].mean_scores for seed in SEEDS])
        fractions = curves[0, baseline, order].fractions
        ax.plot(fractions, scores.mean(0), color=colors[order], label=order)
        ax.fill_between(fractions, scores.mean(0) - scores.std(0, ddof=1), scores.mean(0) + scores.std(0, ddof=1), color=colors[order], alpha=0.2)
    ax.set_title(f"baseline {baseline!r}", fontsize=9)
    ax.set_xlabel("fraction removed", fontsize=8)
axes[0].set_ylabel("p(original class)", fontsize=8)
axes[0].legend(fontsize=7)
fig.suptitle(f"mean ± sd over {len(SEEDS)} seeds", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# Asserted: for every baseline, MoRF exceeds random and random exceeds LeRF by more than 0.03 at
# mean - 2 sd of the paired difference (a ranking unrelated to the model would give differences
# around 0); and a blur hurts far less than the data mean (the blur keeps the coarse shape of
# the digit): MoRF AOPC with blur below 0.6 of that with the mean, at mean + 2 sd.

# %%
for baseline in BASELINES:
    morf, rand, lerf = (aopc[baseline, order] for order in ("morf", "random", "lerf"))
    assert lower(morf - rand) > 0.03 and lower(rand - lerf) > 0.03, baseline
blur_over_mean = aopc["blur", "morf"] / aopc["mean", "morf"]
print(f"MoRF AOPC, blur / mean: {mean_sd(blur_over_mean)}")
assert upper(blur_over_mean) < 0.6

# %% [markdown]
# The order MoRF > random > LeRF holds for every baseline, but the numbers do not: the noise
# baseline hurts even when the least relevant pixels go (noise is unlike any digit), which lifts
# the LeRF curve's AOPC towards the others.
#
# ## 4. The paper's experiment: remove 15 %
#
# On the whole test set: remove the 15 % least relevant pixels, or the 15 % most relevant, or a
# random 15 % (baseline: the data mean), and classify again. *Confidence* is the mean
# probability of the class predicted after removal; *p(original)* that of the class predicted
# before; *changed* the share of predictions that changed. The table of seed 0:

# %%
tables = {seed: removal_experiment(model, split.test, fraction=0.15, composite="epsilon_plus_flat", baseline="mean", seed=seed)
          for seed, (model, split) in cnns.items()}
tables[0]

# %%
removal = {condition: np.array([tables[seed].to_dict()[condition]["accuracy"] for seed in SEEDS]) for condition in tables[0].to_dict()}
display(Markdown("| removed | accuracy (mean ± sd, 5 seeds) |\n|---|---|\n"
                 + "\n".join(f"| {condition} | {mean_sd(values)} |" for condition, values in removal.items())))
assert lower(removal["least relevant"] - removal["none"]) > -0.03          # hardly any change
assert upper(removal["most relevant"]) < np.mean(removal["none"]) - 0.3    # a collapse
assert lower(removal["random"] - removal["most relevant"]) > 0.2
assert lower(removal["least relevant"] - removal["random"], n_sd=1) > 0    # random: nearer the harmless end

# %% [markdown]
# Removing the least relevant 15 % leaves the model's accuracy where it was: those pixels did
# not matter to it. Removing the most relevant 15 % changes a large part of the predictions. A
# random 15 % lies in between, close to the harmless end.
#
# ## 5. Input pruning: how many pixels does a model need, and which?
#
# The feature-removal paper's efficiency claim at the level of a data set: rank every pixel by
# its mean |relevance| over the training set, keep only the top share for every image, retrain,
# and compare. Beating a random subset is easy: any ranking that drops the always-blank border
# does. So `prune_inputs` also ranks by the model's **gradient** (mean |df/dx|), by
# **gradient x input** and by the **variance** of each pixel over the training set (no model at
# all). We use a small MLP (32 hidden units) and a fast fit (8 epochs, a larger step and batch
# than the defaults) so that all the models (one per seed, ranking and
# fraction kept) train in seconds. The relevance uses the epsilon rule
# (its relevance is zero where the input is zero, so it follows where the data is).

# %%
KEEP = (1.0, 0.5, 0.25, 0.1)
pruning = {}
for seed in SEEDS:
    def fit(model, split_data, seed=seed):
        train(model, split_data, epochs=8, lr=1e-2, batch_size=128, seed=seed, progress=False)

    pruning[seed] = prune_inputs(lambda shape: models.MLP(shape, 10, hidden=(32,)), data.digits(seed=seed), keep=KEEP,
                                 composite="epsilon", fit=fit, seed=seed, rankings=RANKINGS, progress=False)
pruning[0]

# %%
kept = {ranking: np.array([pruning[seed].accuracies[ranking] for seed in SEEDS]) for ranking in RANKINGS}  # (seeds, fractions)
rows = ["| ranking | " + " | ".join(f"keep {q:.0%}" for q in KEEP[1:]) + " | mean over fractions |", "|---|" + "---|" * len(KEEP)]
for ranking, values in kept.items():
    rows.append(f"| {ranking} | " + " | ".join(mean_sd(values[:, i]) for i in range(1, len(KEEP))) + f" | {mean_sd(values[:, 1:].mean(1))} |")
display(Markdown(f"test accuracy after retraining on the kept pixels, mean ± sd over {len(SEEDS)} seeds\n\n" + "\n".join(rows)))

fig, axes = plt.subplots(1, 5, figsize=(10, 2.3))
for ax, ranking in zip(axes[:4], RANKINGS[:4]):
    ax.imshow(pruning[0].importances[ranking], cmap="magma")
    ax.set_title(ranking.replace("_", " "), fontsize=9)
axes[4].imshow(pruning[0].masks["relevance"][2], cmap="gray", vmin=0, vmax=1)
axes[4].set_title("kept by relevance: 25%", fontsize=9)
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# What the numbers say (asserted, on the mean accuracy over the three reduced fractions, paired
# by seed):
#
# * relevance beats a random subset clearly (every seed by more than 0.03);
# * relevance does **not** beat the simpler rankings: the model's gradient does at least as well
#   (relevance - gradient below +0.01 at mean + 2 sd), and so does the pixel variance, which
#   needs no model at all (below +0.03 at mean + 2 sd);
# * relevance and gradient x input keep exactly the same pixels: on a ReLU network the epsilon
#   rule is gradient x input up to the tiny epsilon, biases or not.

# %%
area = {ranking: values[:, 1:].mean(1) for ranking, values in kept.items()}
gaps = {other: area["relevance"] - area[other] for other in ("random", "gradient", "variance")}
print("relevance minus ...: " + ", ".join(f"{other} {mean_sd(gap)}" for other, gap in gaps.items()))
assert gaps["random"].min() > 0.03 and lower(gaps["random"], n_sd=1) > 0.03
assert upper(gaps["gradient"]) < 0.01
assert upper(gaps["variance"]) < 0.03
assert all(torch.equal(pruning[seed].masks["relevance"], pruning[seed].masks["gradient_x_input"]) for seed in SEEDS)
assert lower(kept["relevance"][:, 1] - kept["relevance"][:, 0]) > -0.05  # half the input, almost all of the accuracy

# %% [markdown]
# ## 6. The findings in one table
#
# The findings of the feature-removal paper [1], measured here (generated from the numbers above):

# %%
def verdict(holds):
    return "holds" if holds else "does not hold"


table = [
    ("removing the most relevant pixels hurts most, the least relevant least (AOPC MoRF > random > LeRF)",
     f"baseline mean: MoRF {mean_sd(aopc['mean', 'morf'])}, random {mean_sd(aopc['mean', 'random'])}, LeRF {mean_sd(aopc['mean', 'lerf'])}; "
     "order holds for all 5 baselines",
     verdict(all(lower(aopc[b, "morf"] - aopc[b, "random"]) > 0.03 and lower(aopc[b, "random"] - aopc[b, "lerf"]) > 0.03 for b in BASELINES))),
    ("removing the 15 % least relevant pixels leaves the accuracy unchanged",
     f"{mean_sd(removal['none'])} → {mean_sd(removal['least relevant'])}", verdict(lower(removal["least relevant"] - removal["none"]) > -0.03)),
    ("removing the 15 % most relevant pixels breaks the classification",
     f"{mean_sd(removal['none'])} → {mean_sd(removal['most relevant'])} (random 15 %: {mean_sd(removal['random'])})",
     verdict(upper(removal["most relevant"]) < np.mean(removal["none"]) - 0.3)),
    ("a model retrained on the most relevant pixels keeps most of its accuracy (input pruning)",
     f"keep 50 %: {mean_sd(kept['relevance'][:, 1])} vs all pixels {mean_sd(kept['relevance'][:, 0])}",
     verdict(lower(kept["relevance"][:, 1] - kept["relevance"][:, 0]) > -0.05)),
    ("LRP is the right ranking for pruning (implied; the paper compares with nothing)",
     f"mean accuracy over 50/25/10 %: relevance {mean_sd(area['relevance'])}, gradient {mean_sd(area['gradient'])}, "
     f"variance {mean_sd(area['variance'])}, random {mean_sd(area['random'])}",
     ("holds against random" if gaps["random"].min() > 0.03 else "does not hold against random")
     + ("; does not hold against gradient or variance (not better)" if upper(gaps["gradient"]) < 0.01 and upper(gaps["variance"]) < 0.03
        else "; not comparable against gradient or variance (within the spread)")),
]
display(Markdown(findings_table(table)))  # the table tools/readme_science.py copies into the README

# %% [markdown]
# ## What you saw
#
# * Removing pixels in relevance order tests an explanation against the model: with LRP on the
#   digits CNNs, MoRF makes the score fall fastest and LeRF slowest, for every baseline.
# * The baseline changes the numbers a lot, so a removal curve or an AOPC must always say which
#   baseline it used.
# * Input pruning works, but the relevance ranking's advantage is over a random subset only: on
#   these digits a gradient ranking or the plain pixel variance keeps pixels at least as well.
# * The `RemovalExplorer` shows all of it for one image at a time: the input the model saw at
#   every fraction, and what it predicted.
#
# ## References
#
# 1. C. Collinsworth. *Layerwise Relevance Propagation – Implications for Feature Extraction.*
#    M.Sc. project report, Stony Brook University (no public link known; the project keeps a copy
#    of the text it used).
# 2. W. Samek, A. Binder, G. Montavon, S. Lapuschkin, K.-R. Müller. *Evaluating the
#    Visualization of What a Deep Neural Network Has Learned.* IEEE Transactions on Neural
#    Networks and Learning Systems 28(11), 2660–2673, 2017. <https://doi.org/10.1109/TNNLS.2016.2599820>
