"""Fetch the Oxford 17 flowers archive: download or find it, verify it, extract it, cache it.

The official archive holds `jpg/image_0001.jpg` ... `jpg/image_1360.jpg` (Nilsback and
Zisserman, CVPR 2006). Everything is cached in one folder: `RESNET_LAB_CACHE`, else the
repository's `data/` when running from a clone, else a per-user cache folder
(`$XDG_CACHE_HOME/resnet_lab` or `~/.cache/resnet_lab`); see `default_cache_dir`.

The cache is keyed by the source the images came from, so it never serves one source's
images for another. `<key>` is the first 12 hex digits of the archive's md5, or, for an
extracted folder used in place, of a fingerprint of its files' names, sizes and times:

    17flowers.tgz                 the official archive, downloaded or placed there by hand
    17flowers-<key>.tgz           any other downloaded archive
    sources.json                  the md5 each URL or Google Drive id gave, so that a second
                                  call downloads nothing
    17flowers-<key>/jpg/...       the extracted and validated images of one archive
    17flowers-<key>/.complete     written last, holding the archive's md5: an extraction
                                  without it is never trusted
    17flowers-<key>_{H}x{W}.npy   decoded uint8 images, one file per source and image size
                                  (written by `resnet_lab.data.load_flowers17`)

Switching sources keeps both in the cache: switching back is free. Heavy imports (`gdown`,
Pillow) happen inside the functions that need them.
"""

import hashlib
import inspect
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from resnet_lab.results import atomic_write

OFFICIAL_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz"
OFFICIAL_MD5 = "b59a65d8d1a99cd66944d474e1289eab"

NUM_IMAGES = 1360
IMAGE_NAMES = tuple(f"image_{n:04d}.jpg" for n in range(1, NUM_IMAGES + 1))

_ARCHIVE = "17flowers.tgz"
_PREFIX = "17flowers-"
_SOURCES = "sources.json"
_STAMP = ".complete"
_KEY_DIGITS = 12
_DRIVE_ID = re.compile(r"[-\w]{25,}")
# Python >= 3.11.4 (and backports) refuses unsafe members itself; our own check runs first
# so that the error names the member.
_DATA_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class DataError(RuntimeError):
    """The flowers data could not be fetched, checked or decoded; the message says why."""


# ---------------------------------------------------------------------------------------------
# Where the cache lives
# ---------------------------------------------------------------------------------------------


def _package_dir():
    """The installed `resnet_lab` package folder (a function, so tests can move it)."""
    return Path(__file__).resolve().parents[1]


def default_cache_dir():
    """The cache folder used when neither `cache_dir` nor `RESNET_LAB_CACHE` is given.

    A clone (an editable install, or code run from the repository) caches in the
    repository's `data/`, next to `pyproject.toml`. An installed package has no such folder
    (it would be `site-packages/data`), so it caches in `$XDG_CACHE_HOME/resnet_lab`, else
    `~/.cache/resnet_lab`, as the XDG base directory specification asks.

    Returns:
        `pathlib.Path` of the folder; it may not exist yet.
    """
    root = _package_dir().parent
    if (root / "pyproject.toml").is_file() and (root / "data").is_dir():
        return root / "data"
    base = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(base) if os.path.isabs(base) else Path.home() / ".cache"  # relative: ignored
    return base / "resnet_lab"


def resolve_cache_dir(cache_dir=None):
    """`cache_dir`, else `RESNET_LAB_CACHE`, else `default_cache_dir()`, as a `Path`."""
    return Path(cache_dir or os.environ.get("RESNET_LAB_CACHE") or default_cache_dir()).expanduser()


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------


def fetch_flowers17(source=None, cache_dir=None, md5="auto", progress=True):
    """Download (or find), verify and extract the flowers archive; return the image folder.

    The cache is keyed by source (see the module docstring): an archive is extracted once
    per md5, and a URL or Drive id that was downloaded before is not downloaded again. For
    the official archive, a `cache_dir/17flowers.tgz` placed there by hand is used instead
    of downloading; any other archive is used by pointing `source` at it. Every download
    and extraction goes to a temporary path inside `cache_dir` and is moved into place only
    once checked: on any failure (including `KeyboardInterrupt`) the cache is left as it
    was.

    Args:
        source: where the data comes from. `None` reads the `RESNET_LAB_DATA` environment
            variable, else uses `OFFICIAL_URL`. Otherwise an http(s) URL, a Google Drive file
            id or share link (handed to `gdown`), a local `.tgz` archive, or an extracted
            folder that contains `jpg/` or the images themselves (used in place, not copied).
        cache_dir: folder for archives and extractions. `None` reads `RESNET_LAB_CACHE`,
            else uses `default_cache_dir()`.
        md5: expected md5 hex digest of the archive. `"auto"` checks `OFFICIAL_MD5` when
            `source` is `OFFICIAL_URL` and nothing otherwise; `None` never checks. Not used
            for an extracted folder.
        progress: show `gdown`'s download progress bar.

    Returns:
        `pathlib.Path` of the folder holding `image_0001.jpg` ... `image_1360.jpg`.

    Raises:
        ValueError: `source` is not a URL, Drive id or existing path, or `md5` is malformed.
        DataError: the download failed (offline?), the checksum differs, the server sent an
            HTML page, the archive is truncated or holds an unsafe member, images are
            missing, or a JPEG in the archive does not decode.
    """
    return fetch_keyed(source, cache_dir, md5, progress)[0]


def source_key(source=None, cache_dir=None, md5="auto"):
    """The cache key of the images `source` gives, found without downloading or extracting.

    Args:
        source: as for `fetch_flowers17`.
        cache_dir: as for `fetch_flowers17`.
        md5: as for `fetch_flowers17`.

    Returns:
        The key (12 hex digits) of a local archive (hashed, ~0.1 s for the official one), an
        extracted folder (a fingerprint of its files' names, sizes and modification times),
        or a URL or Drive id whose md5 is expected or was recorded when it was downloaded;
        `None` when the key cannot be known yet (a URL never downloaded, a local archive
        whose md5 is not the one expected).

    Raises:
        ValueError: `source` or `md5` is invalid, as for `fetch_flowers17`.
    """
    source, kind, expected = _resolve_source(source, md5)
    if kind == "folder":
        return _fingerprint(_image_folder(source))
    digest = _known_md5(source, kind, expected, resolve_cache_dir(cache_dir))
    return None if digest is None else digest[:_KEY_DIGITS]


def fetch_keyed(source=None, cache_dir=None, md5="auto", progress=True):
    """`fetch_flowers17`, also returning the source's cache key.

    Returns:
        `(folder, key)`: the image folder and the key that `source_key` gives once fetched.
    """
    source, kind, expected = _resolve_source(source, md5)
    if kind == "folder":
        folder = _image_folder(source)
        _check_names(folder, where=f"folder {folder}")
        return folder, _fingerprint(folder)

    cache_dir = resolve_cache_dir(cache_dir)
    digest = _known_md5(source, kind, expected, cache_dir)
    if digest is not None and _is_complete(cache_dir, digest):
        return _extraction(cache_dir, digest) / "jpg", digest[:_KEY_DIGITS]

    created = not cache_dir.exists()
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporaries = []
    try:
        downloaded, wanted = None, expected
        if kind == "archive":
            archive = Path(source).expanduser()
        elif digest is not None and _archive_path(cache_dir, digest).is_file():
            # Placed by hand (the official archive) or kept from an earlier download: it must
            # still hold what its name promises.
            archive, wanted = _archive_path(cache_dir, digest), digest
        else:
            temporaries.append(Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir)))
            archive = downloaded = temporaries[-1] / _ARCHIVE
            _download(source, kind, archive, cache_dir, progress)
        origin = archive if downloaded is None else source
        if kind != "archive" or digest is None:
            digest = _md5(archive)
        _check_archive(archive, digest, wanted, origin, cache_dir)

        if not _is_complete(cache_dir, digest):
            temporaries.append(Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir)))
            _install_extraction(archive, digest, cache_dir, staging=temporaries[-1])
        if downloaded is not None and not _archive_path(cache_dir, digest).exists():
            os.replace(downloaded, _archive_path(cache_dir, digest))
        if kind != "archive":
            _record(cache_dir, source, digest)  # to know its key next time, md5 given or not
    finally:
        for path in temporaries:
            shutil.rmtree(path, ignore_errors=True)
        if created and not any(cache_dir.iterdir()):
            cache_dir.rmdir()
    return _extraction(cache_dir, digest) / "jpg", digest[:_KEY_DIGITS]


def _install_extraction(archive, digest, cache_dir, staging):
    """Extract and check `archive` in `staging`, then rename it into place and stamp it.

    The folder is renamed, not copied (`os.rename` of a directory within `cache_dir`), and the
    stamp is written last: an extraction without it is never trusted.
    """
    _extract(archive, staging)
    _check_names(staging / "jpg", where=f"archive {archive}")
    _check_jpegs(staging / "jpg", archive)
    extracted = _extraction(cache_dir, digest)
    if not _is_complete(cache_dir, digest):  # another process may have finished first
        if extracted.exists():  # a half-made extraction without its stamp
            shutil.rmtree(extracted)
        os.rename(staging, extracted)
        (extracted / _STAMP).write_text(f"{digest}\n")


def _resolve_source(source, md5):
    if source is None:
        source = os.environ.get("RESNET_LAB_DATA") or OFFICIAL_URL
    kind = _source_kind(source)
    return source, kind, _resolve_md5(md5, source)


def _source_kind(source):
    text = os.fspath(source)
    if re.match(r"https?://", text):
        return "url"
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "archive"
    if _DRIVE_ID.fullmatch(text):
        return "drive_id"
    raise ValueError(
        "`source` must be an http(s) URL, a Google Drive file id or link, a local .tgz "
        f"archive or an extracted folder; no such file or folder exists. Received: "
        f"source={text!r}"
    )


def _resolve_md5(md5, source):
    if md5 == "auto":
        return OFFICIAL_MD5 if source == OFFICIAL_URL else None
    if md5 is None or (isinstance(md5, str) and re.fullmatch(r"[0-9a-fA-F]{32}", md5)):
        return None if md5 is None else md5.lower()
    raise ValueError(f'`md5` must be "auto", None or a 32-digit hex string. Received: md5={md5!r}')


def _image_folder(source):
    folder = Path(source).expanduser()
    return folder / "jpg" if (folder / "jpg").is_dir() else folder


def _known_md5(source, kind, expected, cache_dir):
    """The md5 of the archive behind `source` if it is known without downloading, else None."""
    if kind == "archive":
        digest = _md5(Path(source).expanduser())
        return digest if expected in (None, digest) else None
    return expected or _recorded(cache_dir).get(os.fspath(source))


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(folder):
    """A cheap key for an extracted folder: its images' names, sizes and modification times.

    Editing, replacing or removing an image changes the key; reading the folder does not.
    Stat-ing 1,360 files takes a few milliseconds where hashing their bytes would read 60 MB.
    """
    digest = hashlib.md5()
    for name in IMAGE_NAMES:
        try:
            stat = os.stat(folder / name)
            digest.update(f"{name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name} missing\n".encode())
    return digest.hexdigest()[:_KEY_DIGITS]


def _extraction(cache_dir, digest):
    return cache_dir / f"{_PREFIX}{digest[:_KEY_DIGITS]}"


def _archive_path(cache_dir, digest):
    """Where the archive of md5 `digest` is kept: the official one under its own name."""
    name = _ARCHIVE if digest == OFFICIAL_MD5 else f"{_PREFIX}{digest[:_KEY_DIGITS]}.tgz"
    return cache_dir / name


def _is_complete(cache_dir, digest):
    stamp = _extraction(cache_dir, digest) / _STAMP
    return stamp.is_file() and stamp.read_text().strip() == digest


def _recorded(cache_dir):
    """The `sources.json` record of URL or Drive id -> md5; empty when absent or unreadable."""
    try:
        record = json.loads((cache_dir / _SOURCES).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _record(cache_dir, source, digest):
    record = _recorded(cache_dir)
    if record.get(os.fspath(source)) == digest:
        return
    record[os.fspath(source)] = digest
    atomic_write(
        cache_dir / _SOURCES, lambda file: json.dump(record, file, indent=1, sort_keys=True)
    )


def _by_hand(cache_dir):
    return (
        f"download the archive by other means and set RESNET_LAB_DATA to its path (the "
        f"official archive may also be placed at {cache_dir / _ARCHIVE})"
    )


def _download(source, kind, output, cache_dir, progress):
    import gdown  # noqa: PLC0415 (only downloads need it)

    try:
        if kind == "drive_id":
            gdown.download(id=source, output=str(output), quiet=not progress)
        else:
            # gdown 5 needs `fuzzy=True` to turn a Drive share link into a download; gdown 6
            # always does and no longer accepts the argument.
            fuzzy = "fuzzy" in inspect.signature(gdown.download).parameters
            gdown.download(
                source, output=str(output), quiet=not progress, **({"fuzzy": True} if fuzzy else {})
            )
    except Exception as error:  # requests, gdown and OS errors all mean the same to the user
        raise DataError(
            f"Could not download the flowers archive from {source} ({error}). If you are "
            f"offline or the server is down, {_by_hand(cache_dir)}, or set RESNET_LAB_DATA "
            f"to an extracted folder."
        ) from error
    if not output.is_file():  # gdown 5 reports some failures by returning None
        raise DataError(
            f"Could not download the flowers archive from {source}. Instead, "
            f"{_by_hand(cache_dir)}, or set RESNET_LAB_DATA to an extracted folder."
        )


def _check_archive(archive, digest, expected, origin, cache_dir):
    with open(archive, "rb") as file:
        head = file.read(512).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise DataError(
            f"Received an HTML page instead of the flowers archive from {origin}. Google Drive "
            f"sends one when a file is over its download quota or is not shared with 'Anyone "
            f"with the link'. Open the link in a browser, {_by_hand(cache_dir)}."
        )
    if not head.startswith(b"\x1f\x8b"):
        raise DataError(
            f"{archive} is not a gzip archive (it starts with {head[:8]!r}). Replace it with "
            f"a good copy of 17flowers.tgz (if it sits in the cache, delete it and fetch again)."
        )
    if expected is not None and digest != expected:
        raise DataError(
            f"Checksum mismatch for {origin}: expected md5 {expected}, received {digest}. The "
            f"file is damaged or is not the official archive: fetch again, or, if you trust "
            f"this copy, pass md5=None or load it as a local source (source=its path, or "
            f"RESNET_LAB_DATA)."
        )


def _extract(archive, destination):
    def checked_members(tar):
        for member in tar:
            _check_member(member, archive)
            yield member

    try:
        # Stream mode reads the archive once, checking each member before it is written.
        with tarfile.open(archive, "r|gz") as tar:
            tar.extractall(destination, members=checked_members(tar), **_DATA_FILTER)
    except (tarfile.TarError, EOFError) as error:
        if isinstance(error, tarfile.FilterError):
            raise DataError(f"Refusing to extract {archive}: {error}.") from error
        raise DataError(
            f"Could not read {archive}: it is truncated or corrupt ({error}). Replace it with "
            f"a good copy (if it sits in the cache, delete it and fetch again)."
        ) from error


def _check_member(member, archive):
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        problem = "an absolute path"
    elif ".." in PurePosixPath(name.replace("\\", "/")).parts:
        problem = "a path that climbs out of the folder with '..'"
    elif member.issym() or member.islnk():
        problem = "a link"
    elif not (member.isfile() or member.isdir()):
        problem = "a device or other special file"
    else:
        return
    raise DataError(
        f"Refusing to extract {archive}: member {name!r} is {problem}. The archive is not the "
        f"flowers dataset or has been tampered with; nothing was kept."
    )


def _check_names(folder, where):
    present = set(os.listdir(folder)) if folder.is_dir() else set()
    missing = [name for name in IMAGE_NAMES if name not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            f"The {where} lacks {len(missing)} of the 1,360 images ({shown}). Expected the "
            f"official layout jpg/image_0001.jpg ... jpg/image_1360.jpg: use a complete copy "
            f"of 17flowers.tgz."
        )


def _check_jpegs(folder, archive):
    from PIL import Image  # noqa: PLC0415 (only checks and decoding need Pillow)

    for name in IMAGE_NAMES:
        try:
            with Image.open(folder / name) as image:
                # A decode at 1/8 scale in the DCT reads every byte but costs ~0.5 ms.
                image.draft("RGB", (image.width // 8, image.height // 8))
                image.load()
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise DataError(
                f"{name} in {archive} is not a readable JPEG ({error}). The archive is "
                f"corrupt: fetch it again."
            ) from error
