"""Item 6: wall time and peak memory of whole runs, each in a child process.

The peak is the largest resident set of the command and of everything it started (for the
notebook: the Jupyter kernel), from the `rusage` that `os.wait4` returns for that child
alone, so the benchmark process itself does not count (see `measure`).

    python -m benchmarks.end_to_end rusage REPORT COMMAND...   run COMMAND, write its peak
    python -m benchmarks.end_to_end notebook NOTEBOOK WORKDIR  execute a notebook (nbclient)
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ROOT, log

NOTEBOOK = ROOT / "ResNet50.ipynb"


def weights_status():
    """What this machine has for the real transfer run: the cached ImageNet file, or not."""
    from resnet_lab.nn import porting

    path = porting.keras_cache_folder() / porting.weights_file("resnet50", include_top=False)
    if path.is_file():
        return f"ImageNet weights found at {path}"
    return f"no ImageNet weights in Keras' cache ({path})"


def measure(command, env=None, log_path=None):
    """Run `command` from the repository root; return wall time, peak RSS and exit status.

    The command runs under a small Python parent (`python -m benchmarks.end_to_end rusage`)
    that reports the `os.wait4` rusage of its child. Measured straight from this process,
    the peak would be wrong: a child forked from a large process inherits that process's
    resident set until `exec`, and Linux keeps the larger of the two as the child's peak.
    """
    log_path = Path(log_path) if log_path else Path(os.devnull)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("r", suffix=".json") as report, open(log_path, "w") as output:
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.end_to_end",
                "rusage",
                report.name,
                *map(str, command),
            ],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
        wall = time.perf_counter() - start
        measured = json.loads(report.read() or "{}")
    return {
        "command": " ".join(map(str, command)),
        "wall_s": round(wall, 2),
        "peak_rss_mib": measured.get("peak_rss_mib"),
        "returncode": measured.get("returncode", done.returncode),
        "log": str(log_path),
    }


def _rusage(report, command):
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    Path(report).write_text(
        json.dumps(
            {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "returncode": child.returncode}
        )
    )
    return child.returncode


def tiny_archive(folder):
    """A synthetic 17flowers archive (`resnet_lab.data.synthetic.make_archive`: 1,360 8x8
    JPEGs)."""
    from resnet_lab.data.synthetic import make_archive

    return make_archive(Path(folder) / "17flowers.tgz")


def notebook(archive, workdir, logs):
    """Execute ResNet50.ipynb in smoke mode (`RESNET_LAB_SMOKE=1`) against `archive`."""
    log(f"6/7 end to end: smoke notebook (nbclient, data {archive})")
    env = {
        "RESNET_LAB_SMOKE": "1",
        "RESNET_LAB_DATA": str(archive),
        "RESNET_LAB_CACHE": str(Path(workdir) / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = measure(
        [sys.executable, "-m", "benchmarks.end_to_end", "notebook", NOTEBOOK, workdir],
        env,
        Path(logs) / "notebook.log",
    )
    return {**result, "data": str(archive), "env": "RESNET_LAB_SMOKE=1"}


def cli_train(model, archive, workdir, logs, extra=()):
    """`python -m resnet_lab train --model MODEL` into a fresh cache; wall time and peak RSS."""
    out = Path(workdir) / f"{model}_run"
    log(f"6/7 end to end: python -m resnet_lab train --model {model} {' '.join(extra)}")
    command = [
        sys.executable,
        "-m",
        "resnet_lab",
        "train",
        "--model",
        model,
        "--data",
        str(archive),
        "--cache",
        str(Path(workdir) / "cache"),
        "--out",
        str(out),
        *extra,
    ]
    result = measure(command, {"TF_CPP_MIN_LOG_LEVEL": "3"}, Path(logs) / f"{model}.log")
    if (out / "results.json").is_file():
        saved = json.loads((out / "results.json").read_text())
        result.update(
            {
                k: saved.get(k)
                for k in (
                    "wall_time_s",
                    "train_accuracy",
                    "val_accuracy",
                    "test_accuracy",
                    "weights",
                )
            }
        )
        result["fit_wall_time_s"] = result.pop("wall_time_s")
    return result


def run(archive, out, quick=False, full=False):
    """Item 6: smoke notebook (not with `quick`), and under `full` the CLI training runs."""
    logs = Path(out) / "logs"
    results = {
        "settings": {
            "peak_memory": "ru_maxrss of the child and its descendants (os.wait4)",
            "quick": quick,
            "full": full,
        }
    }
    with tempfile.TemporaryDirectory(prefix="e2e-", dir=out) as workdir:
        if quick:
            results["notebook"] = {
                "measured": False,
                "reason": "skipped in --quick (~70 s): run without --quick",
            }
            # A short real CLI run keeps the measurement path itself tested.
            log("6/7 end to end: python -m resnet_lab fetch (quick stand-in)")
            results["cli_fetch"] = measure(
                [
                    sys.executable,
                    "-m",
                    "resnet_lab",
                    "fetch",
                    "--data",
                    str(archive),
                    "--cache",
                    str(Path(workdir) / "cache"),
                ],
                {"TF_CPP_MIN_LOG_LEVEL": "3"},
                logs / "fetch.log",
            )
        else:
            results["notebook"] = notebook(tiny_archive(workdir), workdir, logs)
        if full:
            results["scratch_full"] = cli_train("scratch", archive, workdir, logs)
            results["transfer_full"] = {
                **cli_train("transfer", archive, workdir, logs, ("--weights", "none")),
                "label": "--weights none: random init, NOT transfer learning; timing only "
                f"({weights_status()})",
            }
        else:
            results["scratch_full"] = {
                "measured": False,
                "reason": "opt-in: --full (the full 100-epoch scratch run takes 10+ minutes)",
            }
            results["transfer_full"] = {
                "measured": False,
                "reason": f"opt-in: --full; "
                f"{weights_status()}; --full times it with "
                "--weights none, labelled",
            }
    return results


def summary(result):
    """Item 6's headline: wall time and peak memory of each run measured."""
    return [
        f"{name}: {r['wall_s']:.0f} s, peak {r['peak_rss_mib']:.0f} MiB (exit {r['returncode']})"
        for name, r in result.items()
        if isinstance(r, dict) and "wall_s" in r
    ]


def _execute_notebook(path, workdir):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    print(text)
    if "MISMATCH" in text:
        raise SystemExit("the notebook printed MISMATCH")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "rusage":
        sys.exit(_rusage(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) == 4 and sys.argv[1] == "notebook":
        sys.exit(_execute_notebook(sys.argv[2], sys.argv[3]))
    raise SystemExit(
        "usage: python -m benchmarks.end_to_end rusage REPORT COMMAND... | "
        "notebook NOTEBOOK WORKDIR"
    )
