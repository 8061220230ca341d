#!/usr/bin/env python3
"""Tests of scripts/experiment.py against a FAKE ctfgen (a small Python script written here that
mimics the CLI: it writes the files and JSON the real commands write, logs every invocation, and
can be told to fail, to stop like an interrupted training, or to wait for SIGINT).

Run: /usr/bin/python3 tests/cli/test_experiment.py   (stdlib only; plots are checked when
matplotlib is installed)."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ next to scripts/experiment.py
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir, "scripts", "experiment.py"))

spec = importlib.util.spec_from_file_location("experiment", SCRIPT)
experiment = importlib.util.module_from_spec(spec)
spec.loader.exec_module(experiment)

FAKE_CTFGEN = r'''
import json, os, signal, struct, sys, time, zlib

def log_call(cmd, argv):
    path = os.environ.get("FAKE_CTFGEN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"cmd": cmd, "argv": argv}) + "\n")

def png(path, w=8, h=8):
    raw = b"".join(b"\x00" + bytes([(x * 31 + y * 17) % 256 for x in range(w)]) for y in range(h))
    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)

def need(path):
    if not os.path.exists(path):
        print("error: %s: no such file" % path, file=sys.stderr)
        sys.exit(1)

FLAGS = {"--json", "--aux-argmax", "--flip"}
args = sys.argv[1:]
while args and args[0] in ("--threads", "-v", "--verbosity"):
    args = args[2:]
if not args or args[0] in ("--help", "-h"):
    print("ctfgen (fake)\nSubcommands:")
    for c in ["cluster", "encode", "train-ar", "train-aux", "train-classifier", "train-vq"] + \
            ([] if os.environ.get("FAKE_CTFGEN_NO_EVAL") else ["eval"]):
        print("  %-26s fake" % c)
    sys.exit(0)
cmd, rest = args[0], args[1:]
log_call(cmd, rest)
o, i = {}, 0
while i < len(rest):
    if rest[i] in FLAGS:
        o[rest[i]] = True
        i += 1
    else:
        o[rest[i]] = rest[i + 1]
        i += 2
out = o.get("--out", "")
if os.environ.get("FAKE_CTFGEN_FAIL") and os.environ["FAKE_CTFGEN_FAIL"] in out:
    print("error: fake failure for " + out, file=sys.stderr)
    sys.exit(1)

def train_loop(steps, out):
    """Steps with a checkpoint; optionally stops at half (exit 130) or waits for SIGINT."""
    ck = os.path.join(out, "checkpoint.safetensors")
    start = int(open(ck).read()) if os.path.exists(ck) else 0
    resumed = start > 0
    stop = {"sig": 0}
    def handler(signum, frame):
        stop["sig"] += 1
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if os.environ.get("FAKE_CTFGEN_WAIT") and os.environ["FAKE_CTFGEN_WAIT"] in out and not resumed:
        open(os.path.join(out, "waiting"), "w").close()
        t0 = time.time()
        while not stop["sig"] and time.time() - t0 < 30:
            time.sleep(0.02)
        time.sleep(0.3)  # a second forwarded signal would be counted here
        with open(ck, "w") as f:
            f.write(str(max(1, steps // 2)))
        with open(os.path.join(out, "signals"), "w") as f:
            f.write(str(stop["sig"]))
        print("interrupted: training stopped; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    if os.environ.get("FAKE_CTFGEN_INTERRUPT") and os.environ["FAKE_CTFGEN_INTERRUPT"] in out and not resumed:
        with open(ck, "w") as f:
            f.write(str(max(1, steps // 2)))
        print("interrupted: training stopped", file=sys.stderr)
        sys.exit(130)
    with open(ck, "w") as f:
        f.write(str(steps))
    return resumed, start

if cmd == "train-vq":
    os.makedirs(out, exist_ok=True)
    resumed, _ = train_loop(int(o["--steps"]), out)
    open(os.path.join(out, "vq.safetensors"), "w").write("vq")
    print(json.dumps({"eval": {"psnr": 21.5, "ssim": 0.8, "usage": 0.75}, "steps": int(o["--steps"]),
                      "resumed": resumed, "model_path": out + "/vq.safetensors"}))
elif cmd == "encode":
    need(o["--vq"])
    os.makedirs(out, exist_ok=True)
    for f in ("codes.npy", "labels.npy", "meta.json"):
        open(os.path.join(out, f), "w").write("x")
    print("%s: 100 token grids of 7x7" % out)
elif cmd == "train-classifier":
    os.makedirs(o["--run-dir"], exist_ok=True)
    open(out, "w").write("clf")
    print(json.dumps({"test_accuracy": 0.9, "steps": int(o["--steps"]), "out": out}))
elif cmd == "cluster":
    need(o["--vq"])
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "w").write("cl")
    k = int(o["--k"])
    print(json.dumps({"num_clusters": k, "method": o["--method"],
                      "stats": {"objective": 100.0 / k, "mean_intra_distance": 0.5}}))
elif cmd in ("train-ar", "train-aux"):
    need(o["--tokens"] + "/codes.npy")
    need(o["--val-tokens"] + "/codes.npy")
    if "--clusters" in o:
        need(o["--clusters"])
    os.makedirs(out, exist_ok=True)
    steps = int(o["--steps"])
    resumed, start = train_loop(steps, out)
    le, ve = int(o["--log-every"]), int(o["--val-every"])
    with open(os.path.join(out, "log.jsonl"), "a") as f:
        for s in range(start + 1, steps + 1):
            if s % le == 0:
                line = {"step": s, "loss": 5.0 / s ** 0.3}
                if ve and s % ve == 0:
                    line["val_loss"] = 5.2 / s ** 0.3
                f.write(json.dumps(line) + "\n")
    open(os.path.join(out, "model.safetensors"), "w").write("m")
    print(json.dumps({"final_loss": 1.5, "val_loss": 1.6, "num_params": 1000 if cmd == "train-ar" else 2000,
                      "tokens_per_s": 1000.0, "steps": steps, "resumed": resumed,
                      "stage": "aux" if cmd == "train-aux" else ("coarse" if "--clusters" in o else "baseline")}))
elif cmd == "eval":
    for key in ("--tokenizer", "--model", "--classifier"):
        need(o[key])
    ctf = "--aux" in o
    if ctf:
        need(o["--aux"])
        need(o["--clusters"])
    seed, cfg = int(o["--seed"]), float(o["--cfg"])
    cl = o.get("--clusters", "")
    if ctf:
        fid = 5.0 + 0.5 * seed + abs(cfg - 1.5)
        fid += 3.0 if "--aux-argmax" in o else 0.0
        fid += 4.0 if "random" in cl else 0.0
        fid += 6.0 if "_k4/" in cl else 0.0
        ims = 6.0 + cfg - (1.0 if "--aux-argmax" in o else 0.0)
    else:
        fid = 10.0 + seed + abs(cfg - 1.5)
        ims = 5.0 + cfg
    metrics = {"fid": fid, "is_mean": ims, "is_std": 0.1, "precision": 0.5 + 0.1 * cfg, "recall": 0.7 - 0.1 * cfg,
               "n_fake": int(o["--num-samples"]), "n_real": 100, "net": "fake",
               "seconds_sampling": 1.0, "images_per_s": 40.0 if ctf else 50.0}
    res = {"mode": "ctf" if ctf else "baseline", "metrics": metrics}
    os.makedirs(out, exist_ok=True)
    png(os.path.join(out, "samples.png"))
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(res, f)
    print(json.dumps(res))
else:
    print("error: unknown command " + cmd, file=sys.stderr)
    sys.exit(2)
'''

PLAN = {
    "name": "tiny",
    "description": "A plan for the runner's tests.",
    "dataset": "fashion-mnist",
    "tokenizer": {"preset": "fmnist", "steps": 10, "batch": 4},
    "encode": {"train_limit": 100, "test_limit": 50},
    "classifier": {"steps": 5},
    "clusters": {"k_values": [4, 16], "k_default": 16, "methods": ["kmeans", "random"]},
    "model": {"preset": "tiny", "batch": 4, "ar_steps": 20, "aux_steps": 20, "log_every": 5, "val_every": 10,
              "checkpoint_every": 10},
    "seeds": [0, 1, 2],
    "eval": {"num_samples": 20, "batch": 8, "cfg_default": 2.0, "cfg_values": [1.0, 2.0], "argmax": True},
}
# tokenizer + 2 encode + classifier + 3 clusterings; per seed 7 trainings and 7 evaluations
N_UNITS = 1 + 2 + 1 + 3 + 3 * (7 + 7)
PLAN_1SEED = dict(PLAN, seeds=[0])
N_UNITS_1SEED = 1 + 2 + 1 + 3 + 7 + 7


def write_fake(path):
    with open(path, "w") as f:
        f.write("#!" + sys.executable + "\n" + FAKE_CTFGEN)
    os.chmod(path, 0o755)


class ExperimentRunnerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # One complete run of PLAN, copied by the tests that need finished units (saves time).
        cls.tmp_class = tempfile.TemporaryDirectory()
        d = cls.tmp_class.name
        write_fake(os.path.join(d, "fake_ctfgen"))
        with open(os.path.join(d, "plan.json"), "w") as f:
            json.dump(PLAN, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_CTFGEN")}
        env["FAKE_CTFGEN_LOG"] = os.path.join(d, "calls.jsonl")
        cls.full_run = subprocess.run([sys.executable, SCRIPT, "run", "plan.json", "--work", "work", "--ctfgen",
                                       "./fake_ctfgen"], capture_output=True, text=True, env=env, cwd=d, timeout=300)
        with open(env["FAKE_CTFGEN_LOG"]) as f:
            cls.full_run_calls = sum(1 for line in f if line.strip())
        cls.full_work = os.path.join(d, "work")

    @classmethod
    def tearDownClass(cls):
        cls.tmp_class.cleanup()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.fake = os.path.join(self.dir, "fake_ctfgen")
        write_fake(self.fake)
        self.calls = os.path.join(self.dir, "calls.jsonl")
        self.work = os.path.join(self.dir, "work")
        self.plan = self.write_plan(PLAN)

    def tearDown(self):
        self.tmp.cleanup()

    def use_finished_run(self):
        """The class's complete run, copied into this test's work directory (0 calls logged)."""
        shutil.copytree(self.full_work, self.work)

    def write_plan(self, plan, name="plan.json"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(plan, f)
        return path

    def env(self, **extra):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("FAKE_CTFGEN"):
                del e[k]
        e["FAKE_CTFGEN_LOG"] = self.calls
        e.update(extra)
        return e

    def runner(self, *args, plan=None, env=None):
        cmd = [sys.executable, SCRIPT, args[0], plan or self.plan, "--work", self.work] + list(args[1:])
        if args[0] == "run":
            cmd += ["--ctfgen", self.fake]
        return subprocess.run(cmd, capture_output=True, text=True, env=env or self.env(), cwd=self.dir, timeout=300)

    def n_calls(self):
        if not os.path.exists(self.calls):
            return 0
        with open(self.calls) as f:
            return sum(1 for line in f if line.strip())

    def done(self, unit):
        with open(os.path.join(self.work, unit, "done.json")) as f:
            return json.load(f)

    # ------------------------------------------------------------------------------------------

    def test_units_of_the_plan(self):
        units = experiment.build_units(experiment.load_plan(self.plan))
        self.assertEqual(len(units), N_UNITS)
        names = [u.name for u in units]
        # dependencies come before their users
        for i, u in enumerate(units):
            for d in u.deps:
                self.assertLess(names.index(d.name), i, (u.name, d.name))
        # the default CTF run is shared: one stage-1 run per seed serves settings 1-5
        evals_on_default = [u for u in units if u.stage == "eval" and "kmeans_k16_stage1_s0/" in " ".join(u.argv)]
        self.assertEqual(len(evals_on_default), 3)  # cfg 1, cfg 2, cfg 2 argmax
        argmax = [u for u in units if "--aux-argmax" in u.argv]
        self.assertEqual(len(argmax), 3)
        # paths are relative to the work directory
        for u in units:
            for a in u.argv:
                self.assertFalse(os.path.isabs(a), (u.name, a))

    def test_run_then_rerun_skips_finished_units(self):
        self.assertEqual(self.full_run.returncode, 0, self.full_run.stderr)
        self.assertEqual(self.full_run_calls, N_UNITS)  # the --help probe for eval is not logged by the fake
        self.use_finished_run()
        for u in ("tokenizer", "tokens/train", "classifier", "clusters/random_k16", "train/baseline_s2",
                  "eval/kmeans_k16_s1_cfg2_argmax"):
            rec = self.done(u)
            self.assertEqual(rec["unit"], u)
            self.assertIn("result", rec)
            self.assertTrue(rec["key"])
        self.assertEqual(self.done("eval/baseline_s0_cfg2")["result"]["metrics"]["fid"], 10.5)
        self.assertFalse([p for p in os.listdir(os.path.join(self.work, "tokenizer")) if ".tmp" in p])
        r2 = self.runner("run")  # moved work directory, same plan: everything is reused
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertEqual(self.n_calls(), 0)  # nothing ran again
        self.assertEqual(r2.stderr.count("skip "), N_UNITS)

    def test_interrupted_training_resumes_and_finished_units_are_kept(self):
        self.plan = self.write_plan(PLAN_1SEED)
        r = self.runner("run", env=self.env(FAKE_CTFGEN_INTERRUPT="train/kmeans_k16_aux_s0"))
        self.assertEqual(r.returncode, 130, r.stderr)
        self.assertIn("rerun the same command", r.stderr)
        first = self.n_calls()
        unit = os.path.join(self.work, "train/kmeans_k16_aux_s0")
        self.assertFalse(os.path.exists(os.path.join(unit, "done.json")))
        self.assertTrue(os.path.exists(os.path.join(unit, "checkpoint.safetensors")))
        done_before = sum(1 for u in experiment.build_units(experiment.load_plan(self.plan))
                          if os.path.exists(os.path.join(self.work, u.name, "done.json")))
        self.assertEqual(done_before, first - 1)
        r2 = self.runner("run")
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertIn("resume train/kmeans_k16_aux_s0", r2.stderr)
        self.assertEqual(self.n_calls() - first, N_UNITS_1SEED - done_before)
        rec = self.done("train/kmeans_k16_aux_s0")
        self.assertTrue(rec["result"]["resumed"])
        self.assertEqual(rec["attempt"], 2)

    def test_ctrl_c_is_forwarded_once_and_the_run_stops_cleanly(self):
        self.plan = self.write_plan(PLAN_1SEED)
        env = self.env(FAKE_CTFGEN_WAIT="train/baseline_s0")
        cmd = [sys.executable, SCRIPT, "run", self.plan, "--work", self.work, "--ctfgen", self.fake]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=self.dir)
        marker = os.path.join(self.work, "train/baseline_s0", "waiting")
        t0 = time.time()
        while not os.path.exists(marker) and time.time() - t0 < 60 and p.poll() is None:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(marker), "fake training never started")
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("stopped during train/baseline_s0", err)
        with open(os.path.join(self.work, "train/baseline_s0", "signals")) as f:
            self.assertEqual(f.read(), "1")  # exactly one signal reached ctfgen
        self.assertFalse(os.path.exists(os.path.join(self.work, "train/baseline_s0", "done.json")))
        r = self.runner("run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(self.done("train/baseline_s0")["result"]["resumed"])

    def test_changed_unit_is_refused(self):
        self.use_finished_run()
        calls = self.n_calls()
        before = self.done("train/baseline_s0")
        plan = json.loads(json.dumps(PLAN))
        plan["model"]["ar_steps"] = 30
        changed = self.write_plan(plan, "changed.json")
        r = self.runner("run", plan=changed)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("refusing to reuse", r.stderr)
        self.assertIn("train/baseline_s0", r.stderr)
        self.assertIn("--steps 20", r.stderr)
        self.assertIn("--steps 30", r.stderr)
        self.assertIn("an input it reads changed", r.stderr)  # the evaluations of those models
        self.assertEqual(self.n_calls(), calls)  # refused before running anything
        self.assertEqual(self.done("train/baseline_s0"), before)
        # a dry run refuses too; the report of the changed plan ignores the stale units, with a warning
        self.assertEqual(self.runner("run", "--dry-run", plan=changed).returncode, 2)
        out = os.path.join(self.dir, "stale.md")
        self.assertEqual(self.runner("report", "--out", out, plan=changed).returncode, 0)
        with open(out) as f:
            self.assertIn("made by another plan version and are ignored", f.read())

    def test_changed_partial_unit_is_refused(self):
        r = self.runner("run", "--only", "tokenizer,encode,classifier,cluster,train/baseline_s0",
                        env=self.env(FAKE_CTFGEN_INTERRUPT="train/baseline_s0"))
        self.assertEqual(r.returncode, 130)
        plan = json.loads(json.dumps(PLAN))
        plan["model"]["lr"] = 0.01
        r = self.runner("run", plan=self.write_plan(plan, "changed.json"))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("train/baseline_s0: started as", r.stderr)

    def test_dry_run_runs_nothing(self):
        r = self.runner("run", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.n_calls(), 0)
        self.assertIn("train-ar --clusters clusters/kmeans_k16/clusters.safetensors", r.stdout)
        self.assertIn("--aux-argmax", r.stdout)
        self.assertEqual(r.stdout.count("\n# "), N_UNITS - 1)
        self.assertFalse(os.path.exists(self.work))

    def test_only_selects_stages_and_checks_inputs(self):
        r = self.runner("run", "--only", "train")
        self.assertEqual(r.returncode, 2)
        self.assertIn("which is not done", r.stderr)
        r = self.runner("run", "--only", "tokenizer,encode")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.n_calls(), 3)
        r = self.runner("run", "--only", "train/baseline_*")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.n_calls(), 6)

    def test_missing_eval_command_is_reported(self):
        self.plan = self.write_plan(PLAN_1SEED)
        r = self.runner("run", env=self.env(FAKE_CTFGEN_NO_EVAL="1"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("has no 'eval' command", r.stderr)
        self.assertTrue(os.path.exists(os.path.join(self.work, "train/baseline_s0", "done.json")))

    def test_failure_shows_the_error(self):
        r = self.runner("run", env=self.env(FAKE_CTFGEN_FAIL="clusters/random_k16"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("clusters/random_k16 failed", r.stderr)
        self.assertIn("fake failure", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.work, "clusters/random_k16", "done.json")))

    def test_one_runner_per_work_directory(self):
        import fcntl
        os.makedirs(self.work)
        with open(os.path.join(self.work, ".runner.lock"), "w") as held:
            held.write("12345")
            held.flush()
            fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            r = self.runner("run")
        self.assertEqual(r.returncode, 2)
        self.assertIn("another experiment.py run (pid 12345)", r.stderr)
        self.assertEqual(self.n_calls(), 0)

    def test_mean_std(self):
        self.assertEqual(experiment.mean_std([1.0, 2.0, 3.0]), (2.0, 1.0, 3))
        m, s, n = experiment.mean_std([2.0, None, float("nan"), 4.0])
        self.assertEqual((m, n), (3.0, 2))
        self.assertAlmostEqual(s, 2 ** 0.5)
        self.assertEqual(experiment.mean_std([5.0]), (5.0, None, 1))
        self.assertEqual(experiment.mean_std([]), (None, None, 0))
        self.assertEqual(experiment.fmt_mean_std([1.0, 2.0, 3.0], "%.2f"), "2.00 ± 1.00")
        self.assertEqual(experiment.fmt_mean_std([7.0], "%.1f"), "7.0 (n=1)")
        self.assertEqual(experiment.verdict(3, 3), "agrees (3/3 seeds)")
        self.assertEqual(experiment.verdict(0, 3), "does not agree (0/3 seeds)")
        self.assertEqual(experiment.verdict(1, 3), "mixed (1/3 seeds)")
        self.assertEqual(experiment.verdict(0, 3, ties=3), "no difference (3/3 seeds tied)")
        self.assertEqual(experiment.verdict(0, 3, ties=1), "mixed (0/3 seeds, 1 tied)")

    def test_results_aggregate_over_seeds(self):
        self.use_finished_run()
        R = experiment.Results(experiment.load_plan(self.plan), self.work)
        base = R.setting_row(model="baseline")
        self.assertEqual(base["fid"], {0: 10.5, 1: 11.5, 2: 12.5})
        self.assertEqual(experiment.mean_std(base["fid"].values()), (11.5, 1.0, 3))
        ctf = R.setting_row(model="ctf")
        self.assertEqual(experiment.mean_std(ctf["fid"].values()), (5.5 + 0.5, 0.5, 3))
        arg = R.setting_row(model="ctf", argmax=True)
        self.assertEqual(experiment.mean_std(arg["fid"].values())[0], 9.0)
        k4 = R.setting_row(model="ctf", clustering="kmeans_k4")
        self.assertEqual(experiment.mean_std(k4["fid"].values())[0], 12.0)
        cfg1 = R.setting_row(model="baseline", cfg=1.0)
        self.assertEqual(experiment.mean_std(cfg1["is_mean"].values()), (6.0, 0.0, 3))

    def test_report_is_written(self):
        self.use_finished_run()
        out = os.path.join(self.dir, "docs", "results.md")
        os.makedirs(os.path.dirname(out))
        r = self.runner("report", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            text = f.read()
        for heading in ("# Results: tiny", "## 1. Baseline (LlamaGen) vs CTF", "## 2. Number of clusters K",
                        "## 3. Stage 2: sampling vs argmax", "## 4. Clustering method", "## 5. Guidance (CFG) scale",
                        "## Training losses", "## Sample grids", "## Agreement with the paper", "## Cost"):
            self.assertIn(heading, text)
        self.assertIn("| baseline | 3 | 11.50 ± 1.00 |", text)
        self.assertIn("CTF has lower FID than the baseline", text)
        self.assertIn("agrees (3/3 seeds)", text)        # fake CTF FID is lower in every seed
        self.assertIn("no difference (3/3 seeds tied)", text)  # the fake's precision ignores the model
        self.assertIn("like B (CTF slower, 3/3 seeds)", text)
        self.assertNotIn(self.dir, text)                  # no machine paths
        img = os.path.join(self.dir, "docs", "results", "tiny")
        self.assertTrue(os.path.exists(os.path.join(img, "samples_baseline_s0_cfg2.png")))
        self.assertIn("](results/tiny/samples_kmeans_k16_s0_cfg2.png)", text)
        if experiment.try_matplotlib() is not None:
            for fn in ("fid_is_vs_k.png", "fid_is_vs_cfg.png", "loss_curves.png"):
                self.assertTrue(os.path.exists(os.path.join(img, fn)), fn)
                self.assertIn("results/tiny/" + fn, text)

    def test_report_of_partial_run(self):
        self.assertEqual(self.runner("run", "--only", "tokenizer,encode,classifier,cluster").returncode, 0)
        out = os.path.join(self.dir, "partial.md")
        r = self.runner("report", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            text = f.read()
        self.assertIn("**Incomplete:**", text)
        self.assertIn("not measured", text)

    def test_plan_validation(self):
        plan = json.loads(json.dumps(PLAN))
        plan["model"]["val_every"] = 7
        r = self.runner("run", "--dry-run", plan=self.write_plan(plan, "bad.json"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("multiple of model.log_every", r.stderr)
        plan = json.loads(json.dumps(PLAN))
        plan["model"]["stepz"] = 3
        r = self.runner("run", "--dry-run", plan=self.write_plan(plan, "bad2.json"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown field(s) stepz", r.stderr)

    def test_repository_plans_load(self):
        root = os.path.join(os.path.dirname(SCRIPT), os.pardir, "experiments")
        for name in ("fmnist_quick.json", "fmnist_full.json", "emoji_quick.json"):
            plan = experiment.load_plan(os.path.join(root, name))
            units = experiment.build_units(plan)
            self.assertGreaterEqual(len(plan["seeds"]), 3, name)
            self.assertGreaterEqual(len(plan["clusters"]["k_values"]), 3, name)
            for m in ("kmeans", "agglomerative", "random"):
                self.assertIn(m, plan["clusters"]["methods"], name)
            self.assertTrue(any(u.stage == "eval" and "--aux-argmax" in u.argv for u in units), name)
            est = experiment.estimate(plan)
            self.assertGreater(sum(est.values()), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
