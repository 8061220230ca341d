#!/usr/bin/env python3
"""Good-path checks of ctfgen commands whose bodies live in apps/ (not reachable from the
GoogleTest suites), on the tiny fixtures of bad_inputs.py.

Usage: good_paths.py CTFGEN

Each check runs the real binary and asserts on its outputs (files and JSON), so a wiring
mistake in a command (an option not passed on, a variant not added) fails here.
Only the Python standard library is used.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bad_inputs  # noqa: E402  (fixtures and the environment ctfgen runs in)


def run(binary, argv, cwd):
    r = subprocess.run(bad_inputs.ctfgen_argv(binary, ["-v", "0"] + argv), cwd=cwd,
                       env=bad_inputs.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError("ctfgen %s exited %d:\n%s" % (" ".join(argv), r.returncode, r.stderr))
    return r.stdout


def check_redundancy(binary, d):
    """Every cluster file gets its own row and, by default, a random control row (a random
    partition with that file's K and cluster sizes); --no-random-control drops the controls."""
    run(binary, ["cluster", "--vq", "vq.safetensors", "--k", "2", "--restarts", "1", "--out",
                 "k2.safetensors"], d)
    common = ["redundancy", "--vq", "vq.safetensors", "--clusters",
              "clusters.safetensors,k2.safetensors", "--dataset", "imagefolder", "--data-path",
              "imgs", "--split", "train", "--batch", "5", "--strip-images", "3"]
    out = json.loads(run(binary, common + ["--out", "red", "--json"], d))
    rows = out["rows"] if isinstance(out, dict) else out
    names = [r["name"] for r in rows]
    assert names == ["reconstruction", "clusters.safetensors", "random(clusters.safetensors)",
                     "k2.safetensors", "random(k2.safetensors)"], names
    by = {r["name"]: r for r in rows}
    for f, k in (("clusters.safetensors", 4), ("k2.safetensors", 2)):
        ctl = by["random(%s)" % f]
        assert ctl["method"] == "random" and ctl["k"] == k, ctl
        assert ctl["images"] == by[f]["images"] > 0, (ctl, by[f])
        assert ctl["tokens"] == by[f]["tokens"] > 0, (ctl, by[f])
        # The control's clusters are not made of nearby codes: replacements land farther away.
        assert ctl["mean_sq_code_dist"] > by[f]["mean_sq_code_dist"], (ctl, by[f])
    for n in ("redundancy.json", "strip.png"):
        assert os.path.getsize(os.path.join(d, "red", n)) > 0, n
    saved = json.load(open(os.path.join(d, "red", "redundancy.json")))
    assert saved == out, "redundancy.json differs from --json output"

    text = run(binary, common + ["--out", "red3"], d)  # the table: every row, no "nan" cells
    for name in ("reconstruction", "random(clusters.safetensors)", "random(k2.safetensors)"):
        assert name in text, (name, text)
    assert "nan" not in text, text

    out = json.loads(run(binary, common + ["--out", "red2", "--json", "--no-random-control"], d))
    rows = out["rows"] if isinstance(out, dict) else out
    assert [r["name"] for r in rows] == ["reconstruction", "clusters.safetensors",
                                         "k2.safetensors"], rows


CHECKS = [check_redundancy]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="ctfgen_good_") as root:
        d = bad_inputs.make_fixtures(binary, root)
        failed = 0
        for check in CHECKS:
            try:
                check(binary, d)
                print("PASS", check.__name__)
            except AssertionError as e:
                failed += 1
                print("FAIL", check.__name__, e)
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
