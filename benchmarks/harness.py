"""What every benchmark item shares: interleaved timing, progress lines, tables, the machine.

Timings on a shared 2-core CPU are noisy, so nothing here reports a lone number: every timed
function is warmed up first (its first call traces and compiles the `tf.function`), then the
contenders are called in turn, A, B, A, B, ..., so that a burst of load from another process
hits all of them, and the median of the repeats is kept. Items report ratios of contenders
measured in the same run; absolute numbers only mean something next to `machine()`.
"""

import os
import platform
import statistics
import sys
import time
from pathlib import Path

from resnet_lab import hardware

ROOT = Path(__file__).resolve().parents[1]
_START = time.perf_counter()


def default_data():
    """`$RESNET_LAB_DATA`, else `../shared/data/17flowers.tgz` next to the repository."""
    return os.environ.get("RESNET_LAB_DATA") or str(
        ROOT.parent / "shared" / "data" / "17flowers.tgz"
    )


def log(message):
    """Print a progress line stamped with the seconds since the benchmark started."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", flush=True)


def elapsed():
    """Seconds since the benchmark process started."""
    return time.perf_counter() - _START


def interleaved(functions, repeats, warmup=1, what=""):
    """Time callables side by side: warm each up, then call them in rounds A, B | B, A | ...

    Args:
        functions: dict `name -> callable`; each call must block until its work is done
            (fetch a result with `.numpy()` or `float()`).
        repeats: timed calls of each function.
        warmup: untimed calls of each function first (the first one compiles).
        what: label for the progress lines.

    Returns:
        dict `name -> {"median_s", "times_s", "first_call_s"}`: the median and every timed
        call in seconds, and the first (compiling) warm-up call.
    """
    first = {}
    for name, function in functions.items():
        log(f"{what} warm-up: {name}")
        for i in range(warmup):
            start = time.perf_counter()
            function()
            if i == 0:
                first[name] = time.perf_counter() - start
    times = {name: [] for name in functions}
    for repeat in range(repeats):
        # A, B, then B, A: whatever the position in a round costs or gains (a cache
        # warmed by the previous call, load that builds up) falls on each in turn.
        order = list(functions) if repeat % 2 == 0 else list(functions)[::-1]
        for name in order:
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
        shown = ", ".join(f"{name} {t[-1]:.3g} s" for name, t in times.items())
        log(f"{what} repeat {repeat + 1}/{repeats}: {shown}")
    return {
        name: {
            "median_s": statistics.median(t),
            "times_s": [round(v, 5) for v in t],
            "first_call_s": round(first.get(name, float("nan")), 3),
        }
        for name, t in times.items()
    }


def paired_speed_ratio(timed, a, b):
    """Median over rounds of `b`'s time / `a`'s time: how much faster `a` runs than `b`.

    Each round times `a` and `b` back to back, so a ratio within a round is measured under
    the same load; the median of those ratios resists load that drifts during the run
    better than the ratio of the two medians.
    """
    return statistics.median(tb / ta for ta, tb in zip(timed[a]["times_s"], timed[b]["times_s"]))


def table(title, headers, rows):
    """Print a plain-text table: a title line, a header row and aligned rows."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  " + "  ".join(f"{h:>{w}}" for h, w in zip(headers, widths)))
    for row in cells:
        print("  " + "  ".join(f"{v:>{w}}" for v, w in zip(row, widths)))
    print(flush=True)


def _cell(value):
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def machine():
    """A JSON-ready description of the machine and software the numbers were measured on."""
    import keras
    import numpy as np
    import tensorflow as tf

    try:
        meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0]
        memory_gib = round(int(meminfo.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        memory_gib = None
    return {
        "cpu_model": hardware.cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": hardware.usable_cores(),
        "memory_gib": memory_gib,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "gpus_visible": len(tf.config.list_physical_devices("GPU")),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 Linux)"),
    }
