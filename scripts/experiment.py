#!/usr/bin/python3
"""Resumable experiment runner for ctfgen: tests the CTF paper's claims at small scale.

    scripts/experiment.py run    PLAN [--work DIR] [--ctfgen PATH] [--threads N] [--dry-run] [--only STAGE|UNIT]
    scripts/experiment.py status PLAN [--work DIR]
    scripts/experiment.py report PLAN [--work DIR] --out docs/results_<dataset>.md

A plan (experiments/*.json) names the dataset, the tokenizer, the cluster counts and methods,
the model size and training budget, the seeds, the guidance scales and the evaluation size.
The runner turns it into *units* (tokenizer, encode, classifier, clustering, each training
run, each evaluation), each a directory under the work directory that receives the unit's
outputs and then `done.json` (written atomically) holding its result. A rerun skips finished
units, lets ctfgen resume interrupted training from its checkpoint, and refuses a unit whose
command line (or whose inputs' command lines) changed since it was started.

Every ctfgen command runs with the work directory as its working directory and with paths
relative to it, so a work directory can be moved without invalidating anything.

Only the Python standard library is needed to run plans; the report's plots need matplotlib
(they are skipped with a note when it is missing). See docs/experiments.md.
"""

import argparse
import datetime
import fcntl
import fnmatch
import hashlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

STAGES = ["tokenizer", "encode", "classifier", "cluster", "train", "eval"]
CLUSTER_METHODS = ("kmeans", "balanced", "agglomerative", "random")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ExperimentError(Exception):
    """An error the user has to act on; printed without a traceback."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def log(msg):
    print("[experiment] " + msg, file=sys.stderr, flush=True)


def fmt_num(v):
    """Plan numbers as command-line text: 2.0 -> '2', 0.001 -> '0.001'."""
    if isinstance(v, bool):
        raise ExperimentError("boolean where a number was expected")
    if isinstance(v, int):
        return str(v)
    return "%g" % v


def write_json_atomic(path, obj):
    tmp = path + ".tmp.%d" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ExperimentError("%s: not valid JSON (%s); delete it to recompute the unit" % (path, e))


def display_path(path):
    """A path for messages and reports: relative to the current directory when below it."""
    rel = os.path.relpath(os.path.abspath(path))
    return rel if not rel.startswith("..") else os.path.basename(os.path.abspath(path))


# --------------------------------------------------------------------------------------------
# Plans


PLAN_DEFAULTS = {
    "description": "",
    "data_path": None,
    "image_size": 0,
    "threads": 0,
    "tokenizer": {"preset": "fmnist", "steps": 2000, "batch": 32, "lr": 0.002, "seed": 0,
                  "train_limit": 0, "extra_args": []},
    "encode": {"train_limit": 0, "test_limit": 0, "flip": False},
    "classifier": {"steps": 1500, "batch": 128, "width": 16, "seed": 0, "extra_args": []},
    "clusters": {"k_values": [8, 32, 128], "k_default": 128, "methods": ["kmeans", "agglomerative", "random"],
                 "seed": 0, "restarts": 10, "extra_args": []},
    "model": {"preset": "small", "batch": 32, "lr": 0.001, "warmup": 40, "ar_steps": 400, "aux_steps": 400,
              "log_every": 20, "val_every": 100, "checkpoint_every": 100, "extra_args": [],
              "ar_extra_args": [], "aux_extra_args": []},
    "seeds": [0, 1, 2],
    "eval": {"num_samples": 1000, "batch": 64, "split": "test", "cfg_default": 2.0,
             "cfg_values": [1.0, 1.5, 2.0, 3.0], "argmax": True, "extra_args": []},
}


def load_plan(path):
    raw = read_json(path)
    if raw is None:
        raise ExperimentError("plan %s does not exist" % path, EXIT_USAGE)
    if not isinstance(raw, dict):
        raise ExperimentError("plan %s: expected a JSON object" % path, EXIT_USAGE)
    plan = {}
    for key, default in PLAN_DEFAULTS.items():
        if isinstance(default, dict):
            given = raw.get(key, {})
            if not isinstance(given, dict):
                raise ExperimentError("plan %s: '%s' must be an object" % (path, key), EXIT_USAGE)
            unknown = set(given) - set(default)
            if unknown:
                raise ExperimentError("plan %s: unknown field(s) %s in '%s' (known: %s)" % (
                    path, ", ".join(sorted(unknown)), key, ", ".join(sorted(default))), EXIT_USAGE)
            merged = dict(default)
            merged.update(given)
            plan[key] = merged
        else:
            plan[key] = raw.get(key, default)
    for key in ("name", "dataset"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ExperimentError("plan %s: '%s' (a non-empty string) is required" % (path, key), EXIT_USAGE)
        plan[key] = raw[key]
    unknown = set(raw) - set(PLAN_DEFAULTS) - {"name", "dataset", "estimate", "notes"}
    if unknown:
        raise ExperimentError("plan %s: unknown field(s) %s" % (path, ", ".join(sorted(unknown))), EXIT_USAGE)
    plan["estimate"] = raw.get("estimate")
    plan["notes"] = raw.get("notes")
    validate_plan(plan, path)
    return plan


def validate_plan(p, path):
    def need(cond, msg):
        if not cond:
            raise ExperimentError("plan %s: %s" % (path, msg), EXIT_USAGE)

    def pos_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    c, m, e = p["clusters"], p["model"], p["eval"]
    need(isinstance(p["seeds"], list) and p["seeds"] and all(isinstance(s, int) and s >= 0 for s in p["seeds"])
         and len(set(p["seeds"])) == len(p["seeds"]), "'seeds' must be a non-empty list of distinct integers >= 0")
    need(all(pos_int(k) for k in c["k_values"]) and len(set(c["k_values"])) == len(c["k_values"]),
         "clusters.k_values must be distinct positive integers")
    need(c["k_default"] in c["k_values"], "clusters.k_default (%s) must be one of k_values" % c["k_default"])
    need(c["methods"] and all(x in CLUSTER_METHODS for x in c["methods"]) and "kmeans" in c["methods"],
         "clusters.methods must include kmeans and may list %s" % ", ".join(CLUSTER_METHODS))
    for key in ("ar_steps", "aux_steps", "batch", "log_every"):
        need(pos_int(m[key]), "model.%s must be a positive integer" % key)
    need(isinstance(m["val_every"], int) and m["val_every"] >= 0, "model.val_every must be >= 0")
    need(m["val_every"] % m["log_every"] == 0,
         "model.val_every (%d) must be a multiple of model.log_every (%d): ctfgen writes a validation "
         "loss into log.jsonl only on logged steps" % (m["val_every"], m["log_every"]))
    need(pos_int(e["num_samples"]) and e["num_samples"] >= 2, "eval.num_samples must be >= 2")
    need(e["cfg_default"] in e["cfg_values"], "eval.cfg_default must be one of eval.cfg_values")
    need(e["split"] in ("train", "test"), "eval.split must be train or test")
    for sect in ("tokenizer", "classifier", "clusters", "model", "eval"):
        for key in [k for k in p[sect] if k.endswith("extra_args")]:
            need(isinstance(p[sect][key], list) and all(isinstance(a, str) for a in p[sect][key]),
                 "%s.%s must be a list of strings" % (sect, key))


# --------------------------------------------------------------------------------------------
# Units


class Unit:
    def __init__(self, name, stage, argv, deps=(), meta=None, json_out=True):
        self.name = name          # directory below the work directory, e.g. "train/baseline_s0"
        self.stage = stage        # one of STAGES
        self.argv = [str(a) for a in argv]  # ctfgen arguments after the global options
        self.deps = list(deps)    # Units whose outputs this one reads
        self.meta = meta or {}    # what the report needs to know (model, k, seed, cfg, ...)
        self.json_out = json_out  # stdout is one JSON document
        self.key = None

    def compute_key(self):
        blob = json.dumps({"argv": self.argv, "deps": {d.name: d.key for d in self.deps}}, sort_keys=True)
        self.key = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return self.key


def fmt_cfg(cfg):
    return "%g" % cfg


def clustering_name(method, k):
    return "%s_k%d" % (method, k)


def build_units(plan):
    """The plan's units in execution order (dependencies first, then seed by seed)."""
    ds = ["--dataset", plan["dataset"]]
    if plan["data_path"]:
        ds += ["--data-path", plan["data_path"]]
    img = ["--image-size", str(plan["image_size"])] if plan["image_size"] else []
    t, enc, cl, m, ev = plan["tokenizer"], plan["encode"], plan["clusters"], plan["model"], plan["eval"]
    units = []

    vq = Unit("tokenizer", "tokenizer",
              ["train-vq"] + ds + img + ["--preset", t["preset"], "--steps", t["steps"], "--batch", t["batch"],
                                         "--lr", fmt_num(t["lr"]), "--seed", t["seed"]]
              + (["--train-limit", t["train_limit"]] if t["train_limit"] else [])
              + t["extra_args"] + ["--out", "tokenizer", "--json"])
    units.append(vq)
    vq_file = "tokenizer/vq.safetensors"
    tokens = {}
    for split in ("train", "test"):
        limit = enc["train_limit"] if split == "train" else enc["test_limit"]
        u = Unit("tokens/" + split, "encode",
                 ["encode", "--vq", vq_file] + ds + img + ["--split", split]
                 + (["--limit", limit] if limit else []) + (["--flip"] if enc["flip"] and split == "train" else [])
                 + ["--out", "tokens/" + split],
                 deps=[vq], json_out=False)
        units.append(u)
        tokens[split] = u
    clf = Unit("classifier", "classifier",
               ["train-classifier"] + ds + img
               + ["--steps", plan["classifier"]["steps"], "--batch", plan["classifier"]["batch"],
                  "--width", plan["classifier"]["width"], "--seed", plan["classifier"]["seed"]]
               + plan["classifier"]["extra_args"]
               + ["--out", "classifier/classifier.safetensors", "--run-dir", "classifier/run", "--json"])
    units.append(clf)

    k0 = cl["k_default"]
    clusterings = [("kmeans", k0)] + [("kmeans", k) for k in sorted(cl["k_values"]) if k != k0] \
        + [(mth, k0) for mth in cl["methods"] if mth != "kmeans"]
    cl_units = {}
    for mth, k in clusterings:
        name = clustering_name(mth, k)
        u = Unit("clusters/" + name, "cluster",
                 ["cluster", "--vq", vq_file, "--k", k, "--method", mth, "--seed", cl["seed"],
                  "--restarts", cl["restarts"]] + cl["extra_args"]
                 + ["--out", "clusters/%s/clusters.safetensors" % name, "--json"],
                 deps=[vq], meta={"clustering": name, "method": mth, "k": k})
        units.append(u)
        cl_units[name] = u

    def train_args(steps, out, seed, extra):
        return (["--tokens", "tokens/train", "--val-tokens", "tokens/test", "--preset", m["preset"],
                 "--batch", m["batch"], "--steps", steps, "--lr", fmt_num(m["lr"]), "--warmup", m["warmup"],
                 "--log-every", m["log_every"], "--val-every", m["val_every"],
                 "--checkpoint-every", m["checkpoint_every"], "--seed", seed]
                + m["extra_args"] + extra + ["--out", out, "--json"])

    def eval_unit(name, model_u, seed, cfg, argmax=False, aux_u=None, cl_u=None, meta=None):
        argv = ["eval", "--tokenizer", vq_file, "--model", model_u.name + "/model.safetensors"]
        deps = [vq, clf, model_u]
        if aux_u is not None:
            argv += ["--aux", aux_u.name + "/model.safetensors", "--clusters", cl_u.name + "/clusters.safetensors"]
            deps += [aux_u, cl_u]
        argv += ["--classifier", "classifier/classifier.safetensors", "--num-samples", ev["num_samples"],
                 "--seed", seed] + ds + ["--split", ev["split"], "--cache-dir", "fid-stats",
                                         "--cfg", fmt_num(cfg), "--batch", ev["batch"]]
        argv += (["--aux-argmax"] if argmax else []) + ev["extra_args"] + ["--out", "eval/" + name, "--json"]
        md = {"seed": seed, "cfg": cfg, "argmax": argmax}
        md.update(meta)
        return Unit("eval/" + name, "eval", argv, deps=deps, meta=md)

    cfg0 = ev["cfg_default"]
    default_cl = clustering_name("kmeans", k0)
    for seed in plan["seeds"]:
        trains, evals = [], []
        base = Unit("train/baseline_s%d" % seed, "train",
                    ["train-ar"] + train_args(m["ar_steps"], "train/baseline_s%d" % seed, seed, m["ar_extra_args"]),
                    deps=[tokens["train"], tokens["test"]], meta={"model": "baseline", "role": "baseline", "seed": seed})
        trains.append(base)
        for cfg in ev["cfg_values"]:
            evals.append(eval_unit("baseline_s%d_cfg%s" % (seed, fmt_cfg(cfg)), base, seed, cfg,
                                   meta={"model": "baseline"}))
        for mth, k in clusterings:
            name = clustering_name(mth, k)
            cu = cl_units[name]
            s1 = Unit("train/%s_stage1_s%d" % (name, seed), "train",
                      ["train-ar", "--clusters", cu.name + "/clusters.safetensors"]
                      + train_args(m["ar_steps"], "train/%s_stage1_s%d" % (name, seed), seed, m["ar_extra_args"]),
                      deps=[tokens["train"], tokens["test"], cu],
                      meta={"model": "ctf", "role": "stage1", "clustering": name, "method": mth, "k": k, "seed": seed})
            s2 = Unit("train/%s_aux_s%d" % (name, seed), "train",
                      ["train-aux", "--clusters", cu.name + "/clusters.safetensors"]
                      + train_args(m["aux_steps"], "train/%s_aux_s%d" % (name, seed), seed, m["aux_extra_args"]),
                      deps=[tokens["train"], tokens["test"], cu],
                      meta={"model": "ctf", "role": "aux", "clustering": name, "method": mth, "k": k, "seed": seed})
            trains += [s1, s2]
            cfgs = ev["cfg_values"] if name == default_cl else [cfg0]
            md = {"model": "ctf", "clustering": name, "method": mth, "k": k}
            for cfg in cfgs:
                evals.append(eval_unit("%s_s%d_cfg%s" % (name, seed, fmt_cfg(cfg)), s1, seed, cfg,
                                       aux_u=s2, cl_u=cu, meta=md))
            if name == default_cl and ev["argmax"]:
                evals.append(eval_unit("%s_s%d_cfg%s_argmax" % (name, seed, fmt_cfg(cfg0)), s1, seed, cfg0,
                                       argmax=True, aux_u=s2, cl_u=cu, meta=md))
        units += trains + evals
    for u in units:
        u.compute_key()  # dependencies come first, so their keys exist
    names = [u.name for u in units]
    assert len(names) == len(set(names)), "duplicate unit names"
    return units


# --------------------------------------------------------------------------------------------
# Running


class Runner:
    def __init__(self, plan, work, ctfgen, threads, verbosity=1, echo=False):
        self.plan = plan
        self.work = os.path.abspath(work)
        self.ctfgen = resolve_program(ctfgen)
        self.threads = threads
        self.verbosity = verbosity
        self.echo = echo
        self.units = build_units(plan)
        self.by_name = {u.name: u for u in self.units}
        self.invocation_cwd = os.getcwd()
        self._has_eval = None
        self._child = None
        self._stop_signal = None

    # -- state of a unit on disk
    def unit_dir(self, u):
        return os.path.join(self.work, u.name)

    def done_record(self, u):
        return read_json(os.path.join(self.unit_dir(u), "done.json"))

    def started_record(self, u):
        return read_json(os.path.join(self.unit_dir(u), "unit.json"))

    def state(self, u):
        done = self.done_record(u)
        if done is not None:
            return "done" if done.get("key") == u.key else "changed"
        started = self.started_record(u)
        if started is not None:
            return "partial" if started.get("key") == u.key else "changed"
        return "pending"

    def check_changed(self):
        """Refuse before doing anything when a unit on disk was made by another command."""
        problems = []
        for u in self.units:
            if self.state(u) != "changed":
                continue
            rec = self.done_record(u) or self.started_record(u)
            old = rec.get("argv", [])
            what = "finished" if self.done_record(u) is not None else "started"
            diff = first_difference(old, u.argv)
            dep_changed = [d.name for d in u.deps if rec.get("deps", {}).get(d.name) not in (None, d.key)]
            reason = "its command changed (%s)" % diff if old != u.argv else \
                "an input it reads changed: %s" % ", ".join(dep_changed or ["(dependency keys differ)"])
            problems.append("  %s: %s as %s; %s" % (u.name, what, rec.get("key"), reason))
        if problems:
            raise ExperimentError(
                "refusing to reuse %d unit(s) whose inputs changed since they were run:\n%s\n"
                "Either restore the plan, or delete those directories under %s (and let the runner redo "
                "them and everything that depends on them), or use another --work directory." % (
                    len(problems), "\n".join(problems), display_path(self.work)), EXIT_USAGE)

    # -- selection
    def select(self, only):
        if not only:
            return list(self.units)
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        chosen = []
        for u in self.units:
            for w in wanted:
                if w == u.stage or fnmatch.fnmatch(u.name, w) or u.name == w:
                    chosen.append(u)
                    break
        if not chosen:
            raise ExperimentError("--only %s matches no unit (stages: %s; unit names look like %s)" % (
                only, ", ".join(STAGES), ", ".join(u.name for u in self.units[:4])), EXIT_USAGE)
        return chosen

    # -- commands
    def command(self, u):
        args = list(u.argv)
        for i in range(1, len(args)):  # a relative dataset path is relative to where the runner was started
            if args[i - 1] == "--data-path" and not os.path.isabs(args[i]):
                args[i] = os.path.join(self.invocation_cwd, args[i])
        glob = ["--threads", str(self.threads)] if self.threads else []
        return [self.ctfgen] + glob + ["-v", str(self.verbosity)] + args

    def has_eval(self):
        if self._has_eval is None:
            try:
                out = subprocess.run([self.ctfgen, "--help"], capture_output=True, text=True, timeout=60).stdout
            except OSError as e:
                raise ExperimentError("cannot run %s: %s" % (self.ctfgen, e))
            self._has_eval = any(line.split()[:1] == ["eval"] for line in out.splitlines())
        return self._has_eval

    def run(self, only=None, dry_run=False):
        self.check_changed()
        chosen = self.select(only)
        chosen_names = {u.name for u in chosen}
        if not dry_run:
            for u in chosen:  # everything a chosen unit reads must be done or run before it
                for d in u.deps:
                    if d.name not in chosen_names and self.state(d) != "done":
                        raise ExperimentError("%s needs %s, which is not done; run without --only, or include "
                                              "its stage (%s)" % (u.name, d.name, d.stage), EXIT_USAGE)
        counts = {"skip": 0, "run": 0}
        total = len(chosen)
        for i, u in enumerate(chosen, 1):
            st = self.state(u)
            if st == "done":
                log("skip %s (done)" % u.name)
                counts["skip"] += 1
                continue
            cmd = self.command(u)
            if dry_run:
                print("# %s [%s]%s" % (u.name, u.stage, " (partial: resumes)" if st == "partial" else ""))
                print("(cd %s && %s)" % (shell_quote(display_path(self.work)), " ".join(shell_quote(c) for c in cmd)))
                counts["run"] += 1
                continue
            if u.stage == "eval" and not self.has_eval():
                raise ExperimentError(
                    "%s has no 'eval' command (it is not in `ctfgen --help`); every unit before the evaluations "
                    "is done or was run. Build a ctfgen with eval, or pass --ctfgen PATH, then rerun." % self.ctfgen)
            self.execute(u, cmd, i, total, resumed=(st == "partial"))
            counts["run"] += 1
        if dry_run:
            log("dry run: %d unit(s) would run, %d done" % (counts["run"], counts["skip"]))
        else:
            log("finished: %d unit(s) run, %d skipped (done)" % (counts["run"], counts["skip"]))
        return counts

    def execute(self, u, cmd, index, total, resumed):
        d = self.unit_dir(u)
        os.makedirs(d, exist_ok=True)
        started = {"unit": u.name, "stage": u.stage, "key": u.key, "argv": u.argv,
                   "deps": {x.name: x.key for x in u.deps},
                   "started": datetime.datetime.now().isoformat(timespec="seconds")}
        prev = self.started_record(u)
        started["attempt"] = (prev or {}).get("attempt", 0) + 1
        write_json_atomic(os.path.join(d, "unit.json"), started)
        log("%s %s (%d/%d)%s" % ("resume" if resumed else "run", u.name, index, total,
                                 ", attempt %d" % started["attempt"] if resumed else ""))
        t0 = time.time()
        out_path = os.path.join(d, "stdout.txt")
        err_path = os.path.join(d, "stderr.log")
        with open(out_path + ".tmp", "w") as fout, open(err_path, "a") as ferr:
            ferr.write("### %s attempt %d: %s\n" % (started["started"], started["attempt"],
                                                    " ".join(shell_quote(c) for c in cmd[1:])))
            ferr.flush()
            rc = self._run_child(cmd, fout, ferr)
        seconds = time.time() - t0
        earlier = (prev or {}).get("seconds_before", 0.0) + ((prev or {}).get("seconds_last_attempt") or 0.0)
        if rc != 0:
            started["seconds_before"] = round(earlier, 3)
            started["seconds_last_attempt"] = round(seconds, 3)
            started["last_exit"] = rc
            write_json_atomic(os.path.join(d, "unit.json"), started)
            tail = tail_text(err_path, 15)
            if self._stop_signal is not None or rc in (EXIT_INTERRUPTED, -signal.SIGINT, -signal.SIGTERM):
                raise ExperimentError("stopped during %s (ctfgen exit %d after %.0f s); rerun the same command to "
                                      "continue%s" % (u.name, rc, seconds, ": training resumes from its checkpoint"
                                                      if u.stage in ("train", "tokenizer", "classifier") else ""),
                                      EXIT_INTERRUPTED)
            raise ExperimentError("%s failed (ctfgen exit %d after %.0f s). Command (in %s):\n  %s\nLast lines of %s:\n%s"
                                  % (u.name, rc, seconds, display_path(self.work),
                                     " ".join(shell_quote(c) for c in cmd), display_path(err_path), tail))
        os.replace(out_path + ".tmp", out_path)
        with open(out_path) as f:
            text = f.read()
        if u.json_out:
            try:
                result = json.loads(text)
            except json.JSONDecodeError as e:
                raise ExperimentError("%s: ctfgen printed no valid JSON (%s); see %s" % (u.name, e, display_path(out_path)))
        else:
            result = {"stdout": text.strip()}
        done = dict(started)
        done.update({"result": result, "seconds": round(seconds, 3), "threads": self.threads,
                     "finished": datetime.datetime.now().isoformat(timespec="seconds"), "meta": u.meta,
                     "total_seconds": round(earlier + seconds, 3)})
        write_json_atomic(os.path.join(d, "done.json"), done)
        log("done %s in %.1f s" % (u.name, seconds))

    def _run_child(self, cmd, fout, ferr):
        # The child gets its own session so that a terminal Ctrl-C reaches only the runner, which
        # forwards exactly one signal: ctfgen's trainers then checkpoint and exit 130.
        def forward(signum, _frame):
            self._stop_signal = signum
            if self._child is not None and self._child.poll() is None:
                try:
                    self._child.send_signal(signum)
                except ProcessLookupError:
                    pass
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self._child = subprocess.Popen(cmd, cwd=self.work, stdout=fout, stderr=ferr, start_new_session=True)
            except OSError as e:
                raise ExperimentError("cannot run %s: %s (pass --ctfgen PATH or set $CTFGEN)" % (cmd[0], e))
            while True:
                try:
                    rc = self._child.wait()
                    break
                except InterruptedError:
                    continue
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self._child = None
        return rc

    def status(self):
        rows = []
        for u in self.units:
            st = self.state(u)
            rec = self.done_record(u) if st == "done" else None
            rows.append((u.stage, u.name, st, rec.get("seconds") if rec else None))
        return rows


def lock_work_dir(work):
    """One runner per work directory: two would train the same run directory at once."""
    path = os.path.join(work, ".runner.lock")
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise ExperimentError("another experiment.py run (pid %s) is using %s; wait for it or stop it first" % (
            holder, display_path(work)), EXIT_USAGE)
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def resolve_program(path):
    """An absolute path for a program given with a directory part (ctfgen runs in the work directory)."""
    if os.sep in path:
        return os.path.abspath(path)
    return shutil.which(path) or path


def first_difference(old, new):
    for i in range(max(len(old), len(new))):
        a = old[i] if i < len(old) else "(nothing)"
        b = new[i] if i < len(new) else "(nothing)"
        if a != b:
            ctx = old[i - 1] + " " if i > 0 and i - 1 < len(old) and old[i - 1].startswith("--") else ""
            return "was '%s%s', now '%s%s'" % (ctx, a, ctx, b)
    return "same arguments"


def shell_quote(s):
    if s and all(c.isalnum() or c in "-_./=:,+@%" for c in s):
        return s
    return "'" + s.replace("'", "'\\''") + "'"


def tail_text(path, n):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().replace("\r", "\n").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in [x for x in lines if x.strip()][-n:])


def default_ctfgen():
    env = os.environ.get("CTFGEN")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "build", "apps", "ctfgen")
    if os.access(here, os.X_OK):
        return os.path.normpath(here)
    found = shutil.which("ctfgen")
    return found or "ctfgen"


# --------------------------------------------------------------------------------------------
# Aggregation


METRICS = [("fid", "FID", "lower"), ("is_mean", "IS", "higher"), ("precision", "Precision", "higher"),
           ("recall", "Recall", "higher"), ("images_per_s", "images/s", "higher")]
METRIC_FMT = {"fid": "%.2f", "is_mean": "%.2f", "precision": "%.3f", "recall": "%.3f", "images_per_s": "%.1f"}


def mean_std(values):
    """(mean, sample standard deviation (n-1), n) over the finite values; std is None for n < 2."""
    vals = [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return None, None, 0
    m = statistics.fmean(vals)
    s = statistics.stdev(vals) if len(vals) >= 2 else None
    return m, s, len(vals)


def fmt_mean_std(values, fmt="%.3f"):
    m, s, n = mean_std(values)
    if n == 0:
        return "–"
    if s is None:
        return (fmt % m) + " (n=1)"
    return "%s ± %s" % (fmt % m, fmt % s)


class Results:
    """The finished units of a plan, indexed for the report."""

    def __init__(self, plan, work):
        self.plan = plan
        self.work = os.path.abspath(work)
        self.units = build_units(plan)
        self.done = {}
        self.stale = []
        for u in self.units:
            rec = read_json(os.path.join(self.work, u.name, "done.json"))
            if rec is None:
                continue
            if rec.get("key") != u.key:
                self.stale.append(u.name)
                continue
            self.done[u.name] = rec
        self.k0 = plan["clusters"]["k_default"]
        self.cfg0 = plan["eval"]["cfg_default"]
        self.default_cl = clustering_name("kmeans", self.k0)

    def result(self, name):
        rec = self.done.get(name)
        return rec["result"] if rec else None

    def eval_metrics(self, name):
        r = self.result(name)
        if not r:
            return None
        m = dict(r.get("metrics", {}))
        return m

    def eval_name(self, model, seed, cfg=None, clustering=None, argmax=False):
        cfg = self.cfg0 if cfg is None else cfg
        if model == "baseline":
            return "eval/baseline_s%d_cfg%s" % (seed, fmt_cfg(cfg))
        return "eval/%s_s%d_cfg%s%s" % (clustering or self.default_cl, seed, fmt_cfg(cfg), "_argmax" if argmax else "")

    def per_seed(self, metric, **kw):
        """{seed: value} for one setting."""
        out = {}
        for seed in self.plan["seeds"]:
            m = self.eval_metrics(self.eval_name(seed=seed, **kw))
            if m is not None:
                v = m.get(metric)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    out[seed] = float(v)
        return out

    def setting_row(self, **kw):
        return {key: self.per_seed(key, **kw) for key, _, _ in METRICS}

    def train_result(self, name):
        return self.result(name)


def paired(a, b):
    """Seeds present in both {seed: value} maps, as lists (a_values, b_values)."""
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


# --------------------------------------------------------------------------------------------
# Report


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def metric_cells(row):
    return [fmt_mean_std(list(row[key].values()), METRIC_FMT[key]) for key, _, _ in METRICS]


def nseeds(row):
    return max((len(v) for v in row.values()), default=0)


def count_direction(a, b, better):
    """Paired seeds where a is better than b ('lower' or 'higher' is better): (wins, ties, n, a, b)."""
    xa, xb = paired(a, b)
    wins = sum(1 for x, y in zip(xa, xb) if (x < y if better == "lower" else x > y))
    ties = sum(1 for x, y in zip(xa, xb) if x == y)
    return wins, ties, len(xa), xa, xb


def verdict(wins, n, ties=0):
    """Cautious wording for 'the effect has the paper's direction in `wins` of `n` paired seeds'."""
    if n == 0:
        return "not measured"
    if ties == n:
        return "no difference (%d/%d seeds tied)" % (ties, n)
    if wins == n:
        return "agrees (%d/%d seeds)" % (wins, n)
    if wins == 0 and ties == 0:
        return "does not agree (0/%d seeds)" % n
    return "mixed (%d/%d seeds%s)" % (wins, n, ", %d tied" % ties if ties else "")


def diff_text(xa, xb, fmt="%.2f"):
    if not xa:
        return "–"
    d = [x - y for x, y in zip(xa, xb)]
    m, s, n = mean_std(d)
    return ("%+" + fmt[1:]) % m + ("" if s is None else " ± " + fmt % s)


def load_log(path):
    """log.jsonl rows, one per step (a resumed run may repeat steps: the last line wins)."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    by_step = {}
    for r in rows:
        by_step[r.get("step")] = r
    return [by_step[k] for k in sorted(by_step, key=lambda x: (x is None, x if x is not None else 0))]


def try_matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except Exception:  # noqa: BLE001 - any import problem means no plots
        return None


def write_report(plan, work, out, plan_path):
    R = Results(plan, work)
    out_dir = os.path.dirname(os.path.abspath(out))
    img_rel = os.path.join("results", plan["name"])
    img_dir = os.path.join(out_dir, img_rel)
    os.makedirs(img_dir, exist_ok=True)
    plt = try_matplotlib()
    seeds = plan["seeds"]
    k0, cfg0, dcl = R.k0, R.cfg0, R.default_cl
    c, m, ev = plan["clusters"], plan["model"], plan["eval"]
    L = []
    n_done, n_all = len(R.done), len(R.units)
    L.append("# Results: %s" % plan["name"])
    L.append("")
    L.append("Generated by `scripts/experiment.py report %s --work %s --out %s` on %s from %d of %d finished "
             "units. Do not edit by hand: rerun the report after more units finish." % (
                 display_path(plan_path), display_path(work), display_path(out),
                 datetime.date.today().isoformat(), n_done, n_all))
    if plan.get("description"):
        L += ["", plan["description"]]
    if R.stale:
        L += ["", "**Warning:** %d unit(s) in the work directory were made by another plan version and are "
              "ignored: %s." % (len(R.stale), ", ".join(R.stale[:8]) + (" ..." if len(R.stale) > 8 else ""))]
    if n_done < n_all:
        L += ["", "**Incomplete:** %d unit(s) are not finished; tables show what exists (n = seeds measured)." %
              (n_all - n_done)]
    L += ["", "Numbers are mean ± sample standard deviation over the training seeds (n−1 in the "
          "denominator); `(n=1)` marks a single run. FID, IS, precision and recall are computed on the "
          "features and class probabilities of a small classifier trained on the same dataset (docs/evaluation.md): "
          "they compare the models here with each other and are **not comparable with the paper's ImageNet "
          "numbers** (IS, for example, cannot exceed the number of classes). images/s is the sampling speed "
          "measured inside `ctfgen eval` (stage 1 + stage 2 + VQ decoding) on the machine that ran it."]

    # ---- setup
    L += ["", "## Setup", ""]
    vqr = R.result("tokenizer") or {}
    vqe = vqr.get("eval", {})
    clr = R.result("classifier") or {}
    rows = [("dataset", plan["dataset"] + (" (image size %d)" % plan["image_size"] if plan["image_size"] else "")),
            ("tokenizer", "preset `%s`, %d steps of batch %d%s" % (
                plan["tokenizer"]["preset"], plan["tokenizer"]["steps"], plan["tokenizer"]["batch"],
                "; held-out PSNR %.2f dB, SSIM %.3f, codebook usage %.1f %%" % (
                    vqe["psnr"], vqe.get("ssim", float("nan")), 100 * vqe.get("usage", float("nan")))
                if "psnr" in vqe else "")),
            ("encoded training images", str(plan["encode"]["train_limit"] or "all")),
            ("classifier (feature network)", "%d steps, width %d%s" % (
                plan["classifier"]["steps"], plan["classifier"]["width"],
                "; test accuracy %.2f %%" % (100 * clr["test_accuracy"]) if "test_accuracy" in clr else "")),
            ("clusters", "K in %s (default %d), methods %s" % (
                sorted(c["k_values"]), k0, ", ".join(c["methods"]))),
            ("models", "preset `%s`, batch %d, lr %g, stage 1 / baseline %d steps, stage 2 %d steps" % (
                m["preset"], m["batch"], m["lr"], m["ar_steps"], m["aux_steps"])),
            ("seeds", ", ".join(str(s) for s in seeds) + " (training seed; the evaluation uses the same seed)"),
            ("evaluation", "%d samples against the %s split, guidance %s (default %s), AR batch %d" % (
                ev["num_samples"], ev["split"], ", ".join(fmt_cfg(x) for x in ev["cfg_values"]), fmt_cfg(cfg0),
                ev["batch"]))]
    params = {}
    for role, name in (("baseline", "train/baseline_s%d"), ("stage1", "train/" + dcl + "_stage1_s%d"),
                       ("aux", "train/" + dcl + "_aux_s%d")):
        for s in seeds:
            r = R.result(name % s)
            if r and "num_params" in r:
                params[role] = r["num_params"]
                break
    if params:
        rows.append(("parameters", "baseline %s; CTF stage 1 %s + stage 2 %s (K = %d)" % (
            fmt_int(params.get("baseline")), fmt_int(params.get("stage1")), fmt_int(params.get("aux")), k0)))
    L.append(md_table(["item", "value"], rows))

    header = ["setting", "n"] + [label for _, label, _ in METRICS]
    base_row = R.setting_row(model="baseline")
    ctf_row = R.setting_row(model="ctf")
    figures = []

    # ---- 1. baseline vs CTF
    L += ["", "## 1. Baseline (LlamaGen) vs CTF, same trunk", ""]
    L.append("Same trunk preset (`%s`), same steps and batch; CTF = k-means K = %d, guidance %s, stage 2 sampled." % (
        m["preset"], k0, fmt_cfg(cfg0)))
    L.append("")
    L.append(md_table(header, [["baseline", nseeds(base_row)] + metric_cells(base_row),
                               ["CTF (kmeans, K=%d)" % k0, nseeds(ctf_row)] + metric_cells(ctf_row)]))

    # ---- 2. K
    L += ["", "## 2. Number of clusters K", ""]
    krows, kdata = [], []
    for k in sorted(c["k_values"]):
        row = R.setting_row(model="ctf", clustering=clustering_name("kmeans", k))
        krows.append(["K = %d%s" % (k, " (default)" if k == k0 else ""), nseeds(row)] + metric_cells(row))
        kdata.append((k, row))
    L.append(md_table(header, krows))
    if plt and any(nseeds(r) for _, r in kdata):
        fn = "fid_is_vs_k.png"
        plot_vs(plt, [("CTF (k-means)", [(k, r) for k, r in kdata])], "K (clusters)", os.path.join(img_dir, fn),
                base_row=base_row, logx=True)
        figures.append(fn)
        L += ["", "![FID and IS vs K](%s/%s)" % (img_rel, fn)]

    # ---- 3. argmax
    L += ["", "## 3. Stage 2: sampling vs argmax", ""]
    arg_row = R.setting_row(model="ctf", argmax=True)
    if ev["argmax"]:
        L.append(md_table(header, [["sampled (τ2 default)", nseeds(ctf_row)] + metric_cells(ctf_row),
                                   ["argmax (`--aux-argmax`)", nseeds(arg_row)] + metric_cells(arg_row)]))
    else:
        L.append("Not in this plan (eval.argmax is false).")

    # ---- 4. clustering method
    L += ["", "## 4. Clustering method (K = %d)" % k0, ""]
    mrows = []
    for mth in c["methods"]:
        name = clustering_name(mth, k0)
        row = R.setting_row(model="ctf", clustering=name)
        cres = R.result("clusters/" + name) or {}
        st = cres.get("stats", {}) if isinstance(cres.get("stats"), dict) else {}
        obj = st.get("objective", cres.get("details", {}).get(mth, {}).get("objective")
                     if isinstance(cres.get("details"), dict) else None)
        intra = st.get("mean_intra_distance")
        mrows.append([mth, nseeds(row)] + metric_cells(row)
                     + [("%.1f" % obj) if isinstance(obj, (int, float)) else "–",
                        ("%.3f" % intra) if isinstance(intra, (int, float)) else "–"])
    L.append(md_table(header + ["objective (inertia)", "mean intra-cluster distance"], mrows))

    # ---- 5. cfg
    L += ["", "## 5. Guidance (CFG) scale", ""]
    crows, cdata = [], {"baseline": [], "ctf": []}
    for model in ("baseline", "ctf"):
        for cfg in ev["cfg_values"]:
            row = R.setting_row(model=model, cfg=cfg)
            crows.append(["%s, cfg %s" % ("baseline" if model == "baseline" else "CTF K=%d" % k0, fmt_cfg(cfg)),
                          nseeds(row)] + metric_cells(row))
            cdata[model].append((cfg, row))
    L.append(md_table(header, crows))
    if plt and any(nseeds(r) for v in cdata.values() for _, r in v):
        fn = "fid_is_vs_cfg.png"
        plot_vs(plt, [("baseline", cdata["baseline"]), ("CTF K=%d" % k0, cdata["ctf"])], "guidance scale",
                os.path.join(img_dir, fn))
        figures.append(fn)
        L += ["", "![FID and IS vs guidance](%s/%s)" % (img_rel, fn)]

    # ---- training
    L += ["", "## Training losses", ""]
    trows = []
    groups = [("baseline", "train/baseline_s%d")]
    for mth, k in [("kmeans", k) for k in sorted(c["k_values"])] + [(x, k0) for x in c["methods"] if x != "kmeans"]:
        name = clustering_name(mth, k)
        groups += [("%s stage 1" % name, "train/" + name + "_stage1_s%d"), ("%s stage 2" % name, "train/" + name + "_aux_s%d")]
    for label, pat in groups:
        fl = [R.result(pat % s).get("final_loss") for s in seeds if R.result(pat % s)]
        vl = [R.result(pat % s).get("val_loss") for s in seeds if R.result(pat % s)]
        tp = [R.result(pat % s).get("tokens_per_s") for s in seeds if R.result(pat % s)]
        secs = [unit_seconds(R.done[pat % s]) for s in seeds if (pat % s) in R.done]
        if not fl:
            continue
        trows.append([label, len(fl), fmt_mean_std(fl, "%.3f"), fmt_mean_std(vl, "%.3f"), fmt_mean_std(tp, "%.0f"),
                      fmt_mean_std(secs, "%.0f")])
    if trows:
        L.append("Cross-entropy in nats: stage 1 over K coarse labels, stage 2 and the baseline over the V "
                 "codes, so only rows with the same target are comparable. Wall seconds include start-up and "
                 "validation.")
        L.append("")
        L.append(md_table(["model", "n", "final train loss", "validation loss", "tokens/s", "wall s"], trows))
    else:
        L.append("No training run finished yet.")
    if plt and trows:
        fn = "loss_curves.png"
        if plot_losses(plt, R, [("baseline", "train/baseline_s%d"), ("CTF stage 1 (K=%d)" % k0, "train/" + dcl + "_stage1_s%d"),
                                ("CTF stage 2 (K=%d)" % k0, "train/" + dcl + "_aux_s%d")], os.path.join(img_dir, fn)):
            figures.append(fn)
            L += ["", "![loss vs steps](%s/%s)" % (img_rel, fn)]
    if not plt:
        L += ["", "_Plots skipped: this Python has no matplotlib (run the report with /usr/bin/python3 after "
              "`apt-get install python3-matplotlib`)._"]

    # ---- samples
    L += ["", "## Sample grids", ""]
    s0 = seeds[0]
    grids = [("baseline, cfg %s" % fmt_cfg(cfg0), R.eval_name("baseline", s0)),
             ("CTF k-means K=%d, cfg %s" % (k0, fmt_cfg(cfg0)), R.eval_name("ctf", s0))]
    if ev["argmax"]:
        grids.append(("CTF K=%d, stage-2 argmax" % k0, R.eval_name("ctf", s0, argmax=True)))
    for k in sorted(c["k_values"]):
        if k != k0:
            grids.append(("CTF k-means K=%d" % k, R.eval_name("ctf", s0, clustering=clustering_name("kmeans", k))))
    for mth in c["methods"]:
        if mth != "kmeans":
            grids.append(("CTF %s K=%d" % (mth, k0), R.eval_name("ctf", s0, clustering=clustering_name(mth, k0))))
    shown = 0
    for label, name in grids:
        src = os.path.join(R.work, name, "samples.png")
        if name not in R.done or not os.path.exists(src):
            continue
        if os.path.getsize(src) > 400_000:
            L.append("- %s: grid too large to copy (%d bytes)" % (label, os.path.getsize(src)))
            continue
        fn = "samples_" + os.path.basename(name) + ".png"
        shutil.copyfile(src, os.path.join(img_dir, fn))
        L += ["**%s** (seed %d)" % (label, s0), "", "![%s](%s/%s)" % (label, img_rel, fn), ""]
        shown += 1
    if not shown:
        L.append("No evaluation with a sample grid finished yet.")

    # ---- agreement
    L += ["", "## Agreement with the paper", ""]
    L += agreement_section(R, plan)

    # ---- cost
    L += ["", "## Cost", ""]
    srows = []
    total = 0.0
    for st in STAGES:
        secs = [unit_seconds(R.done[u.name]) for u in R.units if u.stage == st and u.name in R.done]
        n_st = sum(1 for u in R.units if u.stage == st)
        total += sum(secs)
        srows.append([st, "%d / %d" % (len(secs), n_st), "%.0f" % sum(secs), "%.1f" % (sum(secs) / 3600)])
    srows.append(["total", "%d / %d" % (n_done, n_all), "%.0f" % total, "%.1f" % (total / 3600)])
    thr = sorted({"0 (all CPUs)" if not r.get("threads") else str(r.get("threads")) for r in R.done.values()})
    L.append("Wall time of the finished units (all attempts; ctfgen `--threads` %s)." % ", ".join(thr or ["?"]))
    L.append("")
    L.append(md_table(["stage", "units done", "seconds", "hours"], srows))
    L.append("")
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(L))
    os.replace(out + ".tmp", out)
    return {"done": n_done, "units": n_all, "figures": figures, "grids": shown}


def unit_seconds(rec):
    """Wall seconds of a finished unit over all its attempts."""
    return rec.get("total_seconds", rec.get("seconds", 0.0))


def fmt_int(v):
    return "{:,}".format(v) if isinstance(v, int) else "–"


def agreement_section(R, plan):
    k0, cfg0 = R.k0, R.cfg0
    ks = sorted(plan["clusters"]["k_values"])
    L = ["Each row compares the *direction* of an effect in the paper (arXiv 2503.16194, Tables 1-3; ImageNet 256, "
         "B-size models) with the runs here, paired by seed. With 3 seeds, \"3/3\" would also happen by "
         "chance one time in eight if there were no effect (one-sided sign test): read the verdicts as "
         "indications at this scale, not as tests of the paper. Differences are mean ± std over the paired "
         "seeds.", ""]
    rows = []

    def add(claim, paper, a, b, metric, better, fmt="%.2f", what=None):
        wins, ties, n, xa, xb = count_direction(a, b, better)
        here = "%s: %s" % (what or metric, diff_text(xa, xb, fmt)) if n else "–"
        rows.append([claim, paper, here, verdict(wins, n, ties)])

    def per(metric, **kw):
        return R.per_seed(metric, **kw)

    add("CTF has lower FID than the baseline", "B: 4.15 vs 5.46; mean ΔFID −0.92 over B/L/XL (Table 1)",
        per("fid", model="ctf"), per("fid", model="baseline"), "fid", "lower", what="CTF − baseline FID")
    add("CTF has higher IS than the baseline", "B: 254.99 vs 193.61; mean ΔIS +59.08 (Table 1)",
        per("is_mean", model="ctf"), per("is_mean", model="baseline"), "is_mean", "higher", what="CTF − baseline IS")
    add("CTF has higher precision", "B: 0.86 vs 0.83 (Table 1)",
        per("precision", model="ctf"), per("precision", model="baseline"), "precision", "higher", "%.3f",
        what="CTF − baseline precision")
    add("CTF has higher recall", "B: 0.48 vs 0.45 (Table 1)",
        per("recall", model="ctf"), per("recall", model="baseline"), "recall", "higher", "%.3f",
        what="CTF − baseline recall")
    # speed: at B the paper's CTF is slower; report the ratio rather than a win count against "faster"
    a, b = per("images_per_s", model="ctf"), per("images_per_s", model="baseline")
    xa, xb = paired(a, b)
    if xa:
        ratios = [x / y for x, y in zip(xa, xb) if y]
        mr, sr, _ = mean_std(ratios)
        faster = sum(1 for r in ratios if r > 1)
        here = "CTF/baseline images/s %.2f%s; CTF faster in %d/%d seeds" % (mr, "" if sr is None else " ± %.2f" % sr,
                                                                              faster, len(ratios))
        v = ("like B (CTF slower, %d/%d seeds)" % (len(ratios) - faster, len(ratios)) if faster == 0 else
             "like L/XL (CTF faster, %d/%d seeds)" % (faster, len(ratios)) if faster == len(ratios) else
             "mixed (%d/%d seeds faster)" % (faster, len(ratios)))
        rows.append(["sampling speed", "B: CTF 6.7 % slower; L, XL: 16-18 % faster (Table 2, A100)", here, v])
    else:
        rows.append(["sampling speed", "B: CTF 6.7 % slower; L, XL: 16-18 % faster (Table 2, A100)", "–",
                     "not measured"])
    small = [k for k in ks if k < k0]
    large = [k for k in ks if k > k0]
    if small:
        ks_ = small[0]
        add("too few clusters hurts (FID)", "K 128: FID 11.23 vs 5.51 at K 512 (Table 3a)",
            per("fid", model="ctf", clustering=clustering_name("kmeans", ks_)), per("fid", model="ctf"),
            "fid", "higher", what="FID(K=%d) − FID(K=%d)" % (ks_, k0))
        add("too few clusters hurts (IS)", "K 128: IS 98.41 vs 273.45 (Table 3a)",
            per("is_mean", model="ctf", clustering=clustering_name("kmeans", ks_)), per("is_mean", model="ctf"),
            "is_mean", "lower", what="IS(K=%d) − IS(K=%d)" % (ks_, k0))
    if large:
        kl = large[-1]
        add("more clusters than the default: slightly lower FID", "K 1024: 5.38 vs 5.51 (Table 3a; a small effect)",
            per("fid", model="ctf", clustering=clustering_name("kmeans", kl)), per("fid", model="ctf"),
            "fid", "lower", what="FID(K=%d) − FID(K=%d)" % (kl, k0))
    if plan["eval"]["argmax"]:
        add("stage-2 argmax is worse than sampling (FID)", "6.95 vs 5.33 (Table 3d, τ = 1.0)",
            per("fid", model="ctf", argmax=True), per("fid", model="ctf"), "fid", "higher",
            what="FID(argmax) − FID(sampled)")
        add("stage-2 argmax is worse than sampling (IS)", "210.21 vs 285.15 (Table 3d)",
            per("is_mean", model="ctf", argmax=True), per("is_mean", model="ctf"), "is_mean", "lower",
            what="IS(argmax) − IS(sampled)")
    if "random" in plan["clusters"]["methods"]:
        add("a random partition is worse than k-means (FID)", "stated qualitatively, no numbers (the paper's Sec. on clustering)",
            per("fid", model="ctf", clustering=clustering_name("random", k0)), per("fid", model="ctf"),
            "fid", "higher", what="FID(random) − FID(k-means)")
    if "agglomerative" in plan["clusters"]["methods"]:
        add("agglomerative merging beats k-means (FID; DCPE's claim, not CTF's)",
            "DCPE: better FID and IS, numbers for CTF not available (DCPE, arXiv 2508.10719)",
            per("fid", model="ctf", clustering=clustering_name("agglomerative", k0)), per("fid", model="ctf"),
            "fid", "lower", what="FID(agglomerative) − FID(k-means)")
    higher = [x for x in plan["eval"]["cfg_values"] if x > cfg0]
    if higher:
        ch = higher[0]
        for model, lab in (("ctf", "CTF"), ("baseline", "baseline")):
            # Table 3c sweeps the guidance of CTF-B only; the baseline rows borrow its direction.
            src = "" if model == "ctf" else " (CTF-B's figures; no baseline sweep in the paper)"
            add("%s: more guidance raises IS" % lab,
                "CTF-B cfg 2.0 → 2.25: IS 285.15 → 313.06 (Table 3c, τ = 1.0)" + src,
                per("is_mean", model=model, cfg=ch), per("is_mean", model=model), "is_mean", "higher",
                what="IS(cfg %s) − IS(cfg %s)" % (fmt_cfg(ch), fmt_cfg(cfg0)))
            add("%s: more guidance raises precision" % lab, "CTF-B: 0.89 → 0.90 (Table 3c)" + src,
                per("precision", model=model, cfg=ch), per("precision", model=model), "precision", "higher", "%.3f",
                what="precision(cfg %s) − precision(cfg %s)" % (fmt_cfg(ch), fmt_cfg(cfg0)))
            add("%s: more guidance lowers recall" % lab, "CTF-B: 0.43 → 0.41 (Table 3c)" + src,
                per("recall", model=model, cfg=ch), per("recall", model=model), "recall", "lower", "%.3f",
                what="recall(cfg %s) − recall(cfg %s)" % (fmt_cfg(ch), fmt_cfg(cfg0)))
    L.append(md_table(["claim", "paper", "here", "verdict"], rows))
    # best cfg by mean FID
    best = []
    for model, lab in (("ctf", "CTF"), ("baseline", "baseline")):
        pts = []
        for cfg in plan["eval"]["cfg_values"]:
            mfid, _, n = mean_std(list(R.per_seed("fid", model=model, cfg=cfg).values()))
            if n:
                pts.append((mfid, cfg))
        if pts:
            best.append("%s: lowest mean FID at cfg %s" % (lab, fmt_cfg(min(pts)[1])))
    L.append("")
    if best:
        L.append("Guidance: " + "; ".join(best) + ". The paper (CTF-B, τ = 1.0) has its lowest FID at 1.75 of "
                 "{1.75, 2.0, 2.25}; its defaults are cfg 2.0 with τ1 = τ2 = 1.1.")
        L.append("")
    L.append("Not tested here: training convergence (Fig. 2 plots FID/IS against epochs; the training losses above "
             "use different targets for the two models, so they cannot show it), the stage-2 model size "
             "(Table 3b) and the temperatures (Tables 3e, 3f).")
    return L


def plot_vs(plt, series, xlabel, path, base_row=None, logx=False):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (key, label, _) in zip(axes, METRICS[:2]):
        for name, pts in series:
            xs, ms, ss = [], [], []
            for x, row in pts:
                mm, s, n = mean_std(list(row[key].values()))
                if n:
                    xs.append(x)
                    ms.append(mm)
                    ss.append(s or 0.0)
            if xs:
                ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=name)
        if base_row is not None:
            mm, s, n = mean_std(list(base_row[key].values()))
            if n:
                ax.axhline(mm, color="gray", linestyle="--", label="baseline")
                if s:
                    ax.axhspan(mm - s, mm + s, color="gray", alpha=0.15)
        if logx:
            ax.set_xscale("log", base=2)
            ticks = sorted({x for _, pts in series for x, _ in pts})
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(t) for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label + (" (lower is better)" if key == "fid" else " (higher is better)"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_losses(plt, R, groups, path):
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.2))
    any_data = False
    for ax, (label, pat) in zip(axes, groups):
        for s in R.plan["seeds"]:
            name = pat % s
            if name not in R.done:
                continue
            rows = load_log(os.path.join(R.work, name, "log.jsonl"))
            tr = [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]
            va = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r and "step" in r]
            if tr:
                any_data = True
                line, = ax.plot([x for x, _ in tr], [y for _, y in tr], alpha=0.6, label="train s%d" % s)
                if va:
                    ax.plot([x for x, _ in va], [y for _, y in va], "o--", color=line.get_color(), label="val s%d" % s)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    if any_data:
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return any_data


# --------------------------------------------------------------------------------------------
# Time estimate

# Measured with tiny runs of the real binary (docs/experiments.md has the commands): ctfgen
# --threads 1 on the shared 2-vCPU development VM while a compile ran (load average 3-7), so
# wall times are about twice the CPU time; an idle machine with --threads 2 should be 2-3x faster.
RATES = {
    "vq_step": 0.35,                  # train-vq fmnist preset, batch 32, s/step
    "encode_image": 0.012,            # encode, s/image (10,000 test images in 120 s)
    "classifier_step": 0.10,          # train-classifier width 16, batch 128 (docs/evaluation.md)
    "cluster": 5.0,                   # any method on 4096 codes, s
    "startup": 5.0,                   # process start, data load, validation, s per unit
    # s/step at batch 32, 49 tokens; scaled linearly with batch and tokens per image
    "train": {"small": {"stage1": 0.28, "baseline": 0.61, "aux": 0.56},
              "base": {"stage1": 2.08, "baseline": 2.63, "aux": 2.29}},
    # sampling images/s at cfg 2 (x2 rows), small preset, 49 tokens, batch 64-100
    "sample": {"ctf": 19.0, "baseline": 36.0},
}
DATASET_IMAGES = {"fashion-mnist": (60000, 10000, 49), "emoji": (1715, 191, 64)}  # train, test, tokens


def estimate(plan):
    """Seconds per stage at the RATES above (a rough guide, not a promise)."""
    n_train, n_test, T = DATASET_IMAGES.get(plan["dataset"], (10000, 2000, 64))
    m = plan["model"]
    rates = RATES["train"].get(m["preset"], RATES["train"]["base"])
    scale = (m["batch"] / 32.0) * (T / 49.0)
    out = {s: 0.0 for s in STAGES}
    for u in build_units(plan):
        if u.stage == "tokenizer":
            out["tokenizer"] += plan["tokenizer"]["steps"] * RATES["vq_step"] * plan["tokenizer"]["batch"] / 32.0
        elif u.stage == "encode":
            n = n_train if u.name.endswith("train") else n_test
            lim = plan["encode"]["train_limit" if u.name.endswith("train") else "test_limit"]
            if lim:
                n = min(n, lim)
            out["encode"] += n * RATES["encode_image"] * (2 if plan["encode"]["flip"] and u.name.endswith("train") else 1)
        elif u.stage == "classifier":
            out["classifier"] += plan["classifier"]["steps"] * RATES["classifier_step"]
        elif u.stage == "cluster":
            out["cluster"] += RATES["cluster"]
        elif u.stage == "train":
            role = u.meta["role"]
            steps = m["aux_steps"] if role == "aux" else m["ar_steps"]
            out["train"] += steps * rates[role] * scale
        else:
            speed = RATES["sample"][u.meta["model"]] * 49.0 / T
            if u.meta["cfg"] <= 1:
                speed *= 1.6  # no guidance rows
            out["eval"] += plan["eval"]["num_samples"] / speed
        out[u.stage] += RATES["startup"]
    return out


# --------------------------------------------------------------------------------------------
# Command line


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("plan", help="plan file (experiments/*.json)")
        p.add_argument("--work", help="work directory (default runs/exp/<plan name>)")

    pr = sub.add_parser("run", help="run (or resume) the plan's units")
    common(pr)
    pr.add_argument("--ctfgen", default=None, help="ctfgen binary (default: $CTFGEN, build/apps/ctfgen, PATH)")
    pr.add_argument("--threads", type=int, default=None, help="ctfgen --threads (default: the plan's; 0 = all)")
    pr.add_argument("--dry-run", action="store_true", help="print the commands of unfinished units, run nothing")
    pr.add_argument("--only", default=None,
                    help="comma-separated stages (%s) or unit names / globs (train/baseline_*)" % ", ".join(STAGES))
    pr.add_argument("--verbosity", type=int, default=1, choices=(0, 1, 2), help="ctfgen -v (logs go to stderr.log)")
    ps = sub.add_parser("status", help="list the units and their state")
    common(ps)
    pe = sub.add_parser("estimate", help="unit counts and estimated wall time per stage (measured rates)")
    common(pe)
    pp = sub.add_parser("report", help="write the Markdown report with tables, plots and sample grids")
    common(pp)
    pp.add_argument("--out", required=True, help="Markdown file to write (images go to <its dir>/results/<plan>/)")
    args = ap.parse_args(argv)

    try:
        plan = load_plan(args.plan)
        work = args.work or os.path.join("runs", "exp", plan["name"])
        if args.command == "run":
            threads = args.threads if args.threads is not None else plan["threads"]
            runner = Runner(plan, work, args.ctfgen or default_ctfgen(), threads, args.verbosity)
            lock = None
            if not args.dry_run:
                os.makedirs(runner.work, exist_ok=True)
                lock = lock_work_dir(runner.work)
                shutil.copyfile(args.plan, os.path.join(runner.work, "plan.json"))
            try:
                runner.run(only=args.only, dry_run=args.dry_run)
            finally:
                if lock is not None:
                    lock.close()
        elif args.command == "status":
            runner = Runner(plan, work, "ctfgen", 0)
            rows = runner.status()
            for st, name, state, secs in rows:
                print("%-10s %-8s %-45s %s" % (st, state, name, "" if secs is None else "%.0f s" % secs))
            counts = {}
            for _, _, state, _ in rows:
                counts[state] = counts.get(state, 0) + 1
            print(", ".join("%d %s" % (v, k) for k, v in sorted(counts.items())))
        elif args.command == "estimate":
            units = build_units(plan)
            est = estimate(plan)
            for st in STAGES:
                n = sum(1 for u in units if u.stage == st)
                print("%-10s %3d unit(s) %8.0f s %6.2f h" % (st, n, est[st], est[st] / 3600))
            tot = sum(est.values())
            print("%-10s %3d unit(s) %8.0f s %6.2f h  (rates measured with --threads 1 on a loaded 2-vCPU VM, "
                  "where CPU time was about half the wall time: expect roughly half on an idle machine)" % ("total", len(units), tot, tot / 3600))
        else:
            if not os.path.isdir(work):
                raise ExperimentError("work directory %s does not exist; run the plan first" % work, EXIT_USAGE)
            info = write_report(plan, work, args.out, args.plan)
            log("wrote %s (%d of %d units finished, %d figure(s), %d sample grid(s))" % (
                display_path(args.out), info["done"], info["units"], len(info["figures"]), info["grids"]))
    except ExperimentError as e:
        log("error: %s" % e)
        return e.code
    except KeyboardInterrupt:
        log("interrupted")
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
