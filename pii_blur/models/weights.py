"""Locating and verifying the model weights vendored with the package."""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

# File name -> sha256, as recorded in weights/NOTICE.
VENDORED_WEIGHTS = {
    "centerface_dynamic.onnx": "337a4dc06d895a4bda6b98e942efae107e3edad9b4e1d80982ba7c21c6af7c48",
    "ppocrv4_det_folded.onnx": "c455789ec939f6d82133eee78a951b969105eb6bbd10d9dc0801f2bfd5ad9d8c",
    "ppocrv4_rec.onnx": "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    # Derived from the fp32 files above by tools/derive_int8.py.
    "centerface_dynamic_int8.onnx": "c440914f250ac624e8b80283b4997ce1c1ed255388fc9116ef2c3fea4ac26c8c",
    "ppocrv4_det_folded_int8.onnx": "a032f47bd91974f676d100cc90c69507478930eb63921b7ec3b4ac1c627fd4ab",
}


def weights_for(fp32_name: str, precision: str) -> str:
    """The vendored file of `fp32_name`'s model at `precision` ("int8" or "fp32")."""
    return fp32_name if precision == "fp32" else fp32_name.replace(".onnx", f"_{precision}.onnx")


@functools.lru_cache(maxsize=None)
def read_vendored(name: str) -> bytes:
    """Bytes of a vendored weight file, checked against its recorded sha256.

    Raises:
        RuntimeError: the file is missing or altered (a broken install).
    """
    try:
        data = resources.files("pii_blur.models").joinpath("weights", name).read_bytes()
    except FileNotFoundError:
        raise RuntimeError(f"model weights {name} are missing from the installed package") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != VENDORED_WEIGHTS[name]:
        raise RuntimeError(f"model weights {name} have sha256 {digest}, expected {VENDORED_WEIGHTS[name]}")
    return data
