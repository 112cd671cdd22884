"""Issue 19's verification pass: hostile probes against the scripts, loaders, envs and saved files.

Not a pytest module (it runs dozens of subprocesses); run it by hand from the checkout root:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 LABELCHAIN_DATA=/work/shared/data python tests/hostile_probes.py [--only PREFIX]

Each probe prints one row: name, verdict, exit code, peak memory (MB) of its process, the last stderr
line. Verdicts: ok (refused in one line, or accepted where acceptance is right), TRACEBACK, CODE-EXEC
(a payload's marker file appeared; run as root, chmod read-only probes prove nothing), MEMORY (over 400 MB above a bare interpreter), ACCEPTED (rc 0 where
a refusal was expected: read the row), HANG (timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
WORK = Path(os.environ.get("PROBE_DIR", "/tmp/hostile_probes"))
MARKER = WORK / "pwned"
DATA = Path(os.environ.get("LABELCHAIN_DATA", "/work/shared/data"))
TINY = ["--dataset", "emotions", "--updates", "4", "--batch-size", "32", "--hidden-size", "16"]
TINY += ["--eval-every", "2", "--checkpoint-every", "2", "--no-progress", "--learners", "freq2rare"]
ROWS: list[tuple[str, str, int, float, str]] = []
MEMORY_LIMIT_MB = 400


class Payload:
    """Unpickling this runs a command that creates MARKER (the classic `__reduce__` attack)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {MARKER}",))


def run(
    argv: list[str], timeout: float = 120, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> tuple[int, str, float]:
    """(rc, stderr+stdout tail, peak RSS MB) of one subprocess, measured by wait4."""
    out = WORK / "out.txt"
    with open(out, "wb") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, env=env or os.environ.copy())
        deadline = time.time() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                return -9, "HANG", usage.ru_maxrss / 1024
            time.sleep(0.05)
    rc = os.waitstatus_to_exitcode(status)
    return rc, out.read_text(errors="replace"), usage.ru_maxrss / 1024


def record(name: str, rc: int, text: str, mb: float, expect_fail: bool = True, baseline: float = 0.0) -> None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1][:150] if lines else ""
    if MARKER.exists():
        verdict = "CODE-EXEC"
        MARKER.unlink()
    elif text == "HANG":
        verdict = "HANG"
    elif "Traceback (most recent call last)" in text:
        verdict = "TRACEBACK"
    elif mb - baseline > MEMORY_LIMIT_MB:
        verdict = "MEMORY"
    elif expect_fail and rc == 0:
        verdict = "ACCEPTED"
    else:
        verdict = "ok"
    ROWS.append((name, verdict, rc, mb, last))
    print(f"{name:44s} {verdict:10s} rc={rc:<4d} {mb:7.0f}MB  {last}", flush=True)


def cli(name: str, script: str, args: list[str], expect_fail: bool = True, timeout: float = 120, **kw: Any) -> str:
    rc, text, mb = run([PY, f"experiments/{script}.py", *args], timeout=timeout, **kw)
    record(name, rc, text, mb, expect_fail)
    return text


# ----------------------------------------------------------------------------- train_rl flags
BAD_FLAGS: dict[str, list[str]] = {
    "updates -1": ["--updates", "-1"],
    "updates nan": ["--updates", "nan"],
    "updates 2**64 (stopped after 1)": ["--updates", str(2**64), "--stop-after-updates", "1"],
    "seed 2**64": ["--seed", str(2**64)],
    "seed -1": ["--seed", "-1"],
    "lr nan": ["--lr", "nan"],
    "lr inf": ["--lr", "inf"],
    "lr -1": ["--lr", "-1"],
    "rl-lr nan": ["--rl-lr", "nan"],
    "dropout 1.5": ["--dropout", "1.5"],
    "dropout nan": ["--dropout", "nan"],
    "batch-size 0": ["--batch-size", "0"],
    "hidden-size 0": ["--hidden-size", "0"],
    "hidden-size 1e12": ["--hidden-size", "1e12"],
    "hidden-size 10**12": ["--hidden-size", str(10**12)],
    "val-fraction 1": ["--val-fraction", "1"],
    "val-fraction nan": ["--val-fraction", "nan"],
    "entropy-coef nan": ["--entropy-coef", "nan"],
    "entropy-coef inf": ["--entropy-coef", "inf"],
    "eval-every 0": ["--eval-every", "0"],
    "checkpoint-every -1": ["--checkpoint-every", "-1"],
    "threads 0": ["--threads", "0"],
    "threads 10**6": ["--threads", "1000000"],
    "learners nosuch": ["--learners", "nosuch"],
    "dataset nosuch": ["--dataset", "nosuch"],
    "dataset /tmp (a dir)": ["--dataset", "/tmp"],
    "dataset /dev/null": ["--dataset", "/dev/null"],
    "predictions-k 0": ["--predictions-k", "0"],
    "predictions-k 10**9": ["--predictions-k", "1000000000"],
    "tree-branching 1": ["--tree-branching", "1", "--learners", "tree"],
    "precision bogus": ["--precision", "bogus"],
    "device cuda:9": ["--device", "cuda:9"],
    "overlap-lambda nan": ["--overlap-lambda", "nan"],
    "guidance-weight inf": ["--guidance-weight", "inf"],
    "weight-decay -1": ["--weight-decay", "-1"],
    "weight-decay nan": ["--weight-decay", "nan"],
    "patience -1": ["--patience", "-1"],
    "stop-after-updates -1": ["--stop-after-updates", "-1"],
    "group-name ../x": ["--group-name", "../x"],
    "group-name a__b": ["--group-name", "a__b"],
    "config missing": ["--config", "/nonexistent/c.json"],
    "ensemble nosuch": ["--ensemble", "nosuch"],
    "rl-weight nan": ["--rl-weight", "nan"],
    "reward bogus": ["--reward", "bogus"],
    "tree-beam 0": ["--tree-beam", "0", "--learners", "tree"],
    "ppo-epochs 0": ["--ppo-epochs", "0"],
    "mcg-restrict -1": ["--mcg-restrict", "-1"],
}


def probe_train_rl_flags() -> None:
    runs = WORK / "flag_runs"
    for name, extra in BAD_FLAGS.items():
        cli(f"train_rl {name}", "train_rl", [*TINY, "--runs-dir", str(runs), *extra])
    bad_config = WORK / "bad_config.json"
    for label, body in (
        ("garbage", "{not json"),
        ("list", "[]"),
        ("wrong type", '{"updates": "many"}'),
        ("unknown key", '{"nosuch": 1}'),
        ("nan", '{"lr": NaN}'),
    ):
        bad_config.write_text(body)
        cli(f"train_rl --config {label}", "train_rl", [*TINY, "--runs-dir", str(runs), "--config", str(bad_config)])
    cli("train_rl --config dir", "train_rl", [*TINY, "--runs-dir", str(runs), "--config", str(WORK)])
    afile = WORK / "a_file"
    afile.write_text("x")
    cli("train_rl --runs-dir is a file", "train_rl", [*TINY, "--runs-dir", str(afile)])
    ro = WORK / "readonly"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    cli("train_rl --runs-dir read-only", "train_rl", [*TINY, "--runs-dir", str(ro / "runs")])
    cli("train_rl --runs-dir read-only itself", "train_rl", [*TINY, "--runs-dir", str(ro)])
    ro.chmod(0o755)


# ----------------------------------------------------------------------------- resume / torch files
def base_run() -> Path:
    runs = WORK / "base_runs_unfinished"  # stopped after 2 of 4 updates: a resume reads its checkpoint
    if not runs.exists():
        argv = [PY, "experiments/train_rl.py", *TINY, "--runs-dir", str(runs), "--stop-after-updates", "2"]
        rc, text, _ = run(argv, timeout=300)
        assert "resume with" in text, text
    return next(p for p in runs.iterdir() if p.is_dir())


def tampered(base: Path, name: str) -> Path:
    copy = WORK / "tampered" / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(base, copy)
    return copy


def crafted_torch_file(path: Path) -> None:
    """A torch-format zip whose data.pkl carries the payload (what torch.save of Payload() writes)."""
    import torch

    torch.save({"x": Payload()}, path)


def probe_resume() -> None:
    base = base_run()
    ckpts = sorted(base.rglob("checkpoint.pt"))
    weights = sorted(base.rglob("*.pt"))
    print(f"# base run {base}: {[str(p.relative_to(base)) for p in weights]}")
    rel_ckpt = ckpts[0].relative_to(base)

    def resume(name: str, folder: Path, extra: list[str] | None = None, expect_fail: bool = True) -> None:
        cli(
            f"resume {name}",
            "train_rl",
            ["--resume", str(folder), "--no-progress", *(extra or [])],
            expect_fail=expect_fail,
        )

    resume("untouched (unfinished run)", tampered(base, "untouched"), expect_fail=False)
    resume("--updates 8 (differs)", tampered(base, "updates"), ["--updates", "8"])
    resume("nonexistent folder", WORK / "nope")
    resume("a file", WORK / "a_file")
    for label, edit in (
        ("updates 'many'", lambda c: c["args"].__setitem__("updates", "many")),
        ("seed 1.5", lambda c: c["args"].__setitem__("seed", 1.5)),
        ("hidden_size null", lambda c: c["args"].__setitem__("hidden_size", None)),
        ("learners str", lambda c: c["args"].__setitem__("learners", "freq2rare")),
        ("lr NaN", lambda c: c["args"].__setitem__("lr", float("nan"))),
        ("hidden_size 10**12", lambda c: c["args"].__setitem__("hidden_size", 10**12)),
        ("seed 2**64", lambda c: c["args"].__setitem__("seed", 2**64)),
        ("args missing", lambda c: c.pop("args")),
        ("derived.data.sha256 edited", lambda c: c["derived"]["data"].__setitem__("sha256", "0" * 64)),
        ("dataset -> scene", lambda c: c["args"].__setitem__("dataset", "scene")),
        ("updates -5", lambda c: c["args"].__setitem__("updates", -5)),
        ("batch_size True", lambda c: c["args"].__setitem__("batch_size", True)),
    ):
        folder = tampered(base, f"config_{label.replace(' ', '_').replace('*', '')}")
        config = json.loads((folder / "config.json").read_text())
        try:
            edit(config)
        except KeyError as error:
            print(f"# config.json has no {error}: keys {sorted(config)}")
            continue
        (folder / "config.json").write_text(json.dumps(config))
        resume(f"config.json {label}", folder, expect_fail=label not in ())
    for label, body in (("garbage", b"{nope"), ("list", b"[]"), ("empty", b"")):
        folder = tampered(base, f"configfile_{label}")
        (folder / "config.json").write_bytes(body)
        resume(f"config.json {label}", folder)
    folder = tampered(base, "config_missing")
    (folder / "config.json").unlink()
    resume("config.json missing", folder)
    folder = tampered(base, "config_dir")
    (folder / "config.json").unlink()
    (folder / "config.json").mkdir()
    resume("config.json is a dir", folder)

    for pt in weights:
        rel = pt.relative_to(base)
        for label in ("truncated", "garbage", "payload", "empty", "dir", "plain dict"):
            folder = tampered(base, f"pt_{label}_{str(rel).replace('/', '_')}")
            target = folder / rel
            data = target.read_bytes()
            if label == "truncated":
                target.write_bytes(data[: len(data) // 2])
            elif label == "garbage":
                target.write_bytes(os.urandom(2000))
            elif label == "payload":
                crafted_torch_file(target)
            elif label == "empty":
                target.write_bytes(b"")
            elif label == "dir":
                target.unlink()
                target.mkdir()
            else:
                import torch

                torch.save({"finished": "yes", "run": [1, 2]}, target)
            # an unfinished run so that the checkpoint is really read
            for _c in folder.rglob("checkpoint.pt"):
                pass
            resume(f"{label} {rel}", folder, ["--updates", "4"], expect_fail=label != "payload" or True)
        folder = tampered(base, f"pt_missing_{str(rel).replace('/', '_')}")
        (folder / rel).unlink()
        resume(f"missing {rel}", folder, expect_fail=False)
    folder = tampered(base, "pickle_in_ckpt_pickle_protocol")
    (folder / rel_ckpt).write_bytes(pickle.dumps(Payload()))
    resume("raw pickle payload (not a zip)", folder)

    payload = WORK / "payload.pt"
    crafted_torch_file(payload)
    cli(
        "train_rl --warm-start payload",
        "train_rl",
        [*TINY, "--runs-dir", str(WORK / "ws"), "--warm-start", str(payload)],
    )
    cli(
        "train_rl --rearrange-warm-start payload",
        "train_rl",
        [*TINY, "--runs-dir", str(WORK / "ws"), "--learners", "rearrange", "--rearrange-warm-start", str(payload)],
    )
    cli(
        "train_rl --overlap-from payload",
        "train_rl",
        [*TINY, "--runs-dir", str(WORK / "ws"), "--overlap-from", str(payload)],
    )
    garbage = WORK / "garbage.pt"
    garbage.write_bytes(os.urandom(500))
    cli(
        "train_rl --warm-start garbage",
        "train_rl",
        [*TINY, "--runs-dir", str(WORK / "ws"), "--warm-start", str(garbage)],
    )
    cli("train_rl --warm-start dir", "train_rl", [*TINY, "--runs-dir", str(WORK / "ws"), "--warm-start", str(WORK)])
    cli(
        "train_rl --warm-start missing", "train_rl", [*TINY, "--runs-dir", str(WORK / "ws"), "--warm-start", "/nope.pt"]
    )
    cli(
        "train_rl --overlap-from base run",
        "train_rl",
        [*TINY, "--runs-dir", str(WORK / "ws"), "--overlap-from", str(base)],
        expect_fail=False,
    )

    # read-only run folder on resume (of an unfinished run)
    folder = tampered(base, "readonly_resume")
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    folder.chmod(0o555)
    resume("read-only folder, --updates 8 given", folder, ["--updates", "8"])
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755)
    # output to a file: no carriage-return flood
    log = WORK / "log.txt"
    with open(log, "wb") as handle:
        subprocess.run(
            [
                PY,
                "experiments/train_rl.py",
                *TINY[:-3],
                "--progress",
                "--learners",
                "freq2rare",
                "--runs-dir",
                str(WORK / "logruns"),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    text = log.read_bytes()
    crs = text.count(b"\r")
    verdict = "ok" if crs < 5 else "CR-FLOOD"
    ROWS.append(("train_rl > log (progress on)", verdict, 0, 0, f"{crs} CRs, {len(text)} bytes"))
    print(f"{'train_rl > log (progress on)':44s} {verdict:10s} {crs} CRs in {len(text)} bytes")


def probe_signals() -> None:
    for sig, label in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
        runs = WORK / f"sig_{label}"
        proc = subprocess.Popen(
            [PY, "experiments/train_rl.py", *TINY, "--updates", "400", "--runs-dir", str(runs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        time.sleep(9)
        proc.send_signal(sig)
        time.sleep(0.05)
        proc.send_signal(sig)
        out = proc.communicate(timeout=120)[0].decode(errors="replace")
        record(f"train_rl {label} twice", proc.returncode, out, 0, expect_fail=False)
        folders = [p for p in runs.iterdir() if p.is_dir()] if runs.exists() else []
        if folders:
            cli(
                f"resume after {label} twice",
                "train_rl",
                ["--resume", str(folders[0]), "--no-progress"],
                expect_fail=False,
            )


# ----------------------------------------------------------------------------- grid scripts
def probe_grids() -> None:
    grids = {
        "compare_orderings": (
            ["--quick", "--datasets", "emotions", "--seeds", "0"],
            [
                ["--seeds", "-1"],
                ["--jobs", "0"],
                ["--datasets", "nosuch"],
                ["--updates", "nan"],
                ["--seeds", str(2**64)],
                ["--learners", "nosuch"],
                ["--peers", "nosuch"],
                ["--backend", "bogus"],
                ["--jobs", "-3"],
                ["--out-dir", "/proc/x"],
            ],
        ),
        "compare_trees": (
            ["--datasets", "emotions", "--seeds", "0"],
            [
                ["--seeds", "-1"],
                ["--jobs", "0"],
                ["--datasets", "nosuch"],
                ["--hidden-size", "0"],
                ["--lr", "nan"],
                ["--shapes", "bogus"],
                ["--tree-beam", "0"],
                ["--rearrange-epochs", "-1"],
                ["--outputs", "bogus"],
                ["--val-fraction", "2"],
            ],
        ),
        "strength": (
            ["--datasets", "emotions", "--seeds", "0", "--preset", "small", "--epochs", "1"],
            [
                ["--seeds", "-1"],
                ["--epochs", "-1"],
                ["--datasets", "nosuch"],
                ["--hidden-size", "0"],
                ["--folds", "1"],
                ["--max-train-docs", "0"],
                ["--min-val-docs", "-1"],
                ["--preset", "bogus"],
                ["--val-fraction", "nan"],
                ["--fixed", "nosuch"],
            ],
        ),
    }
    for script, (base_args, bads) in grids.items():
        for extra in bads:
            out = WORK / f"grid_{script}"
            where = ["--runs-dir", str(out / "runs")]
            where += ["--out-dir", str(out)]
            if "--out-dir" in extra:
                where = ["--runs-dir", str(out / "runs")]
            cli(f"{script} {' '.join(extra)}", script, [*base_args, *where, *extra], timeout=60)


# ----------------------------------------------------------------------------- in-process probes (loaders, envs, files)
CHILD = r"""
import sys, json, traceback
sys.path.insert(0, ".")
kind, arg = sys.argv[1], json.loads(sys.argv[2])
from labelchain.envs.data.errors import DataFormatError, DataNotFoundError
from labelchain.envs.predictions import PredictionsError
ONE_LINE = (DataFormatError, DataNotFoundError, PredictionsError)
try:
    if kind == "load":
        from labelchain.envs.data.loading import load_dataset
        ds = load_dataset(arg["path"], cache=False)
        print("LOADED", getattr(ds, "name", ""), ds.X_train.shape if hasattr(ds, "X_train") else "")
    elif kind == "preds":
        from labelchain.envs.predictions import load_predictions
        p = load_predictions(arg["path"])
        print("LOADED", p.top_ids.shape, int(p.top_ids.min()), int(p.top_ids.max()), p.doc_ids.shape)
    elif kind == "env":
        exec(arg["code"])
    elif kind == "prior":
        from pathlib import Path
        from labelchain.experiments.prior_cache import load_prior
        prior, why = load_prior(Path(arg["path"]), arg["key"])
        print("PRIOR", prior is not None, why)
except ONE_LINE as e:
    sys.exit(f"error: {e}")
except ValueError as e:
    sys.exit(f"ValueError: {e}")
"""


def child(name: str, kind: str, arg: dict[str, Any], expect_fail: bool = True, baseline: float = 0.0) -> str:
    rc, text, mb = run([PY, "-c", CHILD, kind, json.dumps(arg)], timeout=120)
    record(name, rc, text, mb, expect_fail, baseline=baseline)
    return text


def probe_loaders() -> None:
    src = DATA / "mulan" / "emotions"
    rc, _, bare = run([PY, "-c", CHILD, "env", json.dumps({"code": "import labelchain.envs.data.loading"})])
    print(f"# bare loader process: {bare:.0f} MB")

    def variant(name: str, edit: Any, expect_fail: bool = True) -> None:
        folder = WORK / "loaders" / name.replace(" ", "_").replace("/", "_")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(src, folder)
        train = folder / "emotions-train.arff"
        edit(folder, train)
        child(f"load {name}", "load", {"path": str(folder)}, expect_fail, baseline=bare)

    def lines_edit(fn: Any) -> Any:
        def edit(folder: Path, train: Path) -> None:
            lines = train.read_text().splitlines()
            data = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
            train.write_text("\n".join(fn(lines, data)) + "\n")

        return edit

    def set_value(value: str) -> Any:
        def fn(lines: list[str], d: int) -> list[str]:
            row = lines[d].split(",")
            row[0] = value
            lines[d] = ",".join(row)
            return lines

        return lines_edit(fn)

    variant("truncated arff", lambda f, t: t.write_bytes(t.read_bytes()[: t.stat().st_size // 2]))
    variant("empty arff", lambda f, t: t.write_bytes(b""))
    variant("binary garbage arff", lambda f, t: t.write_bytes(os.urandom(5000)))
    variant("arff is a dir", lambda f, t: (t.unlink(), t.mkdir()))
    variant("xml missing", lambda f, t: (f / "emotions.xml").unlink())
    variant("xml garbage", lambda f, t: (f / "emotions.xml").write_text("<labels><label"))
    variant(
        "xml billion laughs",
        lambda f, t: (f / "emotions.xml").write_text(
            '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
            '<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
            '<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">]>'
            '<labels xmlns="http://mulan.sourceforge.net/labels"><label name="&h;"></label></labels>'
        ),
    )
    variant("20k-digit value", set_value("1" * 20000))
    variant("2M-digit value", set_value("1" * 2_000_000))
    variant("arabic-indic digit", set_value("\u0661\u0662"))
    variant("fullwidth digit", set_value("\uff11"))
    variant("underscore number", set_value("1_000"))
    variant("nan value", set_value("nan"), expect_fail=False)
    variant("inf value", set_value("inf"))
    variant("1e400 value", set_value("1e400"))
    variant("label 2", lines_edit(lambda ls, d: [*ls[:d], ls[d].rsplit(",", 1)[0] + ",2", *ls[d + 1 :]]))
    variant("label 0.5", lines_edit(lambda ls, d: [*ls[:d], ls[d].rsplit(",", 1)[0] + ",0.5", *ls[d + 1 :]]))
    variant("short row", lines_edit(lambda ls, d: [*ls[:d], ls[d].split(",", 1)[0], *ls[d + 1 :]]))
    variant("long row", lines_edit(lambda ls, d: [*ls[:d], ls[d] + ",1,2", *ls[d + 1 :]]))
    variant("duplicate rows", lines_edit(lambda ls, d: [*ls, *ls[d:]]), expect_fail=False)
    variant("duplicate attribute", lines_edit(lambda ls, d: [*ls[:3], ls[2], *ls[3:]]))
    variant(
        "duplicate label in xml",
        lambda f, t: (f / "emotions.xml").write_text(
            (f / "emotions.xml")
            .read_text()
            .replace('<label name="happy-pleased"></label>', '<label name="amazed-suprised"></label>')
        ),
    )
    variant("no data rows", lines_edit(lambda ls, d: ls[:d]))
    variant(
        "BOM + CRLF",
        lambda f, t: t.write_bytes(b"\xef\xbb\xbf" + t.read_bytes().replace(b"\n", b"\r\n")),
        expect_fail=False,
    )
    variant("nul bytes", lambda f, t: t.write_bytes(t.read_bytes().replace(b",", b"\x00,", 50)))
    variant("latin-1 bytes", lambda f, t: t.write_bytes(t.read_bytes().replace(b"@relation", b"@relation \xff\xfe", 1)))
    long_attr = lines_edit(lambda ls, d: [ls[0], *(f"@attribute {'a' * 200000}{i} numeric" for i in range(3)), *ls[1:]])
    variant("200KB attribute names", long_attr)
    variant("sparse huge index", lines_edit(lambda ls, d: [*ls[:d], "{4000000000 1}", *ls[d + 1 :]]))
    variant("sparse negative index", lines_edit(lambda ls, d: [*ls[:d], "{-1 1}", *ls[d + 1 :]]))

    xc = WORK / "loaders" / "xc"
    xc.mkdir(parents=True, exist_ok=True)
    for label, body in (
        ("huge header", "3 4000000000 4000000000\n0 1:1\n"),
        ("header 2**64", f"1 {2**64} 5\n0 1:1\n"),
        ("negative header", "-1 5 5\n0 1:1\n"),
        ("50k-char token", "1 5 5\n0 " + "1" * 50000 + ":1\n"),
        ("repeated label", "1 5 5\n1,1 1:1\n"),
        ("feature out of range", "1 5 5\n0 9:1\n"),
        ("value nan", "1 5 5\n0 1:nan\n"),
        ("empty", ""),
        ("unicode digits", "1 5 5\n\u0661 1:1\n"),
    ):
        path = xc / f"{label.replace(' ', '_')}.txt"
        path.write_text(body)
        child(f"load xc {label}", "load", {"path": str(path)}, baseline=bare)
    many_long = xc / "many_long.txt"
    many_long.write_text("2000 5 5\n" + "".join(f"0 1:{'1' * 150}\n" for _ in range(2000)))
    child(
        f"load xc 2000 rows x 150-digit values ({many_long.stat().st_size // 1024} KB)",
        "load",
        {"path": str(many_long)},
        baseline=bare,
    )


def probe_envs() -> None:
    setup = (
        "import gymnasium as gym, labelchain, numpy as np\n"
        "env = gym.make('LabelChain-v0', dataset='emotions'); env.reset(seed=0)\n"
    )
    cases = {
        "action 1.5": "env.step(1.5)",
        "action -1": "env.step(-1)",
        "action 10**20": "env.step(10**20)",
        "action 'a'": "env.step('a')",
        "action None": "env.step(None)",
        "action nan": "env.step(float('nan'))",
        "action np.array([1,2])": "env.step(np.array([1, 2]))",
        "action True": "env.step(True)",
        "step after end": "env.step(env.unwrapped.task.n_labels)\nenv.step(0)",
        "make bad dataset": "gym.make('LabelChain-v0', dataset='nosuch')",
        "make bad split": "gym.make('LabelChain-v0', dataset='emotions', split='val')",
        "make max_steps -1": "gym.make('LabelChain-v0', dataset='emotions', max_steps=-1).reset()",
        "make max_steps 0": "gym.make('LabelChain-v0', dataset='emotions', max_steps=0).reset()",
        "make reward bogus": "gym.make('LabelChain-v0', dataset='emotions', reward='bogus')",
        "make reward_mode bogus": "gym.make('LabelChain-v0', dataset='emotions', reward_mode='bogus')",
        "make unknown kwarg": "gym.make('LabelChain-v0', dataset='emotions', nosuch=1)",
        "make doc_order bogus": "gym.make('LabelChain-v0', dataset='emotions', doc_order='x')",
        "vec action wrong shape": (
            "v = gym.make_vec('LabelChain-v0', num_envs=2, vectorization_mode='vector_entry_point',"
            " dataset='emotions'); v.reset(seed=0); v.step(np.array([1]))"
        ),
        "vec action floats": (
            "v = gym.make_vec('LabelChain-v0', num_envs=2, vectorization_mode='vector_entry_point',"
            " dataset='emotions'); v.reset(seed=0); v.step(np.array([1.5, 0.2]))"
        ),
        "vec action out of range": (
            "v = gym.make_vec('LabelChain-v0', num_envs=2, vectorization_mode='vector_entry_point',"
            " dataset='emotions'); v.reset(seed=0); v.step(np.array([99, -1]))"
        ),
    }
    for name, code in cases.items():
        child(f"env {name}", "env", {"code": setup + code})


def write_npz(path: Path, **arrays: Any) -> None:
    import numpy as np

    np.savez(path, **arrays)


def probe_predictions() -> None:
    import numpy as np

    folder = WORK / "preds"
    folder.mkdir(parents=True, exist_ok=True)
    good = next((ROOT / "experiments/results/predictions").rglob("*.npz"))
    with np.load(good, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    child("preds good file", "preds", {"path": str(good)}, expect_fail=False)

    def variant(name: str, change: Any, expect_fail: bool = True) -> None:
        a = {k: v.copy() for k, v in arrays.items()}
        m = json.loads(json.dumps(meta))
        change(a, m)
        if m != meta:
            a["meta"] = np.array(json.dumps(m))
        path = folder / f"{name.replace(' ', '_')}.npz"
        write_npz(path, **a)
        child(f"preds {name}", "preds", {"path": str(path)}, expect_fail)

    variant("top_ids out of range", lambda a, m: a["top_ids"].__setitem__((0, 0), m["n_labels"] + 5))
    variant("top_ids negative", lambda a, m: a["top_ids"].__setitem__((0, 0), -1))
    variant("top_ids 2**32+1 (int64)", lambda a, m: a.__setitem__("top_ids", a["top_ids"].astype(np.int64) + 2**32))
    variant("top_ids float 1.5", lambda a, m: a.__setitem__("top_ids", a["top_ids"] + 0.5))
    variant("top_scores nan", lambda a, m: a.__setitem__("top_scores", a["top_scores"] * np.nan))
    variant("doc_ids wrong length", lambda a, m: a.__setitem__("doc_ids", a["doc_ids"][:-1]))
    variant("label_freq wrong length", lambda a, m: a.__setitem__("label_freq", np.ones(3)))
    variant("meta not a dict", lambda a, m: a.__setitem__("meta", np.array("[1, 2]")))
    variant("meta n_docs negative", lambda a, m: m.__setitem__("n_docs", -1))
    variant("meta k string", lambda a, m: m.__setitem__("k", "3"))
    variant("meta n_labels huge", lambda a, m: m.__setitem__("n_labels", 10**12))
    variant("object array", lambda a, m: a.__setitem__("doc_ids", np.array([Payload()], dtype=object)))
    variant("gold indices negative", lambda a, m: a.__setitem__("gold_indices", a["gold_indices"].astype(np.int64) - 1))
    variant(
        "gold indices int64 wrap",
        lambda a, m: a.__setitem__("gold_indices", a["gold_indices"].astype(np.int64) + 2**32),
    )
    variant("gold indptr decreasing", lambda a, m: a["gold_indptr"].__setitem__(1, a["gold_indptr"][2] + 1))
    trunc = folder / "truncated.npz"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    child("preds truncated", "preds", {"path": str(trunc)})
    pick = folder / "pickle.npz"
    pick.write_bytes(pickle.dumps(Payload()))
    child("preds raw pickle", "preds", {"path": str(pick)})
    bomb = folder / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("top_ids.npy", "w", force_zip64=True) as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "<i4", "fortran_order": False, "shape": (200_000_000, 1)}
            )
            chunk = bytes(1 << 20)
            for _ in range(800):
                handle.write(chunk)
        z.writestr("meta.npy", b"")
    child(f"preds zip bomb ({bomb.stat().st_size // 1024} KB)", "preds", {"path": str(bomb)})
    adir = folder / "adir.npz"
    adir.mkdir(exist_ok=True)
    child("preds a directory", "preds", {"path": str(adir)})


def probe_prior_cache() -> None:
    import numpy as np

    folder = WORK / "prior" / "entry"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    key = {"dataset_hash": "abc", "peer": "ovr"}
    (folder / "meta.json").write_text("{garbage")
    child("prior meta garbage", "prior", {"path": str(folder), "key": key}, expect_fail=False)
    (folder / "meta.json").write_text("[]")
    child("prior meta list", "prior", {"path": str(folder), "key": key}, expect_fail=False)
    np.save(folder / "x.npy", np.array([1]))
    (folder / "meta.json").unlink()
    (folder / "meta.json").mkdir()
    child("prior meta dir", "prior", {"path": str(folder), "key": key}, expect_fail=False)


PROBES = {
    "flags": probe_train_rl_flags,
    "resume": probe_resume,
    "signals": probe_signals,
    "grids": probe_grids,
    "loaders": probe_loaders,
    "envs": probe_envs,
    "preds": probe_predictions,
    "prior": probe_prior_cache,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=list(PROBES))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        PROBES[name]()
    bad = [row for row in ROWS if row[1] != "ok"]
    print(f"\n{len(ROWS)} probes, {len(bad)} not ok")
    for row in bad:
        print(f"  {row[0]}: {row[1]} (rc {row[2]}): {row[4]}")


if __name__ == "__main__":
    main()
