"""The report of scripts/study.py: docs/results.md made from the committed result store alone.

    /usr/bin/python3 scripts/study.py report experiments/study_fmnist.json --out docs/results.md

Every number on the page comes from experiments/results/<plan name>/; rerunning the command
after more units have finished updates it. Plots need matplotlib (python3-matplotlib).
"""
import glob
import json
import math
import os

# two-sided 95 % quantiles of Student's t, by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
       10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}

METRICS = [("fid", "FID", "lower", "%.2f"), ("is_mean", "IS", "higher", "%.2f"),
           ("precision", "precision", "higher", "%.3f"), ("recall", "recall", "higher", "%.3f")]


def t95(df):
    if df in T95:
        return T95[df]
    return T95[max(k for k in T95 if k <= df)]  # the next smaller tabulated df: slightly wider


def mean_ci(vals):
    """(mean, half-width of the 95 % t interval or None for n < 2, n)."""
    vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return None, None, 0
    m = sum(vals) / n
    if n < 2:
        return m, None, 1
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1))
    return m, t95(n - 1) * sd / math.sqrt(n), n


def fmt_ci(vals, f="%.2f", interval=False):
    """'mean ± half-width (n=N)', or with interval=True 'mean [low, high] (n=N)'."""
    m, h, n = mean_ci(vals)
    if m is None:
        return "—"
    if h is None:
        return (f % m) + " (1 seed)"
    if interval:
        return "%s [%s, %s] (n=%d)" % (f % m, f % (m - h), f % (m + h), n)
    return "%s ± %s (n=%d)" % (f % m, f % h, n)


def verdict(diffs, better):
    """A paired difference (ours - reference) over seeds -> holds / contradicted / inconclusive."""
    m, h, n = mean_ci(diffs)
    if m is None:
        return "not measured yet"
    if h is None:
        return "inconclusive (one seed)"
    lo, hi = m - h, m + h
    good = hi < 0 if better == "lower" else lo > 0
    bad = lo > 0 if better == "lower" else hi < 0
    return "holds" if good else "contradicted" if bad else "inconclusive"


class Store:
    def __init__(self, path):
        self.path = path
        self.recs = {}
        for f in glob.glob(os.path.join(path, "**", "*.json"), recursive=True):
            rel = os.path.relpath(f, path)[:-5]
            with open(f) as fh:
                self.recs[rel] = json.load(fh)
        self.best = self.recs.pop("best_settings", {})

    def evals(self, phase, **kw):
        out = []
        for name, r in self.recs.items():
            if not name.startswith("eval/%s/" % phase):
                continue
            m = r.get("meta", {})
            if all(m.get(k) == v for k, v in kw.items()):
                out.append(r)
        return out


def metric(r, key):
    return r.get("result", {}).get("metrics", {}).get(key)


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def settings_text(s, kind):
    t = "cfg %g, T %g, top-k %s" % (s["cfg"], s["temperature"], s["top_k"] or "off")
    if kind == "ctf":
        if s["fine"] != "aux":
            t += "; stage 2: %s member" % s["fine"]
        else:
            t += "; stage 2: %s%s%s" % ("argmax" if s["aux_argmax"] else "T %g" % s["aux_temperature"],
                                        ", top-k %d" % s["aux_top_k"] if s["aux_top_k"] else "",
                                        ", restricted" if s["restrict"] else "")
    return t


def flops_at(store, kind, seed, step):
    """Training FLOPs of the model(s) behind a snapshot: CTF = stage 1 + stage 2."""
    # the main runs only (train/<name>_s<seed>); the ablation runs live under train/ablation/
    names = ["train/baseline_s%d" % seed] if kind == "baseline" else [
        n for n in store.recs if n.count("/") == 1 and n.startswith("train/") and n.endswith("_s%d" % seed) and
        ("_stage1_" in n or "_aux_" in n)]
    total = 0
    for n in names:
        fl = store.recs.get(n, {}).get("flops", {}).get("by_step", {}).get(str(step))
        if fl is None:
            return None
        total += fl
    return total if (kind == "baseline" or len(names) == 2) else None


def interp_log(xs, ys, x):
    """Piecewise-linear interpolation of y in log(x); None outside the range."""
    pts = sorted(zip(xs, ys))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            if x1 == x0:
                return y0
            w = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + w * (y1 - y0)
    return None


def write_report(plan, store_path, out):
    S = Store(store_path)
    name = plan["name"]
    fig_dir = os.path.join(os.path.dirname(out) or ".", "results", name)
    L = []
    add = L.append
    add("# Results: the paper's claims at our scale")
    add("")
    add("Generated by `/usr/bin/python3 scripts/study.py report experiments/%s.json --out %s` from the "
        "committed result store `experiments/results/%s/` (one JSON file per finished unit; "
        "`scripts/study.py run` adds to it and resumes on any machine). Do not edit by hand: "
        "docs/study.md explains the method and the commands." % (name, out, name))
    add("")
    finished = sorted(r.get("finished") or "" for r in S.recs.values())
    add("Plan: %s" % plan["description"])
    add("")
    add("Data: %d units, the last finished %s." % (len(S.recs), (finished[-1] or "?")[:10] if finished else "—"))
    add("")

    # -- claims first
    seeds = plan["seeds"]
    budgets = plan["budgets"]
    claims = claim_rows(S, plan)
    add("## The claims")
    add("")
    add("Each comparison is a paired difference over training seeds (CTF minus the reference, both "
        "at their own tuned sampling settings, fresh sampling seeds, %d samples) with a 95 %% t "
        "interval. A claim *holds* when the interval lies on the paper's side of zero, is "
        "*contradicted* when it lies on the other side, and is *inconclusive* otherwise; with one "
        "seed there is no interval and the verdict says so." % plan["final"]["num_samples"])
    add("")
    add(md_table(["claim (paper)", "paper", "ours: difference (95 % CI)", "verdict"], claims))
    add("")

    # -- evaluator and floors
    add("## The evaluator and its floors")
    add("")
    clf = S.recs.get("classifier_v2", {}).get("result", {})
    if clf:
        add("Feature network: `ctfgen train-classifier` (%s), test accuracy **%.2f %%**, %d-d features "
            "(`classifier_v2` in the store; plan `classifier`: %s)." % (
                "width %d, embed_dim %d, random shifts of %d px" % (
                    plan["classifier"]["width"], plan["classifier"]["embed_dim"], plan["classifier"]["shift"]),
                100 * clf.get("test_accuracy", float("nan")), plan["classifier"]["embed_dim"],
                json.dumps(plan["classifier"])))
    else:
        add("Feature network: not trained yet.")
    add("")
    rows = []
    for key, label in (("train_vs_test", "real train vs real test"), ("test_half_vs_half", "test half vs other half")):
        for n in plan["floors"]["sizes"]:
            r = S.recs.get("floors/%s_n%d" % (key, n))
            if r:
                rows.append([label, n, r["result"]["metrics"]["n_real"]] +
                            [f % metric(r, k) for k, _, _, f in METRICS])
    if rows:
        add("Floors: real images scored as if generated (`ctfgen eval-real`). No generator can be "
            "expected below the train-vs-test row; the half-vs-half row is the metric's own noise at "
            "that sample size.")
        add("")
        add(md_table(["floor", "images", "reference", "FID", "IS", "precision", "recall"], rows))
        add("")
    noise = S.evals("noise")
    if noise:
        rows = []
        for n in plan["noise"]["sizes"]:
            rs = [r for r in noise if r["meta"]["num_samples"] == n]
            if rs:
                rows.append([n, len(rs)] + [fmt_sd([metric(r, k) for r in rs], f) for k, _, _, f in METRICS])
        add("Sampling noise: one fixed model (CTF, seed %d, %d steps, tuned settings) evaluated with "
            "different sampling seeds (mean ± standard deviation)." % (plan["tune"]["seed"], budgets[-1]))
        add("")
        add(md_table(["samples", "sampling seeds", "FID", "IS", "precision", "recall"], rows))
        add("")

    # -- convergence
    add("## Convergence: CTF and the baseline against steps and training FLOPs")
    add("")
    add("Both at their own tuned settings at every budget (fresh sampling seeds, %d samples), mean "
        "and 95 %% interval over the training seeds that have finished. Training FLOPs are counted "
        "from the model files (2 x matrix weights + attention per token, x3 for the backward pass); "
        "CTF's are stage 1's plus stage 2's." % plan["final"]["num_samples"])
    add("")
    rows = []
    curves = {}
    for kind in ("baseline", "ctf"):
        for step in budgets + (plan["baseline_extra_budgets"] if kind == "baseline" else []):
            rs = [r for r in S.evals("final", kind=kind, step=step) if r["meta"].get("tag") == "best"]
            fl = [flops_at(S, kind, r["meta"]["seed"], step) for r in rs]
            fl = [f for f in fl if f]
            if not rs:
                continue
            curves.setdefault(kind, []).append((step, (sum(fl) / len(fl)) if fl else None,
                                                [metric(r, "fid") for r in rs]))
            rows.append([kind, step, "%.2e" % (sum(fl) / len(fl)) if fl else "—"] +
                        [fmt_ci([metric(r, k) for r in rs], f) for k, _, _, f in METRICS])
    if rows:
        add(md_table(["model", "steps per model", "training FLOPs", "FID", "IS", "precision", "recall"], rows))
        add("")
        plot_curves(curves, fig_dir, add, out)
    else:
        add("No final evaluation has finished yet.")
        add("")

    # -- sample grids (kept in the store for the tuning seed's final evaluations)
    rows = []
    for step in budgets:
        cells = []
        for kind in ("baseline", "ctf"):
            rs = [r for r in S.evals("final", kind=kind, step=step, seed=plan["tune"]["seed"])
                  if r["meta"].get("tag") == "best" and r.get("grid")]
            if rs:
                path = os.path.join(store_path, os.path.dirname(rs[0]["name"]), rs[0]["grid"])
                cells.append("![%s %d](%s)" % (kind, step, os.path.relpath(path, os.path.dirname(out) or ".")))
            else:
                cells.append("—")
        if any(c != "—" for c in cells):
            rows.append([step] + cells)
    if rows:
        add("### Samples")
        add("")
        add("The first 100 samples (10 per class, one class per column) of each model at its tuned settings, "
            "training seed %d, fresh sampling seed." % plan["tune"]["seed"])
        add("")
        add(md_table(["steps", "baseline", "CTF"], rows))
        add("")

    # -- stage 2
    add("## Stage 2: the learned decoder against stage-2-free ones")
    add("")
    rows = []
    for step in budgets:
        best = [r for r in S.evals("final", kind="ctf", step=step) if r["meta"].get("tag") == "best"]
        if not best:
            continue
        row = [step, fmt_ci([metric(r, "fid") for r in best])]
        for f in plan["final"]["free_decoders"]:
            # where tuning chose this decoder, its row is the tuned one
            rs = [r for r in best if r["meta"]["settings"]["fine"] == f] or S.evals("final", kind="ctf", step=step, tag=f)
            row.append(fmt_ci([metric(r, "fid") for r in rs]))
        rows.append(row)
    if rows:
        add("FID of CTF with its tuned stage 2 and with each stage-2-free decoder, at the same stage-1 "
            "settings (fresh seeds).")
        add("")
        add(md_table(["steps", "tuned stage 2"] + ["%s member" % f for f in plan["final"]["free_decoders"]], rows))
        add("")

    # -- ablations
    abl = S.evals("ablation")
    if abl:
        a = plan["ablations"]
        main = {r["meta"]["seed"]: r for r in S.evals("final", kind="ctf", step=a["step"])
                if r["meta"].get("tag") == "best"}
        add("## Ablations (%d steps per model, seeds %s)" % (a["step"], ", ".join(str(x) for x in a["seeds"])))
        add("")
        add("Each variant is scored with the main CTF's tuned settings at %d steps (not re-tuned), on "
            "the same fresh sampling seed as the main run; the difference is paired by seed." % a["step"])
        add("")
        rows = []
        if main:
            rows.append(["main: %s K=%d, aux %s" % (plan["clusters"]["method"], plan["clusters"]["k"],
                                                    plan["model"]["preset"]),
                         fmt_ci([metric(r, "fid") for r in main.values()]),
                         fmt_ci([metric(r, "is_mean") for r in main.values()]), "—"])
        variants = sorted({r["meta"]["variant"] for r in abl})
        for v in variants:
            rs = [r for r in abl if r["meta"]["variant"] == v]
            diffs = [metric(r, "fid") - metric(main[r["meta"]["seed"]], "fid") for r in rs
                     if r["meta"]["seed"] in main]
            rows.append([v, fmt_ci([metric(r, "fid") for r in rs]), fmt_ci([metric(r, "is_mean") for r in rs]),
                         ci_text(diffs)])
        add(md_table(["variant", "FID", "IS", "FID minus main"], rows))
        add("")

    # -- tuning
    add("## Sampling settings, tuned per model")
    add("")
    add("On the tuning seed's models with %d samples and sampling seed %d (validation); guidance "
        "first (bracketed: the grid grows when the best value is at its edge), then temperature x "
        "top-k at the best guidance, then (CTF) the stage-2 decoder; lowest FID wins." % (
            plan["tune"]["num_samples"], plan["tune"]["eval_seed"]))
    add("")
    rows = []
    for key in sorted(S.best, key=lambda k: (k.split("_step")[0], int(k.split("_step")[1]))):
        kind, step = key.split("_step")
        tried = S.evals("tune", kind=kind, step=int(step))
        fids = sorted(metric(r, "fid") for r in tried if metric(r, "fid") is not None)
        rows.append([kind, step, settings_text(S.best[key], kind), len(tried),
                     "%.2f" % fids[0] if fids else "—", "%.2f" % fids[-1] if fids else "—"])
    if rows:
        add(md_table(["model", "steps", "best settings", "settings tried", "best FID", "worst FID"], rows))
    else:
        add("Not tuned yet.")
    add("")

    # -- cost and what is missing
    add("## Cost")
    add("")
    by_phase = {}
    for n, r in S.recs.items():
        ph = n.split("/")[1] if n.startswith("eval/") else n.split("/")[0]
        by_phase.setdefault(ph, [0, 0.0])
        by_phase[ph][0] += 1
        by_phase[ph][1] += r.get("seconds") or 0.0
    add(md_table(["part", "units", "CPU-thread hours (1 thread each)"],
                 [[k, v[0], "%.2f" % (v[1] / 3600)] for k, v in sorted(by_phase.items())]))
    add("")
    tune_secs = sorted(r.get("seconds") or 0 for n, r in S.recs.items() if n.startswith("eval/tune/"))
    if tune_secs:
        med = tune_secs[len(tune_secs) // 2]
        slow = sum(1 for x in tune_secs if x > 5 * med)
        add("Wall times are per unit with one ctfgen thread, two units at a time on the 2-core development "
            "machine; a 1,000-sample tuning evaluation takes %.0f s (median)%s." % (
                med, "; %d early tuning records also count time spent waiting for a free slot (a runner "
                     "version since fixed), so the tune row over-states" % slow if slow else ""))
        add("")
    add("## What a GPU run would settle")
    add("")
    ours = [r.get("flops", {}).get("by_step", {}) for n, r in S.recs.items() if n.startswith("train/") and n.count("/") == 1]
    ours_max = max((max(v.values()) for v in ours if v), default=0)
    # the paper's GPT-B (111 M parameters) for 300 epochs of ImageNet at 256 tokens per image,
    # 6 FLOPs per parameter and token (forward and backward), attention left out
    paper = 6 * 111e6 * 256 * 1.28e6 * 300
    add("The paper's claims are about GPT-B and larger trained for 300 epochs on ImageNet at 256 tokens "
        "per image and 16,384 codes: about 6 x 111e6 parameters x 256 tokens x 1.28e6 images x 300 "
        "epochs = %.1e training FLOPs per GPT-B model, %s the largest run here (%.1e). On one H100 at "
        "an assumed 40 %% of its 989 TFLOP/s bf16 peak that is about %.0f hours per model. What the CPU "
        "cannot show, and such a run would: how the two convergence curves above compare when both models "
        "are trained to convergence at that scale, and whether the learned "
        "stage 2 pulls away from a stage-2-free decoder when the codebook is 16,384 codes and images "
        "have 256 tokens (the regime of experiments/study_fmnist196.json, one step closer)." % (
            paper, "%.0e times" % (paper / ours_max) if ours_max else "many times", ours_max,
            paper / (0.4 * 989e12) / 3600))
    add("")
    add("## Not measured yet")
    add("")
    missing = []
    n_train = sum(1 for n in S.recs if n.startswith("train/"))
    if n_train < 3 * len(seeds):
        missing.append("training runs: %d of %d finished" % (n_train, 3 * len(seeds)))
    n_final = len(S.evals("final"))
    if not n_final:
        missing.append("final evaluations")
    missing += ["the paper's ablations at its ratios (K = V/128 .. V/8, clustering methods at V/32, "
                "stage-2 size)", "a paper-like point (>= 196 tokens, 16,384 codes, K = 512)",
                "a colour dataset whose samples can be judged by eye"]
    add("\n".join("- " + m for m in missing))
    add("")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(L))
    print("wrote %s" % out)


def fmt_sd(vals, f):
    vals = [v for v in vals if isinstance(v, (int, float))]
    if not vals:
        return "—"
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return f % m
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return "%s ± %s" % (f % m, f % sd)


def paired(S, step_ctf, step_base, key, tag_ctf="best"):
    """Per-seed (CTF - baseline) of a metric, both at their best settings."""
    out = []
    base = {r["meta"]["seed"]: metric(r, key) for r in S.evals("final", kind="baseline", step=step_base)
            if r["meta"].get("tag") == "best"}
    for r in S.evals("final", kind="ctf", step=step_ctf):
        if r["meta"].get("tag") == tag_ctf and r["meta"]["seed"] in base:
            a, b = metric(r, key), base[r["meta"]["seed"]]
            if a is not None and b is not None:
                out.append(a - b)
    return out


def matched_flops_diffs(S, plan, step):
    """Per seed: CTF's FID at `step` minus the baseline's FID interpolated (in log FLOPs) at
    CTF's training FLOPs."""
    out = []
    bsteps = plan["budgets"] + plan["baseline_extra_budgets"]
    for r in S.evals("final", kind="ctf", step=step):
        if r["meta"].get("tag") != "best":
            continue
        seed = r["meta"]["seed"]
        fc = flops_at(S, "ctf", seed, step)
        xs, ys = [], []
        for b in bsteps:
            rb = [x for x in S.evals("final", kind="baseline", step=b, seed=seed) if x["meta"].get("tag") == "best"]
            fb = flops_at(S, "baseline", seed, b)
            if rb and fb:
                xs.append(fb)
                ys.append(metric(rb[0], "fid"))
        if fc and xs:
            y = interp_log(xs, ys, fc)
            if y is not None:
                out.append(metric(r, "fid") - y)
    return out


def ci_text(d, f="%+.2f"):
    """A paired difference with its 95 % interval."""
    return fmt_ci(d, f, interval=True)


def claim_rows(S, plan):
    rows = []
    b = plan["budgets"]
    for step in (b[0], b[-1]):
        d = paired(S, step, step, "fid")
        rows.append(["CTF's FID is lower than the baseline's, same steps per model (%d)" % step,
                     "4.15 vs 5.46 (B, 300 ep)", ci_text(d), verdict(d, "lower")])
        d = paired(S, step, step, "is_mean")
        rows.append(["CTF's IS is higher, same steps (%d)" % step, "255 vs 194 (B)", ci_text(d),
                     verdict(d, "higher")])
    for step in b:  # every CTF budget whose FLOPs the baseline's curve covers
        d = matched_flops_diffs(S, plan, step)
        if d or step == b[-1]:
            rows.append(["CTF's FID is lower at equal training FLOPs (CTF at %d steps%s)" % (
                step, "" if d else "; beyond the baseline's longest run"),
                "not reported (paper matches epochs)", ci_text(d), verdict(d, "lower")])
    d = paired(S, b[-1], b[-1], "precision")
    rows.append(["CTF's precision is higher (%d steps)" % b[-1], "+0.03 (B)", ci_text(d, "%+.3f"),
                 verdict(d, "higher")])
    d = paired(S, b[-1], b[-1], "recall")
    rows.append(["CTF's recall is higher (%d steps)" % b[-1], "0.57 vs 0.56 (B)", ci_text(d, "%+.3f"),
                 verdict(d, "higher")])
    for f in plan["final"]["free_decoders"]:
        d = []
        by_seed = {r["meta"]["seed"]: metric(r, "fid") for r in S.evals("final", kind="ctf", step=b[-1], tag=f)}
        for r in S.evals("final", kind="ctf", step=b[-1]):
            if r["meta"].get("tag") == "best" and r["meta"]["seed"] in by_seed:
                d.append(metric(r, "fid") - by_seed[r["meta"]["seed"]])
        rows.append(["the learned stage 2 beats the %s-member decoder (FID, %d steps)" % (f, b[-1]),
                     "implied (Sec. 3.3)", ci_text(d), verdict(d, "lower")])
    return rows


def plot_curves(curves, fig_dir, add, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        add("(plots need python3-matplotlib)")
        return
    os.makedirs(fig_dir, exist_ok=True)
    for xkey, xlabel, fname in ((0, "training steps per model", "fid_vs_steps.png"),
                                (1, "training FLOPs (CTF: both stages)", "fid_vs_flops.png")):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for kind, pts in sorted(curves.items()):
            pts = [p for p in pts if p[xkey] is not None]
            if not pts:
                continue
            xs = [p[xkey] for p in pts]
            stats = [mean_ci(p[2]) for p in pts]
            ms = [s[0] for s in stats]
            ax.plot(xs, ms, marker="o", label=kind)
            if all(s[1] is not None for s in stats):
                ax.fill_between(xs, [m - s[1] for m, s in zip(ms, stats)], [m + s[1] for m, s in zip(ms, stats)],
                                alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("FID (tuned sampling)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(fig_dir, fname)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        add("![%s](%s)" % (fname, os.path.relpath(path, os.path.dirname(out) or ".")))
        add("")
