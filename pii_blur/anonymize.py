"""The per-image core: detect in the upright image, blur the stored pixels, encode.

No Beam here; the DoFns in transforms/ call these functions.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional, Sequence

import cv2

from pii_blur import imageio, jpeg, pictures, sphere
from pii_blur.blur import DEFAULT_MODE, blur_detections
from pii_blur.geometry import box_upright_to_stored, to_upright
from pii_blur.metadata import MetadataWriter
from pii_blur.models import ppocr_plate
from pii_blur.models.base import INPUT_MULTIPLE, Detector, round_up
from pii_blur.types import Detection

FILE_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif", "webp": ".webp"}


PROJECTIONS = ("auto", "equirectangular", "perspective")


@dataclasses.dataclass
class Found:
    """What detection found in one image.

    to_blur, near_misses: report form, boxes in stored pixels (near misses
    scored between a detector's floor and its threshold: reported for
    review, not blurred). on_sphere: for an equirectangular panorama, the
    objects to blur with their footprints on the sphere, else None.
    """

    to_blur: list[Detection]
    near_misses: list[Detection]
    projection: str = "perspective"
    on_sphere: Optional[list[sphere.SphereDetection]] = None


def projection_of(image: imageio.DecodedImage, data: bytes, requested: str) -> str:
    """'equirectangular' or 'perspective' for an image, given --projection.

    auto: XMP GPano ProjectionType, else a 2:1 aspect ratio (within 1 %) of
    the real pixel size. Rotated (EXIF orientation != 1) images are treated
    as perspective.
    """
    if requested != "auto":
        return requested
    is_pano = sphere.is_equirectangular(image.width, image.height, imageio.xmp_projection(data))
    return "equirectangular" if is_pano and image.orientation == 1 else "perspective"


@dataclasses.dataclass
class Views:
    """What the detectors look at in one image.

    projection: as from projection_of(). images: HxWx3 uint8 RGB views,
    upright: the whole upright photo, or a panorama's views (sphere.py).
    plan: the panorama's sphere.View of each image; () for a photo.
    """

    projection: str
    images: list
    plan: tuple = ()

    @property
    def nbytes(self) -> int:
        return sum(image.nbytes for image in self.images)


def project(image: imageio.DecodedImage, projection: str) -> Views:
    """The views of `image` to search (every detector searches the same ones).

    Photos are seen upright (EXIF orientation applied), because models are
    trained on upright faces and plates. Panoramas are seen through
    overlapping views covering the whole sphere (pano_views, sphere.py).
    """
    if projection != "equirectangular":
        return Views(projection, [to_upright(image.rgb8(), image.orientation)])
    pixels = image.rgb8()
    plan = tuple(pano_views(pixels.shape[1], pixels.shape[0]))
    return Views(projection, sphere.render_views(pixels, plan), plan)


def detect_views(detector: Detector, views: Views, search: Optional[PanoSearch] = None) -> list[list[Detection]]:
    """`detector`'s detections in each view, in that view's pixels (near misses included).

    A plate detector sees a panorama's views at no more than
    search.plate_px_per_deg, shrunk straight to a size in multiples of
    INPUT_MULTIPLE, which the network takes as it is (a size it had to
    stretch again cost a second resize: 0.11 s per 5760-wide panorama).
    """
    if not views.plan:
        return detector.detect(views.images, rescale=True)
    search = search or pano_search()
    images = list(views.images)
    if set(detector.labels) == {"plate"}:
        for index, view in enumerate(views.plan):
            scale = search.plate_px_per_deg / math.radians(view.focal_px)
            if scale < 1.0:
                height, width = images[index].shape[:2]
                images[index] = cv2.resize(images[index], (round_up(width * scale, INPUT_MULTIPLE),
                                                           round_up(height * scale, INPUT_MULTIPLE)),
                                           interpolation=cv2.INTER_AREA)
    found = detector.detect(images, rescale=False)
    return [per_view if small is image else [_scaled(d, image.shape[1] / small.shape[1], image.shape[0] / small.shape[0])
                                              for d in per_view]
            for per_view, small, image in zip(found, images, views.images)]


def _scaled(detection: Detection, x_factor: float, y_factor: float) -> Detection:
    x1, y1, x2, y2 = detection.box
    return dataclasses.replace(detection, box=(x1 * x_factor, y1 * y_factor, x2 * x_factor, y2 * y_factor))


def merge(image: imageio.DecodedImage, views: Views, found_by: Sequence[tuple[float, list[list[Detection]]]],
          labels: set[str]) -> Found:
    """Detections of `labels` per view, from each detector, as one image's Found.

    found_by: per detector, (its threshold, its detections per view). A
    photo's boxes go back to stored pixels; a panorama's footprints from
    overlapping views are merged on the sphere.
    """
    if views.plan:
        return _merge_on_sphere(image, views, found_by, labels)
    upright_h, upright_w = views.images[0].shape[:2]
    found = Found([], [])
    for threshold, per_view in found_by:
        for detection in per_view[0]:
            if detection.label not in labels:
                continue
            box = box_upright_to_stored(detection.box, image.orientation, upright_w, upright_h)
            stored = Detection(detection.label, detection.score, box)
            (found.to_blur if detection.score >= threshold else found.near_misses).append(stored)
    return found


def detect(image: imageio.DecodedImage, detectors: Sequence[Detector], labels: set[str],
           projection: str = "perspective") -> Found:
    """Objects of `labels` in `image`: project, detect_views with each detector, merge."""
    views = project(image, projection)
    return merge(image, views, [(d.threshold, detect_views(d, views)) for d in detectors], labels)


@dataclasses.dataclass(frozen=True)
class PanoSearch:
    """How panoramas are searched (every label, every detector alike).

    min_px_per_deg: the band (|pitch| <= 50 degrees) is searched at the
        panorama's own resolution (W / 360 pixels per degree; a 5760-wide
        panorama has 16), never less, upscaled to at least this for
        low-resolution panoramas (small faces need about 12), by at most
        max_upscale.
    max_px_per_deg: a cap, below the panorama's own resolution if need be
        (for slow machines and 8K panoramas; benchmarks); none by default.
    ring_resolution: the polar views' resolution at their centre, as a
        fraction of the band's (perspective views magnify towards their edges).
    layout: sphere.LAYOUTS key.
    polar_threshold: objects outside the band (|pitch| > 50 degrees), seen
        only in the tilted polar views where faces are rotated and distorted
        and score lower, are blurred from this fraction of the detector's
        threshold (>= NEAR_MISS_FRACTION, the lowest score detectors return).
    small_px, small_threshold: objects under small_px pixels tall at the
        panorama's own resolution, on which CenterFace's heatmap peaks low,
        are blurred from small_threshold of the threshold (the lower of the
        two fractions applies to a small polar object).
    plate_px_per_deg: detectors that find only plates see every view at no
        more than this resolution (at its centre). Measured
        (benchmarks/recall_sweep.py, 5760-wide synthetic
        panoramas: seeds 2 and 3 with 30 plates each, seed 4 with 68): at 12,
        in the polar views first, then in the band too, every plate that the
        full 16 px/deg found was found, in every band and size, for 1.9-2.1
        CPU s less per panorama (0.9-1.1 at the poles, 0.8-1.0 in the band);
        10 lost a polar plate (seed 2) and two in the band (seed 4).
    """

    min_px_per_deg: float = 12.0
    max_upscale: float = 4.0
    max_px_per_deg: float = math.inf
    ring_resolution: float = 1.0
    layout: str = sphere.DEFAULT_LAYOUT
    polar_threshold: float = 0.8
    small_px: float = 16.0
    small_threshold: float = 0.5
    plate_px_per_deg: float = 12.0

    def band_scale(self, pano_width: int) -> float:
        """The band's resolution as a multiple of the panorama's own (>= 1)."""
        native = pano_width / 360.0
        return min(self.max_upscale, max(1.0, self.min_px_per_deg / native), self.max_px_per_deg / native)


# Measured with benchmarks/recall_sweep.py (README, "360° panoramas").
PANO_SEARCH = PanoSearch()
# Overrides of PANO_SEARCH for benchmarks (hidden, not a CLI option): "field=value,..."
PANO_SEARCH_ENV = "PII_BLUR_PANO_SEARCH"
# Objects beyond this |pitch| count as polar (the band's half height).
POLAR_PITCH_DEG = sphere.LAYOUTS[sphere.DEFAULT_LAYOUT].band_half_deg


def pano_search_overrides() -> str:
    """$PII_BLUR_PANO_SEARCH as given (stripped), "" when unset."""
    return os.environ.get(PANO_SEARCH_ENV, "").strip()


def pano_search() -> PanoSearch:
    """PANO_SEARCH with the overrides of $PII_BLUR_PANO_SEARCH, e.g. "ring_resolution=0.8,layout=NAME".

    Raises:
        ValueError: an unknown field or a malformed value; the message lists the fields.
    """
    overrides = pano_search_overrides()
    if not overrides:
        return PANO_SEARCH
    fields = {field.name for field in dataclasses.fields(PanoSearch)}
    changes = {}
    for item in overrides.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in fields:
            raise ValueError(f"{PANO_SEARCH_ENV}: unknown field {name!r}; choose from {sorted(fields)}")
        changes[name] = value.strip() if name == "layout" else float(value)
    return dataclasses.replace(PANO_SEARCH, **changes)


def pano_views(pano_width: int, pano_height: int, search: Optional[PanoSearch] = None) -> list[sphere.View]:
    """The views of a panorama that every detector searches: sphere.plan_views at the
    band's resolution (search.band_scale), the polar rings at search.ring_resolution of it.

    Every label is searched over the whole sphere: a camera on a car roof or
    a pole sees plates far below the horizon.
    """
    search = search or pano_search()
    scale = search.band_scale(pano_width)
    return sphere.plan_views(pano_width, pano_height, search.layout, scale=scale,
                             ring_scale=search.ring_resolution * scale)


def search_pixels(width: int, height: int) -> int:
    """About how many pixels the detectors search in a width x height image, the bulk of its
    processing time (for sharing inputs among workers): a panorama's views (pano_views), or a
    photo's pixels once upscaled as the plate detector upscales small photos."""
    if sphere.is_equirectangular(width, height, None):
        try:
            return sum(view.width * view.height for view in pano_views(width, height))
        except ValueError:   # too small to have views
            pass
    upscale = max(1.0, ppocr_plate.MIN_SHORT_SIDE / max(1, min(width, height)))
    return int(width * height * upscale ** 2)


def _merge_on_sphere(image: imageio.DecodedImage, views: Views,
                     found_by: Sequence[tuple[float, list[list[Detection]]]], labels: set[str]) -> Found:
    search = pano_search()
    on_sphere = []
    for threshold, per_view in found_by:
        kept = [[d for d in detections if d.label in labels] for detections in per_view]
        found_here = sphere.merge_view_detections(list(views.plan), kept, image.width, image.height)
        on_sphere += [(detection, _sphere_threshold(detection, threshold, search, image.width))
                      for detection in found_here]
    found = Found([], [], "equirectangular", [])
    for detection, threshold in sorted(on_sphere, key=lambda pair: -pair[0].score):
        report_form = Detection(detection.label, detection.score, detection.boxes[0], boxes=detection.boxes,
                                yaw_deg=detection.yaw_deg, pitch_deg=detection.pitch_deg)
        if detection.score >= threshold:
            found.to_blur.append(report_form)
            found.on_sphere.append(detection)
        else:
            found.near_misses.append(report_form)
    return found


def _sphere_threshold(detection: sphere.SphereDetection, threshold: float, search: PanoSearch,
                      pano_width: int) -> float:
    """The score from which an object on the sphere is blurred: lower beyond the band and for
    small objects (PanoSearch.polar_threshold, small_threshold)."""
    factor = search.polar_threshold if abs(detection.pitch_deg) > POLAR_PITCH_DEG else 1.0
    best = max(detection.footprints, key=lambda footprint: footprint.score)
    height_px = (best.box_in_view[3] - best.box_in_view[1]) * pano_width / (2 * math.pi) / best.view.focal_px
    if height_px < search.small_px:
        factor = min(factor, search.small_threshold)
    return threshold * factor


@dataclasses.dataclass(frozen=True)
class Rendered:
    """An output file. encoding: how it was made; pictures: what was done to
    embedded pictures and metadata (one phrase each), for the report."""

    data: bytes
    encoding: str
    pictures: tuple[str, ...] = ()


def render_blurred(image: imageio.DecodedImage, found: Found, source_bytes: bytes,
                   metadata: MetadataWriter, mode: str = DEFAULT_MODE) -> Rendered:
    """The blurred image, encoded in the input's format with the input's allowed metadata.

    JPEGs are patched block by block (jpeg.py): only DCT blocks under the blur
    change and every allowed metadata segment stays byte-identical. Where
    that is not possible, and for other formats, the whole image is
    re-encoded and exiftool restores the metadata. Either way pictures.clean
    keeps only allow-listed metadata, the EXIF thumbnail is regenerated from
    the blurred pixels (EXIF thumbnails use the stored layout), every other
    embedded picture is removed, and the result is checked for pictures.

    Raises:
        pictures.PictureError, MetadataError: the output could not be made safe.
    """
    return render(image, blur(image, found, mode), source_bytes, metadata)


def blur(image: imageio.DecodedImage, found: Found, mode: str = DEFAULT_MODE):
    """A copy of image.pixels (stored layout, same dtype) with every object of found.to_blur covered."""
    if found.on_sphere is not None:
        return sphere.blur_on_sphere(image.pixels, found.on_sphere, mode)
    return blur_detections(image.pixels, found.to_blur, mode)


def render_cleaned(image: imageio.DecodedImage, source_bytes: bytes, metadata: MetadataWriter) -> Rendered:
    """The input with its pixels untouched and only allowed metadata, no embedded picture
    but an EXIF thumbnail rebuilt from its own pixels.

    For an input in which nothing was found but whose embedded pictures do
    not show what its pixels show (stale_pictures). JPEG, PNG and WebP keep
    their image data byte for byte; TIFF is re-encoded losslessly.
    """
    if image.format in ("png", "webp"):
        data, actions = pictures.clean(source_bytes, None)
        pictures.verify(data, None)
        return Rendered(data, "metadata-cleaned", tuple(actions))
    return render(image, image.pixels, source_bytes, metadata)


def stale_pictures(image: imageio.DecodedImage, source_bytes: bytes) -> list[str]:
    """Embedded pictures of an input that are not faithful copies of its pixels, described.

    An input in which nothing was found may be copied byte for byte only when
    this is empty: a preview left from before an edit may still show a face
    that the photo no longer does. A picture that cannot be decoded, or
    metadata that cannot be parsed, counts as stale.
    """
    try:
        found = pictures.find(source_bytes)
    except pictures.PictureError as error:
        return [f"metadata cannot be checked: {error}"]
    if not found:
        return []
    photo = image.rgb8()
    return [p.describe() for p in found if not pictures.shows_the_photo(p.data, photo)]


def render(image: imageio.DecodedImage, pixels, source_bytes: bytes, metadata: MetadataWriter) -> Rendered:
    """`pixels` (image.pixels' layout) encoded in the input's format with the input's
    allowed metadata and no embedded picture but a thumbnail of `pixels` (see render_blurred)."""
    thumbnail = imageio.encode_thumbnail(image.rgb8(pixels))
    try:
        in_source = [f"{p.describe()} removed" for p in pictures.find(source_bytes)]
    except pictures.PictureError as error:
        in_source = [f"input metadata not parsed ({error}): allow-listed tags only"]
    fallback_reason = ""
    if image.format == "jpeg":
        try:
            data, _stats = jpeg.patch_jpeg_blocks(source_bytes, pixels, jpeg.changed_pixel_mask(image.pixels, pixels))
            data, actions = pictures.clean(data, thumbnail)
            pictures.verify(data, thumbnail)
            return Rendered(data, "jpeg-dct-blocks", tuple(dict.fromkeys(in_source + actions)))
        except (jpeg.LosslessUnavailable, pictures.PictureError) as error:
            fallback_reason = f" (block patch unavailable: {error})"
    encoded = imageio.encode(image, pixels)
    data = metadata.restore(source_bytes, encoded, FILE_EXTENSIONS[image.format], thumbnail)
    data, actions = pictures.clean(data, thumbnail)
    pictures.verify(data, thumbnail)
    return Rendered(data, "full-reencode" + fallback_reason, tuple(dict.fromkeys(in_source + actions)))
