# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 12 — Real demand: HDPO against the generalized newsvendors on Favorita sales
#
# **Regenerates** `paper/tables/hdpo_real_data{,_margins,_forecaster}.{csv,md}`, `paper/figures/hdpo_real_data_products.png`
# and `paper/figures/hdpo_real_data_network.png` (HDPO spec §4.7, §4.8, §6.4, §6.5).
#
# The HDPO paper's last claim is about real time series: a policy trained end to end by HDPO "significantly
# outperforms generalized newsvendor heuristics". This chapter tests it on the weekly sales of the Favorita
# grocery chain (Ecuador, 2013–2016), with **profit** as the objective: a unit sold earns its margin $p$, a unit
# left on the shelf at the end of a week costs $h = 1$, unmet demand is lost:
#
# $$\text{profit}_t = p\,\min(x_t, d_t) - h\,(x_t - d_t)^+ .$$
#
# **The data** (`hybridrl.favorita`) cannot ship with the package. It is read from the folder named by the
# `data` parameter or the `HYBRIDRL_DATA` environment variable; without it this chapter stops at its first
# step with instructions, and `make reproduce` goes on with the others. The file holds 288 items × 21 stores
# × 171 weeks. The paper's one-store data set (32 768 series from 50 stores) is not available, so **the
# one-store experiment uses the 6048 store-item series of this file as independent products**. Ten weekly
# entries are negative (net returns): we count them and treat them as zero demand.
#
# **Splits by time.** Every series appears in every split, over different weeks: train simulates weeks
# 16–110, dev 104–140, test 134–170 (the 16 weeks before each are history only). The first 16 simulated weeks
# of each split are warm-up and not reported. Nothing fitted on training data has seen a test week.

# %%
# On Colab, install the package first (does nothing anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hybridrl @ git+https://github.com/hybridrl/hybridrl"], check=True)

# %% tags=["parameters"]
profile = "quick"  # "smoke" (seconds, for tests), "quick" (laptop CPU, the default) or "paper" (published scale, GPU)
workers = None  # parallel training processes; None: one per CPU core
force = False  # recompute cached runs
data = None  # folder that holds favorita/; None: $HYBRIDRL_DATA, else ./data

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd

from hybridrl import experiments, favorita, realdata_experiments, reporting

experiments.check_profile(profile)
started = time.time()
pd.set_option("display.precision", 4)
TABLES = {
    "hdpo_real_data": ["setting", "method", "seed", "test_profit", "profit_vs_oracle_pct"],
    "hdpo_real_data_margins": ["setting", "method", "against", "margin_pts", "margin_low", "margin_high", "products",
                               "share_of_products_better"],
    "hdpo_real_data_forecaster": ["tau", "dev_coverage"],
}
try:
    favorita_data = favorita.load_favorita(data)
except favorita.DataMissing:
    stamp = reporting.provenance("notebooks/12_real_data.py", profile, started)
    reporting.save_not_run(list(TABLES), TABLES, stamp, "not run: data missing")
    raise
print(f"{favorita_data.folder}: sales {favorita_data.shape} (items, stores, weeks); returns clipped to zero: "
      f"{favorita_data.returns['entries']} entries, {favorita_data.returns['units']} units")

# %% [markdown]
# ## The policies
#
# All admissible policies see the same things at the start of week $t$: the inventory vector (on hand and
# the pipeline), the last 16 weekly demands, the week's `days_from_christmas`, the margin $p$, $h$, the lead time
# $L \in \{4, 5, 6\}$ and the series' mean weekly demand over the training window (a static scale). Orders
# arrive $L$ weeks later.
#
# **The generalized newsvendors** (spec §6.4) order up to a quantile of the forecast demand over the weeks the
# order must cover, $S_t = q_\tau(D_t + \dots + D_{t+L})$: order $= (S_t - \text{IP}_t)^+$ with IP the inventory
# position. The forecast comes from one **quantile forecaster** (an MLP of the past 16 weeks and the calendar,
# 19 quantiles for each lead time, pinball loss, fitted on the training window only and then frozen). They
# differ in the quantile $\tau$:
#
# | policy | $\tau$ | fitted |
# |---|---|---|
# | quantile NV | the critical fractile $p / (p + h)$ | no |
# | fixed quantile | one $\sigma(b)$ for all products | by HDPO, through the simulator |
# | transformed NV | $\text{MLP}(p / (p + h))$, one per product | by HDPO |
#
# **HDPO end to end** (spec §6.2): an MLP [64, 64] from the observation straight to the order, trained by
# the pathwise gradient of the profit through the simulator. No forecaster, no quantile: it learns what to
# order, not what demand will be.
#
# **Two non-admissible references** (they cannot be run in reality): the *returns NV* orders up to the
# critical-fractile level and may send stock back when it holds too much; the *just-in-time oracle* orders at
# $t$ exactly the demand of week $t + L$, known in advance, so it sells everything and holds nothing — the most
# profit any policy can make. Profits are reported as a percentage of the oracle's.

# %%
b = realdata_experiments.budget(profile)
pd.DataFrame({"HDPO (data-driven)": vars(b.hdpo), "fixed / transformed NV": vars(b.newsvendor)}).T[
    ["epochs", "batch_size", "lr", "dev_every", "patience"]].assign(
    series=b.n_series or 6048, seeds=str(b.seeds), forecaster_epochs=b.forecaster_epochs)

# %% [markdown]
# ## The forecaster
#
# Fitted on the (series, week) pairs whose inputs *and* targets lie in the training window; the epoch with the
# best dev pinball loss is kept. Calibration on the dev window: the share of lead-time demands at or below each
# forecast quantile should be close to $\tau$.

# %%
model, forecast_record = realdata_experiments.forecaster(favorita_data, profile, force=force)
calibration = pd.DataFrame({"tau": [round(0.05 * k, 2) for k in range(1, 20)],
                            "dev_coverage": forecast_record["dev_coverage"]})
print(f"{forecast_record['train_samples']} training pairs; best epoch {forecast_record['best_epoch']}, dev pinball "
      f"{forecast_record['best_dev_pinball']:.4f} (units of the series mean)")
calibration.T

# %% [markdown]
# ## One store per series: training and testing
#
# HDPO, the fixed-quantile and the transformed newsvendors are trained with every seed of the profile;
# the others have nothing to train.

# %%
one_store = realdata_experiments.run_one_store_grid(profile, data=favorita_data, workers=workers, force=force)
table = one_store.table[["setting", "method", "seed", "test_profit", "profit_vs_oracle_pct"]]
summary = (table.groupby("method", sort=False)[["test_profit", "profit_vs_oracle_pct"]].mean()
           .sort_values("test_profit", ascending=False))
fitted = one_store.table.loc[one_store.table.method == "fixed_quantile", "quantile"]
print("fixed quantile fitted by HDPO: tau =", ", ".join(f"{t:.3f}" for t in fitted))
summary

# %% [markdown]
# **HDPO against each admissible newsvendor**, product by product: the mean difference in test profit in
# points of the oracle's profit, with a 95 % bootstrap interval over the products (HDPO averaged over its
# seeds), and the share of products on which HDPO makes more.

# %%
margins = realdata_experiments.margins(one_store).assign(setting="one_store")
margins[["setting", "method", "against", "margin_pts", "margin_low", "margin_high", "products",
         "share_of_products_better"]]

# %%
hdpo_share = table[table.method == "hdpo"].profit_vs_oracle_pct
print(f"This run ({profile}): HDPO end to end keeps {hdpo_share.mean():.1f} % of the oracle's test profit (seeds: "
      + ", ".join(f"{v:.1f}" for v in hdpo_share) + ")")
for r in margins.itertuples():
    print(f"  {r.against}: {summary.loc[r.against, 'profit_vs_oracle_pct']:.1f} %; HDPO's margin {r.margin_pts:+.2f} "
          f"[{r.margin_low:+.2f}, {r.margin_high:+.2f}] points, more profit on "
          f"{100 * r.share_of_products_better:.0f} % of the products")

# %% [markdown]
# **What our runs show** (the lines above give the numbers of the profile this chapter ran in; the text below
# was written from the `paper` profile's, the one whose tables `paper/` holds: every series, the spec's budgets,
# three seeds, run on a 2-core CPU). HDPO end to end keeps 78.6 % of the oracle's test profit (seeds: 78.5, 78.6
# and 78.8 %), the best admissible newsvendor — the transformed newsvendor, one quantile per product fitted by
# HDPO — 77.9 %, one quantile fitted by HDPO for all products (τ = 0.664, the same for every seed) 77.5 %, and
# the critical fractile 64.7 %. HDPO's margin over each is positive with the whole bootstrap interval above
# zero: +0.72 [0.37, 1.04] points over the transformed newsvendor (more profit on 67 % of the products), +1.16
# [0.79, 1.51] over the fixed quantile, +13.9 [13.0, 14.8] over the critical fractile. The `quick` profile
# (fewer epochs, a forecaster trained for 15 epochs instead of 100, two seeds) also put HDPO first, at 78.4 %,
# with margins of +0.95 points over the fixed quantile (τ ≈ 0.57) and +1.9 over the transformed newsvendor: the
# two fitted newsvendors swap places between the profiles, HDPO does not. So the direction of the
# paper's claim holds, but against the newsvendors whose quantile is itself fitted through the simulator the
# margin is about one point: "significantly" in the statistical sense, modest in size. Two things
# the table makes plain: the critical fractile $p/(p+h) \approx 0.9$ is far too high here — the fitted quantile
# is 0.66 (0.57 in `quick`) — presumably because a unit left over is charged $h$ again every week until it sells, which the
# one-period trade-off behind the critical fractile ignores; and letting it send stock back (returns NV,
# non-admissible, 68.0 %) helps little, so what hurts is over-ordering before demand is seen, not holding on to
# it. More training does not change the picture: the `paper` runs (early stopping after 1770-1870 epochs) make
# 550.3-552.2 per series and week, the `quick` runs (200 epochs) about 550.5.
#
# Per-product distributions: each product's test profit as a share of what the oracle makes on it.

# %%
per = one_store.per_series.groupby(["method", "series"]).profit_vs_oracle_pct.mean().reset_index()
order = [m for m in summary.index if m != "just_in_time"]
fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
parts = [per[per.method == m].profit_vs_oracle_pct.clip(-50, 100).to_numpy() for m in order]
ax.violinplot(parts, showmedians=True)
ax.set_xticks(range(1, len(order) + 1), [m.replace("_", " ") for m in order])
ax.axhline(100, color="k", lw=0.8, ls="--", label="just-in-time oracle")
ax.set_ylabel("test profit, % of the oracle's (clipped at -50)")
ax.set_title(f"Per-product test profit on {per.series.nunique()} Favorita series ({profile})")
ax.legend(loc="lower left")
ax.grid(alpha=0.3, axis="y")

# %%
curves = one_store.history.groupby(["method", "epoch"]).dev_profit.mean().unstack("method")
ax = curves.plot(figsize=(7, 3.5), marker="o", ms=3, title="Dev profit per week along training (mean over seeds)")
ax.set_xlabel("epoch"); ax.set_ylabel("dev profit per series and week"); ax.grid(alpha=0.3)

# %% [markdown]
# ## Three warehouses and 21 stores (spec §4.8)
#
# The same data as one network: three warehouses buy from an unlimited supplier (lead time 3 weeks, holding
# costs 0.3 / 0.4 / 0.2 per unit and week, procurement costs 0.5 / 1.5 / 0.7 per unit) and ship to the 21 stores
# (holding cost $h_s \sim U[0.7, 1.3]$, margin $p_s \sim U[6.3, 11.7]$, lost sales). Each of the 288 items is one
# scenario: its demand at the 21 stores. Which store is linked to which warehouse, and the lead times of the
# links, are not published; we draw them from a seed (`hybridrl.favorita_network`): every store has two of the
# three warehouses, at 5–6 weeks from W0, 1–2 from W1 and 4–6 from W2. A warehouse never ships more than it has
# on hand: the simulator rations requests in proportion (spec R1, R2). Profits are per store and week, with the
# warehouses' costs shared equally by the stores.
#
# * **HDPO end to end** — one network of every location's inventory, every store's last 16 weeks of demand and
#   the calendar, with one order per link (`NetworkDataDriven`);
# * **echelon stock** — the classical heuristic, with levels in weeks of each item's mean demand, fitted by
#   HDPO: each store orders up to its level from its fastest warehouse, each warehouse up to its echelon level;
# * **just in time** — each store orders from its fastest warehouse exactly the demand of the week the order
#   arrives, each warehouse exactly what those orders will need (non-admissible). Here it is *not* an upper
#   bound: it pays the fastest warehouse's procurement cost, which need not be the cheapest.

# %%
network = realdata_experiments.run_network_grid(profile, data=favorita_data, workers=workers, force=force)
network_table = network.table[["setting", "method", "seed", "test_profit", "profit_vs_oracle_pct"]]
network_table

# %%
network_margins = realdata_experiments.margins(network, against=("echelon_stock",)).assign(
    setting="three_warehouses")
network_margins[["method", "against", "margin_pts", "margin_low", "margin_high", "products",
                 "share_of_products_better"]]

# %%
net_per = network.per_series.groupby(["method", "series"]).test_profit.mean().unstack("method")
fig_net, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
axes[0].scatter(net_per.echelon_stock / net_per.just_in_time * 100, net_per.hdpo / net_per.just_in_time * 100, s=8,
                alpha=0.6)
low = float(min(axes[0].get_xlim()[0], axes[0].get_ylim()[0]))
axes[0].plot([low, 100], [low, 100], "k--", lw=0.8)
axes[0].set_xlabel("echelon stock, % of just-in-time profit")
axes[0].set_ylabel("HDPO, % of just-in-time profit")
axes[0].set_title("One point per item")
net_curves = network.history.groupby(["method", "epoch"]).dev_profit.mean().unstack("method")
net_curves.plot(ax=axes[1], marker="o", ms=3)
axes[1].set_xlabel("epoch")
axes[1].set_ylabel("dev profit per store and week")
axes[1].set_title("Training (mean over seeds)")
for ax in axes:
    ax.grid(alpha=0.3)
fig_net.suptitle(f"Three warehouses, 21 stores, 288 items ({profile})")

# %%
net_share = network_table[network_table.method == "hdpo"].profit_vs_oracle_pct
r = network_margins.iloc[0]
print(f"This run ({profile}): on the network HDPO keeps {net_share.mean():.1f} % of the just-in-time profit (seeds: "
      + ", ".join(f"{v:.1f}" for v in net_share) + f"); margin over the echelon heuristic {r.margin_pts:+.2f} "
      f"[{r.margin_low:+.2f}, {r.margin_high:+.2f}] points, more profit on {100 * r.share_of_products_better:.0f} % "
      "of the items")

# %% [markdown]
# **What our runs show** (the `paper` profile's numbers; the line above gives this run's). On the network HDPO
# keeps 75.8 % of the just-in-time profit (seeds: 76.0, 74.9 and 76.4 %) against 70.6 % for the echelon
# heuristic: +5.2 [4.4, 5.9] points, more profit on 88 % of the items (`quick`, with a wider net at a smaller
# learning rate: 75.0 % against 70.5 %, +4.5 points). The heuristic's levels are constant multiples of each
# item's mean demand, so it cannot follow the Christmas peak and the other seasonal swings of the test weeks;
# the data-driven network sees the last 16 weeks and the calendar. The `paper` runs stopped early after 790-930
# epochs, their best dev profit at epochs 290-430 (the `quick` runs trained 300).
#
# ## Writing the artifacts

# %%
table = pd.concat([table, network_table], ignore_index=True).astype({"seed": "Int64"})  # untrained: no seed
margins = pd.concat([margins, network_margins], ignore_index=True)
stamp = reporting.provenance("notebooks/12_real_data.py", profile, started, results=[one_store, network])
reporting.save_table(table, "hdpo_real_data", stamp, digits=3,
                     caption="Test profit per week (weeks 150-170, after the warm-up) and its share of the "
                     "just-in-time oracle's profit. one_store: per series, one store per Favorita store-item series "
                     "(6048), lost sales, lead times 4-6. three_warehouses: per store, 3 warehouses and 21 stores, "
                     "288 items, warehouse costs shared by the stores.")
reporting.save_table(margins[TABLES["hdpo_real_data_margins"]], "hdpo_real_data_margins", stamp, digits=3,
                     caption="HDPO's test profit minus each admissible heuristic's, in points of the oracle's "
                     "profit, with a 95 % bootstrap interval over products (series, or items on the network), and "
                     "the share of products on which HDPO makes more.")
reporting.save_table(calibration, "hdpo_real_data_forecaster", stamp, digits=3,
                     caption="Calibration of the quantile forecaster on the dev window: share of lead-time demands "
                     "at or below each forecast quantile.")
reporting.save_figure(fig, "hdpo_real_data_products", stamp)
reporting.save_figure(fig_net, "hdpo_real_data_network", stamp)
print(stamp.line())
