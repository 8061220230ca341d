#!/usr/bin/env python3
"""The study of the paper's claims, second edition (docs/study.md).

    /usr/bin/python3 scripts/study.py run experiments/study_fmnist.json [--jobs 2] [--until PHASE]
    /usr/bin/python3 scripts/study.py status experiments/study_fmnist.json
    /usr/bin/python3 scripts/study.py report experiments/study_fmnist.json --out docs/results.md

Every unit of work is one ctfgen command run in the work directory (runs/study/<name> by
default). Its result is written to the *result store*, experiments/results/<name>/<unit>.json,
which is committed: a rerun on a fresh machine skips every unit whose record is in the store
with the same key (a hash of its arguments and of its inputs' keys) and re-creates only the
files that a unit still to run needs (a training run is redone when an evaluation of a model
not yet scored needs its weights). The report is made from the store alone.

Phases, in order (each seed's training and final evaluations follow the tuning seed's):
  prep      tokenizer, token directories, clustering (the same commands as experiment.py's plans)
  classifier  the evaluator's feature network
  floors    real-vs-real metrics: train vs test, test half vs half, at both sample sizes
  train     per seed: the baseline, CTF stage 1 and stage 2, with snapshots at every budget
  tune      per model kind and budget, on the tuning seed's models and validation sampling seeds:
            guidance, then temperature x top-k at the best guidance, then (CTF) the stage-2
            decoder; the best FID wins
  final     per seed and budget: the tuned settings (and the stage-2-free decoders) on fresh
            sampling seeds with the final sample count
  noise     one fixed model, several sampling seeds: the metric's spread
  ablations the paper's ablations at one budget (arXiv 2503.16194, Table 3): K, the clustering method,
            the stage-2 model size; each new pair trained with the main runs' recipe and scored
            with the main CTF's tuned settings at that budget (not re-tuned per variant)
"""
import argparse
import concurrent.futures
import datetime
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from experiment import (ExperimentError, EXIT_USAGE, default_ctfgen, fmt_num, lock_work_dir,  # noqa: E402
                        read_json, resolve_program, shell_quote, tail_text, write_json_atomic)

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
PHASES = ["prep", "classifier", "floors", "train", "tune", "final", "noise", "ablations"]


def log(msg):
    print("[study] " + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Plan

PLAN_DEFAULTS = {
    "name": None, "dataset": "fashion-mnist", "description": "", "threads": 1,
    "tokenizer": {"preset": "fmnist", "config": None, "steps": 1000, "batch": 32, "lr": 0.002, "seed": 0},
    "encode": {"train_limit": 20000},
    "clusters": {"k": 128, "method": "kmeans", "seed": 0, "restarts": 10},
    "classifier": {"steps": 6000, "batch": 128, "width": 24, "embed_dim": 256, "shift": 2, "seed": 0},
    "model": {"preset": "small", "batch": 32, "lr": 0.001, "warmup": 40, "schedule": "constant",
              "log_every": 50, "val_every": 200, "checkpoint_every": 200},
    "budgets": [400, 800, 1600, 3200],          # steps per model at which both are scored
    "baseline_extra_budgets": [4800],           # longer baseline runs: matched training FLOPs
    "seeds": [0, 1, 2],
    "tune": {"seed": 0, "num_samples": 1000, "eval_seed": 1000,
             "cfg": [1.5, 2.0, 3.0, 4.0, 5.0], "cfg_low": [1.0, 1.25], "cfg_high": [7.0, 10.0],
             "temperature": [0.9, 1.0, 1.1, 1.2],
             "top_k_baseline": [0, 64, 512], "top_k_ctf": [0, 8, 32],
             "aux_temperature": [0.5, 0.8, 1.0], "aux_top_k": [5, 20]},
    "final": {"num_samples": 5000, "eval_seed": 2000, "free_decoders": ["uniform", "frequent", "centroid"]},
    "floors": {"sizes": [1000, 5000], "seed": 0},
    "noise": {"eval_seeds": [3000, 3001, 3002, 3003, 3004], "sizes": [1000, 5000]},
    "eval_batch": 64,
    "ablations": {"step": 1600, "seeds": [0], "k_values": [32, 256, 512],
                  "methods": ["balanced", "agglomerative", "random"], "aux_presets": ["tiny", "base"]},
}


def load_plan(path):
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ExperimentError("plan %s: expected a JSON object" % path, EXIT_USAGE)
    unknown = set(raw) - set(PLAN_DEFAULTS) - {"notes"}
    if unknown:
        raise ExperimentError("plan %s: unknown field(s) %s" % (path, ", ".join(sorted(unknown))), EXIT_USAGE)
    plan = {}
    for key, default in PLAN_DEFAULTS.items():
        given = raw.get(key, default)
        if isinstance(default, dict):
            if not isinstance(given, dict):
                raise ExperimentError("plan %s: '%s' must be an object" % (path, key), EXIT_USAGE)
            bad = set(given) - set(default)
            if bad:
                raise ExperimentError("plan %s: unknown field(s) %s in '%s'" % (path, ", ".join(sorted(bad)), key),
                                      EXIT_USAGE)
            merged = dict(default)
            merged.update(given)
            given = merged
        plan[key] = given
    if not isinstance(plan["name"], str) or not plan["name"]:
        raise ExperimentError("plan %s: 'name' (a non-empty string) is required" % path, EXIT_USAGE)
    b = plan["budgets"]
    if not b or any(not isinstance(x, int) or x < 1 for x in b) or b != sorted(set(b)):
        raise ExperimentError("plan %s: 'budgets' must be increasing positive step counts" % path, EXIT_USAGE)
    a = plan["ablations"]
    if a["step"] not in b:
        raise ExperimentError("plan %s: ablations.step %s must be one of the budgets %s (the main CTF's tuned "
                              "settings at that step score the variants)" % (path, a["step"], b), EXIT_USAGE)
    if not set(a["seeds"]) <= set(plan["seeds"]):
        raise ExperimentError("plan %s: ablations.seeds %s must be among the seeds %s" % (
            path, a["seeds"], plan["seeds"]), EXIT_USAGE)
    if plan["tune"]["seed"] not in plan["seeds"]:
        raise ExperimentError("plan %s: tune.seed %s is not one of the seeds" % (path, plan["tune"]["seed"]),
                              EXIT_USAGE)
    return plan


# --------------------------------------------------------------------------------------------
# Units and the result store


class Unit:
    def __init__(self, name, phase, argv, deps=(), outputs=(), meta=None, files=None):
        self.name = name                      # path below the work directory and the store
        self.phase = phase
        self.argv = [str(a) for a in argv]
        self.deps = list(deps)                # Units whose outputs this one reads
        self.outputs = list(outputs)          # files this unit leaves for others
        self.meta = meta or {}
        self.files = files or {}              # {path in the work directory: JSON} written before it runs
        key = {"argv": self.argv, "deps": {d.name: d.key for d in self.deps}}
        if self.files:
            key["files"] = self.files
        blob = json.dumps(key, sort_keys=True)
        self.key = hashlib.sha256(blob.encode()).hexdigest()[:16]  # as experiment.py's units


class Engine:
    def __init__(self, plan, work, store, ctfgen, threads, slots=None):
        self.plan, self.work, self.store = plan, work, store
        self.slots = slots or Slots(1, lambda u: 0)
        self.ctfgen, self.threads = ctfgen, threads
        self._locks, self._guard = {}, threading.Lock()
        self.ran = 0

    def store_path(self, u):
        return os.path.join(self.store, u.name + ".json")

    def record(self, u):
        rec = read_json(self.store_path(u))
        return rec if rec and rec.get("key") == u.key else None

    def outputs_present(self, u):
        return all(os.path.exists(os.path.join(self.work, p)) for p in u.outputs)

    def _lock(self, u):
        with self._guard:
            return self._locks.setdefault(u.name, threading.Lock())

    def ensure(self, u, need_outputs=False):
        """The unit's record; runs it when the store lacks it, or when its files are needed and gone."""
        with self._lock(u):
            rec = self.record(u)
            if rec is None:
                old = read_json(self.store_path(u))
                if old is not None:
                    raise ExperimentError(
                        "%s: the store holds a record with key %s but the plan now gives %s; restore the "
                        "plan or delete %s (and what depends on it)" % (
                            u.name, old.get("key"), u.key, os.path.relpath(self.store_path(u), REPO)))
            if rec is not None and (not need_outputs or self.outputs_present(u)):
                return rec
            for d in u.deps:
                self.ensure(d, need_outputs=True)
            adopted = self._adopt(u)
            if adopted is not None and self.outputs_present(u):
                fresh = adopted
            else:
                fresh = self._execute(u)
            if rec is None:
                os.makedirs(os.path.dirname(self.store_path(u)), exist_ok=True)
                write_json_atomic(self.store_path(u), fresh)
                return fresh
            return rec  # a redone unit keeps the record its dependants were scored with

    def _adopt(self, u):
        """A finished run of the same command in the work directory (experiment.py's done.json)."""
        done = read_json(os.path.join(self.work, u.name, "done.json"))
        if done and done.get("key") == u.key and "result" in done:
            rec = {"name": u.name, "key": u.key, "argv": u.argv, "result": slim(done["result"]),
                   "seconds": done.get("seconds"), "finished": done.get("finished"), "meta": u.meta}
            if u.phase == "train" and self.outputs_present(u):
                rec["flops"] = done.get("flops") or training_flops(self.work, u)
            return rec
        return None

    def _execute(self, u):
        d = os.path.join(self.work, u.name)
        os.makedirs(d, exist_ok=True)
        for rel, content in u.files.items():
            os.makedirs(os.path.dirname(os.path.join(self.work, rel)), exist_ok=True)
            write_json_atomic(os.path.join(self.work, rel), content)
        cmd = [self.ctfgen, "--threads", str(self.threads), "-v", "1"] + u.argv
        t0 = time.time()
        with open(os.path.join(d, "stdout.txt"), "w") as fout, open(os.path.join(d, "stderr.log"), "a") as ferr:
            ferr.write("### %s: %s\n" % (datetime.datetime.now().isoformat(timespec="seconds"),
                                         " ".join(shell_quote(c) for c in cmd)))
            ferr.flush()
            self.slots.acquire(u)
            log("run %s" % u.name)
            t0 = time.time()
            try:
                rc = subprocess.call(cmd, cwd=self.work, stdout=fout, stderr=ferr)
            finally:
                self.slots.release()
        secs = time.time() - t0
        # wall time over every attempt (a stopped training resumes in a later attempt)
        att_path = os.path.join(d, "attempts.json")
        attempts = (read_json(att_path) or []) + [{"seconds": round(secs, 2), "exit": rc}]
        write_json_atomic(att_path, attempts)
        total = sum(a["seconds"] for a in attempts)
        if rc != 0:
            raise ExperimentError("%s failed (ctfgen exit %d after %.0f s):\n  %s\n%s" % (
                u.name, rc, secs, " ".join(shell_quote(c) for c in cmd),
                tail_text(os.path.join(d, "stderr.log"), 12)))
        with open(os.path.join(d, "stdout.txt")) as f:
            text = f.read()
        try:
            result = json.loads(text)
        except json.JSONDecodeError:
            result = {"stdout": text.strip()[-2000:]}
        rec = {"name": u.name, "key": u.key, "argv": u.argv, "result": slim(result), "seconds": round(total, 2),
               "attempts": len(attempts),
               "threads": self.threads, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
               "meta": u.meta}
        if u.phase == "train":
            rec["flops"] = training_flops(self.work, u)
        grid = os.path.join(d, "samples.png")
        if "--out" in u.argv and u.argv[0] == "eval" and os.path.exists(grid):
            os.makedirs(os.path.dirname(self.store_path(u)), exist_ok=True)
            shutil.copyfile(grid, self.store_path(u)[:-5] + ".png")  # small: the first 100 samples
            rec["grid"] = os.path.basename(u.name) + ".png"
        write_json_atomic(os.path.join(d, "done.json"), rec)
        self.ran += 1
        log("done %s in %.0f s" % (u.name, secs))
        return rec

    def run_all(self, units):
        """Every unit (in threads; the slots bound how many ctfgen processes run at once)."""
        if len(units) <= 1:
            return [self.ensure(u) for u in units]
        with concurrent.futures.ThreadPoolExecutor(len(units)) as pool:
            futures = []
            for u in units:  # submitted in order: equal-priority units get slots in this order
                futures.append(pool.submit(self.ensure, u))
                time.sleep(0.01)
            return [f.result() for f in futures]


def slim(result):
    """What the store keeps of a command's JSON: no file hashes or per-file paths."""
    if isinstance(result, dict):
        return {k: slim(v) for k, v in result.items() if k not in ("files", "feature_net")}
    return result


def safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def model_flops_per_token(path):
    """Forward FLOPs per token of a ctfgen GPT or aux file: 2 x every matrix product's weights
    (embedding tables are lookups and cost none) + the attention products (4 x layers x T x dim:
    scores and weighted sum over the full T x T block, as training computes them)."""
    h = safetensors_header(path)
    md = h.pop("__metadata__", {})
    cfg = json.loads(md.get("config", "{}"))
    matmul = sum(math.prod(v["shape"]) for k, v in h.items()
                 if len(v["shape"]) == 2 and "embedding" not in k and "embeddings" not in k)
    T, L, dim = cfg.get("block_size", 0), cfg.get("n_layer", 0), cfg.get("dim", 0)
    return 2 * matmul + 4 * L * T * dim, T


def training_flops(work, u):
    """Training FLOPs per step (3 x forward: forward + backward) and per snapshot."""
    path = os.path.join(work, u.outputs[-1])
    per_token, T = model_flops_per_token(path)
    per_step = 3 * per_token * T * int(u.meta["batch"])
    return {"per_token_forward": per_token, "per_step": per_step,
            "by_step": {str(s): per_step * s for s in u.meta["snapshots"]}}


# --------------------------------------------------------------------------------------------
# The plan's units


class Study:
    def __init__(self, plan):
        self.p = plan
        ds = ["--dataset", plan["dataset"]]
        t, cl = plan["tokenizer"], plan["clusters"]
        # prep: the same commands as experiment.py's plans, so their work directories are reused
        # a plan's own VQ config (tokenizer.config, fields of VQConfig) replaces the preset; it is
        # written into the work directory and is part of the unit's key
        arch = ["--config", "tokenizer_config.json"] if t.get("config") else ["--preset", t["preset"]]
        self.vq = Unit("tokenizer", "prep", ["train-vq"] + ds + arch + [
            "--steps", t["steps"], "--batch", t["batch"], "--lr", fmt_num(t["lr"]),
            "--seed", t["seed"], "--out", "tokenizer", "--json"], outputs=["tokenizer/vq.safetensors"],
            files={"tokenizer_config.json": t["config"]} if t.get("config") else None)
        vq_file = "tokenizer/vq.safetensors"
        lim = plan["encode"]["train_limit"]
        self.tok = {
            "train": Unit("tokens/train", "prep", ["encode", "--vq", vq_file] + ds + ["--split", "train"]
                          + (["--limit", lim] if lim else []) + ["--out", "tokens/train"],
                          deps=[self.vq], outputs=["tokens/train/codes.npy"]),
            "test": Unit("tokens/test", "prep", ["encode", "--vq", vq_file] + ds + ["--split", "test", "--out",
                                                                                       "tokens/test"],
                         deps=[self.vq], outputs=["tokens/test/codes.npy"])}
        name = "%s_k%d" % (cl["method"], cl["k"])
        self.cl = self.cluster_unit(cl["method"], cl["k"])
        self.cl_file = self.cl.outputs[0]
        c = plan["classifier"]
        self.clf_file = "classifier_v2/classifier.safetensors"
        self.clf = Unit("classifier_v2", "classifier", [
            "train-classifier"] + ds + ["--steps", c["steps"], "--batch", c["batch"], "--width", c["width"],
                                        "--embed-dim", c["embed_dim"], "--shift", c["shift"], "--seed", c["seed"],
                                        "--checkpoint-every", 500, "--log-every", 100,
                                        "--run-dir", "classifier_v2/run", "--out", self.clf_file, "--json"],
            outputs=[self.clf_file])
        self.train = {}
        for seed in plan["seeds"]:
            for kind in ("baseline", "stage1", "aux"):
                steps = plan["budgets"] + (plan["baseline_extra_budgets"] if kind == "baseline" else [])
                out = "train/%s_s%d" % ({"baseline": "baseline", "stage1": name + "_stage1",
                                         "aux": name + "_aux"}[kind], seed)
                self.train[(kind, seed)] = self.train_unit(kind, seed, steps, out,
                                                           None if kind == "baseline" else self.cl)

    def cluster_unit(self, method, k):
        cl = self.p["clusters"]
        name = "%s_k%d" % (method, k)
        path = "clusters/%s/clusters.safetensors" % name
        return Unit("clusters/" + name, "prep", [
            "cluster", "--vq", "tokenizer/vq.safetensors", "--k", k, "--method", method, "--seed", cl["seed"],
            "--restarts", cl["restarts"], "--out", path, "--json"], deps=[self.vq], outputs=[path],
            meta={"method": method, "k": k})

    def train_unit(self, kind, seed, steps, out, cl_unit=None, preset=None):
        """A training run with the plan's recipe and a snapshot at every step in `steps`."""
        m = self.p["model"]
        argv = (["train-aux"] if kind == "aux" else ["train-ar"]) + [
            "--tokens", "tokens/train", "--val-tokens", "tokens/test"] + (
            ["--clusters", cl_unit.outputs[0]] if cl_unit else []) + [
            "--preset", preset or m["preset"], "--batch", m["batch"], "--steps", steps[-1], "--lr", fmt_num(m["lr"]),
            "--warmup", m["warmup"], "--schedule", m["schedule"], "--log-every", m["log_every"],
            "--val-every", m["val_every"], "--checkpoint-every", m["checkpoint_every"], "--seed", seed,
            "--snapshot-steps", ",".join(str(s) for s in steps), "--out", out, "--json"]
        return Unit(out, "train", argv, deps=[self.tok["train"], self.tok["test"]] + ([cl_unit] if cl_unit else []),
                    outputs=["%s/snapshots/step%d.safetensors" % (out, s) for s in steps],
                    meta={"kind": kind, "seed": seed, "batch": m["batch"], "snapshots": steps})

    def ablation_units(self, best):
        """(training units, evaluation units) of the ablations; best: the CTF settings at the step."""
        a, fin = self.p["ablations"], self.p["final"]
        step, cl = a["step"], self.p["clusters"]
        variants = []  # (tag, stage-1 unit, aux unit, cluster unit)
        for seed in a["seeds"]:
            for k in a["k_values"]:
                cu = self.cluster_unit(cl["method"], k)
                variants.append(("k%d" % k, seed, cu))
            for mth in a["methods"]:
                cu = self.cluster_unit(mth, cl["k"])
                variants.append((mth, seed, cu))
        trains, evals = [], []
        for tag, seed, cu in variants:
            name = "%s_k%d" % (cu.meta["method"], cu.meta["k"])
            s1 = self.train_unit("stage1", seed, [step], "train/ablation/%s_stage1_s%d" % (name, seed), cu)
            ax = self.train_unit("aux", seed, [step], "train/ablation/%s_aux_s%d" % (name, seed), cu)
            trains += [s1, ax]
            evals.append(self.ctf_eval("ablation", s1, ax, cu, seed, step, best, fin["num_samples"],
                                       fin["eval_seed"] + seed, {"variant": tag, "k": cu.meta["k"],
                                                                 "method": cu.meta["method"]}))
        for seed in a["seeds"]:
            for preset in a["aux_presets"]:
                ax = self.train_unit("aux", seed, [step], "train/ablation/aux_%s_s%d" % (preset, seed), self.cl,
                                     preset=preset)
                trains.append(ax)
                evals.append(self.ctf_eval("ablation", self.train[("stage1", seed)], ax, self.cl, seed, step, best,
                                           fin["num_samples"], fin["eval_seed"] + seed,
                                           {"variant": "aux_" + preset, "aux_preset": preset}))
        return trains, evals

    def ctf_eval(self, phase, s1, ax, cu, seed, step, s, num, eval_seed, meta):
        snap = "snapshots/step%d.safetensors" % step
        name = "eval/%s/%s_s%d_step%d_n%d_e%d_%s" % (phase, meta["variant"], seed, step, num, eval_seed,
                                                    settings_name(s, "ctf"))
        argv = ["eval", "--tokenizer", "tokenizer/vq.safetensors", "--model", "%s/%s" % (s1.name, snap),
                "--aux", "%s/%s" % (ax.name, snap), "--clusters", cu.outputs[0], "--code-counts", "tokens/train",
                "--classifier", self.clf_file, "--num-samples", num, "--seed", eval_seed, "--dataset",
                self.p["dataset"], "--split", "test", "--batch", self.p["eval_batch"], "--json"] + settings_args(s, "ctf")
        m = {"kind": "ctf", "seed": seed, "step": step, "settings": s, "num_samples": num, "eval_seed": eval_seed}
        m.update(meta)
        return Unit(name, phase, argv, deps=[s1, ax, cu, self.tok["train"], self.vq, self.clf], meta=m)

    def budgets(self, kind):
        return self.p["budgets"] + (self.p["baseline_extra_budgets"] if kind == "baseline" else [])

    # -- evaluation units
    def eval_unit(self, phase, kind, seed, step, s, num, eval_seed, tag=""):
        """kind 'baseline' or 'ctf'; s: a settings dict (see settings_name)."""
        snap = "snapshots/step%d.safetensors" % step
        if kind == "baseline":
            tu = self.train[("baseline", seed)]
            files = ["--model", "%s/%s" % (tu.name, snap)]
            deps = [tu]
        else:
            t1, ta = self.train[("stage1", seed)], self.train[("aux", seed)]
            files = ["--model", "%s/%s" % (t1.name, snap), "--aux", "%s/%s" % (ta.name, snap),
                     "--clusters", self.cl_file, "--code-counts", "tokens/train"]
            deps = [t1, ta, self.cl, self.tok["train"]]
        name = "eval/%s/%s_s%d_step%d_n%d_e%d_%s" % (phase, kind, seed, step, num, eval_seed, settings_name(s, kind))
        argv = ["eval", "--tokenizer", "tokenizer/vq.safetensors"] + files + [
            "--classifier", self.clf_file, "--num-samples", num, "--seed", eval_seed, "--dataset",
            self.p["dataset"], "--split", "test", "--batch", self.p["eval_batch"], "--json"] + settings_args(s, kind)
        if phase == "final" and seed == self.p["tune"]["seed"]:
            argv += ["--out", name]  # its sample grid is kept in the store
        return Unit(name, phase, argv, deps=deps + [self.vq, self.clf],
                    meta={"kind": kind, "seed": seed, "step": step, "settings": s, "num_samples": num,
                          "eval_seed": eval_seed, "tag": tag})

    def floor_units(self):
        out = []
        f = self.p["floors"]
        for n in f["sizes"]:
            for name, args in (("train_vs_test", ["--split", "train", "--limit", n, "--ref-split", "test"]),
                               ("test_half_vs_half", ["--split", "test", "--part", "0/2", "--limit", n,
                                                      "--ref-split", "test", "--ref-part", "1/2"])):
                out.append(Unit("floors/%s_n%d" % (name, n), "floors", [
                    "eval-real", "--classifier", self.clf_file, "--dataset", self.p["dataset"]] + args + [
                    "--seed", f["seed"], "--json"], deps=[self.clf], meta={"floor": name, "num_samples": n}))
        return out


DEFAULT_SETTINGS = {"cfg": 2.0, "temperature": 1.0, "top_k": 0, "fine": "aux", "aux_temperature": 1.0,
                    "aux_top_k": 0, "aux_argmax": False, "restrict": False}


def settings_name(s, kind):
    n = "cfg%s_t%s_k%d" % (fmt_num(s["cfg"]), fmt_num(s["temperature"]), s["top_k"])
    if kind == "ctf":
        if s["fine"] != "aux":
            return n + "__" + s["fine"]
        n += "__aux_%s%s%s" % ("argmax" if s["aux_argmax"] else "t" + fmt_num(s["aux_temperature"]),
                               "_k%d" % s["aux_top_k"] if s["aux_top_k"] else "", "_r" if s["restrict"] else "")
    return n


def settings_args(s, kind):
    a = ["--cfg", fmt_num(s["cfg"]), "--temperature", fmt_num(s["temperature"]), "--top-k", s["top_k"]]
    if kind == "ctf":
        a += ["--fine-decoder", s["fine"]]
        if s["fine"] == "aux":
            a += ["--aux-temperature", fmt_num(s["aux_temperature"]), "--aux-top-k", s["aux_top_k"]]
            a += (["--aux-argmax"] if s["aux_argmax"] else []) + (["--restrict"] if s["restrict"] else [])
    return a


def fid_of(rec):
    v = (rec or {}).get("result", {}).get("metrics", {}).get("fid")
    return v if isinstance(v, (int, float)) else float("inf")


def with_(s, **kw):
    d = dict(s)
    d.update(kw)
    return d


def tune(study, engine, kind, step):
    """Coordinate search on the tuning seed's models: guidance (bracketed), then temperature x
    top-k, then (CTF) the stage-2 decoder. -> the best settings and every unit scored."""
    t = study.p["tune"]
    seed, num, es = t["seed"], t["num_samples"], t["eval_seed"]

    def score(settings_list):
        units = [study.eval_unit("tune", kind, seed, step, s, num, es) for s in settings_list]
        recs = engine.run_all(units)
        return min(zip(recs, settings_list), key=lambda r: fid_of(r[0]))

    base = dict(DEFAULT_SETTINGS)
    cfgs = list(t["cfg"])
    _, best = score([with_(base, cfg=c) for c in cfgs])
    if best["cfg"] == max(cfgs):
        _, best = score([with_(base, cfg=c) for c in cfgs + t["cfg_high"]])
    elif best["cfg"] == min(cfgs):
        _, best = score([with_(base, cfg=c) for c in t["cfg_low"] + cfgs])
    ks = t["top_k_baseline"] if kind == "baseline" else t["top_k_ctf"]
    _, best = score([with_(best, temperature=tt, top_k=k) for tt in t["temperature"] for k in ks])
    if kind == "ctf":
        options = [with_(best, aux_temperature=a, restrict=r) for a in t["aux_temperature"] for r in (False, True)]
        options += [with_(best, aux_argmax=True, restrict=r) for r in (False, True)]
        options += [with_(best, aux_top_k=k) for k in t["aux_top_k"]]
        options += [with_(best, fine=f) for f in study.p["final"]["free_decoders"]]
        _, best = score(options)
    return best


def run(plan, args):
    work = os.path.abspath(args.work or os.path.join("runs", "study", plan["name"]))
    store = os.path.join(REPO, "experiments", "results", plan["name"])
    os.makedirs(work, exist_ok=True)
    os.makedirs(store, exist_ok=True)
    lock = lock_work_dir(work)  # noqa: F841 (held until exit)
    tseed = plan["tune"]["seed"]
    seeds = [tseed] + [s for s in plan["seeds"] if s != tseed]
    if args.seeds:  # a subset of the plan's seeds this time (the units and keys stay the plan's)
        bad = set(args.seeds) - set(plan["seeds"])
        if bad or tseed not in args.seeds:
            raise ExperimentError("--seeds must be among the plan's seeds %s and include the tuning seed %d" % (
                plan["seeds"], tseed), EXIT_USAGE)
        seeds = [s for s in seeds if s in args.seeds]
    rank = {s: i for i, s in enumerate(seeds)}
    # at most `jobs` ctfgen processes at once; the tuning seed's units go first, then seed by seed
    engine = Engine(plan, work, store, resolve_program(args.ctfgen or default_ctfgen()),
                    args.threads or plan["threads"], Slots(args.jobs, lambda u: rank.get(u.meta.get("seed"), -1)))
    st = Study(plan)
    until = PHASES.index(args.until) if args.until else len(PHASES) - 1
    engine.run_all([st.vq, st.tok["train"], st.tok["test"], st.cl])
    if until < 1:
        return
    best, tuned = {}, {k: threading.Event() for k in ("ctf", "baseline")}
    best_lock = threading.Lock()
    fin = plan["final"]

    def prep_line():
        engine.ensure(st.clf)
        if until >= 2:
            engine.run_all(st.floor_units())

    def kind_line(kind, seed):
        """One model kind of one seed: training, (tuning seed) tuning, final evaluations, noise."""
        if until < 3:
            return
        if seed != tseed:
            # the other seeds' (long) training waits for this kind's tuning: a unit holds its
            # slot to the end, so an early start would hold back the tuning seed's results
            tuned[kind].wait()
        engine.run_all([st.train[("baseline", seed)]] if kind == "baseline" else
                       [st.train[("stage1", seed)], st.train[("aux", seed)]])
        if until < 4:
            return
        if seed == tseed:
            for step in st.budgets(kind):
                b = tune(st, engine, kind, step)
                with best_lock:
                    best[(kind, step)] = b
                    write_json_atomic(os.path.join(store, "best_settings.json"),
                                      {"%s_step%d" % k: v for k, v in sorted(best.items())})
            tuned[kind].set()
        else:
            tuned[kind].wait()
            if (kind, st.budgets(kind)[-1]) not in best:
                return  # the tuning line failed; its error is reported
        if until < 5:
            return
        # every budget's tuned settings first (the curves), then the stage-2-free decoders
        units = [st.eval_unit("final", kind, seed, step, best[(kind, step)], fin["num_samples"],
                              fin["eval_seed"] + seed, tag="best") for step in st.budgets(kind)]
        if kind == "ctf":
            units += [st.eval_unit("final", kind, seed, step, with_(best[(kind, step)], fine=f), fin["num_samples"],
                                   fin["eval_seed"] + seed, tag=f)
                      for step in st.budgets(kind) for f in fin["free_decoders"] if best[(kind, step)]["fine"] != f]
        engine.run_all(units)
        if until >= 6 and kind == "ctf" and seed == tseed:
            step, nz = plan["budgets"][-1], plan["noise"]
            engine.run_all([st.eval_unit("noise", "ctf", tseed, step, best[("ctf", step)], n, e, tag="noise")
                            for n in nz["sizes"] for e in nz["eval_seeds"]])

    def guarded(fn, *a):
        def go():
            try:
                fn(*a)
            except BaseException as e:  # reported after every line has stopped
                errors.append(e)
                for ev in tuned.values():
                    ev.set()
        return go

    errors = []
    lines = [threading.Thread(target=guarded(prep_line))]
    lines += [threading.Thread(target=guarded(kind_line, k, s)) for s in seeds for k in ("ctf", "baseline")]
    for t in lines:
        t.start()
    for t in lines:
        t.join()
    if errors:
        raise errors[0]
    if until >= 7:
        astep = plan["ablations"]["step"]
        trains, evals = st.ablation_units(best[("ctf", astep)])
        engine.run_all(trains)
        engine.run_all(evals)
    log("finished (%d unit(s) run here)" % engine.ran)


class Slots:
    """At most n units at once; a free slot goes to the waiting unit of best priority."""

    def __init__(self, n, priority):
        self.n, self.priority = n, priority
        self.cv = threading.Condition()
        self.waiting = []
        self.count = 0

    def acquire(self, u):
        with self.cv:
            self.count += 1
            me = (self.priority(u), self.count)
            self.waiting.append(me)
            while not (self.n > 0 and min(self.waiting) == me):
                self.cv.wait()
            self.waiting.remove(me)
            self.n -= 1

    def release(self):
        with self.cv:
            self.n += 1
            self.cv.notify_all()


def status(plan):
    store = os.path.join(REPO, "experiments", "results", plan["name"])
    counts = {}
    for root, _dirs, files in os.walk(store):
        for f in files:
            if f.endswith(".json") and f != "best_settings.json":
                ph = os.path.relpath(root, store).split(os.sep)
                key = ph[1] if ph[0] == "eval" and len(ph) > 1 else ph[0]
                counts[key] = counts.get(key, 0) + 1
    for k in sorted(counts):
        print("%-12s %d unit(s) in the store" % (k, counts[k]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("plan")
    r.add_argument("--work")
    r.add_argument("--ctfgen")
    r.add_argument("--threads", type=int, help="ctfgen --threads of each unit (default: the plan's threads)")
    r.add_argument("--jobs", type=int, default=2, help="units run at once")
    r.add_argument("--until", choices=PHASES)
    r.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")],
                   help="run only these of the plan's seeds this time (comma-separated; must include the tuning seed)")
    s = sub.add_parser("status")
    s.add_argument("plan")
    rep = sub.add_parser("report")
    rep.add_argument("plan")
    rep.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        plan = load_plan(a.plan)
        if a.cmd == "run":
            run(plan, a)
        elif a.cmd == "status":
            status(plan)
        else:
            import study_report
            study_report.write_report(plan, os.path.join(REPO, "experiments", "results", plan["name"]), a.out)
    except ExperimentError as e:
        print("study: " + str(e), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("study: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
