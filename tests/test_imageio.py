import io
import os
import subprocess
import zlib

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageCms, PngImagePlugin

import fidelity_inputs
from conftest import ASTRONAUT_FACE_BOX, add_metadata, high_frequency_energy, jpeg_bytes
from hostile_corpus import png_chunk, png_raw, ycck_jpeg
from pii_blur import anonymize, imageio
from pii_blur.blur import blur_mask
from pii_blur.metadata import MetadataWriter
from pii_blur.types import Detection


def test_sniff_by_content_not_name(astronaut):
    assert imageio.sniff_format(jpeg_bytes(astronaut)[:32]) == "jpeg"
    assert imageio.sniff_format(b"hello, I am a text file") is None
    assert imageio.sniff_format(b"") is None
    assert imageio.sniff_format(b"\x00\x00\x00\x18ftypheic\x00\x00") == "heic"
    assert imageio.sniff_format(b"\x00\x00\x00\x18ftypisom\x00\x00") is None  # an mp4


@pytest.mark.parametrize("cut", [100, 2000, 20000])
def test_truncated_jpeg_is_an_error(astronaut, cut):
    with pytest.raises(imageio.ImageError, match="truncated|corrupt"):
        imageio.decode(jpeg_bytes(astronaut)[:cut])


def test_unsupported_image_format_is_an_error(astronaut):
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, "GIF")
    with pytest.raises(imageio.ImageError, match="unsupported image format: gif"):
        imageio.decode(buffer.getvalue())


def test_huge_declared_size_is_refused(monkeypatch, astronaut):
    monkeypatch.setattr(imageio, "MAX_PIXELS", 1000)
    with pytest.raises(imageio.ImageError, match="too large"):
        imageio.decode(jpeg_bytes(astronaut))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_lossless_formats_round_trip_exactly(astronaut, fmt):
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    image = imageio.decode(buffer.getvalue())
    again = imageio.decode(imageio.encode(image, image.pixels))
    assert again.format == fmt.lower()
    assert np.array_equal(again.pixels, astronaut)


def test_sixteen_bit_png_stays_sixteen_bit():
    pixels = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    image = imageio.decode(buffer.getvalue())
    assert image.pixels.dtype == np.uint16
    assert np.array_equal(imageio.decode(imageio.encode(image, image.pixels)).pixels, pixels)


def test_jpeg_reencode_keeps_quantisation_tables(astronaut):
    source = jpeg_bytes(astronaut, quality=75)
    image = imageio.decode(source)
    again = Image.open(io.BytesIO(imageio.encode(image, image.pixels)))
    assert again.quantization == Image.open(io.BytesIO(source)).quantization


def test_exif_orientation_is_read(astronaut):
    exif = Image.Exif()
    exif[imageio.EXIF_ORIENTATION_TAG] = 6
    image = imageio.decode(jpeg_bytes(astronaut, exif=exif.tobytes()))
    assert image.orientation == 6


# --------------------------------------------------------------------------- fidelity: 16-bit and CMYK

SIXTEEN_BIT_KINDS = {"grey": (1, "I;16"), "rgb": (3, "RGB;16"), "rgba": (4, "RGBA;16")}


def _sixteen_bits_stored(data: bytes) -> bool:
    """Whether a PNG or TIFF file itself says 16 bits per sample (read by Pillow's header parsers)."""
    image = Image.open(io.BytesIO(data))
    if image.format == "PNG":
        return data[24] == 16   # IHDR bit depth
    bits = image.tag_v2[258]
    return all(b == 16 for b in (bits if isinstance(bits, tuple) else (bits,)))


@pytest.mark.parametrize("extension", [".png", ".tif"])
@pytest.mark.parametrize("kind", sorted(SIXTEEN_BIT_KINDS))
def test_sixteen_bit_round_trip_is_exact(kind, extension):
    channels, mode = SIXTEEN_BIT_KINDS[kind]
    pixels = fidelity_inputs.astronaut16(channels)
    image = imageio.decode(fidelity_inputs.sixteen_bit_bytes(pixels, extension))
    assert (image.mode, image.pixels.dtype) == (mode, np.uint16)
    assert np.array_equal(image.pixels, pixels)
    encoded = imageio.encode(image, image.pixels)
    assert _sixteen_bits_stored(encoded)
    again = imageio.decode(encoded)
    assert (again.format, again.mode) == (image.format, mode)
    assert np.array_equal(again.pixels, pixels)


def test_sixteen_bit_rgba_tiff_says_its_fourth_sample_is_alpha():
    """OpenCV writes no ExtraSamples entry; without one, libtiff warns and
    readers may not treat the fourth sample as alpha."""
    pixels = fidelity_inputs.astronaut16(4)
    image = imageio.decode(fidelity_inputs.sixteen_bit_bytes(pixels, ".tif"))
    written = Image.open(io.BytesIO(imageio.encode(image, pixels)))
    assert written.tag_v2.get(338) == (2,)   # unassociated alpha
    assert written.tag_v2.get(258) == (16, 16, 16, 16)


@pytest.mark.parametrize("make", [fidelity_inputs.rgb16_png, fidelity_inputs.rgb16_tiff])
def test_sixteen_bit_colour_agrees_with_pillows_eight_bit_reading(make):
    """Pillow reads 48-bit files as their high bytes: a cross-check of channel order, independent of OpenCV."""
    data = make()
    image = imageio.decode(data)
    assert np.array_equal(image.rgb8(), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert np.array_equal(image.rgb8(), skimage.data.astronaut())


def _with_tiff_orientation(data: bytes, orientation: int, tmp_path) -> bytes:
    path = tmp_path / "turned.tif"
    path.write_bytes(data)
    subprocess.run(["exiftool", "-q", "-overwrite_original", f"-IFD0:Orientation#={orientation}", str(path)],
                   check=True)
    return path.read_bytes()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("bits", [8, 16])
def test_tiff_pixels_stay_as_stored_under_an_orientation_tag(bits, orientation, tmp_path):
    """Pillow (8-bit) and OpenCV (16-bit) turn TIFFs upright by their
    Orientation tag as they load them; decode must keep the stored pixels and
    report the tag, which metadata.py copies to the output."""
    stored = fidelity_inputs.astronaut16(3)[:, :300]   # not square, so turns show
    if bits == 8:
        stored = (stored >> 8).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, "TIFF", compression="tiff_lzw")
        data = buffer.getvalue()
    else:
        data = fidelity_inputs.sixteen_bit_bytes(stored, ".tif")
    image = imageio.decode(_with_tiff_orientation(data, orientation, tmp_path))
    assert image.orientation == orientation
    assert np.array_equal(image.pixels, stored)


def test_grey_with_alpha_sixteen_bit_png_keeps_sixteen_bits():
    """Colour type 4 at 16 bits (OpenCV cannot write it; built by hand): decoded as RGBA, grey in R=G=B."""
    grey_alpha = fidelity_inputs.astronaut16(4)[:, :, 2:]   # blue and the alpha ramp
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in grey_alpha)
    data = png_raw(grey_alpha.shape[1], grey_alpha.shape[0], 16, 4, rows)
    image = imageio.decode(data)
    assert (image.mode, image.pixels.dtype) == ("RGBA;16", np.uint16)
    for channel in range(3):
        assert np.array_equal(image.pixels[:, :, channel], grey_alpha[:, :, 0])
    assert np.array_equal(image.pixels[:, :, 3], grey_alpha[:, :, 1])


def _counting_png_loads(monkeypatch) -> list:
    """A list that grows by one each time Pillow decodes a PNG's pixels."""
    loads = []
    original = PngImagePlugin.PngImageFile.load

    def load(self):
        if self.tile:   # pixels still to decode
            loads.append(self)
        return original(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", load)
    return loads


def _with_chunk_after_image_data(data: bytes, chunk: bytes) -> bytes:
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]


def test_a_sound_sixteen_bit_png_is_decoded_once(monkeypatch):
    """OpenCV alone reads a 16-bit colour PNG whose chunks are whole and whose CRCs are right, the
    same pixels as OpenCV after Pillow's validating load; an eXIf after the image data is still read."""
    stored, data = fidelity_inputs.astronaut16(3), fidelity_inputs.rgb16_png()
    exif = Image.Exif()
    exif[0x0112] = 6
    late_exif = _with_chunk_after_image_data(data, png_chunk(b"eXIf", exif.tobytes()))
    loads = _counting_png_loads(monkeypatch)
    image = imageio.decode(data)
    assert (image.mode, image.orientation, loads) == ("RGB;16", 1, [])
    assert np.array_equal(image.pixels, stored)
    image = imageio.decode(late_exif)
    assert image.orientation == 6 and np.array_equal(image.pixels, stored)


@pytest.mark.parametrize("damage", ["crc", "cut", "stream"])
def test_a_damaged_sixteen_bit_png_is_refused_with_pillows_reason(monkeypatch, capfd, damage):
    """Broken chunks go to Pillow's load, which names the fault (libpng, in OpenCV, would print it on
    stderr); a corrupt compressed stream inside sound chunks still gets Pillow's reason."""
    data = bytearray(fidelity_inputs.rgb16_png())
    idat = data.index(b"IDAT")   # OpenCV writes several; damage the first
    if damage == "crc":
        data[idat + 100] ^= 0xFF
    elif damage == "cut":
        data = data[:len(data) // 2]
    else:   # one IDAT (png_raw) whose rows have an unknown filter type
        pixels = fidelity_inputs.astronaut16(3)
        rows = b"".join(b"\x07" + row.astype(">u2").tobytes() for row in pixels)
        data = png_raw(pixels.shape[1], pixels.shape[0], 16, 2, rows)
    loads = _counting_png_loads(monkeypatch)
    with pytest.raises(imageio.ImageError, match="corrupt or truncated png"):
        imageio.decode(bytes(data))
    assert len(loads) == 1
    if damage != "stream":
        assert "libpng" not in capfd.readouterr().err


FACE = Detection("face", 0.99, ASTRONAUT_FACE_BOX)
needs_cmyk_profile = pytest.mark.skipif(
    not os.path.exists(fidelity_inputs.CMYK_PROFILE_PATH),
    reason=f"no CMYK ICC profile: apt-get install {fidelity_inputs.CMYK_PROFILE_PACKAGE}")


def _render_face_blurred(data: bytes, extension: str, tmp_path) -> tuple[imageio.DecodedImage, bytes]:
    """`data` with the camera metadata of conftest.add_metadata, and the astronaut's face blurred through it."""
    path = tmp_path / f"source{extension}"
    path.write_bytes(data)
    add_metadata(str(path))
    source = path.read_bytes()
    image = imageio.decode(source)
    with MetadataWriter() as metadata:
        rendered = anonymize.render_blurred(image, anonymize.Found([FACE], []), source, metadata)
    return image, rendered.data


def _exif_make(data: bytes, extension: str, tmp_path) -> str:
    path = tmp_path / f"out{extension}"
    path.write_bytes(data)
    return subprocess.run(["exiftool", "-s3", "-Make", str(path)], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("make,extension", [(fidelity_inputs.rgb16_png, ".png"), (fidelity_inputs.rgb16_tiff, ".tif"),
                                            (fidelity_inputs.grey16_png, ".png")])
def test_blurring_a_sixteen_bit_photo_keeps_sixteen_bits_and_untouched_pixels(make, extension, tmp_path):
    image, out = _render_face_blurred(make(), extension, tmp_path)
    blurred = imageio.decode(out)
    assert _sixteen_bits_stored(out)
    assert (blurred.mode, blurred.pixels.dtype) == (image.mode, np.uint16)
    untouched = blur_mask(image.height, image.width, [FACE]) == 0
    assert np.array_equal(blurred.pixels[untouched], image.pixels[untouched])
    assert high_frequency_energy(blurred.rgb8(), FACE.box) < 0.3 * high_frequency_energy(image.rgb8(), FACE.box)
    assert _exif_make(out, extension, tmp_path) == "GoPro"


@needs_cmyk_profile
def test_cmyk_decodes_as_cmyk_and_is_seen_through_its_profile():
    data = fidelity_inputs.cmyk_jpeg()
    image = imageio.decode(data)
    assert (image.mode, image.pixels.shape) == ("CMYK", (512, 512, 4))
    srgb = ImageCms.createProfile("sRGB")
    profile = ImageCms.ImageCmsProfile(io.BytesIO(fidelity_inputs.cmyk_profile()))
    expected = ImageCms.profileToProfile(Image.open(io.BytesIO(data)), profile, srgb, outputMode="RGB")
    assert np.array_equal(image.rgb8(), np.asarray(expected))
    # Against the sRGB photo the CMYK JPEG was made from (SWOP's gamut is
    # smaller): 7.7 on average; Pillow's naive formula, ignoring the profile: 14.6.
    managed = np.abs(image.rgb8().astype(int) - skimage.data.astronaut()).mean()
    naive = np.abs(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), int) - skimage.data.astronaut()).mean()
    assert managed < 9 and naive > 1.5 * managed


@needs_cmyk_profile
def test_cmyk_with_a_broken_profile_falls_back_to_the_naive_conversion():
    data = fidelity_inputs.cmyk_jpeg()
    signature = data.find(b"acsp")   # the profile's magic number, at its byte 36
    broken = data[:signature] + b"xxxx" + data[signature + 4:]
    image = imageio.decode(broken)
    naive = np.asarray(Image.open(io.BytesIO(broken)).convert("RGB"))
    assert np.array_equal(image.rgb8(), naive)


@needs_cmyk_profile
def test_cmyk_tiff_round_trips_exactly_as_cmyk():
    pixels = fidelity_inputs.astronaut_cmyk()
    buffer = io.BytesIO()
    Image.frombuffer("CMYK", (512, 512), pixels.tobytes()).save(buffer, "TIFF", compression="tiff_lzw",
                                                                  icc_profile=fidelity_inputs.cmyk_profile())
    image = imageio.decode(buffer.getvalue())
    assert image.mode == "CMYK" and np.array_equal(image.pixels, pixels)
    written = Image.open(io.BytesIO(imageio.encode(image, image.pixels)))
    assert written.mode == "CMYK" and np.array_equal(np.asarray(written), pixels)
    assert np.abs(image.rgb8().astype(int) - skimage.data.astronaut()).mean() < 9   # seen through the profile


@pytest.mark.parametrize("name", [pytest.param("cmyk", marks=needs_cmyk_profile), "ycck"])
def test_blurred_cmyk_stays_cmyk_with_its_profile_and_colours(name, tmp_path):
    """The output is a CMYK JPEG with the source's CMYK profile (or none), and
    untouched pixels keep their ink amounts up to JPEG requantisation."""
    data = fidelity_inputs.cmyk_jpeg() if name == "cmyk" else ycck_jpeg(skimage.data.astronaut())
    image, out = _render_face_blurred(data, ".jpg", tmp_path)
    blurred = imageio.decode(out)
    written = Image.open(io.BytesIO(out))
    assert written.mode == "CMYK" and blurred.mode == "CMYK"
    assert written.info.get("icc_profile") == Image.open(io.BytesIO(data)).info.get("icc_profile")
    if name == "cmyk":
        profile = ImageCms.ImageCmsProfile(io.BytesIO(written.info["icc_profile"]))
        assert profile.profile.xcolor_space.strip() == "CMYK"
    untouched = blur_mask(image.height, image.width, [FACE]) == 0
    difference = np.abs(blurred.pixels[untouched].astype(int) - image.pixels[untouched])
    assert difference.mean() < 0.5
    assert high_frequency_energy(blurred.rgb8(), FACE.box) < 0.3 * high_frequency_energy(image.rgb8(), FACE.box)
    assert _exif_make(out, ".jpg", tmp_path) == "GoPro"
