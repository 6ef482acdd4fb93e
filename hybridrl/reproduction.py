"""``paper/REPRODUCTION.md``: every published or exact number beside ours, judged against a stated tolerance.

The published and exact numbers below are facts from the papers and their specification (HDPO spec §9); the
"ours" side is read from the CSV tables under ``paper/tables/``, which the notebooks generate. Rows whose table
has not been generated say so. Tolerances depend on the profile that produced the table (the targets of the
issues): the ``quick`` profile is a reduced budget and is held to looser tolerances than the ``paper`` profile.

Learned policies are judged by the 95 % interval over training seeds, never by a single run (:func:`judge`):
*yes* when the whole interval lies within the tolerance, *no* when it lies wholly outside, *inconclusive* when
it straddles the boundary — more seeds would decide. Exact references (DP, closed forms) have no interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from . import paths
from .reporting import PARTIAL, Provenance, markdown_table, read_provenance

# HDPO spec §9.1: optimal average cost of the lost-sales store (DP), Poisson(5), h = 1; keys (L, p).
LOST_SALES_OPTIMUM = {
    (1, 4): 4.0407, (2, 4): 4.3953, (3, 4): 4.5987, (4, 4): 4.7285,
    (1, 9): 5.4382, (2, 9): 6.0936, (3, 9): 6.5314, (4, 9): 6.8359,
    (1, 19): 6.6757, (2, 19): 7.6644, (3, 19): 8.3625, (4, 19): 8.8872,
    (1, 39): 7.8359, (2, 39): 9.1064, (3, 39): 10.0385, (4, 39): 10.7944,
}
# HDPO spec §9.2: optimal base-stock cost of the backlogged store, Normal(5, 1.6) clipped at 0, h = 1.
BACKLOG_OPTIMUM = {
    (1, 4): 3.1666, (4, 4): 5.0062, (7, 4): 6.3319, (10, 4): 7.4245, (15, 4): 8.9538, (20, 4): 10.2575,
    (1, 9): 3.9703, (4, 9): 6.2769, (7, 9): 7.9392, (10, 9): 9.3090, (15, 9): 11.2265, (20, 9): 12.8611,
    (1, 19): 4.6666, (4, 19): 7.3778, (7, 19): 9.3317, (10, 19): 10.9419, (15, 19): 13.1958, (20, 19): 15.1171,
    (1, 39): 5.2891, (4, 39): 8.3620, (7, 39): 10.5766, (10, 39): 12.4016, (15, 39): 14.9562, (20, 39): 17.1338,
}
# HDPO spec §9.2: S* at L = 4.
BACKLOG_LEVEL_L4 = {4: 28.01, 9: 29.59, 19: 30.89, 39: 32.01}

# HPO spec §10.3 (`tab:jrp-results-128`, B = 16, 1600 updates): JRP mean test cost per item and period,
# n -> (HPOFull, HPONoCross, PPO).
JRP_PUBLISHED = {
    1: (34.96, 34.97, 34.94), 3: (37.24, 37.27, 37.18), 5: (38.82, 38.77, 38.56), 10: (38.79, 38.85, 38.68),
    20: (39.08, 39.26, 39.23), 30: (39.43, 39.54, 51.67), 40: (40.40, 40.82, 70.37), 50: (43.47, 42.95, 81.36),
    60: (50.28, 49.92, 89.29), 70: (56.76, 58.37, 98.64),
}
# HPO spec §10.2: the HPO reference ("floor", §8: the mean of the five best HPO runs) per n, for the B = 128 and
# B = 512 sweeps; spec §13 asks for HPO within about 1 % of it at those batch sizes.
JRP_REFERENCE_TOP5 = {1: 34.90, 3: 37.02, 5: 38.45, 7: 36.28, 10: 38.53, 15: 37.97, 20: 38.75, 30: 38.34, 40: 38.51,
                      50: 38.39}
# HPO spec §10.2: PPO's mean cost over that reference (%) at B = 512 (800 epochs), the batch-512 sweep's target
JRP_PPO_GAP_B512 = {1: 0.06, 3: 0.05, 5: 0.17, 7: -0.03, 10: 3.8, 15: 6.6, 20: 33.0, 30: 121.1, 40: 167.5, 50: 210.9}
# HPO spec §10.1: HPO vs PPO mean test cost per item and period (other sweeps), n -> (HPO, PPO).
JRP_PUBLISHED_FIGURE = {
    1: (34.94, 34.92), 3: (37.07, 37.07), 5: (38.57, 38.55), 7: (36.32, 36.43), 10: (38.75, 38.93),
    20: (38.93, 85.63), 30: (38.63, 128.56), 50: (39.31, 155.16),
}

# HPO spec §10.5 (`tab:lqr-results`): S-LQR mean test cost per trajectory, (p, J) -> (HPOFull, HPONoCross, PPO).
# Rows with p in {8, 16, 24, 32, 40, 48} come from other sweeps and are consistent with the genuinely switched
# problem; the others with the single-mode system the reference's configuration actually ran (spec §7.3).
SLQR_PUBLISHED = {
    (1, 2): (36.82, 36.82, 36.84),
    (1, 4): (36.82, 36.82, 36.84),
    (1, 6): (37.5, 37.5, 37.52),
    (1, 8): (37.5, 37.5, 37.52),
    (3, 2): (64.17, 64.17, 64.33),
    (3, 4): (84.83, 84.83, 85.08),
    (3, 6): (79.42, 79.42, 79.66),
    (3, 8): (79.42, 79.42, 79.65),
    (5, 2): (63.92, 63.92, 64.25),
    (5, 4): (85.01, 85.01, 85.56),
    (5, 6): (94.36, 94.36, 95.0),
    (5, 8): (94.36, 94.36, 94.99),
    (7, 2): (67.25, 67.25, 67.76),
    (7, 4): (89.03, 89.03, 89.82),
    (7, 6): (89.24, 89.24, 90.1),
    (7, 8): (99.02, 99.02, 99.97),
    (8, 2): (49.05, 48.95, 70.66),
    (8, 4): (79.51, 79.28, 93.33),
    (8, 6): (79.2, 78.93, 93.17),
    (8, 8): (95.9, 95.51, 103.81),
    (10, 2): (76.39, 76.39, 77.26),
    (10, 4): (86.52, 86.52, 87.66),
    (10, 6): (95.94, 95.94, 97.34),
    (10, 8): (95.94, 95.94, 97.34),
    (13, 2): (71.12, 71.12, 72.29),
    (13, 4): (87.34, 87.34, 88.8),
    (13, 6): (94.32, 94.31, 95.99),
    (13, 8): (100.0, 100.0, 101.93),
    (16, 2): (52.14, 52.01, 76.36),
    (16, 4): (80.18, 79.81, 93.28),
    (16, 6): (90.41, 89.9, 101.54),
    (16, 8): (93.63, 93.12, 102.38),
    (20, 2): (73.77, 73.77, 75.75),
    (20, 4): (92.98, 92.98, 95.56),
    (20, 6): (94.85, 94.85, 97.44),
    (20, 8): (98.68, 98.67, 101.46),
    (24, 2): (52.65, 52.37, 76.0),
    (24, 4): (80.82, 80.27, 94.7),
    (24, 6): (90.97, 90.35, 101.8),
    (24, 8): (97.14, 96.43, 106.05),
    (32, 2): (53.19, 52.86, 81.43),
    (32, 4): (81.45, 80.8, 94.89),
    (32, 6): (89.24, 88.52, 100.99),
    (32, 8): (96.97, 96.22, 107.25),
    (40, 2): (53.33, 52.82, 77.22),
    (40, 4): (82.26, 81.31, 97.43),
    (40, 6): (92.09, 91.17, 106.11),
    (40, 8): (96.37, 95.47, 107.99),
    (48, 2): (53.89, 53.24, 79.36),
    (48, 4): (84.09, 82.87, 103.12),
    (48, 6): (92.98, 91.85, 107.19),
    (48, 8): (97.49, 96.41, 109.86),
}
SLQR_SWITCHED_ROWS = (8, 16, 24, 32, 40, 48)

# Relative tolerances (%) of HDPO against the optimum, per profile (issue targets; the paper reports average
# gaps below 0.35 %).
GAP_TOLERANCE = {
    "lost_sales": {"quick": 1.0, "paper": 0.3},
    "lost_sales_mean": {"quick": 0.4, "paper": 0.35},
    "backlogged": {"quick": 0.5, "paper": 0.3},
    "backlogged_mean": {"quick": 0.4, "paper": 0.35},
}


@dataclass
class Row:
    experiment: str
    quantity: str
    source: str
    target: str
    ours: str
    tolerance: str
    reproduced: str
    profile: str
    """The profile of our number, or ``exact``."""


def _judge(ok: bool) -> str:
    return "yes" if ok else "no"


def judge(low: float, high: float, tolerance: float) -> str:
    """Judge an interval ``[low, high]`` of a deviation from its target against ``±tolerance``."""
    if -tolerance <= low and high <= tolerance:
        return "yes"
    if low > tolerance or high < -tolerance:
        return "no"
    return "inconclusive"


def judge_above(low: float, high: float, threshold: float) -> str:
    """Judge the claim "the quantity exceeds ``threshold``" by its interval."""
    return "yes" if low > threshold else "no" if high <= threshold else "inconclusive"


def judge_not_above(low: float, high: float, threshold: float) -> str:
    """Judge the claim "the quantity is not clearly above ``threshold``": *no* only when the whole interval is
    above it (the HPO paper's "no-cross is never clearly worse")."""
    return "no" if low > threshold else "yes"


def _interval(estimate: float, low: float, high: float, runs: int, unit: str = "%") -> str:
    return f"{estimate:+.3f}{unit} [{low:+.3f}, {high:+.3f}], {runs} runs"


def _missing(experiment: str, what: str, source: str) -> Row:
    return Row(experiment, what, source, "", "", "", "not run: table missing", "")


_partial_tables: set[str] = set()
"""Tables read by :func:`build_report` that were drawn from finished runs only (``reproduce --cached-only``)."""


def _table(name: str) -> tuple[pd.DataFrame | None, Provenance | None]:
    csv = paths.TABLES / f"{name}.csv"
    if not csv.exists():
        return None, None
    prov = read_provenance(name)
    if prov is not None and prov.status == PARTIAL:
        _partial_tables.add(name)
    return pd.read_csv(csv), prov


def _single_store_rows(experiment: str, table: str, published: dict, what: str, source: str, gap_source: str):
    """Rows shared by the single-store grids: our exact optimum vs the published one, then HDPO's gap per cell."""
    df, prov = _table(table)
    if df is None:
        return None, None, [_missing(experiment, f"HDPO vs {what}", source)]
    profile = prov.profile if prov else "unknown"
    rows = []
    for r in df.itertuples():
        key = (int(r.lead_time), int(r.penalty))
        if key in published:
            target = published[key]
            rows.append(Row(experiment, f"{what}, L={key[0]}, p={key[1]}", source, f"{target:.4f}", f"{r.optimal:.4f}",
                            "±0.0005", _judge(abs(r.optimal - target) <= 5e-4), "exact"))
    tol = GAP_TOLERANCE[table.removeprefix("hdpo_")].get(profile)
    for r in df.itertuples():
        ours = f"{r.hdpo:.4f}; gap " + _interval(r.gap_pct, r.gap_low, r.gap_high, int(r.runs))
        rows.append(Row(experiment, f"HDPO gap to optimum, L={int(r.lead_time)}, p={int(r.penalty)}", gap_source,
                        f"{r.optimal:.4f}", ours, f"±{tol}%" if tol else "n/a",
                        judge(r.gap_low, r.gap_high, tol) if tol else "not judged", profile))
    return df, profile, rows


def _summary_rows(experiment: str, table: str, heuristic: str, profile: str, mean_tolerance: float | None,
                  claim: bool = True):
    """Grid-level rows from the summary table: HDPO's mean gap and P(HDPO beats the heuristic), by interval.

    ``claim=False`` where the paper claims nothing about the comparison (the heuristic is optimal): the
    probability is then reported but not judged."""
    summary, _ = _table(table)
    if summary is None:
        return [_missing(experiment, "HDPO mean gap over the grid", "summary table")]
    s = summary.set_index("method")
    hd, other = s.loc["hdpo"], s.loc[heuristic]
    runs = f"{int(hd.runs)} seeds × {int(hd.cells)} cells"
    rows = [Row(experiment, "HDPO mean gap over the grid", "HDPO paper v2: average gaps < 0.35 %", "0 %",
                f"{hd.mean_gap_pct:+.3f}% [{hd.mean_gap_low:+.3f}, {hd.mean_gap_high:+.3f}], {runs}",
                f"±{mean_tolerance}%" if mean_tolerance else "n/a",
                judge(hd.mean_gap_low, hd.mean_gap_high, mean_tolerance) if mean_tolerance else "not judged",
                profile)]
    judged = claim and profile in ("quick", "paper")
    ours = f"{other.p_reference_better:.3f} [{other.p_low:.3f}, {other.p_high:.3f}], {runs}"
    name = heuristic.replace("_", " ")
    if claim:
        rows.append(Row(experiment, f"P(HDPO cost < {name} cost)", "HDPO paper v1: outperforms problem-specific "
                        "heuristics", "> 0.5", ours, "interval > 0.5",
                        judge_above(other.p_low, other.p_high, 0.5) if judged else "not judged", profile))
    else:
        rows.append(Row(experiment, f"P(HDPO cost < {name} cost)", f"no claim: {name} is optimal here", "≤ 0.5",
                        ours, "n/a", "not judged", profile))
    return rows


def lost_sales_rows() -> list[Row]:
    df, profile, rows = _single_store_rows("lost sales", "hdpo_lost_sales", LOST_SALES_OPTIMUM, "DP optimum",
                                           "HDPO spec §9.1 (Zipkin 2008)", "issue target / HDPO paper")
    if df is not None:
        rows += _summary_rows("lost sales", "hdpo_lost_sales_summary", "capped_base_stock", profile,
                              GAP_TOLERANCE["lost_sales_mean"].get(profile))
    return rows


def backlogged_rows() -> list[Row]:
    df, profile, rows = _single_store_rows("backlogged", "hdpo_backlogged", BACKLOG_OPTIMUM, "base-stock optimum",
                                           "HDPO spec §9.2", "issue target / HDPO spec §12")
    levels, _ = _table("hdpo_backlogged_levels")
    if df is not None and levels is not None:
        judged = profile in ("quick", "paper")
        for r in levels[levels.lead_time == 4].itertuples():
            target = BACKLOG_LEVEL_L4.get(int(r.penalty))
            if target is not None:
                ours = (f"{r.fitted_level:.3f} [{r.fitted_level_low:.3f}, {r.fitted_level_high:.3f}], "
                        f"{int(r.runs)} runs")
                rows.append(Row("backlogged", f"fitted base-stock level, L=4, p={int(r.penalty)}", "HDPO spec §9.2, §12",
                                f"{target:.2f}", ours, "±0.05",
                                judge(r.fitted_level_low - target, r.fitted_level_high - target, 0.05)
                                if judged else "not judged", profile))
    if df is not None:
        rows += _summary_rows("backlogged", "hdpo_backlogged_summary", "base_stock", profile,
                              GAP_TOLERANCE["backlogged_mean"].get(profile), claim=False)
    return rows


# Issue targets of the HPO experiments per profile (percent).
HPO_TOLERANCE = {
    "riccati_gap": {"quick": 1.0, "paper": 1.0},  # HPO within 1 % of the Riccati optimum where there is one choice
    "jrp_tie": {"quick": 2.0, "paper": 2.0},  # HPO and PPO within 2 % for n <= 5 items
    "jrp_ppo_worse": {"quick": 25.0, "paper": 25.0},  # PPO at least 25 % worse at the largest n (>= 20)
    "published_hpo": {"paper": 2.0},  # HPO within 2 % of the published HPO numbers (same problem)
}


# Spec §10.3's reading of its B = 16 table: "for n ≤ 20 all methods are within about 0.7 %"; PPO is 30-80 %
# worse only from n = 30. Our paper-run rows judge a tie (within ``jrp_tie``) up to this many items.
JRP_TIE_ITEMS = 20


def switched_lqr_rows() -> list[Row]:
    """HPO vs the Riccati optimum, HPO vs PPO per cell and the trend in p, and the published rows' distance from
    our exact single-mode optimum."""
    experiment = "switched LQR (HPO)"
    summary, prov = _table("hpo_switched_lqr_summary")
    vs_ppo, _ = _table("hpo_switched_lqr_vs_ppo")
    if summary is None or vs_ppo is None:
        return [_missing(experiment, "HPO vs PPO and Riccati", "HPO spec §10.5")]
    profile = prov.profile if prov else "unknown"
    judged = profile in ("quick", "paper")
    if "comparison" in vs_ppo:  # the table also holds the other baselines
        vs_ppo = vs_ppo[vs_ppo.comparison == "hpo_full vs ppo"]
    rows = []
    tol = HPO_TOLERANCE["riccati_gap"].get(profile)
    for r in summary[summary.optimal.notna() & (summary.method == "hpo_full")].itertuples():
        gap = [100 * (v / r.optimal - 1) for v in (r.test_cost, r.test_cost_low, r.test_cost_high)]
        if r.variant == "switched" and r.modes > 1:  # the exact switched optimum: a floor the paper did not have
            rows.append(Row(experiment, f"HPO gap to the exact switched optimum, p={r.dim}, J={r.modes}",
                            "no published target (dynamic programme over modes)", f"{r.optimal:.3f}",
                            f"{r.test_cost:.3f}; gap " + _interval(*gap, int(r.runs)), "n/a", "not judged", profile))
            continue
        rows.append(Row(experiment, f"HPO gap to the Riccati optimum, p={r.dim}, J={r.modes}, {r.variant}",
                        "issue target (one choice: Riccati is exact)", f"{r.optimal:.3f}",
                        f"{r.test_cost:.3f}; gap " + _interval(*gap, int(r.runs)), f"±{tol}%" if tol else "n/a",
                        judge(gap[1], gap[2], tol) if judged and tol else "not judged", profile))
    for r in vs_ppo.itertuples():
        rows.append(Row(experiment, f"PPO cost over HPO cost, p={r.dim}, J={r.modes}, {r.variant}",
                        "HPO paper: HPO ≤ PPO in every cell (spec §10.5)", "> 0 %",
                        f"{_interval(r.gap_pct, r.gap_low, r.gap_high, int(r.runs))}; P(HPO better) {r.p_better:.2f}",
                        "interval > 0", judge_above(r.gap_low, r.gap_high, 0.0) if judged else "not judged", profile))
    switched = vs_ppo[(vs_ppo.variant == "switched") & (vs_ppo.modes > 1)].sort_values("dim")
    for J, part in switched.groupby("modes"):
        if len(part) > 1:
            growing = bool((part.gap_pct.diff().dropna() > 0).all())
            rows.append(Row(experiment, f"PPO gap grows with p (J={J}, p={', '.join(map(str, part.dim))})",
                            "HPO paper: the gap grows with the continuous dimension", "increasing",
                            ", ".join(f"{g:+.1f}%" for g in part.gap_pct), "means increasing",
                            _judge(growing) if judged else "not judged", profile))
    published, _ = _table("hpo_switched_lqr_published")
    if published is not None:
        single = published[published.published_rows == "single-mode"]
        d = single.hpo_full_vs_single_mode_optimal_pct
        rows.append(Row(experiment, f"published single-mode rows ({len(single)}) vs our exact single-mode optimum",
                        "HPO spec §10.5 (published HPOFull)", "distance reported",
                        f"mean {d.mean():+.2f}%, range [{d.min():+.2f}, {d.max():+.2f}]%", "n/a",
                        "not judged (instances differ: G_sym normalisation unknown)", profile))
        switched_rows = published[published.published_rows == "switched-like"]
        if "hpo_full_vs_switched_optimal_pct" in switched_rows:
            known = switched_rows.dropna(subset=["hpo_full_vs_switched_optimal_pct"])
            if len(known):
                d = known.hpo_full_vs_switched_optimal_pct
                rows.append(Row(experiment, f"published switched-like rows with an exact switched optimum "
                                f"({len(known)}: J = {', '.join(map(str, sorted(known.modes.unique())))}) vs it",
                                "HPO spec §10.5 (published HPOFull)", "distance reported",
                                f"mean {d.mean():+.2f}%, range [{d.min():+.2f}, {d.max():+.2f}]%", "n/a",
                                "not judged (instances differ: G_sym normalisation unknown)", profile))
        below = int((switched_rows.published_hpo_full < switched_rows.single_mode_optimal).sum())
        rows.append(Row(experiment, f"published switched-like rows ({len(switched_rows)}) below the single-mode optimum",
                        "HPO spec §7.3 reading", "all", f"{below} of {len(switched_rows)}", "n/a",
                        "not judged (evidence for the reading)", profile))
    return rows


def jrp_rows() -> list[Row]:
    experiment = "joint replenishment (HPO)"
    comparison, prov = _table("hpo_jrp_vs_ppo")
    summary, _ = _table("hpo_jrp_summary")
    if comparison is None or summary is None:
        return [_missing(experiment, "HPO vs PPO", "HPO spec §10.1-§10.3")]
    profile = prov.profile if prov else "unknown"
    judged = profile in ("quick", "paper")
    vs_ppo = comparison[comparison.comparison == "hpo_full vs ppo"]
    rows = []
    tie, worse = HPO_TOLERANCE["jrp_tie"].get(profile), HPO_TOLERANCE["jrp_ppo_worse"].get(profile)
    for r in vs_ppo.itertuples():
        ours = f"{_interval(r.gap_pct, r.gap_low, r.gap_high, int(r.runs))}; P(HPO better) {r.p_better:.2f}"
        published = JRP_PUBLISHED.get(int(r.n_items))
        target = f"{100 * (published[2] / published[0] - 1):+.1f}% (published)" if published else "–"
        if r.n_items <= 5:
            rows.append(Row(experiment, f"PPO vs HPO, n={r.n_items}", "issue target: within 2 % for n ≤ 5", target,
                            ours, f"±{tie}%" if tie else "n/a",
                            judge(r.gap_low, r.gap_high, tie) if judged and tie else "not judged", profile))
        elif r.n_items == vs_ppo.n_items.max() and r.n_items >= 20:
            rows.append(Row(experiment, f"PPO vs HPO, n={r.n_items} (largest)", "issue target: PPO ≥ 25 % worse",
                            target, ours, f"interval ≥ {worse}%" if worse else "n/a",
                            judge_above(r.gap_low, r.gap_high, worse) if judged and worse else "not judged", profile))
        else:
            rows.append(Row(experiment, f"PPO vs HPO, n={r.n_items}", "HPO spec §10.3", target, ours, "n/a",
                            "not judged", profile))
    tol = HPO_TOLERANCE["published_hpo"].get(profile)
    from .hpo_experiments import JRP_BUDGETS

    batch = JRP_BUDGETS[profile].configs["hpo_full"].batch_size if profile in JRP_BUDGETS else "another batch"
    runs, _ = _table("hpo_jrp")
    for n, part in ([] if runs is None else runs[runs.method == "hpo_full"].groupby("n_items")):
        reference = JRP_REFERENCE_TOP5.get(int(n))
        if reference is None:
            continue
        best = part.test_cost.nsmallest(5)
        gap = 100 * (float(best.mean()) / reference - 1)
        rows.append(Row(experiment, f"HPO mean of the {len(best)} best runs, n={n}",
                        "HPO spec §10.2 reference (§8 floor; B = 128 / 512)", f"{reference:.2f}",
                        f"{best.mean():.2f} ({gap:+.2f} %, {len(part)} runs)", f"±{tol}%" if tol else "n/a",
                        _judge(abs(gap) <= tol) if tol and len(best) == 5 else
                        "not judged (the paper protocol, with at least 5 runs)", profile))
    for r in summary[summary.method == "hpo_full"].itertuples():
        published = JRP_PUBLISHED.get(int(r.n_items))
        if published:
            gap = [100 * (v / published[0] - 1) for v in (r.test_cost, r.test_cost_low, r.test_cost_high)]
            rows.append(Row(experiment, f"HPO cost per item and period, n={r.n_items}", "HPO spec §10.3 (HPOFull, B = 16)",
                            f"{published[0]:.2f}", f"{r.test_cost:.2f}; vs published " + _interval(*gap, int(r.runs)),
                            f"±{tol}%" if tol else "n/a",
                            f"not judged: B = 16 there, {batch} here (the §10.2 rows and the batch-16 sweep are the "
                            "like-for-like ones)", profile))
    return rows + jrp_batch16_rows() + jrp_batch512_rows()


def jrp_sweep_summary(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """The summary of one JRP table sweep (:data:`hybridrl.hpo_experiments.JRP_TABLE_SWEEPS`, its runs' ``table``
    with a ``batch`` column) beside the published numbers: per (n, method) the mean test cost with a 95 %
    bootstrap interval, standard deviation and median, and then, for ``batch16`` (spec §10.3), the published
    mean (``published``, ``vs_published_pct``); for ``batch512`` (§10.2), the mean of the five best runs
    (``top5``), the HPO reference (``reference``, ``vs_reference_pct``) and PPO's published gap to it
    (``published_gap_pct``)."""
    from .hpo_experiments import method_summary

    if name not in ("batch16", "batch512"):
        raise ValueError(f"name must be 'batch16' or 'batch512', got {name!r}")
    spread = table.groupby(["n_items", "method"]).test_cost.agg(
        std="std", median="median", top5=lambda c: c.nsmallest(5).mean()).reset_index()
    summary = (method_summary(table, keys=["n_items"]).merge(spread, on=["n_items", "method"])
               .assign(batch=int(table.batch.iloc[0])))
    if name == "batch16":
        published = pd.DataFrame([dict(n_items=n, method=m, published=v) for n, values in JRP_PUBLISHED.items()
                                  for m, v in zip(("hpo_full", "hpo_decentralized", "ppo"), values)])
        summary = summary.drop(columns="top5").merge(published, on=["n_items", "method"], how="left")
        return summary.assign(vs_published_pct=100 * (summary.test_cost / summary.published - 1))
    summary["reference"] = summary.n_items.map(JRP_REFERENCE_TOP5)
    summary["vs_reference_pct"] = 100 * (summary.test_cost / summary.reference - 1)
    summary["published_gap_pct"] = [JRP_PPO_GAP_B512.get(n) if m == "ppo" else None
                                    for n, m in zip(summary.n_items, summary.method)]
    return summary


def _sweep_table(name: str) -> tuple[pd.DataFrame, str, float | None]:
    """A JRP table sweep's summary (empty if missing), its profile and the published-HPO tolerance there."""
    table, prov = _table(name)
    profile = prov.profile if prov else "unknown"
    return (pd.DataFrame(columns=["published", "reference"]) if table is None else table, profile,
            HPO_TOLERANCE["published_hpo"].get(profile))


def jrp_batch16_rows() -> list[Row]:
    """The sweep of spec §10.3's table at its own batch size (16): HPO-full judged within the published-HPO
    tolerance of the published mean (the issue's target, e.g. n = 30: 39.43), the other methods shown."""
    table, profile, tol = _sweep_table("hpo_jrp_batch16")
    return _batch16_rows("joint replenishment (HPO)", table, profile, tol)


def _batch16_rows(experiment: str, table: pd.DataFrame, profile: str, tol: float | None) -> list[Row]:
    """The rows of :func:`jrp_batch16_rows` from a summary of :func:`jrp_sweep_summary`. Beside HPO-full's
    comparison with the published number: how much a different draw of the items moves the cost (chapter 6's
    ``hpo_jrp_instances`` table, where present), and a row for HPO-full against the fixed-cycle policy's exact
    cost on our own instance."""
    instances, _ = _table("hpo_jrp_instances")
    draws = {} if instances is None else {int(r.n_items): r for r in instances.itertuples()}
    rows, bars = [], []
    for r in table[table.published.notna()].itertuples():
        gap = [100 * (v / r.published - 1) for v in (r.test_cost, r.test_cost_low, r.test_cost_high)]
        judged = r.method == "hpo_full" and tol is not None and r.runs >= 2  # (one run is no interval)
        draw = draws.get(int(r.n_items)) if r.method == "hpo_full" else None
        context = "" if draw is None else (f"; item draws: sd {draw.draws_sd_pct:.1f} %, ours "
                                           f"{draw.ours_vs_draws_pct:+.1f} % (fixed-cycle cost, {draw.draws} draws)")
        rows.append(Row(experiment, f"{r.method} cost per item and period, n={r.n_items}, B = {r.batch}",
                        f"HPO spec §10.3 ({r.method}, B = 16)", f"{r.published:.2f}",
                        f"{r.test_cost:.2f}; vs published " + _interval(*gap, int(r.runs)) + context,
                        f"±{tol}%" if judged else "n/a", judge(gap[1], gap[2], tol) if judged else
                        "not judged" + (" (one run)" if r.method == "hpo_full" and r.runs < 2 else ""), profile))
        if draw is not None:
            over = [100 * (v / draw.fixed_cycle - 1) for v in (r.test_cost, r.test_cost_low, r.test_cost_high)]
            bars.append(Row(experiment, f"hpo_full over the fixed-cycle policy, n={r.n_items}, B = {r.batch}",
                            "no published target (the fixed-cycle policy's exact cost on our instance; chapter 6)",
                            f"{draw.fixed_cycle:.2f}", f"{r.test_cost:.2f}; " + _interval(*over, int(r.runs)),
                            "n/a", "not judged", profile))
    return rows + bars


def jrp_batch512_rows() -> list[Row]:
    """The batch-512 sweep of spec §10.2: HPO-full's mean of its five best runs judged within the published-HPO
    tolerance of §10.2's reference (spec §13: "HPO within about 1 % of the §10.2 references ... at B ∈ {128,
    512}"), and PPO's mean cost over that reference beside the published batch-512 gap, shown."""
    experiment = "joint replenishment (HPO)"
    table, profile, tol = _sweep_table("hpo_jrp_batch512")
    rows = []
    for r in table[table.reference.notna()].itertuples():
        if r.method == "hpo_full":
            gap = 100 * (r.top5 / r.reference - 1)
            judged = tol is not None and r.runs >= 5
            rows.append(Row(experiment, f"HPO mean of the {min(5, int(r.runs))} best runs, n={r.n_items}, "
                            f"B = {r.batch}",
                            "HPO spec §10.2 reference (§8 floor)", f"{r.reference:.2f}",
                            f"{r.top5:.2f} ({gap:+.2f} %, {int(r.runs)} runs)", f"±{tol}%" if judged else "n/a",
                            _judge(abs(gap) <= tol) if judged else "not judged (at least 5 runs of the paper "
                            "protocol)", profile))
        elif pd.notna(r.published_gap_pct):
            gap = [100 * (v / r.reference - 1) for v in (r.test_cost, r.test_cost_low, r.test_cost_high)]
            rows.append(Row(experiment, f"{r.method} over the HPO reference, n={r.n_items}, B = {r.batch}",
                            "HPO spec §10.2 (PPO, B = 512)", f"{r.published_gap_pct:+.2f}%",
                            _interval(*gap, int(r.runs)), "n/a", "not judged", profile))
    return rows


def cross_term_rows() -> list[Row]:
    """The cross-term study (spec §10.7): our near / far medians beside the published ones, and the paper's
    qualitative claim — the cross term loses its signal near the optimum while the pathwise term keeps it —
    judged on the statistics the paper measured, those of HPO-full's own step (``*_ppo``). The exact
    estimator's statistics have no published counterpart and are shown unjudged."""
    experiment = "cross term (HPO)"
    table, prov = _table("hpo_cross_term")
    if table is None:
        return [_missing(experiment, "gradient alignment near and far", "HPO spec §10.7")]
    profile = prov.profile if prov else "unknown"
    judged = profile in ("quick", "paper")
    rows = []
    for r in table.itertuples():
        if pd.isna(r.published_near) and pd.isna(r.published_far):
            source, target, verdict = "no published value", "", "not judged"
        else:
            source, target = "HPO spec §10.7", f"{r.published_near:g} / {r.published_far:g}"
            verdict = "not judged (digits; the claim below is judged)"
        rows.append(Row(experiment, f"{r.statistic}, near / far from the optimum", source, target,
                        f"{r.ours_near:.3g} / {r.ours_far:.3g}", "n/a", verdict, profile))
    by = table.set_index("statistic")
    if {"cross_ppo_alignment", "pathwise_ppo_alignment"} <= set(by.index):
        cross, path = by.loc["cross_ppo_alignment"], by.loc["pathwise_ppo_alignment"]
        claim = bool(cross.ours_near < cross.ours_far and path.ours_near > cross.ours_near)
        rows.append(Row(experiment, "cross-term alignment falls near the optimum, below the pathwise term's "
                        "(HPO-full's step)", "HPO paper: the cross term is nearly pure noise near a discrete best "
                        "response", "near < far; pathwise > cross near",
                        f"cross {cross.ours_near:.3g} near vs {cross.ours_far:.3g} far; pathwise {path.ours_near:.3g} near",
                        "direction", _judge(claim) if judged else "not judged", profile))
    return rows


NETWORK_TOLERANCE = {"serial": {"quick": 1.0, "paper": 0.5}}  # HDPO within 1 % (quick) / 0.5 % (paper) of the optimum


def _bound_gap_rows(experiment: str, summary: pd.DataFrame, profile: str) -> list[Row]:
    """One reported (not judged) row per method and number of stores: the gap to the setting's lower bound."""
    return [Row(experiment, f"{r.method}, {r.n_stores} stores: gap to the lower bound",
                "HDPO paper (bound construction unknown)", "reported",
                _interval(r.gap_pct, r.gap_pct_low, r.gap_pct_high, int(r.runs)), "n/a", "not judged", profile)
            for r in summary.itertuples()]


def network_rows() -> list[Row]:
    """The network chapters: serial HDPO against the exact optimum; one warehouse (neural vs the tuned heuristic,
    the gap to the lower bound, the data-efficiency claim); transshipment against its lower bound."""
    rows = []
    serial, prov = _table("hdpo_serial")
    if serial is None:
        rows.append(_missing("serial system (HDPO)", "HDPO vs the Clark-Scarf optimum", "HDPO spec §9.3"))
    else:
        profile = prov.profile if prov else "unknown"
        exact = serial[serial.method == "clark_scarf"]
        if len(exact):
            rows.append(Row("serial system (HDPO)", "optimal cost per period (p = 9)", "HDPO spec §9.3 (simulation "
                            "search)", "10.74 ± 0.03", f"{float(exact.test_cost.iloc[0]):.4f} (Clark-Scarf recursion)",
                            "± 0.03", _judge(abs(float(exact.test_cost.iloc[0]) - 10.74) <= 0.03), "exact"))
        tol = NETWORK_TOLERANCE["serial"].get(profile)
        for r in serial[serial.method != "clark_scarf"].itertuples():
            rows.append(Row("serial system (HDPO)", f"{r.method}: gap to the exact optimum", "issue target",
                            "0 %", _interval(r.gap_pct, r.gap_low, r.gap_high, int(r.runs)),
                            f"≤ {tol}%" if tol else "n/a",
                            judge(r.gap_low, r.gap_high, tol) if tol else "not judged", profile))
    one, prov = _table("hdpo_one_warehouse_summary")
    if one is None:
        rows.append(_missing("one warehouse (HDPO)", "gap to the lower bound", "HDPO spec §4.4"))
    else:
        profile = prov.profile if prov else "unknown"
        rows += _bound_gap_rows("one warehouse (HDPO)", one, profile)
        by = one.set_index(["n_stores", "method"]).gap_pct
        for n in sorted(one.n_stores.unique()):
            if (n, "echelon_base_stock") in by.index:
                best = min((by[(n, m)], m) for m in ("vanilla", "symmetry_aware") if (n, m) in by.index)
                rows.append(Row("one warehouse (HDPO)", f"{n} stores: best neural policy ({best[1]}) at or below the "
                                "tuned echelon base stock", "issue target (5 stores)", "≤ heuristic",
                                f"{best[0]:+.3f}% vs {by[(n, 'echelon_base_stock')]:+.3f}% (mean gaps)", "n/a",
                                _judge(best[0] <= by[(n, "echelon_base_stock")]) if n == 5 else "not judged", profile))
    versus, prov = _table("hdpo_one_warehouse_vs")
    if versus is not None:
        profile = prov.profile if prov else "unknown"
        for r in versus[versus.comparison.str.startswith("symmetry_aware vs vanilla")].itertuples():
            where = "all store counts" if r.n_stores != r.n_stores else f"{int(r.n_stores)} stores"
            rows.append(Row("one warehouse (HDPO)", f"P(symmetry-aware run costs less than vanilla), {where}",
                            "HDPO paper: structured policies need less data / do better", "> 0.5",
                            f"{r.p_better:.2f} [{r.p_low:.2f}, {r.p_high:.2f}], {int(r.runs)} runs", "interval > 0.5",
                            judge_above(r.p_low, r.p_high, 0.5) if where == "all store counts" else "not judged",
                            profile))
    claim, prov = _table("hdpo_one_warehouse_data_claim")
    sources = {"symmetry_aware": "HDPO paper v2: 16x less data (16 vs 256 samples)",
               "gnn": "HDPO paper v3: GNNs reduce data requirements",
               "symmetry_aware_narrow": "our ablation: the symmetry-aware net with an 8-wide context (not the "
                                        "paper's net; chapter 09)"}
    profile = prov.profile if prov else "unknown"
    for r in ([] if claim is None else claim.itertuples()):
        reached = pd.notna(r.fraction)
        ours = r.method == "symmetry_aware_narrow"  # an ablation has no claim of the paper to judge
        rows.append(Row("one warehouse (HDPO)", f"{r.method.replace('_', '-')} data needed to match vanilla with "
                        "all its data", sources.get(r.method, "issue target"), "≤ 1/4",
                        f"{float(r.fraction):.3f} ({int(r.scenarios)} of {int(r.reference_scenarios)} scenarios)"
                        if reached else f"not reached ({int(r.reference_scenarios)} scenarios: "
                        f"{r.reference_gap_pct:+.2f}%)", "≤ 0.25",
                        "not judged" if ours else _judge(bool(reached and r.fraction <= 0.25)), profile))
    trans, prov = _table("hdpo_transshipment_summary")
    if trans is None:
        rows.append(_missing("transshipment (HDPO)", "gap to the lower bound", "HDPO spec §4.5"))
    else:
        rows += _bound_gap_rows("transshipment (HDPO)", trans, prov.profile if prov else "unknown")
    comparison, prov = _table("hdpo_vs_reinforce_summary")
    if comparison is None:
        rows.append(_missing("HDPO vs REINFORCE", "gap of each method", "HDPO spec §8"))
    else:
        profile = prov.profile if prov else "unknown"
        for r in comparison.itertuples():
            rows.append(Row("HDPO vs REINFORCE", f"{r.method}, {r.setting}: gap (optimum / lower bound)",
                            "HDPO paper v3: HDPO more robust than REINFORCE (no numbers published)", "reported",
                            _interval(r.gap_pct, r.gap_pct_low, r.gap_pct_high, int(r.runs)), "n/a", "not judged",
                            profile))
    return rows


REAL_DATA_SETTINGS = {
    "one_store": "one store per series (6048 Favorita store-item series; the paper's 32768-series set is not "
                 "available)",
    "three_warehouses": "3 warehouses, 21 stores, 288 items (adjacency and edge lead times drawn: unpublished)",
}


def real_data_rows() -> list[Row]:
    """The real-data chapter: each policy's test profit as a share of the just-in-time oracle's (reported), and
    HDPO's margin over each admissible heuristic, judged by its bootstrap interval over products."""
    experiment = "real data, Favorita (HDPO)"
    table, prov = _table("hdpo_real_data")
    if table is None:
        return [_missing(experiment, "test profit vs the oracle", "HDPO spec §4.7")]
    if prov is not None and prov.status and prov.status != PARTIAL:  # e.g. not run: data missing
        return [Row(experiment, f"{REAL_DATA_SETTINGS.get(s, s)}: test profit", "HDPO spec §4.7-§4.8", "", "", "",
                    prov.status, prov.profile) for s in REAL_DATA_SETTINGS]
    profile = prov.profile if prov else "unknown"
    rows = []
    for (setting, method), part in table.groupby(["setting", "method"], sort=False):
        rows.append(Row(experiment, f"{setting}: {method}, test profit (% of the just-in-time oracle)",
                        REAL_DATA_SETTINGS.get(setting, setting), "reported",
                        f"{part.profit_vs_oracle_pct.mean():.2f}% ({len(part)} run{'s' * (len(part) > 1)})", "n/a",
                        "not judged", profile))
    margins, _ = _table("hdpo_real_data_margins")
    for r in ([] if margins is None else margins.itertuples()):
        judged = profile in ("quick", "paper")
        rows.append(Row(experiment, f"{r.setting}: {r.method} minus {r.against}, test profit (points of the oracle's)",
                        "HDPO paper v3: HDPO significantly outperforms generalized newsvendor heuristics"
                        + ("" if r.setting == "one_store" else " (network: vs the echelon heuristic, spec §4.8)"), "> 0",
                        f"{r.margin_pts:+.2f} [{r.margin_low:+.2f}, {r.margin_high:+.2f}] over {int(r.products)} "
                        f"products", "interval > 0",
                        judge_above(r.margin_low, r.margin_high, 0.0) if judged else "not judged", profile))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# `paper` runs finished so far
# ----------------------------------------------------------------------------------------------------------------
PAPER_RUN_COLUMNS = ["grid", "dim", "modes", "variant", "n_items", "batch", "method", "seed", "test_cost",
                     "run_seconds", "computed_device", "computed_commit"]
"""The columns of ``paper/tables/hpo_paper_runs.csv`` (:func:`finished_paper_runs`)."""
_CHAPTER_TABLE = {"switched_lqr": "hpo_switched_lqr_summary", "jrp_batch16": "hpo_jrp_batch16"}
"""The chapter table that holds the results of each grid :func:`paper_run_rows` judges: where it is at the
``paper`` profile already, the grid's finished runs are reported there and not again here."""


def finished_paper_runs() -> pd.DataFrame:
    """Every ``paper`` run of the HPO grids (chapters 5 and 6) finished so far, in the cache or in the committed
    archive ``paper/runs`` (:mod:`hybridrl.cache`), read without computing anything: one row per run
    (:data:`PAPER_RUN_COLUMNS`; ``grid`` is ``switched_lqr``, ``jrp`` or ``jrp_<sweep>``).

    The ``paper`` grids have thousands of runs, hours each on a CPU. Runs finished one by one, on whatever machine
    a session had, would otherwise be evidence no table shows until a whole grid is done: here they are judged
    against the published numbers as they come (:func:`paper_run_rows`), each row with its number of runs."""
    from . import hpo_experiments as hx
    from .cache import cached_only

    with cached_only():  # finished runs only: the grids leave out the others and compute nothing
        parts = [hx.run_lqr_grid("paper", workers=1, progress=False).table.assign(grid="switched_lqr"),
                 hx.run_jrp_grid("paper", workers=1, progress=False).table.assign(
                     grid="jrp", batch=hx.jrp_budget("paper").configs["hpo_full"].batch_size)]
        parts += [result.table.assign(grid=f"jrp_{name}")
                  for name, result in hx.run_jrp_table_grid("paper", workers=1, progress=False).items()]
    runs = pd.concat([p for p in parts if len(p)] or [pd.DataFrame(columns=PAPER_RUN_COLUMNS)], ignore_index=True)
    runs = runs.reindex(columns=PAPER_RUN_COLUMNS)
    for column in ("dim", "modes", "n_items", "batch", "seed"):
        runs[column] = runs[column].astype("Int64")
    return runs.sort_values(["grid", "dim", "modes", "variant", "n_items", "batch", "method", "seed"],
                            ignore_index=True)


def paper_run_rows(runs: pd.DataFrame) -> list[Row]:
    """Rows for :func:`finished_paper_runs`, for the grids whose chapter tables are not at the ``paper`` profile
    yet. Switched LQR: each method's mean beside the published number of the same problem (the genuinely
    switched problem against the published rows p ∈ {8, 16, …, 48}, the single-mode variant against the others;
    HPO-full judged within the published-HPO tolerance once it has two runs), HPO-full's gap to our exact
    optimum where there is one, PPO over HPO-full and decentralized HPO over HPO-full where both ran. JRP at
    batch 16: as :func:`jrp_batch16_rows`, and the same two comparisons."""
    from . import hpo_experiments as hx
    from .stats import compare_methods

    experiment = "`paper` runs finished so far (HPO)"
    tol = HPO_TOLERANCE["published_hpo"]["paper"]
    pending = {grid for grid, table in _CHAPTER_TABLE.items() if getattr(_table(table)[1], "profile", "") != "paper"}
    rows = []
    lqr = runs[runs.grid == ("switched_lqr" if "switched_lqr" in pending else None)].astype({"dim": int, "modes": int})
    names = ("hpo_full", "hpo_decentralized", "ppo")
    for r in hx.method_summary(lqr).itertuples() if len(lqr) else ():
        published = _slqr_published(r.dim, r.modes, r.variant)
        if published and r.method in names:
            target = published[names.index(r.method)]
            gap = [100 * (v / target - 1) for v in (r.test_cost, r.test_cost_low, r.test_cost_high)]
            judged = r.method == "hpo_full" and r.runs >= 2
            rows.append(Row(experiment, f"{r.method}, switched LQR p={r.dim}, J={r.modes}, {r.variant}",
                            f"HPO spec §10.5 (published {r.method})", f"{target:.2f}",
                            f"{r.test_cost:.2f}; vs published " + _interval(*gap, int(r.runs)),
                            f"±{tol}%" if judged else "n/a",
                            judge(gap[1], gap[2], tol) if judged else
                            "not judged" + (" (one run)" if r.method == "hpo_full" else ""), "paper"))
        optimal = hx.lqr_references(r.dim, r.modes, r.variant, "paper")["optimal"] if r.method == "hpo_full" \
            else float("nan")
        if optimal == optimal:  # (not NaN: an exact optimum exists for this cell)
            gap = [100 * (v / optimal - 1) for v in (r.test_cost, r.test_cost_low, r.test_cost_high)]
            rows.append(Row(experiment, f"hpo_full gap to our exact optimum, p={r.dim}, J={r.modes}, {r.variant}",
                            "no published target (our instance's exact optimum)", f"{optimal:.3f}",
                            f"{r.test_cost:.3f}; gap " + _interval(*gap, int(r.runs)), "n/a", "not judged", "paper"))
    for r in compare_methods(lqr, "hpo_full", "ppo", keys=hx.LQR_CELL).itertuples() if len(lqr) else ():
        judged = r.runs >= 2
        rows.append(Row(experiment, f"PPO cost over HPO cost, switched LQR p={r.dim}, J={r.modes}, {r.variant}",
                        "HPO paper: HPO ≤ PPO in every cell (spec §10.5)", "> 0 %",
                        f"{_interval(r.gap_pct, r.gap_low, r.gap_high, int(r.runs))}; P(HPO better) "
                        f"{r.p_better:.2f}", "interval > 0",
                        judge_above(r.gap_low, r.gap_high, 0.0) if judged else "not judged (one run each)", "paper"))
    for r in compare_methods(lqr, "hpo_full", "hpo_decentralized", keys=hx.LQR_CELL).itertuples() if len(lqr) else ():
        rows.append(_decentralized_row(experiment, r, f"switched LQR p={r.dim}, J={r.modes}, {r.variant}",
                                       _slqr_published(r.dim, r.modes, r.variant), "§10.5"))
    batch16 = runs[runs.grid == ("jrp_batch16" if "jrp_batch16" in pending else None)]
    if len(batch16):
        batch16 = batch16.astype({"n_items": int, "batch": int})
        rows += _batch16_rows(experiment, jrp_sweep_summary("batch16", batch16), "paper", tol)
        tie = HPO_TOLERANCE["jrp_tie"]["paper"]
        for r in compare_methods(batch16, "hpo_full", "ppo", keys=["n_items", "batch"]).itertuples():
            ours = f"{_interval(r.gap_pct, r.gap_low, r.gap_high, int(r.runs))}; P(HPO better) {r.p_better:.2f}"
            if r.n_items <= JRP_TIE_ITEMS:  # the paper's reading of §10.3: a tie at few items, not a PPO loss
                rows.append(Row(experiment, f"PPO cost over HPO cost, JRP n={r.n_items}, B = {r.batch}",
                                f"HPO paper: all methods within about 0.7 % for n ≤ {JRP_TIE_ITEMS} (spec §10.3)",
                                "0 %", ours, f"±{tie}%",
                                judge(r.gap_low, r.gap_high, tie) if r.runs >= 2 else "not judged (one run each)",
                                "paper"))
                continue
            rows.append(Row(experiment, f"PPO cost over HPO cost, JRP n={r.n_items}, B = {r.batch}",
                            "HPO paper: PPO worse than HPO, more so with more items (spec §10.3)", "> 0 %",
                            ours, "interval > 0",
                            judge_above(r.gap_low, r.gap_high, 0.0) if r.runs >= 2 else "not judged (one run each)",
                            "paper"))
        for r in compare_methods(batch16, "hpo_full", "hpo_decentralized", keys=["n_items", "batch"]).itertuples():
            rows.append(_decentralized_row(experiment, r, f"JRP n={r.n_items}, B = {r.batch}",
                                           JRP_PUBLISHED.get(r.n_items), "§10.3"))
    return rows


def _slqr_published(dim: int, modes: int, variant: str) -> tuple | None:
    """The published (HPO-full, decentralized, PPO) of an S-LQR cell where the published row is the same problem
    (the genuinely switched one at p ∈ {8, 16, …, 48}, the single-mode variant elsewhere), else ``None``."""
    same_problem = (variant == "switched") == (dim in SLQR_SWITCHED_ROWS)
    return SLQR_PUBLISHED.get((dim, modes)) if same_problem else None


def _decentralized_row(experiment: str, r, cell: str, published: tuple | None, section: str) -> Row:
    """Decentralized HPO's mean cost over HPO-full's in one cell (a row of :func:`~hybridrl.stats.compare_methods`),
    judged by the paper's claim that dropping the cross term is never clearly worse (spec §10.8): *no* only when
    the whole interval is above 0. The published gap of the same cell is shown beside it."""
    shown = "" if published is None else f"; published {100 * (published[1] / published[0] - 1):+.2f} %"
    return Row(experiment, f"decentralized HPO cost over HPO-full cost, {cell}",
               f"HPO paper: no-cross never clearly worse (spec {section}, §10.8){shown}", "not clearly > 0 %",
               f"{_interval(r.gap_pct, r.gap_low, r.gap_high, int(r.runs))}; P(HPO-full better) {r.p_better:.2f}",
               "interval not wholly > 0",
               judge_not_above(r.gap_low, r.gap_high, 0.0) if r.runs >= 2 else "not judged (one run each)", "paper")


def build_report(paper_runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every row of the report; ``paper_runs`` (:func:`finished_paper_runs`) adds the ``paper`` runs finished
    so far of the grids whose chapters ran at another profile."""
    _partial_tables.clear()
    rows = (lost_sales_rows() + backlogged_rows() + switched_lqr_rows() + jrp_rows() + cross_term_rows()
            + network_rows() + real_data_rows() + ([] if paper_runs is None else paper_run_rows(paper_runs)))
    return pd.DataFrame([asdict(r) for r in rows])


def write_report(report: pd.DataFrame, stamp: Provenance) -> str:
    """Write ``paper/REPRODUCTION.md`` and return its text."""
    judged = report[report.reproduced.isin(["yes", "no", "inconclusive"])]
    lines = [
        "# Reproduction report",
        "",
        f"_{stamp.line()}_",
        "",
        "Every published or exact number we target, beside ours. *Target* is the published or exact value, "
        "*ours* what the notebooks measured, *tolerance* the allowed distance (relative for gaps), and "
        "*profile* the profile that produced our number (`exact` for closed-form or DP references). "
        "The tables come from the notebooks named in their own provenance lines under `paper/tables/`.",
        "",
        "Learned policies are judged by the 95 % interval over training seeds (stratified bootstrap; "
        "`hybridrl.stats`), not by one run: *yes* when the whole interval is within the tolerance, *no* when "
        "it is wholly outside, *inconclusive* when it straddles the boundary (more seeds would decide). With "
        "few seeds a percentile interval is close to the range of the runs. Exact references carry no interval.",
        "",
        f"**{(judged.reproduced == 'yes').sum()} of {len(judged)} judged rows reproduced** "
        f"({(judged.reproduced == 'inconclusive').sum()} inconclusive, {(judged.reproduced == 'no').sum()} not).",
        "",
    ]
    if _partial_tables:
        lines += [f"**Partial tables** (drawn from the runs finished so far, `reproduce --cached-only`; each row's "
                  f"run count says how many): {', '.join(f'`{t}`' for t in sorted(_partial_tables))}.", ""]
    for experiment, part in report.groupby("experiment", sort=False):
        lines += [f"## {experiment}", "", markdown_table(part.drop(columns="experiment")), ""]
    text = "\n".join(lines)
    paths.PAPER.mkdir(parents=True, exist_ok=True)
    paths.REPRODUCTION.write_text(text)
    return text
