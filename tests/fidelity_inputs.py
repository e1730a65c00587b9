"""Real photos in encodings that must come out as they went in: 16-bit PNG and
TIFF, and a CMYK JPEG carrying a CMYK ICC profile.

The 16-bit images are skimage's astronaut (512x512, face at full size, see
conftest.ASTRONAUT_FACE_BOX) with the photo in the high byte of each sample
and seeded noise in the low byte, so a writer that drops to 8 bits, or a
reader that scales 8 bits up, changes every pixel. Their 8-bit view
(imageio.to_rgb8) is the astronaut exactly.

The CMYK profile is Ghostscript's SWOP profile, from the Debian package
libgs-common (CMYK_PROFILE_PACKAGE); cmyk_profile() raises FileNotFoundError
without it.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import skimage.data
from PIL import Image, ImageCms

CMYK_PROFILE_PATH = "/usr/share/color/icc/ghostscript/default_cmyk.icc"
CMYK_PROFILE_PACKAGE = "libgs-common"
SEED = 20261204


def astronaut16(channels: int = 3) -> np.ndarray:
    """512x512 uint16 astronaut: HxW grey (channels=1), HxWx3 RGB or HxWx4 RGBA.

    High byte: the photo (grey: its green channel; alpha: a left-to-right
    ramp); low byte: seeded noise.
    """
    rgb = skimage.data.astronaut()
    if channels == 1:
        high = rgb[:, :, 1]
    elif channels == 3:
        high = rgb
    elif channels == 4:
        ramp = np.broadcast_to(np.linspace(64, 255, rgb.shape[1]).astype(np.uint8), rgb.shape[:2])
        high = np.dstack([rgb, ramp])
    else:
        raise ValueError(f"channels must be 1, 3 or 4, not {channels}")
    low = np.random.default_rng(SEED + channels).integers(0, 256, high.shape, dtype=np.uint16)
    return (high.astype(np.uint16) << 8) | low


def sixteen_bit_bytes(pixels: np.ndarray, extension: str) -> bytes:
    """A 16-bit PNG (extension '.png') or LZW TIFF ('.tif') of HxW grey, HxWx3 RGB or HxWx4 RGBA uint16 pixels."""
    if pixels.dtype != np.uint16:
        raise ValueError(f"expected uint16 pixels, got {pixels.dtype}")
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(extension, pixels)
    if not ok:
        raise ValueError(f"OpenCV could not write {extension}")
    return encoded.tobytes()


def rgb16_png() -> bytes:
    """48-bit RGB PNG of the astronaut."""
    return sixteen_bit_bytes(astronaut16(3), ".png")


def rgb16_tiff() -> bytes:
    """48-bit RGB TIFF (LZW) of the astronaut."""
    return sixteen_bit_bytes(astronaut16(3), ".tif")


def grey16_png() -> bytes:
    """16-bit grey PNG of the astronaut."""
    return sixteen_bit_bytes(astronaut16(1), ".png")


def cmyk_profile() -> bytes:
    """The bytes of a real CMYK output profile (Ghostscript's SWOP).

    Raises:
        FileNotFoundError: CMYK_PROFILE_PACKAGE is not installed.
    """
    with open(CMYK_PROFILE_PATH, "rb") as handle:
        return handle.read()


def astronaut_cmyk() -> np.ndarray:
    """512x512x4 uint8 CMYK ink amounts (0 = none): the astronaut through sRGB -> cmyk_profile()."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(cmyk_profile()))
    image = ImageCms.profileToProfile(Image.fromarray(skimage.data.astronaut()), ImageCms.createProfile("sRGB"),
                                      profile, outputMode="CMYK")
    return np.asarray(image)


def cmyk_jpeg(quality: int = 92) -> bytes:
    """A CMYK JPEG (Adobe, inverted, as Photoshop writes) of astronaut_cmyk(), carrying cmyk_profile()."""
    pixels = astronaut_cmyk()
    image = Image.frombuffer("CMYK", (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, icc_profile=cmyk_profile())
    return buffer.getvalue()
