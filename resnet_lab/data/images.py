"""Decoding one image file: the flowers' JPEGs and a learner's own photos alike.

`decode` is the one decoder: `resnet_lab.data.flowers.load_flowers17` runs it on every image of
the archive and `read_image` on a user's file, so a model sees a user's photo as it saw its
training images, and both see the picture an image viewer shows:

1. the EXIF orientation is applied first (phones store portrait shots on their side and tag
   them, EXIF 2.32 tag 0x0112);
2. every mode Pillow opens becomes 8-bit RGB by its meaning, not by clipping: 16- and 32-bit
   grey is scaled from its value range, transparent pixels are composited on `BACKGROUND`,
   CMYK, YCbCr and CIELAB are converted, and animated files give their first frame;
3. the picture is scaled to cover the target and center-cropped. JPEGs are first decoded at
   the smallest DCT scale (1/2, 1/4 or 1/8) that still covers the target (`Image.draft`), so a
   24 MP phone photo decodes in ~15 ms instead of ~150 ms.

Files over Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`, 89.5 MP by
default) are refused with a `ValueError` before any pixel is decoded.
"""

import math
import re
import warnings
from pathlib import Path

import numpy as np

# Transparent pixels are composited on white, as browsers and image viewers show them on a page.
BACKGROUND = (255, 255, 255)

# EXIF orientations 5-8 turn the stored picture a quarter turn (width and height swap).
_ORIENTATION_TAG = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA = ("RGBA", "RGBa", "LA", "PA")
_SIXTEEN_BIT = (0, 65535)


def check_image_size(image_size):
    """`image_size` as a pair of Python ints `(height, width)`.

    Raises:
        ValueError: If `image_size` is not a pair of positive integers.
    """
    if (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(n, (int, np.integer)) and n > 0 for n in image_size)
    ):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(
        f"`image_size` must be a pair of positive integers (height, width). Received: "
        f"image_size={image_size!r}"
    )


def decode(path, height, width):
    """Decode one image file to the `(height, width, 3)` uint8 RGB picture a viewer shows.

    See the module docstring for the steps: orientation, 8-bit RGB, cover and center-crop.

    Args:
        path: Path of the image file.
        height: Rows of the result.
        width: Columns of the result.

    Returns:
        uint8 array `(height, width, 3)`.

    Raises:
        ValueError: If nothing is at `path`, it is a folder, it is not an image Pillow can
            read (text, empty, truncated, another format), or it has more pixels than
            Pillow's decompression-bomb limit. The message names the file and what to do.
    """
    from PIL import Image  # noqa: PLC0415 (importing the data API needs no Pillow)

    path = Path(path)
    _check_is_file(path)
    try:
        with warnings.catch_warnings():
            # Past MAX_IMAGE_PIXELS Pillow only warns (it refuses at twice that): refuse at once.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return np.asarray(_fit(_to_rgb(_upright(image, height, width)), height, width))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ValueError(_too_many_pixels(path, error)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:  # what Pillow raises on bad data
        raise ValueError(
            f"{path} is not an image Pillow can read ({error}). Give a photo in a format "
            f"Pillow reads (JPEG, PNG, GIF, WebP, TIFF, BMP, ...); if this file opens in an "
            f"image viewer, save a copy there as JPEG or PNG and give that. "
            f"Received: path={str(path)!r}"
        ) from error


def read_image(path, image_size=(224, 224)):
    """One photo of any size, orientation and mode Pillow reads, decoded as the flowers are.

    The photo is turned upright by its EXIF orientation, made 8-bit RGB by the meaning of its
    mode, scaled to cover `image_size` and center-cropped (`load_flowers17` decodes its images
    with the same `decode`), so a model trained here sees a user's photo as it saw its
    training images:

    - 16-bit grey (`I;16`, `I;16B`, ...) maps 0..65535 to 0..255; 32-bit integer grey (`I`)
      does too when its values fit in 0..65535 (Pillow opens 16-bit PGM and some TIFFs so),
      else its own min..max; float grey (`F`) maps 0..1, else its own min..max. Pillow reads
      16-bit colour as 8-bit RGB itself, scaled the same way.
    - Transparent images (`RGBA`, `LA`, `PA`, palette or RGB with a transparent colour) are
      composited on `BACKGROUND`, white, as a viewer shows them on a page.
    - CMYK, YCbCr and CIELAB are converted to RGB (CMYK naively, without its ICC profile);
      bilevel, grey and palette images are expanded.
    - An animated file (GIF, APNG, WebP) gives its first frame.
    - A JPEG is decoded at the smallest DCT scale that still covers `image_size`, so a
      24 MP photo decodes in milliseconds.

    Args:
        path: Path of a JPEG, PNG, ... file.
        image_size: `(height, width)` to return.

    Returns:
        uint8 array `(height, width, 3)`.

    Raises:
        ValueError: If `image_size` is not a pair of positive integers, nothing is at `path`,
            it is a folder, it is not an image Pillow can read (text, empty, truncated), or it
            has more pixels than `PIL.Image.MAX_IMAGE_PIXELS` (the message gives both counts).
    """
    height, width = check_image_size(image_size)
    return decode(path, height, width)


def _check_is_file(path):
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder, not an image file: give the path of an image inside it. "
            f"Received: path={str(path)!r}"
        )
    if not path.is_file():
        raise ValueError(
            f"No file at {path}: check the path (relative paths start at {Path.cwd()}). "
            f"Received: path={str(path)!r}"
        )
    if path.stat().st_size == 0:
        raise ValueError(
            f"{path} is empty (0 bytes): it was not fully copied or saved; copy it again. "
            f"Received: path={str(path)!r}"
        )


def _too_many_pixels(path, error):
    from PIL import Image  # noqa: PLC0415

    # Pillow refuses in `Image.open`, before the caller sees the size; its message carries it.
    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = f"{int(found[1]):,} pixels" if found else "more pixels than that"
    return (
        f"{path} has {pixels}, more than Pillow's decompression-bomb limit of "
        f"{Image.MAX_IMAGE_PIXELS:,} pixels (PIL.Image.MAX_IMAGE_PIXELS). Give a downscaled "
        f"copy, or, if you trust the file, raise that limit first. Received: path={str(path)!r}"
    )


def _upright(image, height, width):
    """The picture as a viewer shows it: EXIF orientation applied, JPEGs drafted first.

    `Image.draft` must run before the pixels load, so it is asked for the target as the
    picture is stored: a quarter-turned photo's target has its sides swapped.
    """
    from PIL import ImageOps  # noqa: PLC0415

    if image.getexif().get(_ORIENTATION_TAG) in _QUARTER_TURNS:
        height, width = width, height
    scale = max(width / image.width, height / image.height)
    image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    return ImageOps.exif_transpose(image)


def _to_rgb(image):
    """8-bit RGB by the meaning of `image.mode` (see `read_image`), never by clipping."""
    from PIL import Image  # noqa: PLC0415

    if image.mode in _WIDE_GREY:
        grey = np.asarray(image, np.float32)  # getextrema() refuses I;16B
        low, high = float(grey.min()), float(grey.max())
        if image.mode != "F" and (image.mode != "I" or (low >= 0 and high <= 65535)):
            low, high = _SIXTEEN_BIT
        elif image.mode == "F" and low >= 0 and high <= 1:
            low, high = 0, 1
        grey = (grey - low) * (255 / max(high - low, 1e-12))
        return Image.fromarray(np.round(grey).clip(0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in _ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _fit(image, height, width):
    from PIL import Image, ImageOps  # noqa: PLC0415

    return ImageOps.fit(image, (width, height), Image.Resampling.BICUBIC)
