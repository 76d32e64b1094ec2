"""Results as JSON: Keras histories made plain, files written atomically."""

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def history_dict(history):
    """A Keras `History` (or dict) as `{metric: [float, ...]}`, JSON-ready."""
    values = history.history if hasattr(history, "history") else history
    return {key: [float(v) for v in vals] for key, vals in values.items()}


def _default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Cannot write {type(obj).__name__} to JSON.")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside `path` to write to; renamed into place when the block ends.

    The temporary name keeps `path`'s suffix, so writers that check it (`model.save` wants
    `.keras`) accept it. A failure (or an interrupt) in the block leaves `path` as it was and
    no temporary file behind.

    Yields:
        The temporary `pathlib.Path` (an empty file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file readable by its owner only: give it the mode a plain
        # `open` would (0o666 less the umask), or keep the mode of the file it replaces.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path, write, mode="w"):
    """Call `write(file)` on a temporary file beside `path`, then rename it into place
    (`atomic_path`): a failure leaves `path` as it was and no temporary file behind.

    Returns:
        `path` as a `pathlib.Path`.
    """
    with atomic_path(path) as tmp, open(tmp, mode) as file:
        write(file)
    return Path(path)


def save_results(results, path):
    """Write `results` as JSON atomically (temp file, then rename); return the path.

    NumPy arrays and scalars are converted; a half-written file is never left behind.
    """
    return atomic_write(path, lambda f: json.dump(results, f, indent=2, default=_default))


def load_results(path):
    """Read a `results.json` (or the one inside a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"No results.json at {path}: run `train --out DIR` first.")
    return json.loads(path.read_text())
