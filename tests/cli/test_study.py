#!/usr/bin/env python3
"""Tests of scripts/study.py (the study runner with its committed result store) and of its report
module scripts/study_report.py, against a FAKE ctfgen: a small Python script written here that
mimics the CLI (global options, train-vq, encode, cluster, train-classifier, train-ar/train-aux
with real minimal safetensors snapshots, eval-real, eval), checks that the files each command
reads exist, and logs every invocation to the file named by $FAKE_CTFGEN_LOG.

The runner keeps its store at REPO/experiments/results/<plan name>, REPO being the parent of the
script's own directory; every run here uses a copy of scripts/ in a temporary tree, so the
repository's real store is never touched. Modules imported in-process (for unit tests) only
build units and compute; they write nothing.

Run: /usr/bin/python3 tests/cli/test_study.py   (stdlib only)."""

import importlib.util
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ next to scripts/
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir, "scripts"))
SCRIPT_FILES = ("study.py", "study_report.py", "experiment.py")


def load_module(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(SCRIPTS, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


experiment = load_module("experiment")
study = load_module("study")
study_report = load_module("study_report")

# --------------------------------------------------------------------------------------------
# The fake ctfgen

FAKE_CTFGEN = r'''
import json, math, os, re, struct, sys

def log_call(cmd, argv, threads):
    path = os.environ.get("FAKE_CTFGEN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"cmd": cmd, "argv": argv, "threads": threads}) + "\n")

def fail(msg):
    print("error: " + msg, file=sys.stderr)
    sys.exit(1)

def need(path):
    if not os.path.exists(path):
        fail("%s: no such file" % path)

FLAGS = {"--json", "--aux-argmax", "--restrict"}
args = sys.argv[1:]
threads = None
while args and args[0] in ("--threads", "-v"):
    if args[0] == "--threads":
        threads = int(args[1])
    args = args[2:]
if not args:
    fail("no command")
cmd, rest = args[0], args[1:]
log_call(cmd, rest, threads)
o, i = {}, 0
while i < len(rest):
    if rest[i] in FLAGS:
        o[rest[i]] = True
        i += 1
    elif rest[i].startswith("--") and i + 1 < len(rest):
        o[rest[i]] = rest[i + 1]
        i += 2
    else:
        fail("unexpected argument " + rest[i])
out = o.get("--out", "")

V, T, NCLS = 64, 16, 10
PRESETS = {"small": (8, 2), "tiny": (4, 1)}   # preset -> (dim, n_layer)

def model_tensors(kind, preset, k):
    """Tensor names and shapes like ctfgen's GPT / aux files (trunk.cpp, layers.cpp)."""
    D, L = PRESETS[preset]
    L = max(1, L // 2) if kind == "aux" else L  # stage 2 is the smaller model
    vin = V if kind == "baseline" else k
    vout = k if kind == "stage1" else V
    t = [("tok_embeddings.weight", [vin, D]), ("cls_embedding.embedding_table.weight", [NCLS + 1, D])]
    for l in range(L):
        p = "layers.%d." % l
        t += [(p + "attention.wqkv.weight", [3 * D, D]), (p + "attention.wo.weight", [D, D]),
              (p + "feed_forward.w1.weight", [2 * D, D]), (p + "feed_forward.w3.weight", [2 * D, D]),
              (p + "feed_forward.w2.weight", [D, 2 * D]),
              (p + "attention_norm.weight", [D]), (p + "ffn_norm.weight", [D])]
    t += [("norm.weight", [D]), ("output.weight", [vout, D])]
    return {"block_size": T, "n_layer": L, "dim": D}, t

def write_safetensors(path, config, tensors):
    header = {"__metadata__": {"config": json.dumps(config), "format": "fake"}}
    off = 0
    for name, shape in tensors:
        n = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + bytes(off))

if cmd == "train-vq":
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "vq.safetensors"), "w").write("vq")
    print(json.dumps({"eval": {"psnr": 21.5}, "steps": int(o["--steps"]), "files": {"vq": "hash"}}))
elif cmd == "encode":
    need(o["--vq"])
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "codes.npy"), "w").write("codes")
    print("%s: 50 token grids of 4x4" % out)
elif cmd == "cluster":
    need(o["--vq"])
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "w").write("cl")
    print(json.dumps({"num_clusters": int(o["--k"]), "method": o["--method"], "stats": {"objective": 1.0}}))
elif cmd == "train-classifier":
    os.makedirs(o["--run-dir"], exist_ok=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "w").write("clf")
    print(json.dumps({"test_accuracy": 0.9, "steps": int(o["--steps"]), "feature_net": {"dim": 8}}))
elif cmd in ("train-ar", "train-aux"):
    need(o["--tokens"] + "/codes.npy")
    need(o["--val-tokens"] + "/codes.npy")
    k = 0
    if "--clusters" in o:
        need(o["--clusters"])
        k = int(re.search(r"_k(\d+)/", o["--clusters"]).group(1))
    kind = "aux" if cmd == "train-aux" else ("stage1" if k else "baseline")
    steps = [int(s) for s in o["--snapshot-steps"].split(",")]
    if steps[-1] != int(o["--steps"]):
        fail("the last snapshot is not the last step")
    os.makedirs(os.path.join(out, "snapshots"), exist_ok=True)
    config, tensors = model_tensors(kind, o["--preset"], k)
    for s in steps:
        write_safetensors(os.path.join(out, "snapshots", "step%d.safetensors" % s), config, tensors)
    print(json.dumps({"final_loss": 1.5, "val_loss": 1.6, "steps": steps[-1], "stage": kind}))
elif cmd == "eval-real":
    need(o["--classifier"])
    n = int(o["--limit"])
    print(json.dumps({"metrics": {"fid": 1.0 + 10.0 / n, "is_mean": 9.0, "precision": 0.7, "recall": 0.7,
                                  "n_fake": n, "n_real": n}}))
elif cmd == "eval":
    for key in ("--tokenizer", "--model", "--classifier"):
        need(o[key])
    ctf = "--aux" in o
    if ctf:
        need(o["--aux"])
        need(o["--clusters"])
        need(o["--code-counts"] + "/codes.npy")
    m = re.search(r"_s(\d+)/snapshots/step(\d+)\.safetensors$", o["--model"])
    train_seed, step = int(m.group(1)), int(m.group(2))
    cfg, temp, top_k = float(o["--cfg"]), float(o["--temperature"]), int(o["--top-k"])
    # the sampling settings' optimum: cfg 3, temperature 1.1, the largest top-k; CTF: stage 2 with
    # T 0.8, restricted
    fid = (cfg - 3.0) ** 2 + 100.0 / step + abs(temp - 1.1) + (0.3 if top_k == 0 else 1.0 / top_k)
    fid += 0.01 * int(o["--seed"]) + 0.1 * train_seed
    if ctf:
        fine = o["--fine-decoder"]
        fid += {"aux": 0.0, "uniform": 2.0, "frequent": 1.5, "centroid": 1.0}[fine] + 0.05 * train_seed
        if fine == "aux":
            fid += abs(float(o["--aux-temperature"]) - 0.8) + (0.5 if "--aux-argmax" in o else 0.0)
            fid += (-0.05 if "--restrict" in o else 0.0) + (0.2 if int(o["--aux-top-k"]) else 0.0)
        fid += 3.0 if "random_" in o["--clusters"] else 0.0
        fid += 2.0 if "_k4/" in o["--clusters"] else 0.0
        fid += 1.0 if "aux_tiny" in o["--aux"] else 0.0
    else:
        fid += 1.0
    metrics = {"fid": fid, "is_mean": 5.0 + cfg + (1.0 if ctf else 0.0), "precision": 0.5,
               "recall": 0.6 - (0.01 * train_seed if ctf else 0.0), "n_fake": int(o["--num-samples"]),
               "n_real": 100}
    print(json.dumps({"mode": "ctf" if ctf else "baseline", "metrics": metrics}))
else:
    fail("unknown command " + cmd)
'''

# The fake's model files (kept in step with model_tensors above): expected forward FLOPs per token.
FAKE_V, FAKE_T = 64, 16
FAKE_PRESETS = {"small": (8, 2), "tiny": (4, 1)}


def fake_flops_per_token(kind, preset, k):
    D, L = FAKE_PRESETS[preset]
    L = max(1, L // 2) if kind == "aux" else L
    vout = k if kind == "stage1" else FAKE_V
    per_layer = 3 * D * D + D * D + 3 * (2 * D * D)
    return 2 * (L * per_layer + vout * D) + 4 * L * FAKE_T * D


PLAN = {
    "name": "t",
    "description": "A tiny study for the runner's tests.",
    "dataset": "fashion-mnist",
    "tokenizer": {"preset": "fmnist", "steps": 3, "batch": 2},
    "encode": {"train_limit": 50},
    "clusters": {"k": 8, "method": "kmeans", "seed": 0, "restarts": 1},
    "classifier": {"steps": 3, "batch": 4, "width": 4, "embed_dim": 8, "shift": 1},
    "model": {"preset": "small", "batch": 2, "lr": 0.001, "warmup": 1, "log_every": 1, "val_every": 2,
              "checkpoint_every": 2},
    "budgets": [2, 4],
    "baseline_extra_budgets": [6],
    "seeds": [0, 1],
    # the fake's FID is lowest at cfg 3: at the top edge of [1, 2], so cfg_high is tried
    "tune": {"seed": 0, "num_samples": 10, "eval_seed": 1000, "cfg": [1.0, 2.0], "cfg_low": [0.5],
             "cfg_high": [3.0, 5.0], "temperature": [1.0, 1.1], "top_k_baseline": [0, 64], "top_k_ctf": [0, 8],
             "aux_temperature": [0.8, 1.0], "aux_top_k": [4]},
    "final": {"num_samples": 20, "eval_seed": 2000, "free_decoders": ["uniform", "centroid"]},
    "floors": {"sizes": [10], "seed": 0},
    "noise": {"eval_seeds": [3000, 3001], "sizes": [10]},
    "eval_batch": 4,
    "ablations": {"step": 4, "seeds": [0], "k_values": [4], "methods": ["random"], "aux_presets": ["tiny"]},
}

BEST_CTF = {"cfg": 3.0, "temperature": 1.1, "top_k": 8, "fine": "aux", "aux_temperature": 0.8, "aux_top_k": 0,
            "aux_argmax": False, "restrict": True}
BEST_BASELINE = dict(study.DEFAULT_SETTINGS, cfg=3.0, temperature=1.1, top_k=64)

# ctfgen calls of a full run of PLAN:
#   prep 4, classifier 1, floors 2, training 2 seeds x 3 = 6,
#   tune: CTF per budget: cfg 2 + cfg_high 2 + (temperature x top-k 4, one already scored) 3
#         + stage 2 (aux T x restrict 4, one already scored) 3 + argmax 2 + aux top-k 1 + free decoders 2 = 15,
#         x 2 budgets = 30; baseline per budget 2 + 2 + 3 = 7, x 3 budgets = 21
#   final: per seed CTF 2 budgets x (best + 2 free decoders) + baseline 3 budgets = 9, x 2 seeds = 18
#   noise 2; ablations: 2 clusterings + 5 trainings + 3 evaluations = 10
N_CALLS = 4 + 1 + 2 + 6 + 30 + 21 + 18 + 2 + 10


def write_fake(path):
    with open(path, "w") as f:
        f.write("#!" + sys.executable + " -S\n" + FAKE_CTFGEN)
    os.chmod(path, 0o755)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def read(path):
    with open(path) as f:
        return json.load(f)


def make_tree(root):
    """<root>/repo/scripts/ with copies of the runner: its store is <root>/repo/experiments/results/."""
    os.makedirs(os.path.join(root, "repo", "scripts"), exist_ok=True)
    for f in SCRIPT_FILES:
        shutil.copy2(os.path.join(SCRIPTS, f), os.path.join(root, "repo", "scripts", f))
    write_fake(os.path.join(root, "fake_ctfgen"))


def store_files(store):
    out = {}
    for dirpath, _dirs, files in os.walk(store):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, store)] = fh.read()
    return out


class Sandbox:
    """A temporary tree: copied scripts, the fake, a plan, a work directory and the call log."""

    def __init__(self, root, plan=PLAN):
        self.root = root
        if not os.path.exists(os.path.join(root, "repo", "scripts", "study.py")):
            make_tree(root)
        self.script = os.path.join(root, "repo", "scripts", "study.py")
        self.store = os.path.join(root, "repo", "experiments", "results", plan["name"])
        self.work = os.path.join(root, "work")
        self.calls = os.path.join(root, "calls.jsonl")
        self.plan = write_json(os.path.join(root, "plan.json"), plan)

    def run(self, *args, plan=None):
        cmd = [sys.executable, self.script, args[0], plan or self.plan] + list(args[1:])
        if args[0] == "run":
            cmd += ["--work", self.work, "--ctfgen", os.path.join(self.root, "fake_ctfgen")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_CTFGEN") and k != "CTFGEN"}
        env["FAKE_CTFGEN_LOG"] = self.calls
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.root, timeout=120)

    def log(self):
        if not os.path.exists(self.calls):
            return []
        with open(self.calls) as f:
            return [json.loads(line) for line in f if line.strip()]

    def rec(self, name):
        return read(os.path.join(self.store, name + ".json"))


def opt(call, name):
    a = call["argv"]
    return a[a.index(name) + 1] if name in a else None


# --------------------------------------------------------------------------------------------
# In-process unit tests: keys, tuning, statistics, FLOPs


class UnitKeyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def study_of(self, plan):
        return study.Study(study.load_plan(write_json(os.path.join(self.dir, "p.json"), plan)))

    def test_key_depends_on_argv_and_deps(self):
        U = study.Unit
        a = U("a", "prep", ["x", "--n", 1])
        self.assertEqual(a.key, U("a", "prep", ["x", "--n", "1"]).key)  # arguments are text
        self.assertNotEqual(a.key, U("a", "prep", ["x", "--n", 2]).key)
        self.assertRegex(a.key, r"^[0-9a-f]{16}$")
        b = U("b", "train", ["y"], deps=[a])
        self.assertEqual(b.key, U("b", "train", ["y"], deps=[U("a", "prep", ["x", "--n", 1])]).key)
        self.assertNotEqual(b.key, U("b", "train", ["y"], deps=[U("a", "prep", ["x", "--n", 2])]).key)
        self.assertNotEqual(b.key, U("b", "train", ["y"]).key)
        # the key does not depend on the unit's name, outputs or meta (the name is the store path)
        self.assertEqual(b.key, U("c", "tune", ["y"], deps=[a], outputs=["f"], meta={"m": 1}).key)

    def test_plan_change_reaches_exactly_the_dependants(self):
        s1 = self.study_of(PLAN)
        s2 = self.study_of(dict(PLAN, tokenizer=dict(PLAN["tokenizer"], steps=4)))
        self.assertEqual(self.study_of(PLAN).vq.key, s1.vq.key)  # deterministic
        for get in (lambda s: s.vq, lambda s: s.tok["train"], lambda s: s.tok["test"], lambda s: s.cl,
                    lambda s: s.train[("baseline", 1)], lambda s: s.train[("aux", 0)],
                    lambda s: s.eval_unit("final", "ctf", 1, 4, BEST_CTF, 20, 2001)):
            self.assertNotEqual(get(s1).key, get(s2).key, get(s1).name)
        self.assertEqual(s1.clf.key, s2.clf.key)  # the classifier does not read the tokenizer
        self.assertEqual([u.key for u in s1.floor_units()], [u.key for u in s2.floor_units()])
        # a changed model recipe changes the training units, not the prep
        s3 = self.study_of(dict(PLAN, model=dict(PLAN["model"], lr=0.002)))
        self.assertEqual(s1.cl.key, s3.cl.key)
        self.assertNotEqual(s1.train[("stage1", 0)].key, s3.train[("stage1", 0)].key)
        # sampling settings are part of an evaluation's key
        e1 = s1.eval_unit("tune", "ctf", 0, 2, BEST_CTF, 10, 1000)
        e2 = s1.eval_unit("tune", "ctf", 0, 2, dict(BEST_CTF, restrict=False), 10, 1000)
        self.assertNotEqual(e1.key, e2.key)
        self.assertNotEqual(e1.name, e2.name)

    def experiment_units(self):
        """experiment.py's units for the same tokenizer, encodings and clustering as PLAN."""
        eplan = {"name": "e", "dataset": PLAN["dataset"], "tokenizer": PLAN["tokenizer"],
                 "encode": {"train_limit": PLAN["encode"]["train_limit"]},
                 "clusters": {"k_values": [8], "k_default": 8, "methods": ["kmeans"], "seed": 0, "restarts": 1},
                 "seeds": [0]}
        return {u.name: u for u in experiment.build_units(
            experiment.load_plan(write_json(os.path.join(self.dir, "e.json"), eplan)))}

    def test_prep_units_match_experiment_py(self):
        st = self.study_of(PLAN)
        eu = self.experiment_units()
        for u in (st.vq, st.tok["train"], st.tok["test"], st.cl):
            self.assertIn(u.name, eu)
            self.assertEqual(u.argv, eu[u.name].argv, u.name)
            self.assertEqual(u.key, eu[u.name].key, u.name)
        # the ablations' clusterings too
        self.assertEqual(st.cluster_unit("kmeans", 8).key, eu["clusters/kmeans_k8"].key)

    def test_experiment_py_work_directory_is_adopted(self):
        """A work directory of experiment.py holding the prep units: nothing runs, the store gets them."""
        box = Sandbox(self.dir)
        st = self.study_of(PLAN)
        eu = self.experiment_units()
        for u in (st.vq, st.tok["train"], st.tok["test"], st.cl):
            for p in u.outputs:
                os.makedirs(os.path.dirname(os.path.join(box.work, p)), exist_ok=True)
                with open(os.path.join(box.work, p), "w") as f:
                    f.write("x")
            write_json(os.path.join(box.work, u.name, "done.json"),
                       {"unit": u.name, "key": eu[u.name].key, "argv": eu[u.name].argv,
                        "result": {"adopted": u.name}, "seconds": 2.5, "finished": "2026-01-01T00:00:00"})
        r = box.run("run", "--until", "prep")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(box.log(), [])
        for u in (st.vq, st.tok["train"], st.tok["test"], st.cl):
            rec = box.rec(u.name)
            self.assertEqual((rec["key"], rec["result"], rec["seconds"]), (u.key, {"adopted": u.name}, 2.5))
        # a done.json of another command is not adopted
        shutil.rmtree(box.store)
        d = read(os.path.join(box.work, "tokens/test", "done.json"))
        write_json(os.path.join(box.work, "tokens/test", "done.json"), dict(d, key="0" * 16))
        r = box.run("run", "--until", "prep")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([(c["cmd"], opt(c, "--out")) for c in box.log()], [("encode", "tokens/test")])

    def test_unknown_plan_fields_are_refused(self):
        box = Sandbox(self.dir)
        bad = write_json(os.path.join(self.dir, "bad.json"), dict(PLAN, tune=dict(PLAN["tune"], cfgs=[1.0])))
        r = box.run("run", plan=bad)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown field(s) cfgs in 'tune'", r.stderr)
        r = box.run("run", plan=write_json(os.path.join(self.dir, "bad2.json"), dict(PLAN, budgets=[4, 2])))
        self.assertEqual(r.returncode, 2)
        self.assertIn("'budgets' must be increasing", r.stderr)
        self.assertEqual(box.log(), [])

    # load_plan checks ablations.step against the budgets (and ablations.seeds against seeds):
    # the variants are scored at the main CTF's tuned settings at that step.
    def test_ablation_step_must_be_a_budget(self):
        path = write_json(os.path.join(self.dir, "p.json"), dict(PLAN, ablations=dict(PLAN["ablations"], step=3)))
        with self.assertRaises(experiment.ExperimentError):
            study.load_plan(path)

    # Evaluations pass the plan's --dataset (ctfgen eval's default reference is fashion-mnist).
    def test_evaluations_use_the_plan_dataset(self):
        st = self.study_of(dict(PLAN, dataset="emoji"))
        units = [st.eval_unit("final", kind, 0, 2, BEST_CTF, 20, 2000) for kind in ("baseline", "ctf")]
        units += st.ablation_units(BEST_CTF)[1]
        for u in units:
            self.assertIn("--dataset", u.argv, u.name)
            self.assertEqual(u.argv[u.argv.index("--dataset") + 1], "emoji", u.name)


class FakeEngine:
    """Scores evaluation units with a function of their settings; records what was asked."""

    def __init__(self, fid):
        self.fid, self.asked = fid, []

    def run_all(self, units):
        self.asked += [u.meta["settings"] for u in units]
        return [{"result": {"metrics": {"fid": self.fid(u.meta["settings"])}}} for u in units]


class TuneTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def tune(self, kind, fid, **tune_fields):
        plan = dict(PLAN, tune=dict(PLAN["tune"], **tune_fields))
        st = study.Study(study.load_plan(write_json(os.path.join(self.tmp.name, "p.json"), plan)))
        eng = FakeEngine(fid)
        return study.tune(st, eng, kind, 2), eng

    def test_bottom_edge_extends_with_cfg_low(self):
        best, eng = self.tune("baseline", lambda s: (s["cfg"] - 3) ** 2 + abs(s["temperature"] - 1.0),
                              cfg=[4.0, 5.0], cfg_low=[1.0, 3.0], cfg_high=[7.0])
        self.assertEqual(best["cfg"], 3.0)
        cfgs = {s["cfg"] for s in eng.asked}
        self.assertEqual(cfgs, {1.0, 3.0, 4.0, 5.0})  # never cfg_high
        self.assertEqual(best["temperature"], 1.0)

    def test_interior_minimum_is_not_extended(self):
        best, eng = self.tune("ctf", lambda s: (s["cfg"] - 3) ** 2 + (1.0 if s["fine"] != "aux" else 0.0),
                              cfg=[2.0, 3.0, 4.0], cfg_low=[1.0], cfg_high=[7.0])
        self.assertEqual(best["cfg"], 3.0)
        self.assertEqual({s["cfg"] for s in eng.asked}, {2.0, 3.0, 4.0})
        self.assertEqual(best["fine"], "aux")
        # the stage-2 search tries every free decoder at the chosen stage-1 settings
        fines = [s for s in eng.asked if s["fine"] != "aux"]
        self.assertEqual(sorted(s["fine"] for s in fines), sorted(PLAN["final"]["free_decoders"]))
        self.assertTrue(all(s["cfg"] == 3.0 for s in fines))

    def test_each_stage_starts_from_the_previous_best(self):
        def fid(s):
            return (s["cfg"] - 5) ** 2 + abs(s["temperature"] - 1.1) + (0 if s["top_k"] == 8 else 0.5) \
                + (0 if s["fine"] == "centroid" else 0.2)
        best, eng = self.tune("ctf", fid)  # cfg [1, 2] -> extended with [3, 5]
        self.assertEqual(best, dict(study.DEFAULT_SETTINGS, cfg=5.0, temperature=1.1, top_k=8, fine="centroid"))
        temp_stage = [s for s in eng.asked if s["temperature"] != 1.0 or s["top_k"] != 0]
        self.assertTrue(temp_stage and all(s["cfg"] == 5.0 for s in temp_stage))


class StatisticsTest(unittest.TestCase):
    def test_mean_ci(self):
        m, h, n = study_report.mean_ci([1.0, 2.0, 3.0])
        self.assertEqual((m, n), (2.0, 3))
        self.assertAlmostEqual(h, 4.303 * 1.0 / math.sqrt(3))
        m, h, n = study_report.mean_ci([2.0, None, float("nan"), 4.0, "x"])
        self.assertEqual((m, n), (3.0, 2))
        self.assertAlmostEqual(h, 12.706 * math.sqrt(2) / math.sqrt(2))
        self.assertEqual(study_report.mean_ci([5.0]), (5.0, None, 1))
        self.assertEqual(study_report.mean_ci([]), (None, None, 0))
        self.assertEqual(study_report.t95(12), 2.228)  # between table rows: the next smaller df
        self.assertEqual(study_report.t95(30), 2.042)

    def test_verdict(self):
        v = study_report.verdict
        self.assertEqual(v([], "lower"), "not measured yet")
        self.assertEqual(v([-3.0], "lower"), "inconclusive (one seed)")
        self.assertEqual(v([-1.0, -1.2, -0.9], "lower"), "holds")
        self.assertEqual(v([-1.0, -1.2, -0.9], "higher"), "contradicted")
        self.assertEqual(v([1.0, 1.2, 0.9], "higher"), "holds")
        self.assertEqual(v([1.0, 1.2, 0.9], "lower"), "contradicted")
        self.assertEqual(v([1.0, -1.0, 0.5], "lower"), "inconclusive")
        self.assertEqual(v([1.0, -1.0, 0.5], "higher"), "inconclusive")
        # all of one sign but too noisy for the interval to exclude zero (n = 2: t = 12.7)
        self.assertEqual(v([-0.1, -2.0], "lower"), "inconclusive")
        self.assertEqual(v([0.0, 0.0], "lower"), "inconclusive")  # no difference at all

    def test_ci_text_and_interpolation(self):
        self.assertEqual(study_report.ci_text([]), "—")
        self.assertEqual(study_report.ci_text([-1.5]), "-1.50 (1 seed)")
        self.assertEqual(study_report.ci_text([1.0, 2.0, 3.0]), "+2.00 [%+.2f, %+.2f] (n=3)" % (
            2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)))
        self.assertAlmostEqual(study_report.interp_log([10, 1000], [1.0, 3.0], 100), 2.0)
        self.assertIsNone(study_report.interp_log([10, 1000], [1.0, 3.0], 5))


class FlopsTest(unittest.TestCase):
    def test_model_flops_per_token(self):
        tensors = {"tok_embeddings.weight": [100, 8], "cls_embedding.embedding_table.weight": [11, 8],
                   "layers.0.attention.wqkv.weight": [24, 8], "layers.0.attention.wo.weight": [8, 8],
                   "layers.0.attention_norm.weight": [8], "output.weight": [100, 8]}
        header = {"__metadata__": {"config": json.dumps({"block_size": 16, "n_layer": 1, "dim": 8})}}
        off = 0
        for name, shape in tensors.items():
            header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + 4 * math.prod(shape)]}
            off = header[name]["data_offsets"][1]
        h = json.dumps(header).encode()
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "m", "snapshots"))
            path = os.path.join(d, "m", "snapshots", "step5.safetensors")
            with open(path, "wb") as f:
                f.write(struct.pack("<Q", len(h)) + h + bytes(off))
            per_token, T = study.model_flops_per_token(path)
            # matrices: wqkv 192 + wo 64 + output 800 (embedding tables and norms excluded)
            self.assertEqual(T, 16)
            self.assertEqual(per_token, 2 * (192 + 64 + 800) + 4 * 1 * 16 * 8)
            u = study.Unit("m", "train", ["train-ar"], outputs=["m/snapshots/step5.safetensors"],
                           meta={"batch": 3, "snapshots": [2, 5]})
            fl = study.training_flops(d, u)
            self.assertEqual(fl["per_token_forward"], per_token)
            self.assertEqual(fl["per_step"], 3 * per_token * 16 * 3)
            self.assertEqual(fl["by_step"], {"2": 2 * fl["per_step"], "5": 5 * fl["per_step"]})


# --------------------------------------------------------------------------------------------
# Runs through the fake ctfgen


class StudyRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # One complete run of PLAN; tests that change anything work on a copy of its tree.
        cls.tmp_class = tempfile.TemporaryDirectory()
        cls.box = Sandbox(cls.tmp_class.name)
        cls.first = cls.box.run("run", "--jobs", "2")
        cls.first_log = cls.box.log()

    @classmethod
    def tearDownClass(cls):
        cls.tmp_class.cleanup()

    def setUp(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def copy_box(self, with_work=True):
        """The class's tree (scripts, store and, optionally, work directory) copied; an empty call log."""
        shutil.copytree(os.path.join(self.box.root, "repo"), os.path.join(self.tmp.name, "repo"), symlinks=True)
        if with_work:
            shutil.copytree(self.box.work, os.path.join(self.tmp.name, "work"), symlinks=True)
        write_fake(os.path.join(self.tmp.name, "fake_ctfgen"))
        return Sandbox(self.tmp.name)

    # -- the full run

    def test_full_run_calls_and_store(self):
        log = self.first_log
        self.assertEqual(len(log), N_CALLS, [(c["cmd"], opt(c, "--out")) for c in log])
        self.assertTrue(all(c["threads"] == 1 for c in log))
        # no command ran twice (units shared by the tuning stages are reused)
        argvs = [json.dumps(c["argv"]) for c in log]
        self.assertEqual(len(argvs), len(set(argvs)))
        # the first training runs (and the classifier) precede every evaluation; prep precedes training
        cmds = [c["cmd"] for c in log]
        self.assertLess(max(i for i, c in enumerate(cmds) if c in ("train-vq", "encode")),
                        min(i for i, c in enumerate(cmds) if c.startswith("train-a")))
        self.assertIn("finished (%d unit(s) run here)" % N_CALLS, self.first.stderr)
        S = self.box.store
        for name in ("tokenizer", "tokens/train", "tokens/test", "clusters/kmeans_k8", "classifier_v2",
                     "floors/train_vs_test_n10", "floors/test_half_vs_half_n10",
                     "train/baseline_s0", "train/kmeans_k8_stage1_s1", "train/kmeans_k8_aux_s1",
                     "clusters/kmeans_k4", "clusters/random_k8", "train/ablation/kmeans_k4_stage1_s0",
                     "train/ablation/random_k8_aux_s0", "train/ablation/aux_tiny_s0"):
            self.assertTrue(os.path.exists(os.path.join(S, name + ".json")), name)
        counts = {}
        for rel in store_files(S):
            parts = rel.split(os.sep)
            counts[parts[1] if parts[0] == "eval" else parts[0]] = counts.get(
                parts[1] if parts[0] == "eval" else parts[0], 0) + 1
        self.assertEqual(counts.get("tune"), 51)
        self.assertEqual(counts.get("final"), 18)
        self.assertEqual(counts.get("noise"), 2)
        self.assertEqual(counts.get("ablation"), 3)
        self.assertEqual(counts.get("floors"), 2)
        self.assertEqual(counts.get("train"), 6 + 5)
        # records: relative paths only (the store is committed and moves between machines), slim results
        for rel, data in store_files(S).items():
            text = data.decode()
            self.assertNotIn(self.box.root, text, rel)
            self.assertNotIn('"files"', text, rel)
            self.assertNotIn('"feature_net"', text, rel)
        self.assertEqual(self.box.rec("tokens/train")["result"], {"stdout": "tokens/train: 50 token grids of 4x4"})
        self.assertEqual(self.box.rec("classifier_v2")["result"]["test_accuracy"], 0.9)
        # the work directory keeps each unit's output and its done.json
        self.assertTrue(os.path.exists(os.path.join(self.box.work, "train/baseline_s1/snapshots/step6.safetensors")))
        done = read(os.path.join(self.box.work, "train/baseline_s1", "done.json"))
        self.assertEqual(done["key"], self.box.rec("train/baseline_s1")["key"])

    def test_training_flops_in_the_store(self):
        T, B = FAKE_T, PLAN["model"]["batch"]
        for name, kind, preset, k, steps in (
                ("train/baseline_s0", "baseline", "small", 0, [2, 4, 6]),
                ("train/kmeans_k8_stage1_s1", "stage1", "small", 8, [2, 4]),
                ("train/kmeans_k8_aux_s0", "aux", "small", 8, [2, 4]),
                ("train/ablation/kmeans_k4_stage1_s0", "stage1", "small", 4, [4]),
                ("train/ablation/aux_tiny_s0", "aux", "tiny", 8, [4])):
            fl = self.box.rec(name)["flops"]
            per_token = fake_flops_per_token(kind, preset, k)
            self.assertEqual(fl["per_token_forward"], per_token, name)
            self.assertEqual(fl["per_step"], 3 * per_token * T * B, name)
            self.assertEqual(fl["by_step"], {str(s): s * fl["per_step"] for s in steps}, name)
        rec = self.box.rec("train/ablation/aux_tiny_s0")
        self.assertEqual(rec["argv"][rec["argv"].index("--preset") + 1], "tiny")
        self.assertIn("--clusters", rec["argv"])

    def test_tuning_finds_the_fake_optimum(self):
        best = read(os.path.join(self.box.store, "best_settings.json"))
        self.assertEqual(sorted(best), ["baseline_step2", "baseline_step4", "baseline_step6", "ctf_step2",
                                        "ctf_step4"])
        for key, s in best.items():
            self.assertEqual(s, BEST_CTF if key.startswith("ctf") else BEST_BASELINE, key)
        evals = [c for c in self.first_log if c["cmd"] == "eval"]
        tune_cfgs = {float(opt(c, "--cfg")) for c in evals if opt(c, "--seed") == "1000"}
        # cfg 2 (the grid's top) was best, so cfg_high [3, 5] was tried; cfg_low never
        self.assertEqual(tune_cfgs, {1.0, 2.0, 3.0, 5.0})
        for kind, model, n in (("baseline", "train/baseline_s0/snapshots/step6.safetensors", 7),
                               ("ctf", "train/kmeans_k8_stage1_s0/snapshots/step4.safetensors", 15)):
            tried = [c for c in evals if opt(c, "--seed") == "1000" and opt(c, "--model") == model]
            self.assertEqual(len(tried), n, kind)
            self.assertTrue(all(opt(c, "--num-samples") == "10" for c in tried))
        # the tuning seed's models only; the tuned settings are what the final evaluations use
        self.assertFalse([c for c in evals if opt(c, "--seed") == "1000" and "_s1/" in opt(c, "--model")])
        finals = [c for c in evals if opt(c, "--seed") in ("2000", "2001") and "ablation" not in " ".join(c["argv"])]
        self.assertEqual(len(finals), 18)
        for c in finals:
            self.assertEqual(opt(c, "--cfg"), "3")
            self.assertEqual(opt(c, "--temperature"), "1.1")
            self.assertEqual(opt(c, "--num-samples"), "20")
            seed = int(re.search(r"_s(\d+)/snapshots/", opt(c, "--model")).group(1))
            self.assertEqual(opt(c, "--seed"), str(2000 + seed))
        free = sorted(opt(c, "--fine-decoder") for c in finals if opt(c, "--fine-decoder") not in (None, "aux"))
        self.assertEqual(free, ["centroid"] * 4 + ["uniform"] * 4)
        tuned = [c for c in finals if opt(c, "--fine-decoder") == "aux"]
        self.assertEqual(len(tuned), 4)
        self.assertTrue(all(opt(c, "--aux-temperature") == "0.8" and "--restrict" in c["argv"] for c in tuned))
        # the noise phase: the tuning seed's CTF at the last budget, tuned settings, each sampling seed
        noise = [c for c in evals if opt(c, "--seed") in ("3000", "3001")]
        self.assertEqual(len(noise), 2)
        for c in noise:
            self.assertEqual(opt(c, "--model"), "train/kmeans_k8_stage1_s0/snapshots/step4.safetensors")
            self.assertIn("--restrict", c["argv"])
        # ablations: scored with the main CTF's tuned settings at the ablation step
        abl = [self.box.rec(os.path.join("eval", "ablation", f[:-5]))
               for f in os.listdir(os.path.join(self.box.store, "eval", "ablation"))]
        self.assertEqual(sorted(r["meta"]["variant"] for r in abl), ["aux_tiny", "k4", "random"])
        for r in abl:
            self.assertEqual(r["meta"]["settings"], BEST_CTF)
            self.assertEqual(r["meta"]["step"], 4)
        by_variant = {r["meta"]["variant"]: r["result"]["metrics"]["fid"] for r in abl}
        main = [self.box.rec(os.path.join("eval", "final", f[:-5]))
                for f in os.listdir(os.path.join(self.box.store, "eval", "final"))]
        main = [r for r in main if r["meta"]["kind"] == "ctf" and r["meta"]["seed"] == 0 and r["meta"]["step"] == 4
                and r["meta"]["tag"] == "best"]
        self.assertEqual(len(main), 1)
        f0 = main[0]["result"]["metrics"]["fid"]
        for variant, extra in (("k4", 2.0), ("random", 3.0), ("aux_tiny", 1.0)):
            self.assertAlmostEqual(by_variant[variant], f0 + extra, msg=variant)

    def test_status(self):
        r = self.box.run("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = dict(line.split(None, 1) for line in r.stdout.splitlines())
        self.assertTrue(lines["tune"].startswith("51 unit"))
        self.assertTrue(lines["final"].startswith("18 unit"))
        self.assertTrue(lines["train"].startswith("11 unit"))

    # -- resuming

    def test_rerun_runs_nothing(self):
        box = self.copy_box()
        before = store_files(box.store)
        r = box.run("run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(box.log(), [])
        self.assertIn("finished (0 unit(s) run here)", r.stderr)
        self.assertEqual(store_files(box.store), before)

    def test_fresh_machine_redoes_only_what_a_missing_record_needs(self):
        box = self.copy_box(with_work=False)  # the store alone, as a fresh clone of the repository has
        before = store_files(box.store)
        final_dir = os.path.join(box.store, "eval", "final")
        victim = [f for f in sorted(os.listdir(final_dir))
                  if f.startswith("ctf_s1_step4_") and f.endswith("__centroid.json")]
        self.assertEqual(len(victim), 1)
        victim = os.path.join("eval", "final", victim[0])
        old = json.loads(before.pop(victim))
        os.remove(os.path.join(box.store, victim))
        r = box.run("run", "--jobs", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        ran = sorted((c["cmd"], opt(c, "--out") or opt(c, "--model")) for c in box.log())
        self.assertEqual(ran, sorted([
            ("train-vq", "tokenizer"), ("encode", "tokens/train"), ("encode", "tokens/test"),
            ("cluster", "clusters/kmeans_k8/clusters.safetensors"),
            ("train-ar", "train/kmeans_k8_stage1_s1"), ("train-aux", "train/kmeans_k8_aux_s1"),
            ("train-classifier", "classifier_v2/classifier.safetensors"),
            ("eval", "train/kmeans_k8_stage1_s1/snapshots/step4.safetensors")]))
        self.assertEqual(opt(box.log()[-1], "--fine-decoder"), "centroid")
        after = store_files(box.store)
        new = json.loads(after.pop(victim))
        self.assertEqual(after, before)  # every other record (and best_settings.json) byte for byte
        for k in ("name", "key", "argv", "result", "meta"):
            self.assertEqual(new[k], old[k], k)
        # a second run on this machine: nothing
        n = len(box.log())
        r = box.run("run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(box.log()), n)

    # A record adopted from a work directory's done.json keeps a training run's FLOPs.
    def test_adopted_training_record_keeps_its_flops(self):
        box = self.copy_box()
        name = "train/baseline_s1"
        old = box.rec(name)
        os.remove(os.path.join(box.store, name + ".json"))
        r = box.run("run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(box.log(), [])  # adopted from work/train/baseline_s1/done.json
        new = box.rec(name)
        self.assertEqual((new["key"], new["result"]), (old["key"], old["result"]))
        self.assertEqual(new.get("flops"), old["flops"])

    def test_changed_plan_is_refused(self):
        box = self.copy_box()
        before = store_files(box.store)
        changed = write_json(os.path.join(self.tmp.name, "changed.json"),
                             dict(PLAN, model=dict(PLAN["model"], lr=0.002)))
        r = box.run("run", plan=changed)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("Traceback", r.stderr)
        msg = [line for line in r.stderr.splitlines() if line.startswith("study: ")]
        self.assertTrue(msg, r.stderr)
        self.assertRegex(msg[0], r"^study: train/(baseline|kmeans_k8_stage1|kmeans_k8_aux)_s0: the store holds a "
                                 r"record with key [0-9a-f]{16} but the plan now gives [0-9a-f]{16}")
        self.assertIn("restore the plan or delete experiments/results/t/train/", r.stderr)
        self.assertEqual(box.log(), [])
        self.assertEqual(store_files(box.store), before)

    # -- the report

    def report(self):
        out = os.path.join(self.tmp.name, "docs", "results.md")
        r = self.box.run("report", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            return f.read(), out

    def test_report(self):
        text, out = self.report()
        for heading in ("# Results: the paper's claims at our scale", "## The claims",
                        "## The evaluator and its floors", "## Convergence", "## Stage 2", "## Sampling settings",
                        "## Cost", "## Not measured yet"):
            self.assertIn(heading, text)
        self.assertIn("| claim (paper) | paper | ours: difference (95 % CI) | verdict |", text)
        rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
        # CTF - baseline FID at equal steps: -0.94 + 0.05 x seed (fake), both seeds -> holds
        for step in (2, 4):
            row = rows["CTF's FID is lower than the baseline's, same steps per model (%d)" % step]
            self.assertTrue(row.endswith("| holds |"), row)
            self.assertIn("(n=2)", row)
            self.assertIn("%+.2f [" % (-0.940625 + 0.025), row)
            self.assertTrue(rows["CTF's IS is higher, same steps (%d)" % step].endswith("| holds |"))
        self.assertTrue(rows["CTF's precision is higher (4 steps)"].endswith("| inconclusive |"))  # equal
        self.assertTrue(rows["CTF's recall is higher (4 steps)"].endswith("| inconclusive |"))
        for f, verdict in (("uniform", "holds"), ("centroid", "holds")):
            row = rows["the learned stage 2 beats the %s-member decoder (FID, 4 steps)" % f]
            self.assertTrue(row.endswith("| %s |" % verdict), row)
        self.assertIn("test accuracy **90.00 %**", text)
        self.assertIn("| real train vs real test | 10 | 10 | 2.00 |", text)
        self.assertIn("| ctf | 4 | cfg 3, T 1.1, top-k 8; stage 2: T 0.8, restricted | 15 |", text)
        self.assertIn("| baseline | 6 | cfg 3, T 1.1, top-k 64 | 7 |", text)
        self.assertIn("Data: %d units" % (len(store_files(self.box.store)) - 1), text)
        self.assertNotIn("training runs:", text)  # all trained

    def test_report_of_an_empty_store(self):
        box = Sandbox(self.tmp.name)
        out = os.path.join(self.tmp.name, "empty.md")
        r = box.run("report", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            text = f.read()
        self.assertIn("not measured yet", text)
        self.assertIn("No final evaluation has finished yet.", text)
        self.assertIn("Not tuned yet.", text)

    # flops_at counts the main runs only, never the ablation runs under train/ablation/.
    def test_ctf_flops_ignore_the_ablation_runs(self):
        S = study_report.Store(self.box.store)
        for seed in PLAN["seeds"]:
            for step in PLAN["budgets"]:
                want = sum(S.recs["train/kmeans_k8_%s_s%d" % (k, seed)]["flops"]["by_step"][str(step)]
                           for k in ("stage1", "aux"))
                self.assertEqual(study_report.flops_at(S, "ctf", seed, step), want, (seed, step))
        plan = study.load_plan(self.box.plan)
        self.assertEqual(len(study_report.matched_flops_diffs(S, plan, PLAN["budgets"][-1])), len(PLAN["seeds"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
