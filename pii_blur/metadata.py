"""Restoring metadata onto blurred images with one long-lived exiftool process.

Only known metadata is copied from the source file, by an allow-list of
groups: EXIF (GPS and orientation included), XMP (GPano included), IPTC and
the ICC profile. Maker notes, vendor segments and everything else stay
behind. Embedded pictures would show the unblurred scene: the EXIF thumbnail
is regenerated from the blurred pixels when the source had one, and the
picture-carrying tags below are never copied. pictures.py then scans the
result for any picture that slipped through under another name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from unittest import mock

import exiftool

from pii_blur import pictures

# Metadata groups copied from the source (exiftool group names).
COPIED_GROUPS = ("EXIF:all", "XMP:all", "IPTC:all", "ICC_Profile")
# Tags inside those groups that hold pictures of the scene, by exiftool's own
# names (`exiftool -listx`): never copied from the unblurred source.
EMBEDDED_PICTURE_TAGS = ("EXIF:ThumbnailImage", "EXIF:PreviewImage", "EXIF:JpgFromRaw", "EXIF:OtherImage",
                         "XMP-xmp:Thumbnails", "XMP-GImage:all", "XMP-GDepth:all", "XMP-GCamera:all")


# PNG chunks that carry nothing of COPIED_GROUPS (EXIF is eXIf or a zTXt/tEXt
# raw profile, XMP an iTXt, ICC an iCCP): a PNG made only of these has
# nothing for exiftool to copy.
PNG_CHUNKS_WITHOUT_METADATA = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT",
                               b"bKGD", b"pHYs", b"tIME", b"hIST", b"sPLT"}


def nothing_to_copy(source_bytes: bytes, extension: str) -> bool:
    """True only for a well-formed PNG whose chunks all carry no copied metadata."""
    if extension != ".png" or pictures.container_of(source_bytes) != "png":
        return False
    try:
        kinds = [kind for kind, _payload, _start, _end in pictures.png_chunks(source_bytes)]
    except pictures.PictureError:   # a chunk runs past the end
        return False
    return kinds[-1:] == [b"IEND"] and set(kinds) <= PNG_CHUNKS_WITHOUT_METADATA


class MetadataError(RuntimeError):
    """exiftool could not copy the metadata; the output must not be published."""


def exiftool_available() -> bool:
    return shutil.which("exiftool") is not None


class MetadataWriter:
    """Copies metadata between image files through one exiftool process.

    Use as a context manager, or call close(). Not thread-safe: one per worker.
    """

    def __init__(self):
        if not exiftool_available():
            raise MetadataError("exiftool is not installed (Debian/Ubuntu: apt-get install libimage-exiftool-perl)")
        self._tool = exiftool.ExifToolHelper(common_args=["-q", "-q"])
        self._start()

    def _start(self, attempts: int = 3) -> None:
        """Start exiftool, retrying if the child exits at once.

        pyexiftool's Linux start runs a preexec_fn that dlopens libc in the
        forked child. In a Beam worker, full of gRPC threads, that can
        deadlock the child before exec (hanging the whole run) or kill it.
        Without it, Python starts the child with vfork+exec and runs no Python
        code in between. The death signal it set is not needed: exiftool
        -stay_open exits when its stdin closes, which happens when we die.
        """
        for attempt in range(attempts):
            try:
                with mock.patch.object(exiftool.exiftool, "_set_pdeathsig", lambda sig: None):
                    self._tool.run()
                return
            except RuntimeError as error:
                if attempt == attempts - 1:
                    raise MetadataError(f"could not start exiftool: {error}") from error
                time.sleep(0.2 * (attempt + 1))

    def close(self) -> None:
        if self._tool.running:
            self._tool.terminate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def has_thumbnail(self, path: str) -> bool:
        tags = self._tool.get_tags([path], ["EXIF:ThumbnailImage"], params=["-b"])
        return bool(tags and any(key.endswith("ThumbnailImage") for key in tags[0]))

    def restore(self, source_bytes: bytes, target_bytes: bytes, extension: str,
                thumbnail_jpeg: bytes | None) -> bytes:
        """Return `target_bytes` with the metadata of `source_bytes` copied in.

        extension: file extension for exiftool's format detection, e.g. ".jpg".
        thumbnail_jpeg: new EXIF thumbnail, written only if the source had one.

        Raises:
            MetadataError: exiftool failed.
        """
        if nothing_to_copy(source_bytes, extension):   # a plain PNG: no exiftool round trip (65 ms)
            return target_bytes
        with tempfile.TemporaryDirectory(prefix="pii-blur-meta-") as folder:
            source = os.path.join(folder, "source" + extension)
            target = os.path.join(folder, "target" + extension)
            with open(source, "wb") as handle:
                handle.write(source_bytes)
            with open(target, "wb") as handle:
                handle.write(target_bytes)
            args = ["-overwrite_original", "-TagsFromFile", source, *(f"-{group}" for group in COPIED_GROUPS)]
            args += [f"--{tag}" for tag in EMBEDDED_PICTURE_TAGS]
            if thumbnail_jpeg is not None and self.has_thumbnail(source):
                thumbnail = os.path.join(folder, "thumbnail.jpg")
                with open(thumbnail, "wb") as handle:
                    handle.write(thumbnail_jpeg)
                args.append(f"-ThumbnailImage<={thumbnail}")
            if not self._tool.running:
                self._start()
            try:
                self._tool.execute(*args, target)
            except Exception as error:  # pyexiftool raises several types
                raise MetadataError(f"exiftool failed: {error}") from error
            with open(target, "rb") as handle:
                return handle.read()
