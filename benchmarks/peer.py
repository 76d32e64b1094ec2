"""Item 10 (optional): the lab's recipe step against a PyTorch peer of it on the same CPU.

The peer is `benchmarks/peer_torch.py`, the recipe's network and training step written in
PyTorch, run in a subprocess by an interpreter that imports `torch`: this one, else the one
`$RESNET_LAB_TORCH_PYTHON` names (e.g. a separate virtual environment; torch is not a
dependency of the lab). Each round runs the peer once (it times float32 and bfloat16 autocast
after its own warm-up) and times the lab's recipe step (`train_step.scratch_train_function`)
in float32 and in the recipe's policy, peer first in one round and last in the next, so that
load from other jobs falls on both. Reported per compute dtype: the medians over rounds of
images/s and their ratio lab / PyTorch. Without an interpreter that imports torch the item
says so, `{"status": "not measured", "reason": ...}`, and times nothing.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import log, table
from benchmarks.scratch import compute_dtype
from benchmarks.train_step import RECIPE, scratch_train_function
from resnet_lab import hardware

SCRIPT = Path(__file__).with_name("peer_torch.py")
TORCH_PYTHON = "RESNET_LAB_TORCH_PYTHON"


class PeerError(RuntimeError):
    """The peer script failed or printed no JSON line."""


def torch_python(environ=None):
    """The interpreter to run the peer with, and why there is none.

    Args:
        environ: the environment to read `$RESNET_LAB_TORCH_PYTHON` from (`os.environ`).

    Returns:
        `(python, reason)`: this interpreter if it imports torch, else the file
        `$RESNET_LAB_TORCH_PYTHON` names if it exists, with `reason` `None`; or `None` and
        the reason the peer cannot run.
    """
    environ = os.environ if environ is None else environ
    if importlib.util.find_spec("torch") is not None:
        return sys.executable, None
    named = environ.get(TORCH_PYTHON)
    if named and Path(named).is_file():
        return named, None
    where = f"${TORCH_PYTHON} names no file: {named}" if named else f"${TORCH_PYTHON} is unset"
    return None, f"torch is not importable in this interpreter ({sys.executable}) and {where}"


def not_measured(reason):
    """The item's result when the peer cannot run, printed as such."""
    print(f"\n10. Lab against PyTorch: not measured: {reason}\n", flush=True)
    return {"status": "not measured", "measured": False, "reason": reason}


def peer_command(python, script=SCRIPT, steps=4, warmup=5, repeats=5, recipe=RECIPE):
    """The command line that times the recipe's network and step in PyTorch."""
    return [
        str(python),
        str(script),
        "--threads",
        str(hardware.usable_cores()),
        "--batch-size",
        str(recipe.batch_size),
        "--image-size",
        str(recipe.image_size),
        "--stages",
        json.dumps([list(stage) for stage in recipe.stages]),
        "--stem-filters",
        str(recipe.stem_filters),
        "--stem-stride",
        str(recipe.stem_stride),
        "--warmup",
        str(warmup),
        "--steps",
        str(steps),
        "--repeats",
        str(repeats),
    ]


def measure_peer(command, timeout=600):
    """Run the peer once and return its JSON line as a dict.

    Raises:
        PeerError: If it exits non-zero or prints no JSON object line.
    """
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise PeerError(f"{command[1]} exited {done.returncode}: {done.stderr[-1500:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise PeerError(f"{command[1]} printed no JSON line: {done.stdout[-1500:]}")
    return json.loads(lines[-1])


def compare(lab, peers):
    """Medians over rounds and the ratio lab / PyTorch per compute dtype.

    Args:
        lab: dict `Keras dtype policy -> [images/s per round]` of the lab's step.
        peers: the peer's JSON of every round (`images_per_s` per mode, named by dtype).

    Returns:
        dict `dtype -> {...}` for every dtype both sides timed.
    """
    result = {}
    for policy, speeds in lab.items():
        dtype = compute_dtype(policy)
        rounds = [p["images_per_s"][dtype] for p in peers if dtype in p["images_per_s"]]
        if not rounds:
            continue
        ours, theirs = statistics.median(speeds), statistics.median(rounds)
        result[dtype] = {
            "lab_dtype_policy": policy,
            "lab_images_per_s": round(ours, 1),
            "peer_images_per_s": round(theirs, 1),
            "ratio_lab_over_peer": round(ours / theirs, 3),
            "lab_images_per_s_rounds": [round(s, 1) for s in speeds],
            "peer_images_per_s_rounds": rounds,
        }
    return result


def _recipe_steps(images_per_call):
    """The lab's recipe step in float32 and in the recipe's policy: `policy -> (call, images)`."""
    policies = dict.fromkeys(["float32", hardware.resolve_dtype_policy(RECIPE.dtype_policy)])
    return {
        p: scratch_train_function(images_per_call=images_per_call, dtype_policy=p) for p in policies
    }


def run(
    rounds=3,
    repeats=3,
    warmup=5,
    images_per_call=128,
    python=None,
    script=SCRIPT,
    lab_steps=None,
):
    """Images/s of the lab's recipe step and of its PyTorch peer, alternating, and the ratios.

    Args:
        rounds: runs of the peer, each between timed calls of the lab's step.
        repeats: timed calls per round of each lab step, and of each peer mode (medians).
        warmup: untimed training steps of the peer per mode and run.
        images_per_call: images per timed call of the lab (the peer times as many steps).
        python: the interpreter for the peer (default: `torch_python()`).
        script: the peer script; it must print the JSON line `peer_torch.py` prints.
        lab_steps: dict `policy -> (call, images)` (default: the recipe's step in float32
            and in the recipe's policy, `scratch_train_function`).

    Returns:
        The item's section: `status` `"measured"`, the peer's version and threads, and per
        dtype the medians and `ratio_lab_over_peer`; or `status` `"not measured"` and why.
    """
    if python is None:
        python, reason = torch_python()
        if python is None:
            return not_measured(reason)
    lab_steps = lab_steps or _recipe_steps(images_per_call)
    images = next(iter(lab_steps.values()))[1]
    command = peer_command(
        python, script, steps=max(1, images // RECIPE.batch_size), warmup=warmup, repeats=repeats
    )
    for policy, (call, _) in lab_steps.items():
        log(f"10 PyTorch peer warm-up: lab {policy}")
        call()
    lab = {policy: [] for policy in lab_steps}
    peers = []

    def time_lab():
        for policy, (call, count) in lab_steps.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            lab[policy].append(count / statistics.median(times))

    for index in range(rounds):
        try:
            if index % 2 == 0:
                peers.append(measure_peer(command))
                time_lab()
            else:
                time_lab()
                peers.append(measure_peer(command))
        except (PeerError, subprocess.TimeoutExpired, json.JSONDecodeError) as error:
            return not_measured(f"the PyTorch peer failed: {error}")
        shown = ", ".join(f"lab {p} {s[-1]:.0f}" for p, s in lab.items())
        theirs = ", ".join(f"{m} {v:.0f}" for m, v in peers[-1]["images_per_s"].items())
        log(f"10 PyTorch peer round {index + 1}/{rounds}: {shown}; PyTorch {theirs}")
    by_dtype = compare(lab, peers)
    version = peers[0].get("torch")
    table(
        f"10. The recipe's training step, lab (Keras) against PyTorch {version} "
        f"({peers[0].get('threads')} threads), batch {RECIPE.batch_size} at "
        f"{RECIPE.image_size} px, median of {rounds} rounds",
        ("dtype", "lab policy", "lab img/s", "PyTorch img/s", "lab / PyTorch"),
        [
            (
                d,
                v["lab_dtype_policy"],
                v["lab_images_per_s"],
                v["peer_images_per_s"],
                v["ratio_lab_over_peer"],
            )
            for d, v in by_dtype.items()
        ],
    )
    return {
        "status": "measured",
        "measured": True,
        "settings": {
            "rounds": rounds,
            "repeats": repeats,
            "peer_warmup_steps": warmup,
            "images_per_call": images,
            "peer_command": command,
        },
        "peer": {"python": str(python), "torch": version, "threads": peers[0].get("threads")},
        "by_dtype": by_dtype,
    }


def summary(result):
    """Item 10's line: the ratio per dtype, or why it was not measured."""
    if result.get("status") != "measured":
        return [f"PyTorch peer: not measured: {result['reason']}"]
    parts = [
        f"{d} {v['ratio_lab_over_peer']:.2f}x ({v['lab_images_per_s']:.0f} vs "
        f"{v['peer_images_per_s']:.0f} img/s)"
        for d, v in result["by_dtype"].items()
    ]
    return [f"lab / PyTorch {result['peer']['torch']}: " + ", ".join(parts)]
