"""Restoring metadata onto blurred images with one long-lived exiftool process.

Only known metadata is copied from the source file, by an allow-list of
groups: EXIF (GPS, orientation and maker notes included), XMP (GPano
included), IPTC and the ICC profile. Vendor segments and everything else stay
behind. Embedded pictures would show the unblurred scene: the EXIF thumbnail
is regenerated from the blurred pixels when the source had one, and the
picture-carrying tags below are never copied. pictures.py then scans the
result for any picture that slipped through under another name.

A PNG whose copied metadata all sits in the chunks exiftool would write
(eXIf, iCCP, an uncompressed XMP iTXt), without the picture-carrying tags
below, skips exiftool: copy_png_metadata copies the chunks byte for byte and replaces the
EXIF thumbnail, saving a 75 ms exiftool round trip per file. Unlike exiftool
it keeps EXIF tags exiftool does not know (it drops them) and adds none of
the tags exiftool writes as mandatory (resolution, ExifVersion, ...) when the
source lacks them.
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


# How the XMP groups of EMBEDDED_PICTURE_TAGS show in an XMP packet: namespace URIs, property name.
EMBEDDED_PICTURE_XMP = (b"http://ns.google.com/photos/1.0/image/", b"http://ns.google.com/photos/1.0/depthmap/",
                        b"http://ns.google.com/photos/1.0/camera/", b"Thumbnails")
XMP_KEYWORD = b"XML:com.adobe.xmp"
PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
NEEDS_EXIFTOOL = "needs exiftool"


def png_metadata_in(kind: bytes, payload: bytes) -> str | None:
    """What a PNG chunk holds of COPIED_GROUPS.

    'EXIF', 'ICC' or 'XMP' for a chunk that can be copied byte for byte;
    NEEDS_EXIFTOOL for one only exiftool can translate (ImageMagick's 'Raw
    profile type' text, XMP compressed or outside iTXt, the non-standard
    chunks exiftool also reads) or that holds XMP pictures exiftool leaves
    out; None for a chunk without any.
    """
    keyword = payload.split(b"\x00", 1)[0] if kind in PNG_TEXT_CHUNKS else b""
    if kind == b"eXIf":
        return "EXIF"
    if kind == b"iCCP":
        return "ICC"
    if keyword == XMP_KEYWORD:
        uncompressed = kind == b"iTXt" and payload[len(XMP_KEYWORD) + 1:len(XMP_KEYWORD) + 2] == b"\x00"
        pictures_left_out = any(marker in payload for marker in EMBEDDED_PICTURE_XMP)
        return "XMP" if uncompressed and not pictures_left_out else NEEDS_EXIFTOOL
    if keyword.startswith(b"Raw profile type") or kind == b"tXMP" or kind.lower() in (b"exif", b"zxif"):
        return NEEDS_EXIFTOOL
    return None


def copy_png_metadata(source_bytes: bytes, target_bytes: bytes, thumbnail_jpeg: bytes | None) -> bytes | None:
    """`target_bytes` (a PNG) with the metadata chunks of `source_bytes` copied in, or None
    when exiftool must copy them.

    The source's eXIf, iCCP and XMP iTXt go after the target's IHDR, before
    its first PLTE or IDAT, unless the target has one of the kind already.
    The EXIF thumbnail is replaced by `thumbnail_jpeg`, or removed when it is
    None. None also when the source is not a well-formed PNG, holds two
    chunks of a kind, or its EXIF holds other pictures or cannot be read.
    """
    if pictures.container_of(source_bytes) != "png":
        return None
    chunks = pictures.whole_png_chunks(source_bytes)
    if chunks is None:
        return None
    copied: dict[str, tuple[bytes, bytes]] = {}
    for kind, payload, _start, _end in chunks:
        what = png_metadata_in(kind, payload)
        if what is None:
            continue
        if what == NEEDS_EXIFTOOL or what in copied:
            return None
        if kind == b"eXIf":
            try:
                payload, other_pictures = pictures.png_exif_with_thumbnail(payload, thumbnail_jpeg)
            except pictures.PictureError:
                return None
            if other_pictures:   # previews exiftool leaves out (EMBEDDED_PICTURE_TAGS)
                return None
        copied[what] = (kind, payload)
    target = list(pictures.png_chunks(target_bytes))
    present = {png_metadata_in(kind, payload) for kind, payload, _start, _end in target}
    inserted = b"".join(pictures.png_chunk(kind, payload) for what, (kind, payload) in copied.items()
                        if what not in present)
    image_start = next(start for kind, _payload, start, _end in target if kind in (b"PLTE", b"IDAT"))
    return target_bytes[:image_start] + inserted + target_bytes[image_start:]


class MetadataError(RuntimeError):
    """exiftool could not copy the metadata; the output must not be published."""


def exiftool_available() -> bool:
    return shutil.which("exiftool") is not None


class MetadataWriter:
    """Copies metadata between image files through one exiftool process, started on first
    use: JPEGs patched block by block and most PNGs never need it, and each start costs
    about 0.1 s of a worker's start-up.

    Use as a context manager, or call close(). Not thread-safe: one per worker.
    """

    def __init__(self):
        if not exiftool_available():
            raise MetadataError("exiftool is not installed (Debian/Ubuntu: apt-get install libimage-exiftool-perl)")
        self._tool = exiftool.ExifToolHelper(common_args=["-q", "-q"])

    def _running_tool(self) -> exiftool.ExifToolHelper:
        if not self._tool.running:
            self._start()
        return self._tool

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
        tags = self._running_tool().get_tags([path], ["EXIF:ThumbnailImage"], params=["-b"])
        return bool(tags and any(key.endswith("ThumbnailImage") for key in tags[0]))

    def restore(self, source_bytes: bytes, target_bytes: bytes, extension: str,
                thumbnail_jpeg: bytes | None) -> bytes:
        """Return `target_bytes` with the metadata of `source_bytes` copied in, by exiftool
        or, for a PNG whose metadata copy_png_metadata can copy, without it.

        extension: file extension for exiftool's format detection, e.g. ".jpg".
        thumbnail_jpeg: new EXIF thumbnail, written only if the source had one.

        Raises:
            MetadataError: exiftool failed.
        """
        if extension == ".png":
            copied = copy_png_metadata(source_bytes, target_bytes, thumbnail_jpeg)
            if copied is not None:
                return copied
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
            try:
                self._running_tool().execute(*args, target)
            except Exception as error:  # pyexiftool raises several types
                raise MetadataError(f"exiftool failed: {error}") from error
            with open(target, "rb") as handle:
                return handle.read()
