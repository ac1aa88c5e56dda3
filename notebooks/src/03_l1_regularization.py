# %% [markdown]
# # 03 · L1 regularisation: does the explanation follow the data?
#
# **What you will learn**
#
# * the synthetic *two squares* data of the fact-or-artifact paper [1]: two classes that differ only
#   in the left square, with two distractor squares on the right that both classes share;
# * how to use the `L1Explorer` to slide the L1 strength a model was trained with and watch where
#   its relevance goes;
# * the paper's finding, measured on the shipped models: as L1 grows, weights get sparse and more
#   of the relevance falls on the informative square;
# * the same over five seeds, with L1 pushed past the paper's coefficient 0.01 until accuracy
#   falls: the accuracy / focus trade-off with error bars.

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from lrp_widgets import data, explain, zoo
from lrp_widgets.zoo.studies import findings_table, load_study, mean_sd
from lrp_widgets.train import accuracy, sparsity
from lrp_widgets.widgets import L1Explorer

torch.manual_seed(0)
%matplotlib widget

# %% [markdown]
# ## 1. The data
#
# 32x32 images (the paper used 100x100; the layout is kept proportional). Class 0 has a bright
# left square, class 1 a dark one; the right squares are the same in both classes, so they carry
# no information. `informative_mask` marks the left square.

# %%
squares = data.two_squares(n_per_class=250, size=32, seed=0)
fig, axes = plt.subplots(1, 3, figsize=(7, 2.4))
for ax, index in zip(axes[:2], [int((squares.y == 0).nonzero()[0]), int((squares.y == 1).nonzero()[0])]):
    ax.imshow(squares.x[index, 0], cmap="gray", vmin=-0.6, vmax=0.6)
    ax.set_title(f"class {int(squares.y[index])}")
axes[2].imshow(squares.informative_mask, cmap="gray")
axes[2].set_title("informative_mask")
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
plt.show()

# %% [markdown]
# ## 2. The explorer
#
# The zoo holds an MLP and a CNN trained at L1 = 0 and six log-spaced L1 strengths. The explorer
# explains the test set with every model once (a progress bar shows it), so the slider only
# redraws. The black outline is the informative square.

# %%
explorer = L1Explorer()
explorer

# %% [markdown]
# ## 3. The finding, measured
#
# For each model: test accuracy, weight sparsity (share of weights with |w| < 1e-3), and the
# share of mean |relevance| over the test set that lies on the informative square (the area of the
# square is printed below the table).

# %%
print(f"{'model':>4} {'L1':>8} {'accuracy':>9} {'sparsity':>9} {'share on square':>16}")
rows = {}
for architecture in ("MLP", "CNN"):
    sweep = explorer.sweeps[architecture]
    for l1 in sorted(sweep):
        entry = sweep[l1]
        rows[(architecture, l1)] = entry
        print(f"{architecture:>4} {l1:>8.0e} {entry['accuracy']:>9.1%} {entry['sparsity']:>9.1%} {entry['share']:>16.1%}")
print(f"area of the square: {squares.informative_mask.float().mean():.1%}")

# %% [markdown]
# These are single training runs (seed 0) and stop at L1 = 3e-3, below the paper's 0.01, where
# accuracy never drops. The share does not grow smoothly with L1 in one run, so the finding is
# measured over seeds next.
#
# ## 4. Over seeds, up to and past the paper's L1 = 0.01
#
# The zoo study `l1_sweep` trains both architectures (the zoo's shapes, 15 epochs, Adam) at
# L1 = 0 to 0.1 (the penalty is `L1 * sum |w|`), five seeds each (initial weights, batch order
# and the data draw), and measures test accuracy, sparsity and the share of |relevance| (epsilon
# rule, the explorer's) on the informative square. Recompute it with
# `python -m lrp_widgets.zoo study l1_sweep` (a few minutes).

# %%
study = load_study("l1_sweep")["results"]
l1_values = sorted({row["l1"] for row in study["rows"]})
summary = {}
print(f"{'model':>4} {'L1':>7} {'accuracy':>24} {'sparsity':>24} {'share on square':>24}")
for architecture in ("MLP", "CNN"):
    for l1 in l1_values:
        rows = [row for row in study["rows"] if row["architecture"] == architecture and row["l1"] == l1]
        summary[architecture, l1] = {key: np.array([row[key] for row in rows]) for key in ("accuracy", "sparsity", "share")}
        entry = summary[architecture, l1]
        print(f"{architecture:>4} {l1:>7g} {mean_sd(entry['accuracy']):>24} {mean_sd(entry['sparsity']):>24} {mean_sd(entry['share']):>24}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
positions = np.arange(len(l1_values))
for architecture, marker in (("MLP", "o"), ("CNN", "s")):
    for ax, key in zip(axes, ("accuracy", "share")):
        means = [summary[architecture, l1][key].mean() for l1 in l1_values]
        sds = [summary[architecture, l1][key].std(ddof=1) for l1 in l1_values]
        ax.errorbar(positions, means, yerr=sds, marker=marker, ms=4, capsize=3, label=architecture)
for ax, label in zip(axes, ("test accuracy", "share of |R| on the square")):
    ax.set_xticks(positions, [f"{l1:g}" for l1 in l1_values], fontsize=7)
    ax.set_xlabel("L1")
    ax.set_ylabel(label)
axes[0].axvline(l1_values.index(0.01), color="0.6", ls=":", label="paper: 0.01")
axes[1].axhline(study["area"], color="0.6", ls="--", label="area of the square")
axes[0].legend(fontsize=7); axes[1].legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# What the seeds say, asserted on mean +- 2 sd where a claim is made:

# %%
verdicts = []
for architecture in ("MLP", "CNN"):
    base = summary[architecture, 0.0]
    working = [l1 for l1 in l1_values if summary[architecture, l1]["accuracy"].mean() >= 0.95]
    falls = [l1 for l1 in l1_values if summary[architecture, l1]["accuracy"].mean() < 0.9]
    strongest = max(working)
    best = summary[architecture, strongest]
    gain = best["share"] - base["share"]
    print(f"{architecture}: accuracy >= 0.95 up to L1 = {strongest:g}; falls below 0.9 from L1 = "
          f"{min(falls) if falls else 'never'}; share {mean_sd(base['share'])} at 0 -> {mean_sd(best['share'])} at {strongest:g}")
    assert falls, f"{architecture}: the sweep must reach the L1 where accuracy falls"
    assert best["sparsity"].mean() - 2 * best["sparsity"].std(ddof=1) > base["sparsity"].mean() + 2 * base["sparsity"].std(ddof=1)
    holds = best["share"].mean() - 2 * best["share"].std(ddof=1) > base["share"].mean() + 2 * base["share"].std(ddof=1)
    if architecture == "MLP":
        assert holds, "the MLP's focus gain must exceed 2 sd"
    paper = summary[architecture, 0.01]
    verdicts.append((f"L1 focuses the {architecture} on the informative square",
                     f"share {mean_sd(base['share'], 2)} at L1 0 -> {mean_sd(best['share'], 2)} at {strongest:g} "
                     f"(accuracy {mean_sd(best['accuracy'], 2)})",
                     "holds (beyond 2 sd)" if holds else "does not hold beyond 2 sd"))
    verdicts.append((f"{architecture} at the paper's L1 = 0.01 still classifies",
                     f"accuracy {mean_sd(paper['accuracy'], 2)}, share {mean_sd(paper['share'], 2)}",
                     "holds" if paper["accuracy"].mean() >= 0.95 else "does not hold here (our penalty is a sum over weights; the paper's normalisation is not given)"))
    verdicts.append((f"too much L1 costs accuracy ({architecture})", f"accuracy {mean_sd(summary[architecture, min(falls)]['accuracy'], 2)} at L1 = {min(falls):g}", "holds"))

# %% [markdown]
# ## What you saw
#
# * Without L1 both models reach full accuracy but spread relevance over the distractor squares
#   and the background.
# * With L1 the weights become sparse and, over seeds, the relevance moves onto the one square
#   that tells the classes apart, until L1 is so strong that accuracy collapses. The table says
#   which of the paper's statements hold here, with the numbers behind them.
#
# ## References
#
# 1. M. Landt-Hayen, W. Rath, M. Claus, P. Kröger. *Fact or Artifact? Revise Layer-wise
#    Relevance Propagation on various ANN Architectures.* arXiv:2302.12317, 2023.
#    <https://arxiv.org/abs/2302.12317>

# %%
display(Markdown(findings_table(verdicts)))
