"""Decoding one image file: the flowers' JPEGs and a learner's own photos alike.

`decode` is the one decoder: `resnet_lab.data.flowers.load_flowers17` runs it on every image of
the archive and `read_image` on a user's file, so a model sees a user's photo as it saw its
training images.
"""

import math
from pathlib import Path

import numpy as np

from resnet_lab.data.download import DataError


def check_image_size(image_size):
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
    from PIL import Image, ImageOps  # noqa: PLC0415 (importing the data API needs no Pillow)

    try:
        with Image.open(path) as image:
            scale = max(width / image.width, height / image.height)
            image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
            image = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.BICUBIC)
            return np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"Could not decode {path.name} in {path.parent} ({error}). The file is corrupt: "
            f"replace it, or fetch the archive again."
        ) from error


def read_image(path, image_size=(224, 224)):
    """One photo of any size and any format Pillow reads, decoded as the flowers are.

    Converted to RGB, scaled to cover `image_size` and center-cropped (`load_flowers17`'s
    decoding), so a model trained here sees a user's photo as it saw its training images.

    Args:
        path: Path of a JPEG, PNG, ... file.
        image_size: `(height, width)` to return.

    Returns:
        uint8 array `(height, width, 3)`.

    Raises:
        ValueError: If the file is missing or is not an image Pillow can read.
    """
    height, width = check_image_size(image_size)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No file at {path}. Received: path={str(path)!r}")
    try:
        return decode(path, height, width)
    except DataError as error:
        raise ValueError(f"{path} is not an image PIL can read ({error.__cause__}). "
                         f"Received: path={str(path)!r}") from error


