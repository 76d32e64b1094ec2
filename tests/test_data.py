"""Tests for resnet_lab.data and resnet_lab.data.download: fetching (the real gdown code path, over
127.0.0.1 only), the cache keyed by source, decoding, splits, CIFAR-10 and tf.data pipelines,
on archives the tests build themselves."""

import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import time
from pathlib import Path

import gdown
import keras
import numpy as np
import pytest
from helpers import run_python
from PIL import Image

from resnet_lab import data
from resnet_lab.data import (
    CLASS_NAMES,
    IMAGES_PER_CLASS,
    NUM_CLASSES,
    OFFICIAL_MD5,
    OFFICIAL_URL,
    DataError,
    as_numpy,
    augmentation,
    download,
    fetch_flowers17,
    flowers,
    load_cifar10,
    load_flowers17,
    make_datasets,
    split_indices,
)
from resnet_lab.data.synthetic import PALETTE, make_archive

EXPECTED_LABELS = (np.arange(1, 1361) - 1) // 80


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Ignore the caller's RESNET_LAB_DATA, never write to the project's data/, bypass proxies."""
    monkeypatch.delenv("RESNET_LAB_DATA", raising=False)
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def listing(folder):
    """Every path under `folder` (hidden ones too) with its size, or [] when it is absent."""
    folder = Path(folder)
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def half_made_cache(tmp_path, extraction="17flowers"):
    """A cache holding an unrelated file and an interrupted extraction (no stamp)."""
    cache = tmp_path / "cache"
    (cache / extraction / "jpg").mkdir(parents=True)
    (cache / extraction / "jpg" / "image_0001.jpg").write_bytes(b"half")
    (cache / "notes.txt").write_text("keep me")
    return cache


def fake_gdown(calls, archive=None):
    """A stand-in for gdown.download that records its call and 'downloads' `archive`, if any."""

    def download(url=None, output=None, quiet=False, id=None, **kwargs):
        calls.append({"url": url} if url else {"id": id})
        if archive is not None:
            shutil.copy(archive, output)
        return output

    return download


def md5_of(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def forbidden(*args, **kwargs):
    raise AssertionError("the cache should have answered")


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------


def test_download_verify_extract_and_load(flowers_server, tiny_archive, tmp_path):
    url = flowers_server.url + "/17flowers.tgz"
    cache = tmp_path / "cache"
    md5 = md5_of(tiny_archive)
    key = md5[:12]

    folder = fetch_flowers17(url, cache, md5=md5, progress=False)
    assert folder == cache / f"17flowers-{key}" / "jpg"
    assert (cache / f"17flowers-{key}.tgz").read_bytes() == tiny_archive.read_bytes()
    assert (cache / f"17flowers-{key}" / ".complete").read_text() == md5 + "\n"
    assert len(list(folder.glob("image_*.jpg"))) == 1360

    images, labels = load_flowers17(url, cache, image_size=(8, 8), progress=False)
    assert images.shape == (1360, 8, 8, 3) and images.dtype == np.uint8
    assert labels.shape == (1360,) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, EXPECTED_LABELS)
    # Each fake image is its class colour plus noise: labels follow the pixels.
    class_colours = images.reshape(17, 80, -1, 3).mean(axis=(1, 2))
    np.testing.assert_allclose(class_colours, PALETTE, atol=15)
    assert flowers_server.requests == ["/17flowers.tgz"]
    assert sorted(os.listdir(cache)) == [
        *(f"17flowers-{key}{end}" for end in ("", ".tgz", "_8x8.npy")),
        "sources.json",
    ]


def test_second_call_downloads_nothing(flowers_server, tiny_archive, tmp_path):
    url = flowers_server.url + "/17flowers.tgz"
    cache = tmp_path / "cache"
    first = fetch_flowers17(url, cache, progress=False)
    assert fetch_flowers17(url, cache, progress=False) == first
    load_flowers17(url, cache, image_size=(8, 8), progress=False)
    load_flowers17(url, cache, image_size=(4, 4), progress=False)
    assert len(flowers_server.requests) == 1
    # No md5 was expected: the cache records the one the URL gave, to find it next time.
    assert json.loads((cache / "sources.json").read_text()) == {url: md5_of(tiny_archive)}


def test_cached_arrays_load_fast_and_cannot_be_corrupted(tiny_archive, tmp_path):
    cache = tmp_path / "cache"
    images, labels = load_flowers17(tiny_archive, cache, image_size=(8, 8), progress=False)
    expected = images.copy()
    images[:] = 0
    labels[:] = -1

    start = time.perf_counter()
    again, again_labels = load_flowers17(tiny_archive, cache, image_size=(8, 8), progress=False)
    assert time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(again_labels, EXPECTED_LABELS)
    assert not [name for name in os.listdir(cache) if name.startswith(".")]


BROKEN = {
    "checksum": ({}, "0" * 32, r"Checksum mismatch .*expected md5 0{32}, received [0-9a-f]{32}"),
    "html": ({"html": True}, None, r"HTML page instead of the flowers archive"),
    "truncated": ({"truncate": True}, None, r"truncated or corrupt"),
    "missing": (
        {"missing": (5, 1360)},
        None,
        r"lacks 2 of the 1,360 images \(image_0005\.jpg, image_1360\.jpg\)",
    ),
    "corrupt": ({"corrupt": 7}, None, r"image_0007\.jpg .*is not a readable JPEG"),
    "traversal": ({"traversal": True}, None, r"member '\.\./evil\.txt' is a path that climbs"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_download_fails_clearly_and_leaves_cache_as_it_was(case, tmp_path, serve):
    options, md5, message = BROKEN[case]
    (tmp_path / "www").mkdir()
    make_archive(tmp_path / "www" / "17flowers.tgz", **options)
    cache = half_made_cache(tmp_path)
    before = listing(cache)
    with serve(tmp_path / "www") as served:
        with pytest.raises(DataError, match=message):
            fetch_flowers17(served.url + "/17flowers.tgz", cache, md5=md5, progress=False)
    assert listing(cache) == before
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("failure", ["connection refused", "not found"])
def test_download_failure_says_where_to_place_the_archive(failure, tmp_path, serve):
    cache = tmp_path / "cache"
    cache.mkdir()
    if failure == "connection refused":
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}/17flowers.tgz"
        with pytest.raises(DataError) as error:
            fetch_flowers17(url, cache, progress=False)
    else:
        (tmp_path / "www").mkdir()
        with serve(tmp_path / "www") as served:
            url = served.url + "/17flowers.tgz"
            with pytest.raises(DataError) as error:
                fetch_flowers17(url, cache, progress=False)
    message = str(error.value)
    assert f"Could not download the flowers archive from {url}" in message
    assert str(cache / "17flowers.tgz") in message
    assert "RESNET_LAB_DATA" in message
    assert listing(cache) == []


@pytest.mark.parametrize("stage", ["download", "extraction"])
def test_interrupt_leaves_cache_as_it_was(stage, tiny_archive, tmp_path, monkeypatch):
    def interrupted_download(url=None, output=None, **kwargs):
        Path(output).write_bytes(tiny_archive.read_bytes()[:1000])
        raise KeyboardInterrupt

    def interrupted_check(*args):
        raise KeyboardInterrupt

    if stage == "download":
        monkeypatch.setattr(gdown, "download", interrupted_download)
    else:
        monkeypatch.setattr(gdown, "download", fake_gdown([], tiny_archive))
        monkeypatch.setattr(download, "_check_jpegs", interrupted_check)
    cache = half_made_cache(tmp_path)
    before = listing(cache)
    with pytest.raises(KeyboardInterrupt):
        fetch_flowers17("https://example.invalid/17flowers.tgz", cache, progress=False)
    assert listing(cache) == before


def test_local_archive_is_extracted_not_copied_and_replaces_a_half_made_one(tiny_archive, tmp_path):
    extraction = f"17flowers-{md5_of(tiny_archive)[:12]}"
    cache = half_made_cache(tmp_path, extraction)
    folder = fetch_flowers17(tiny_archive, cache, progress=False)
    assert folder == cache / extraction / "jpg"
    with Image.open(folder / "image_0001.jpg") as image:
        assert image.size == (8, 8)
    assert sorted(os.listdir(cache)) == [extraction, "notes.txt"]


def test_official_url_is_the_default_and_checks_the_official_md5(
    tiny_archive, tmp_path, monkeypatch
):
    calls = []
    monkeypatch.setattr(gdown, "download", fake_gdown(calls, tiny_archive))
    with pytest.raises(DataError, match=f"expected md5 {OFFICIAL_MD5}"):
        fetch_flowers17(cache_dir=tmp_path / "cache", progress=False)
    assert calls == [{"url": OFFICIAL_URL}]
    assert not (tmp_path / "cache").exists()


DRIVE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz_-0123"
SHARE_LINK = f"https://drive.google.com/file/d/{DRIVE_ID}/view?usp=sharing"


@pytest.mark.parametrize(
    "source, call",
    [(DRIVE_ID, {"id": DRIVE_ID}), (SHARE_LINK, {"url": SHARE_LINK})],
    ids=["drive id", "drive share link"],
)
def test_google_drive_sources_go_to_gdown(source, call, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gdown, "download", fake_gdown(calls))  # downloads nothing
    with pytest.raises(DataError, match="Could not download"):
        fetch_flowers17(source, tmp_path / "cache", progress=False)
    assert calls == [call]


def test_official_archive_in_the_cache_is_used_instead_of_downloading(
    tiny_archive, tmp_path, monkeypatch
):
    md5 = md5_of(tiny_archive)
    monkeypatch.setattr(download, "OFFICIAL_MD5", md5)  # the tiny archive plays the official one
    calls = []
    monkeypatch.setattr(gdown, "download", fake_gdown(calls, tiny_archive))
    cache = tmp_path / "cache"
    jpg = cache / f"17flowers-{md5[:12]}" / "jpg"

    # A downloaded official archive keeps its name...
    assert fetch_flowers17(cache_dir=cache, progress=False) == jpg
    assert calls == [{"url": OFFICIAL_URL}]
    assert (cache / "17flowers.tgz").read_bytes() == tiny_archive.read_bytes()
    # ...so that, like one placed there by hand (no extraction, no record), it is used.
    shutil.rmtree(jpg.parent)
    (cache / "sources.json").unlink()
    assert fetch_flowers17(cache_dir=cache, progress=False) == jpg
    assert len(calls) == 1

    # Another URL's archive may be anything: the official archive does not stand in for it.
    other = "https://example.invalid/17flowers.tgz"
    fetch_flowers17(other, cache, progress=False)
    assert calls[1:] == [{"url": other}]


def test_extracted_folder_is_used_in_place(tiny_archive, tmp_path):
    with tarfile.open(tiny_archive) as tar:
        tar.extractall(tmp_path / "flowers", filter="data")
    cache = tmp_path / "cache"
    jpg = tmp_path / "flowers" / "jpg"
    assert fetch_flowers17(tmp_path / "flowers", cache) == jpg
    assert fetch_flowers17(str(jpg), cache) == jpg
    assert not cache.exists()
    key = download.source_key(jpg)
    assert download.source_key(tmp_path / "flowers") == key
    images, labels = load_flowers17(jpg, cache, image_size=(8, 8), progress=False)
    assert images.shape == (1360, 8, 8, 3)
    np.testing.assert_array_equal(labels, EXPECTED_LABELS)

    (jpg / "image_0003.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"Could not decode image_0003\.jpg"):
        load_flowers17(jpg, cache, image_size=(4, 4), progress=False)
    assert os.listdir(cache) == [f"17flowers-{key}_8x8.npy"]
    (jpg / "image_0002.jpg").unlink()
    with pytest.raises(DataError, match=r"folder .* lacks 1 of the 1,360 images \(image_0002"):
        fetch_flowers17(jpg, cache)


def test_environment_variables_choose_source_and_cache(tiny_archive, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_DATA", str(tiny_archive))
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "elsewhere"))
    key = md5_of(tiny_archive)[:12]
    assert fetch_flowers17(progress=False) == tmp_path / "elsewhere" / f"17flowers-{key}" / "jpg"
    images, _ = load_flowers17(image_size=(4, 4), progress=False)
    assert images.shape == (1360, 4, 4, 3)
    assert (tmp_path / "elsewhere" / f"17flowers-{key}_4x4.npy").is_file()


# ---------------------------------------------------------------------------------------------
# One cache, many sources
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_archive(tmp_path_factory):
    """A second valid archive whose images differ from `tiny_archive`'s (12x12, not 8x8)."""
    return make_archive(tmp_path_factory.mktemp("other_archive") / "17flowers.tgz", size=(12, 12))


@pytest.fixture(scope="module")
def expected_images(tiny_archive, other_archive, tmp_path_factory):
    """Each archive's 8x8 images, each decoded in a cache of its own."""
    return {
        name: load_flowers17(archive, tmp_path_factory.mktemp(name), (8, 8), progress=False)[0]
        for name, archive in (("tiny", tiny_archive), ("other", other_archive))
    }


def test_one_cache_gives_each_archive_its_own_images(
    tiny_archive, other_archive, expected_images, tmp_path, monkeypatch
):
    tiny, other = expected_images["tiny"], expected_images["other"]
    assert not np.array_equal(tiny, other)
    cache = tmp_path / "cache"

    def load(archive):
        return load_flowers17(archive, cache, (8, 8), progress=False)[0]

    np.testing.assert_array_equal(load(tiny_archive), tiny)
    np.testing.assert_array_equal(load(other_archive), other)  # not the first archive's
    assert fetch_flowers17(tiny_archive, cache) != fetch_flowers17(other_archive, cache)

    # Both stay cached: switching back decodes and extracts nothing.
    monkeypatch.setattr(flowers, "decode", forbidden)
    monkeypatch.setattr(download, "_extract", forbidden)
    np.testing.assert_array_equal(load(tiny_archive), tiny)
    np.testing.assert_array_equal(load(other_archive), other)
    keys = [md5_of(archive)[:12] for archive in (tiny_archive, other_archive)]
    assert sorted(os.listdir(cache)) == sorted(
        f"17flowers-{key}{end}" for key in keys for end in ("", "_8x8.npy")
    )


def test_one_cache_gives_each_url_its_own_images_and_downloads_each_once(
    tiny_archive, other_archive, expected_images, tmp_path, serve
):
    (tmp_path / "www").mkdir()
    shutil.copy(tiny_archive, tmp_path / "www" / "tiny.tgz")
    shutil.copy(other_archive, tmp_path / "www" / "other.tgz")
    cache = tmp_path / "cache"
    with serve(tmp_path / "www") as served:
        urls = {name: f"{served.url}/{name}.tgz" for name in ("tiny", "other")}
        for _ in range(2):
            for name, url in urls.items():
                images, _ = load_flowers17(url, cache, (8, 8), progress=False)
                np.testing.assert_array_equal(images, expected_images[name])
                assert fetch_flowers17(url, cache, progress=False).is_dir()
        assert served.requests == ["/tiny.tgz", "/other.tgz"]
    recorded = json.loads((cache / "sources.json").read_text())
    assert recorded == {urls["tiny"]: md5_of(tiny_archive), urls["other"]: md5_of(other_archive)}


def test_one_cache_gives_each_folder_its_own_images(
    tiny_archive, other_archive, expected_images, tmp_path
):
    folders = {}
    for name, archive in (("tiny", tiny_archive), ("other", other_archive)):
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path / name, filter="data")
        folders[name] = tmp_path / name / "jpg"
    cache = tmp_path / "cache"
    for name in ("tiny", "other", "tiny"):
        images, _ = load_flowers17(folders[name], cache, (8, 8), progress=False)
        np.testing.assert_array_equal(images, expected_images[name])
    assert len(os.listdir(cache)) == 2

    # An image replaced in place changes the folder's key: it is decoded afresh.
    shutil.copy(folders["other"] / "image_0001.jpg", folders["tiny"] / "image_0001.jpg")
    images, _ = load_flowers17(folders["tiny"], cache, (8, 8), progress=False)
    np.testing.assert_array_equal(images[0], expected_images["other"][0])
    np.testing.assert_array_equal(images[1:], expected_images["tiny"][1:])


def test_an_unkeyed_cache_from_older_versions_is_not_trusted(
    tiny_archive, other_archive, expected_images, tmp_path
):
    cache = tmp_path / "cache"
    (cache / "17flowers" / "jpg").mkdir(parents=True)
    (cache / "17flowers" / ".complete").write_text("1360\n")
    np.save(cache / "17flowers_8x8.npy", expected_images["tiny"])
    images, _ = load_flowers17(other_archive, cache, (8, 8), progress=False)
    np.testing.assert_array_equal(images, expected_images["other"])


def test_default_cache_is_the_clone_data_folder_else_a_per_user_folder(
    tiny_archive, tmp_path, monkeypatch
):
    monkeypatch.delenv("RESNET_LAB_CACHE")
    repository = Path(download.__file__).resolve().parents[2]
    assert download.default_cache_dir() == repository / "data"  # this clone

    def move_package(root):
        (root / "resnet_lab").mkdir(parents=True)
        monkeypatch.setattr(download, "_package_dir", lambda: root / "resnet_lab")

    move_package(tmp_path / "site-packages")  # an installed package: no data/ beside it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.default_cache_dir() == tmp_path / "xdg" / "resnet_lab"
    assert fetch_flowers17(tiny_archive, progress=False).is_relative_to(tmp_path / "xdg")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.default_cache_dir() == tmp_path / "home" / ".cache" / "resnet_lab"
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "mine"))
    assert download.resolve_cache_dir() == tmp_path / "mine"

    clone = tmp_path / "clone"  # another clone: pyproject.toml and data/ beside the package
    move_package(clone)
    (clone / "data").mkdir()
    (clone / "pyproject.toml").write_text("")
    assert download.default_cache_dir() == clone / "data"


def test_importing_the_data_api_loads_no_downloader():
    # Keras itself imports Pillow, so only what the data layer alone would bring is checked.
    code = "import sys, resnet_lab.data; print(sorted({'gdown', 'tqdm'} & set(sys.modules)))"
    result = run_python(code=code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_arguments_are_validated(tmp_path):
    with pytest.raises(ValueError, match=r"`source` must be .* Received: source='nowhere\.tgz'"):
        fetch_flowers17("nowhere.tgz", tmp_path)
    with pytest.raises(ValueError, match=r"`md5` must be .* Received: md5='abc'"):
        fetch_flowers17(OFFICIAL_URL, tmp_path, md5="abc")
    for size in [(0, 8), (8,), 64, (8.0, 8)]:
        with pytest.raises(ValueError, match=r"`image_size` must be .* Received: image_size="):
            load_flowers17(image_size=size)
    assert listing(tmp_path) == []


def test_images_are_scaled_then_center_cropped(tmp_path):
    # 80 wide, 40 tall: red | green | blue columns of 20, 40 and 20 pixels. A center crop
    # keeps the green middle; squashing the whole image would keep red and blue too.
    stripes = np.zeros((40, 80, 3), np.uint8)
    stripes[:, :20, 0] = stripes[:, 20:60, 1] = stripes[:, 60:, 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(stripes).save(buffer, "JPEG", quality=95)
    (tmp_path / "jpg").mkdir()
    for number in range(1, 1361):
        (tmp_path / "jpg" / f"image_{number:04d}.jpg").write_bytes(buffer.getvalue())
    images, _ = load_flowers17(tmp_path / "jpg", tmp_path / "cache", (4, 4), progress=False)
    red, green, blue = images.reshape(-1, 3).mean(axis=0)
    assert green > 200 and red < 40 and blue < 40


def test_class_names():
    assert len(CLASS_NAMES) == NUM_CLASSES == 17 and IMAGES_PER_CLASS == 80
    assert CLASS_NAMES[0] == "Daffodil" and CLASS_NAMES[1] == "Snowdrop"
    assert CLASS_NAMES[-1] == "Pansy"


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def test_splits_are_stratified_disjoint_and_complete():
    splits = split_indices(EXPECTED_LABELS)
    assert list(splits) == ["train", "val", "test"]
    everything = np.concatenate(list(splits.values()))
    np.testing.assert_array_equal(np.sort(everything), np.arange(1360))
    for name, per_class in zip(splits, (40, 20, 20)):
        index = splits[name]
        assert index.dtype == np.int64 and np.all(np.diff(index) > 0)
        np.testing.assert_array_equal(np.bincount(EXPECTED_LABELS[index]), [per_class] * 17)


def test_splits_are_seeded():
    first, again, other = (split_indices(EXPECTED_LABELS, seed=s) for s in (0, 0, 1))
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
        assert not np.array_equal(first[name], other[name])


def test_splits_depend_only_on_each_class_own_images():
    rng = np.random.default_rng(0)
    labels = rng.permutation(EXPECTED_LABELS)  # classes interleaved, not in blocks of 80
    splits = split_indices(labels, seed=3)
    as_list = split_indices([int(label) for label in labels], seed=3)
    for name in splits:
        np.testing.assert_array_equal(splits[name], as_list[name])

    # Keep classes 2, 5, 11 and 16 only, stored in a new order: the four classes interleave
    # differently, yet each keeps its own images in their old relative order (the promise
    # covers exactly that). `order[i]` is the old position of what now sits at position i.
    kept = [2, 5, 11, 16]
    order = rng.permutation(np.flatnonzero(np.isin(labels, kept)))
    for label in kept:
        order[labels[order] == label] = np.flatnonzero(labels == label)
    moved = labels[order]
    assert not np.array_equal(np.sort(order), order)
    subset = split_indices(moved.astype(np.uint8), seed=3)
    for name in splits:
        kept_part = np.intersect1d(splits[name], order)
        np.testing.assert_array_equal(np.sort(order[subset[name]]), kept_part)


def test_split_arguments_are_validated():
    too_many = r"asks for 81 images per class .* Received: per_class=\(41, 20, 20\)"
    with pytest.raises(ValueError, match=too_many):
        split_indices(EXPECTED_LABELS, per_class=(41, 20, 20))
    with pytest.raises(ValueError, match=r"`per_class` must be three .* Received: per_class="):
        split_indices(EXPECTED_LABELS, per_class=(40, 20))
    for labels in (EXPECTED_LABELS.reshape(17, 80), [], EXPECTED_LABELS - 1):
        with pytest.raises(ValueError, match=r"`labels` must be a non-empty 1-D .* Received"):
            split_indices(labels)
    for per_class in [(True, 1, 1), (1, -1, 1), (1, 1, None), (2.0, 1, 1)]:
        with pytest.raises(ValueError, match=r"`per_class` must be three .* Received: per_class="):
            split_indices(EXPECTED_LABELS, per_class=per_class)
    with pytest.raises(ValueError, match=r"asks for 81 images .* per_class=\(None, 61, 20\)"):
        split_indices(EXPECTED_LABELS, per_class=(None, 61, 20))
    smaller = split_indices(EXPECTED_LABELS, per_class=(10, 5, 0))
    assert [len(index) for index in smaller.values()] == [170, 85, 0]


def test_train_none_takes_every_image_val_and_test_leave():
    splits = split_indices(EXPECTED_LABELS, seed=2, per_class=(None, 15, 5))
    everything = np.concatenate(list(splits.values()))
    np.testing.assert_array_equal(np.sort(everything), np.arange(1360))
    for name, per_class in zip(splits, (60, 15, 5)):
        np.testing.assert_array_equal(np.bincount(EXPECTED_LABELS[splits[name]]), [per_class] * 17)
    # The same draw as asking for the rest by number.
    counted = split_indices(EXPECTED_LABELS, seed=2, per_class=(60, 15, 5))
    for name in splits:
        np.testing.assert_array_equal(splits[name], counted[name])


# ---------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fake_cifar10(monkeypatch):
    """`keras.datasets.cifar10.load_data` replaced by 60 + 5 small images per class (the real
    one downloads 170 MB)."""
    rng = np.random.default_rng(0)
    train = (
        rng.integers(0, 256, (600, 32, 32, 3), dtype=np.uint8),
        rng.permutation(np.repeat(np.arange(10), 60))[:, None],
    )
    test = (rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8),
            np.repeat(np.arange(10), 5)[:, None])  # fmt: skip
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: (train, test))
    return train, test


def test_cifar10_splits_are_stratified_and_held_out(fake_cifar10):
    (x_train, y_train), (x_test, y_test) = fake_cifar10
    images, labels, splits = load_cifar10(train_per_class=20, val_per_class=10)
    assert images.shape == (650, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, np.concatenate([x_train, x_test]))
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, np.concatenate([y_train, y_test]).ravel())
    assert np.bincount(labels[splits["train"]]).tolist() == [20] * 10
    assert np.bincount(labels[splits["val"]]).tolist() == [10] * 10
    assert splits["test"].tolist() == list(range(600, 650))
    assert not set(splits["train"]) & set(splits["val"])
    # The one stratified splitter draws them, seeded.
    same = split_indices(labels[:600], seed=0, per_class=(20, 10, 0))
    for name in ("train", "val"):
        np.testing.assert_array_equal(splits[name], same[name])
    reseeded = load_cifar10(train_per_class=20, val_per_class=10, seed=1)[2]
    assert not np.array_equal(reseeded["val"], splits["val"])


def test_cifar10_train_none_takes_all_that_remain(fake_cifar10):
    _, labels, splits = load_cifar10(val_per_class=10)
    assert np.bincount(labels[splits["train"]]).tolist() == [50] * 10
    assert np.bincount(labels[splits["val"]]).tolist() == [10] * 10
    held = np.concatenate([splits["train"], splits["val"]])
    np.testing.assert_array_equal(np.sort(held), np.arange(600))


def test_cifar10_arguments_are_validated(fake_cifar10):
    with pytest.raises(ValueError, match=r"at most 5000 .* Received: train_per_class=4600"):
        load_cifar10(train_per_class=4600)
    for train, val in [(-1, 10), (True, 10), (10, None), (10.0, 10)]:
        message = r"`train_per_class` and `val_per_class` must be .* Received"
        with pytest.raises(ValueError, match=message):
            load_cifar10(train_per_class=train, val_per_class=val)


# ---------------------------------------------------------------------------------------------
# Feeding
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (1360, 16, 16, 3), dtype=np.uint8), EXPECTED_LABELS.copy()


def batches(dataset):
    xs, ys = zip(*dataset.as_numpy_iterator())
    return xs, ys


def test_pipelines_shapes_dtypes_and_batches(arrays):
    images, labels = arrays
    splits = split_indices(labels)
    datasets = make_datasets(images, labels, splits, batch_size=32, augment=False)
    assert list(datasets) == ["train", "val", "test"]
    xs, ys = batches(datasets["train"])
    assert [len(y) for y in ys] == [32] * 21  # 680 // 32: the last partial batch is dropped
    assert xs[0].shape == (32, 16, 16, 3) and xs[0].dtype == np.float32
    assert ys[0].dtype == np.int32
    for name in ("val", "test"):
        xs, ys = batches(datasets[name])
        assert [len(y) for y in ys] == [32] * 10 + [20]  # 340 images, none dropped
        # In index order, unaugmented, on the 0..255 scale.
        np.testing.assert_array_equal(np.concatenate(xs), images[splits[name]].astype(np.float32))
        np.testing.assert_array_equal(np.concatenate(ys), labels[splits[name]])


def test_train_is_shuffled_and_augmented_val_is_not(arrays):
    images, labels = arrays
    splits = split_indices(labels)
    plain = make_datasets(images, labels, splits, augment=False, seed=0)
    augmented = make_datasets(images, labels, splits, augment=True, seed=0)

    (x_plain, y_plain), (x_aug, y_aug) = (next(iter(d["train"])) for d in (plain, augmented))
    np.testing.assert_array_equal(y_plain, y_aug)  # the same seeded shuffle...
    assert not np.allclose(x_plain, x_aug)  # ...but augmented pixels
    assert x_aug.dtype == np.float32 and -1 <= np.min(x_aug) and np.max(x_aug) <= 256

    epoch1, epoch2 = (np.concatenate(batches(plain["train"])[1]) for _ in range(2))
    assert not np.array_equal(epoch1, epoch2)  # reshuffled every epoch
    assert not np.array_equal(epoch1, np.sort(epoch1))

    val1, val2 = batches(augmented["val"]), batches(augmented["val"])
    for first, second in zip(val1[0] + val1[1], val2[0] + val2[1]):
        np.testing.assert_array_equal(first, second)


def test_pipelines_resize_once(arrays):
    images, labels = arrays
    datasets = make_datasets(images, labels, split_indices(labels), image_size=(8, 8))
    for dataset in datasets.values():
        x, _ = next(iter(dataset))
        assert x.shape == (32, 8, 8, 3) and x.dtype == np.float32


def test_pipeline_arguments_are_validated(arrays):
    images, labels = arrays
    splits = split_indices(labels, per_class=(1, 1, 1))
    too_big = r"`batch_size` .* \(17 images\)\. Received: batch_size=32"
    with pytest.raises(ValueError, match=too_big):
        make_datasets(images, labels, splits)
    with pytest.raises(ValueError, match=r"`images` must be uint8"):
        make_datasets(images.astype(np.float32), labels, splits, batch_size=8)
    with pytest.raises(ValueError, match=r"`splits` must be a dict"):
        make_datasets(images, labels, {"train": splits["train"]}, batch_size=8)


def test_augmentation_is_random_in_training_only():
    layer = augmentation(seed=1)
    assert isinstance(layer, keras.Sequential)
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    assert y.shape == x.shape and y.dtype == np.float32 and not np.allclose(x, y)


def test_as_numpy_returns_copies(arrays):
    images, labels = arrays
    splits = split_indices(labels)
    result = as_numpy(images, labels, splits)
    for name, (x, y) in result.items():
        assert x.shape == (len(splits[name]), 16, 16, 3) and x.dtype == np.uint8
        assert y.dtype == np.int32
        np.testing.assert_array_equal(y, labels[splits[name]])
        assert not np.shares_memory(x, images) and not np.shares_memory(y, labels)


# ---------------------------------------------------------------------------------------------
# The real archive (../shared/data/17flowers.tgz), skipped when absent
# ---------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_real_archive(real_archive, tiny_archive, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    tiny, _ = load_flowers17(tiny_archive, cache, image_size=(64, 64), progress=False)
    start = time.perf_counter()
    images, labels = load_flowers17(real_archive, cache, image_size=(64, 64), progress=False)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again, labels = load_flowers17(real_archive, cache, image_size=(64, 64), progress=False)
    cached = time.perf_counter() - start
    print(f"\nreal archive at 64x64: cold load {cold:.1f} s, cached load {cached:.2f} s")

    # Through one cache: the tiny fixture first, then the real archive, then the fixture
    # again, each gets its own images, and switching back decodes nothing.
    np.testing.assert_array_equal(again, images)
    assert np.abs(images.astype(int) - tiny).mean() > 20
    monkeypatch.setattr(flowers, "decode", forbidden)
    np.testing.assert_array_equal(load_flowers17(tiny_archive, cache, (64, 64))[0], tiny)

    assert images.shape == (1360, 64, 64, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [80] * 17)
    assert CLASS_NAMES[labels[80]] == "Snowdrop"  # image_0081.jpg
    assert cached < 1.0
    key = md5_of(real_archive)[:12]
    assert fetch_flowers17(real_archive, cache) == cache / f"17flowers-{key}" / "jpg"
    x, y = next(iter(make_datasets(images, labels, split_indices(labels))["train"]))
    assert x.shape == (32, 64, 64, 3) and x.dtype == np.float32 and y.dtype == np.int32
    shutil.rmtree(cache)  # 60 MB of extracted images


def test_one_hot_and_mixup_make_convex_mixtures():
    import tensorflow as tf

    images = np.stack([np.full((4, 4, 3), 10.0 * i, "float32") for i in range(8)])
    labels = np.arange(8) % 4
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    ds = data.one_hot_labels(ds, 4)
    x0, y0 = next(iter(ds))
    np.testing.assert_array_equal(y0.numpy(), np.eye(4)[labels])
    mixed = list(data.mixup(ds, alpha=0.4, seed=1).take(1))[0]
    x, y = mixed[0].numpy(), mixed[1].numpy()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    assert x.min() >= 0.0 and x.max() <= 70.0
    # Each mixed image is l * its own + (1 - l) * a partner's, with the labels mixed alike.
    weight = 1 - y[np.arange(8), labels].min() if not np.allclose(y, y0) else 1.0
    assert not np.allclose(x, x0) or weight == 1.0
    own = x[:, 0, 0, 0] / 10.0  # image i is constant 10 * i
    assert np.all((own >= 0) & (own <= 7))
    with pytest.raises(ValueError, match="Received: alpha=0"):
        data.mixup(ds, alpha=0)


def test_cutmix_pastes_one_box_and_mixes_labels_by_its_area():
    import tensorflow as tf

    images = np.stack([np.full((8, 8, 3), 10.0 * (i + 1), "float32") for i in range(8)])
    labels = np.arange(8) % 4
    ds = data.one_hot_labels(tf.data.Dataset.from_tensor_slices((images, labels)).batch(8), 4)
    boxes = 0
    for x, y in data.cutmix(ds.repeat(6), alpha=1.0, seed=3).as_numpy_iterator():
        np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
        # Every pixel is a real pixel of the image itself or of one partner, never a blend.
        own = x == images[:, :1, :1, :1]
        values = np.unique(x)
        assert set(values) <= set(10.0 * np.arange(1, 9))
        moved = ~own[..., 0]
        pasted = moved.any(axis=0)  # the same box in every image of the batch
        if pasted.any():
            boxes += 1
            rows, cols = np.where(pasted)
            # One axis-aligned rectangle...
            assert pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        area = pasted.mean()
        # ...and the labels mix by its area: 1 - area of its own, area of the partner whose
        # pixels fill the box (image j is constant 10 * (j + 1)).
        for i in range(8):
            partner = int(x[i][pasted][0, 0] / 10) - 1 if pasted.any() else i
            expected = (1 - area) * np.eye(4)[labels[i]] + area * np.eye(4)[labels[partner]]
            np.testing.assert_allclose(y[i], expected, atol=1e-6)
    assert boxes >= 3  # Beta(1, 1) areas: some batch in six gets a box
    with pytest.raises(ValueError, match="Received: alpha=-1"):
        data.cutmix(ds, alpha=-1)
