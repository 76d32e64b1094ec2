"""`resnet_lab.data.read_image` on every kind of file a learner might give it, each built here by
Pillow, checked by its pixels: orientation, bit depth, transparency, colour modes, animation,
size limits, and one clear error for whatever is not an image."""

import struct
import tarfile
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from resnet_lab.data import load_flowers17, read_image

T = Image.Transpose
# The picture as a viewer shows it: a portrait with four colours in its quadrants, so that
# every turn and mirror moves some colour elsewhere.
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
QUADRANTS = np.array([[RED, GREEN], [BLUE, YELLOW]])
# How a camera stores that picture under each EXIF orientation (EXIF 2.32, tag 0x0112): the
# transform a viewer undoes. 6 is a phone held upright: stored a quarter turn anticlockwise.
STORED = {
    1: None,
    2: T.FLIP_LEFT_RIGHT,
    3: T.ROTATE_180,
    4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE,
    6: T.ROTATE_90,
    7: T.TRANSVERSE,
    8: T.ROTATE_270,
}


def upright(height=32, width=16):
    """The upright portrait: `QUADRANTS` blown up to `(height, width)`."""
    return np.repeat(np.repeat(QUADRANTS, height // 2, axis=0), width // 2, axis=1).astype(np.uint8)


def quadrant_means(array):
    """`(2, 2, 3)` mean colour of each quadrant of an `(H, W, 3)` array."""
    h, w = array.shape[0] // 2, array.shape[1] // 2
    return np.array(
        [
            [array[:h, :w].mean((0, 1)), array[:h, w:].mean((0, 1))],
            [array[h:, :w].mean((0, 1)), array[h:, w:].mean((0, 1))],
        ]
    )


def save_oriented(path, orientation, height=32, width=16, **options):
    """Store `upright()` as a camera would under `orientation`, tagged with it."""
    image = Image.fromarray(upright(height, width))
    if STORED[orientation] is not None:
        image = image.transpose(STORED[orientation])
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, **options)
    return path


def png16_rgb(path, pixels):
    """Write `pixels` (uint16 `(H, W, 3)`) as a 16-bit RGB PNG; Pillow has no mode to write one."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16-bit, truecolour
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


FULL_RANGE = np.linspace(0, 65535, 64).round().astype(np.uint16)  # black to white, 64 columns


def assert_gradient(array):
    """Every row of `array` is `FULL_RANGE` scaled to 0..255 (within 1), in all three channels."""
    expected = np.broadcast_to((FULL_RANGE / 257.0)[None, :, None], array.shape)
    assert np.abs(array - expected).max() <= 1.0, array[0, ::8, 0]


# ---------------------------------------------------------------------------------------------
# Orientation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_gives_the_upright_picture(orientation, tmp_path):
    path = save_oriented(tmp_path / "photo.jpg", orientation, quality=95)
    got = read_image(path, (32, 16))
    np.testing.assert_allclose(quadrant_means(got), QUADRANTS, atol=40)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tiff"])
def test_exif_orientation_is_applied_in_other_formats(suffix, tmp_path):
    path = save_oriented(
        tmp_path / f"photo{suffix}", 6, **({"lossless": True} if suffix == ".webp" else {})
    )
    np.testing.assert_allclose(quadrant_means(read_image(path, (32, 16))), QUADRANTS, atol=1)


def test_a_24_megapixel_phone_photo_decodes_upright_and_fast(tmp_path):
    # 6000x4000 stored on its side, as a phone stores a portrait shot, tagged orientation 6.
    path = save_oriented(tmp_path / "phone.jpg", 6, height=6000, width=4000, quality=90)
    with Image.open(path) as image:
        assert image.size == (6000, 4000) and image.width * image.height == 24_000_000

    def best_of_three(function):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = function()
            times.append(time.perf_counter() - start)
        return min(times), result

    def full_decode():
        with Image.open(path) as image:
            image.load()

    full, _ = best_of_three(full_decode)
    ours, got = best_of_three(lambda: read_image(path, (96, 64)))
    np.testing.assert_allclose(quadrant_means(got), QUADRANTS, atol=40)
    # The DCT-scaled decode (1/8 here) reads ~1/64 of the pixels; a full decode alone is slower.
    assert ours < full / 2, f"read_image {ours:.3f} s vs a plain full decode {full:.3f} s"


def test_a_quarter_turned_jpeg_is_drafted_no_smaller_than_it_is_shown(tmp_path, monkeypatch):
    # Shown 1600 wide and 2400 tall; a 40x240 (wide) target needs >= 240 columns shown. Drafted
    # for the stored 2400x1600 without swapping the target's sides, it would come out 200 wide
    # and be upscaled.
    from PIL import ImageOps

    path = save_oriented(tmp_path / "portrait.jpg", 6, height=2400, width=1600, quality=90)
    shown = []
    fit = ImageOps.fit
    monkeypatch.setattr(
        ImageOps, "fit", lambda image, *a, **k: shown.append(image.size) or fit(image, *a, **k)
    )
    assert read_image(path, (40, 240)).shape == (40, 240, 3)
    ((width, height),) = shown
    assert width >= 240 and height > width and width < 1600  # drafted, upright, not too small


# ---------------------------------------------------------------------------------------------
# Bit depth
# ---------------------------------------------------------------------------------------------


def grey_16(path, byte_order="<"):
    grey = np.tile(FULL_RANGE, (4, 1)).astype(f"{byte_order}u2")
    Image.fromarray(grey).save(path)
    return path


@pytest.mark.parametrize(
    "kind, write",
    [
        ("I;16 PNG", lambda folder: grey_16(folder / "scan.png")),
        ("I;16B TIFF", lambda folder: grey_16(folder / "scan.tiff", ">")),
        ("16-bit PGM (opens as I)", lambda folder: grey_16(folder / "scan.pgm")),
        (
            "16-bit RGB PNG",
            lambda folder: png16_rgb(
                folder / "hdr.png", np.repeat(np.tile(FULL_RANGE, (4, 1))[..., None], 3, axis=2)
            ),
        ),
    ],
)
def test_full_range_16_bit_keeps_its_gradient(kind, write, tmp_path):
    path = write(tmp_path)
    with Image.open(path) as image:
        assert image.mode in ("I;16", "I;16B", "I", "RGB"), image.mode
    assert_gradient(read_image(path, (4, 64)))


def test_16_bit_dark_image_stays_dark(tmp_path):
    # Scaled from the type's range, not stretched from the image's own: a dark scan stays dark.
    path = tmp_path / "dark.png"
    Image.fromarray(np.full((4, 4), 2570, np.uint16)).save(path)  # 2570 / 257 = 10
    np.testing.assert_array_equal(read_image(path, (4, 4)), 10)


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.linspace(0, 1, 64, dtype=np.float32), FULL_RANGE / 257.0),  # 0..1: its nominal range
        (np.linspace(-3, 5, 64, dtype=np.float32), np.linspace(0, 255, 64)),  # else its own
    ],
)
def test_32_bit_float_grey_is_scaled_from_its_range(values, expected, tmp_path):
    path = tmp_path / "depth.tiff"
    Image.fromarray(np.tile(values, (4, 1))).save(path)
    with Image.open(path) as image:
        assert image.mode == "F"
    got = read_image(path, (4, 64))
    assert np.abs(got - expected[None, :, None]).max() <= 1.0


def test_32_bit_integer_grey_beyond_16_bits_is_stretched(tmp_path):
    path = tmp_path / "counts.tiff"
    Image.fromarray(np.tile(np.linspace(-100_000, 900_000, 64).astype(np.int32), (4, 1))).save(path)
    with Image.open(path) as image:
        assert image.mode == "I"
    got = read_image(path, (4, 64))
    assert np.abs(got - np.linspace(0, 255, 64)[None, :, None]).max() <= 1.0


# ---------------------------------------------------------------------------------------------
# Transparency and colour modes
# ---------------------------------------------------------------------------------------------


def test_transparent_pixels_are_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red underneath everywhere
    rgba[:2, :, 3] = 0  # top half fully transparent
    rgba[2:, :, 3] = 128  # bottom half half-transparent
    Image.fromarray(rgba).save(tmp_path / "sticker.png")
    got = read_image(tmp_path / "sticker.png", (4, 4)).astype(int)
    np.testing.assert_array_equal(got[:2], 255)
    assert np.abs(got[2:] - [255, 127, 127]).max() <= 1


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_transparency_is_white(suffix, tmp_path):
    palette = Image.new("P", (4, 2))
    palette.putpalette([0, 0, 0, 0, 0, 255])
    for x in range(4):
        palette.putpixel((x, 1), 1)  # bottom row blue, top row index 0: transparent
    palette.save(tmp_path / f"logo{suffix}", transparency=0)
    got = read_image(tmp_path / f"logo{suffix}", (2, 4))
    np.testing.assert_array_equal(got[0], np.full((4, 3), 255))
    np.testing.assert_array_equal(got[1], np.tile(BLUE, (4, 1)))


def test_grey_with_alpha_and_rgb_with_a_transparent_colour_are_white(tmp_path):
    Image.new("LA", (4, 4), (0, 0)).save(tmp_path / "la.png")
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "trns.png", transparency=(1, 2, 3))
    for name in ("la.png", "trns.png"):
        np.testing.assert_array_equal(read_image(tmp_path / name, (4, 4)), 255)


@pytest.mark.parametrize("suffix", [".jpg", ".tiff"])
def test_cmyk_cyan_becomes_cyan(suffix, tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / f"print{suffix}")
    with Image.open(tmp_path / f"print{suffix}") as image:
        assert image.mode == "CMYK"
    red, green, blue = read_image(tmp_path / f"print{suffix}", (8, 8)).reshape(-1, 3).mean(0)
    assert red < 40 and green > 215 and blue > 215


@pytest.mark.parametrize("mode", ["YCbCr", "LAB"])
def test_ycbcr_and_lab_are_converted_to_rgb(mode, tmp_path):
    colour = (200, 30, 90)
    Image.new("RGB", (8, 8), colour).convert(mode).save(tmp_path / "scan.tiff")
    with Image.open(tmp_path / "scan.tiff") as image:
        assert image.mode == mode
    got = read_image(tmp_path / "scan.tiff", (8, 8)).reshape(-1, 3)
    assert np.abs(got.astype(int) - colour).max() <= 4


def test_bilevel_and_grey_are_expanded(tmp_path):
    Image.new("1", (4, 4), 1).save(tmp_path / "fax.png")
    Image.new("L", (4, 4), 77).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_image(tmp_path / "fax.png", (4, 4)), 255)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png", (4, 4)), 77)


@pytest.mark.parametrize(
    "suffix, options",
    [
        (".gif", {}),
        (".png", {}),
        (".webp", {"lossless": True}),
    ],
)
def test_animated_files_give_their_first_frame(suffix, options, tmp_path):
    first, second = Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)
    path = tmp_path / f"clip{suffix}"
    first.save(path, save_all=True, append_images=[second], duration=100, **options)
    with Image.open(path) as image:
        assert image.n_frames == 2
    np.testing.assert_array_equal(read_image(path, (8, 8)), np.full((8, 8, 3), RED))


# ---------------------------------------------------------------------------------------------
# Size limits and errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side, pixels", [(40, "1,600"), (50, "2,500")])
def test_past_the_decompression_bomb_limit_is_a_clear_error(side, pixels, tmp_path, monkeypatch):
    # 40x40 is past the limit (where Pillow only warns), 50x50 past twice it (Pillow refuses).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (30, 30)).save(tmp_path / "small.png")
    assert read_image(tmp_path / "small.png", (4, 4)).shape == (4, 4, 3)
    path = tmp_path / "huge.png"
    Image.new("RGB", (side, side)).save(path)
    with pytest.raises(ValueError) as error:
        read_image(path, (4, 4))
    message = str(error.value)
    assert str(path) in message and f"{pixels} pixels" in message
    assert "limit of 1,000 pixels" in message and "MAX_IMAGE_PIXELS" in message


def truncated(path, data):
    path.write_bytes(data[: len(data) // 2])


def not_images(folder):
    """`{kind: (path, words the message must hold)}` for things that are not an image."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    photo.save(folder / "whole.jpg")
    photo.save(folder / "whole.png")
    truncated(folder / "half.jpg", (folder / "whole.jpg").read_bytes())
    truncated(folder / "half.png", (folder / "whole.png").read_bytes())
    (folder / "notes.txt").write_text("not a picture")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "album").mkdir()
    return {
        "text": (folder / "notes.txt", "is not an image Pillow can read"),
        "empty": (folder / "empty.jpg", "is empty (0 bytes)"),
        "truncated JPEG": (
            folder / "half.jpg",
            "is not an image Pillow can read (image file is truncated",
        ),
        "truncated PNG": (
            folder / "half.png",
            "is not an image Pillow can read (image file is truncated",
        ),
        "folder": (folder / "album", "is a folder, not an image file"),
        "missing": (folder / "gone.jpg", "No file at"),
    }


@pytest.mark.parametrize(
    "kind", ["text", "empty", "truncated JPEG", "truncated PNG", "folder", "missing"]
)
def test_what_is_not_an_image_is_one_clear_value_error(kind, tmp_path):
    path, words = not_images(tmp_path)[kind]
    with pytest.raises(ValueError) as error:
        read_image(path, (8, 8))
    message = str(error.value)
    assert words in message and str(path) in message
    assert message.endswith(f"Received: path={str(path)!r}") and "\n" not in message


# ---------------------------------------------------------------------------------------------
# One decoder for the training images and a learner's photos
# ---------------------------------------------------------------------------------------------


def test_a_training_image_and_a_users_copy_of_it_give_the_same_array(tiny_archive, tmp_path):
    with tarfile.open(tiny_archive) as tar:
        tar.extractall(tmp_path / "flowers", filter="data")
    jpg = tmp_path / "flowers" / "jpg"
    # Image 5 becomes a phone photo: stored on its side, tagged orientation 6, non-square.
    save_oriented(jpg / "image_0005.jpg", 6, height=32, width=16, quality=95)
    images, _ = load_flowers17(jpg, tmp_path / "cache", (16, 8), progress=False)
    copy = tmp_path / "my_photo.jpg"
    copy.write_bytes((jpg / "image_0005.jpg").read_bytes())
    np.testing.assert_array_equal(images[4], read_image(copy, (16, 8)))
    np.testing.assert_allclose(quadrant_means(images[4]), QUADRANTS, atol=40)
    np.testing.assert_array_equal(images[0], read_image(jpg / "image_0001.jpg", (16, 8)))
