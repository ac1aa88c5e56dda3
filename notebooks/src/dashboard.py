# %% [markdown]
# # lrp_widgets dashboard: every explorer on one page
#
# **What you will learn** here, one tab per explorer, by moving the controls yourself:
#
# * **Rules** — how the LRP rules and their parameters (epsilon, gamma) change a heatmap, and how
#   much relevance each layer keeps (conservation);
# * **L1** — where relevance goes when a model was trained with a stronger L1 penalty;
# * **Leak rate** — how an echo state network's leak rate sets how far back in time relevance reaches;
# * **Removal** — how fast a model's confidence falls when the most (or least) relevant pixels are removed;
# * **Paths** — which chains of neurons carry most of a decision, as the number of paths grows.
#
# Each explorer is built the first time its tab is opened (a few seconds; the L1 tab explains a
# whole sweep of models and takes longest). Serve the page on its own with
# `voila notebooks/dashboard.ipynb`; `?tab=paths` at the end of the page's address opens that tab first.

# %%
%matplotlib widget
import html
import inspect
import os
from urllib.parse import parse_qs

import ipywidgets as widgets

from lrp_widgets import widgets as explorers

# %%
TABS = [  # (tab title, explorer class, what to try first)
    ("Rules", "RuleExplorer",
     "Switch the <b>composite</b>, then slide <b>epsilon</b>: large values absorb relevance and the per-layer sums shrink."),
    ("L1", "L1Explorer",
     "Slide <b>L1</b> to the right: relevance concentrates on the informative square while accuracy holds."),
    ("Leak rate", "LeakRateExplorer",
     "Raise the <b>leak rate</b>: relevance fades faster back in time; more <b>slices</b> bring it back."),
    ("Removal", "RemovalExplorer",
     "Move <b>fraction</b> and compare the orders: most-relevant-first (MoRF) should fall fastest."),
    ("Paths", "PathExplorer",
     "Raise <b>k paths</b>: more paths explain more of the heatmap, and the error against the full heatmap falls."),
]
# Constructor options for a quicker first opening (ignored if an explorer has no such option):
# PathExplorer computes each sample on its first visit instead of all of them up front.
OPTIONS = {"PathExplorer": {"precompute": False}}
built = {}  # tab index -> the explorer, or the error that stopped it


def build(index):
    """Build the explorer of tab ``index`` once; its progress bar and any error show in the tab."""
    if index is None or index in built:
        return built.get(index)
    title, name, hint = TABS[index]
    page = tabs.children[index]
    progress = widgets.Output()
    page.children = [widgets.HTML(f"<i>Building {name} ...</i>"), progress]
    with progress:  # an Output widget swallows exceptions raised in it: catch them inside
        try:
            explorer = getattr(explorers, name)
            accepted = inspect.signature(explorer).parameters
            built[index] = explorer(**{k: v for k, v in OPTIONS.get(name, {}).items() if k in accepted})
        except Exception as error:  # shown in the tab; the other tabs keep working
            built[index] = error
    if isinstance(built[index], Exception):
        message = html.escape(f"{type(built[index]).__name__}: {built[index]}")
        page.children = [widgets.HTML(f"<pre style='color:#b00020;white-space:pre-wrap'>{name} could not be built: {message}</pre>")]
    else:
        page.children = [widgets.HTML(f"<p>{hint}</p>"), built[index]]
    return built[index]


def first_tab() -> int:
    """The tab named by ``?tab=...`` in the page's address under Voila (default: the first)."""
    wanted = parse_qs(os.environ.get("QUERY_STRING", "")).get("tab", [""])[0].lower().replace("_", "").replace(" ", "")
    for index, (title, name, _) in enumerate(TABS):
        if wanted and wanted in (title.lower().replace(" ", ""), name.lower(), name.lower().removesuffix("explorer")):
            return index
    return 0


tabs = widgets.Tab(children=[widgets.VBox() for _ in TABS], titles=[title for title, _, _ in TABS])
tabs.observe(lambda change: build(change["new"]), names="selected_index")
start = first_tab()
tabs.selected_index = start
build(start)  # the opening tab is built now, the others when first opened
tabs

# %%
# A failure of the opening explorer stops here (the tab shows it too), so a broken build is not silent.
if isinstance(built[start], Exception):
    raise built[start]

# %% [markdown]
# **What you saw**: the five explorers of `lrp_widgets`, each on a model and data shipped with the
# package — one place to see how rules, training, memory, removal and paths shape an explanation.
#
# To open an explorer on your own model and data in a notebook, use the magics:
#
# ```python
# %load_ext lrp_widgets
# %lrp_explore rule model test_data      # test_data has .x (N, C, H, W) and .y
# %lrp_explain model test_data.x[:4]     # a heatmap of four samples with target and conservation
# ```
