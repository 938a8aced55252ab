"""Image files as people see them: one reader for training, evaluation and
``rcnn-predict``.

Phone cameras store JPEGs unrotated and record how to turn them in the EXIF
orientation tag; image viewers and annotation tools apply it, so the boxes a
tool draws (and the width / height a COCO json records) are in the upright
frame. ``read_rgb`` applies the tag too, so the pixels the model sees are the
ones that were annotated.

The decoder is PIL's (``Image.open`` + ``ImageOps.exif_transpose``), not
``torchvision.io.decode_image``: torchvision 0.29 deprecates its image
decoders and encoders (they are to move to TorchCodec), its decoder leaves
the orientation unapplied unless asked (``apply_exif_orientation``), and it
returns 16-bit PNGs as uint16 where every other file is uint8. PIL is
already a dependency, reads every format and mode users have (JPEG, PNG,
BMP, GIF, TIFF, WebP; grayscale, palette, RGBA, 16-bit) and is maintained
for exactly this.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_rgb(path: str | os.PathLike) -> torch.Tensor:
    """The image at ``path`` as uint8 [3, H, W] RGB in its upright frame (EXIF
    orientation applied). Grayscale is repeated over the channels, palettes are
    expanded, alpha is dropped, 16-bit values v become round(v / 257) (0..65535
    onto 0..255). The tensor is a view of the decoded H x W x 3 pixels
    (channels-last strides, which the model's channels-last convolutions
    want; a planar copy would cost as much as the decoding). Raises OSError
    (unreadable or truncated file) or ValueError (an image too large for
    PIL's decompression-bomb limit)."""
    try:
        with Image.open(path) as image:
            ImageOps.exif_transpose(image, in_place=True)
            if image.mode in _SIXTEEN_BIT:
                gray = np.asarray(image, dtype=np.float64)
                pixels = np.round(np.clip(gray, 0, 65535) / 257).astype(np.uint8)
                pixels = np.repeat(pixels[..., None], 3, axis=2)
            else:
                pixels = np.array(image if image.mode == "RGB" else image.convert("RGB"))
    except Image.DecompressionBombError as error:
        raise ValueError(str(error)) from error
    return torch.from_numpy(pixels).permute(2, 0, 1)
