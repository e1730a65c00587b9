"""The review page builder: counts, pagination, escaping, privacy, geometry,
the re-run commands, and the page in real headless Chromium."""

from __future__ import annotations

import glob
import html.parser
import json
import os
import posixpath
import re
import shlex
import shutil
import tempfile

import cv2
import numpy as np
import pytest
from PIL import Image

from pii_blur import review
from conftest import ASTRONAUT_FACE_BOX, render_car_with_plate

PLATE_BOX = [290, 300, 430, 340]
# File names an attacker might choose. None may become markup or break the command.
ODD_NAMES = [
    "<script>window.pwned=1</script>.jpg",
    '"><img src=x onerror="window.pwned=1">.jpg',
    "it's a \"quote\" & <b>bold</b>.jpg",
    "new\nline $(touch pwned) `id`.jpg",
]


def blurred_copy(rgb: np.ndarray, boxes) -> np.ndarray:
    """What pii-blur writes: the image with each box strongly blurred."""
    out = rgb.copy()
    for x1, y1, x2, y2 in boxes:
        out[y1:y2, x1:x2] = cv2.GaussianBlur(out[y1:y2, x1:x2], (0, 0), 12)
    return out


def save_jpeg(path, rgb: np.ndarray, **options) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgb).save(path, "JPEG", quality=90, **options)
    return str(path)


def line(path, status, output=None, reason="", detections=(), near_misses=(), **extra) -> dict:
    return {"path": path, "status": status, "output": output, "reason": reason, "size_bytes": 1000,
            "detections": list(detections), "near_misses": list(near_misses),
            "timings": {"read": 0.001, "detect": 0.5}, **extra}


def write_report(path, lines, summary=True) -> str:
    text = [json.dumps(item) for item in lines]
    if summary:
        statuses = [item["status"] for item in lines]
        text.append(json.dumps({
            "summary": True, "files": len(lines),
            **{s: statuses.count(s) for s in ("copied", "blurred", "skipped", "failed")},
            "detections": {"face": 3, "plate": 1}, "total_seconds": 4.25}))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(text) + "\n")
    return str(path)


@pytest.fixture
def run_folder(tmp_path, astronaut):
    """A small run: 2 blurred (one with a near miss), 1 copied with a near miss,
    1 skipped, 1 failed, and one 360° panorama with a seam-split face.

    Input paths point at files that do not exist: the builder must never need them.
    """
    out = tmp_path / "out"
    face = {"label": "face", "score": 0.94, "box": list(ASTRONAUT_FACE_BOX)}
    near_face = {"label": "face", "score": 0.15, "box": [10, 20, 60, 80]}
    astro = save_jpeg(out / "a.jpg", blurred_copy(astronaut, [ASTRONAUT_FACE_BOX]))
    car = save_jpeg(out / "cars" / "car.jpg", blurred_copy(render_car_with_plate(), [PLATE_BOX]))
    copied = save_jpeg(out / "street.jpg", astronaut[::-1].copy())
    pano = np.concatenate([astronaut, astronaut], axis=1)[:256, :]  # 1024x256 is not 2:1 but fine here
    pano_path = save_jpeg(out / "pano.jpg", pano)
    lines = [
        line("file:///in/a.jpg", "blurred", astro, detections=[face], near_misses=[near_face]),
        line("file:///in/cars/car.jpg", "blurred", car,
             detections=[{"label": "plate", "score": 0.71, "box": PLATE_BOX}]),
        line("file:///in/notes.txt", "skipped", reason="not an image"),
        line("file:///in/broken.jpg", "failed", reason="ImageError: truncated JPEG"),
        line("file:///in/street.jpg", "copied", copied,
             near_misses=[{"label": "plate", "score": 0.3, "box": [100, 100, 180, 130]}]),
        line("file:///in/pano.jpg", "blurred", pano_path, projection="equirectangular",
             detections=[{"label": "face", "score": 0.8, "boxes": [[1000, 100, 1024, 150], [0, 100, 30, 150]],
                          "yaw_deg": 180.0, "pitch_deg": 10.0}]),
    ]
    return write_report(out / "pii-blur-report.jsonl", lines), tmp_path / "review"


class _Markup(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text inside <script> elements."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def markup(path) -> _Markup:
    parser = _Markup()
    with open(path, encoding="utf-8") as handle:
        parser.feed(handle.read())
    return parser


def read(path) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def test_counts_sections_and_histograms(run_folder):
    report, out = run_folder
    index = review.build_review(report, str(out))
    assert index == os.path.join(str(out), "index.html")
    page = markup(index)
    text = read(index)
    stats = dict(re.findall(r'<div class="stat (\w+)"><b>(\d+)</b>', text))
    assert stats == {"files": "6", "copied": "1", "cleaned": "0", "blurred": "3", "skipped": "1", "failed": "1"}
    assert "<b>4.2 s</b>" in text or "<b>4.3 s</b>" in text
    cards = [a for t, a in page.tags if t == "figure" and "card" in a.get("class", "")]
    assert len(cards) == 3
    near = [a for t, a in page.tags if t == "article" and "near" in a.get("class", "")]
    assert len(near) == 2
    assert "ImageError: truncated JPEG" in text and "file:///in/broken.jpg" in text
    # Classes table: blurred counts from the summary, near misses counted.
    assert "<tr><td>face</td><td>3</td><td>1</td></tr>" in text
    assert "<tr><td>plate</td><td>1</td><td>1</td></tr>" in text
    assert text.count('<figure class="hist">') == 2
    # The seam-split face is outlined on both sides of the panorama.
    pano_card = re.search(r'<figure class="card" id="f5">.*?</figure>', text).group(0)
    assert pano_card.count('<g class="hit">') == 2
    assert len(glob.glob(str(out / "*.html"))) == 1


def test_summary_missing_counts_from_lines(run_folder, tmp_path):
    report, out = run_folder
    lines = [json.loads(x) for x in read(report).splitlines()[:-1]]
    truncated = write_report(tmp_path / "partial.jsonl", lines, summary=False)
    text = read(review.build_review(truncated, str(out)))
    assert "no summary line" in text
    assert '<div class="stat blurred"><b>3</b>' in text
    assert "<tr><td>face</td><td>2</td><td>1</td></tr>" in text


def test_thumbnails_are_small_jpegs_of_the_output_only(run_folder):
    report, out = run_folder
    review.build_review(report, str(out))
    pictures = glob.glob(str(out / "img" / "*" / "*.jpg"))
    thumbs = [p for p in pictures if not p.endswith("-large.jpg")]
    assert len(thumbs) == 3 + 2  # one per blurred output, one crop per near-miss box
    for path in thumbs:
        with Image.open(path) as image:
            assert image.format == "JPEG" and max(image.size) <= review.THUMB_SIDE
    # The astronaut's thumbnail shows its blurred face: no more detail there than in the output.
    with Image.open(out / "img" / "000" / "000000.jpg") as image:
        thumb = np.asarray(image.convert("L"), np.float32)
    scale = thumb.shape[1] / 512
    x1, y1, x2, y2 = (int(v * scale) for v in ASTRONAUT_FACE_BOX)
    face_detail = np.abs(cv2.Laplacian(thumb[y1 + 4:y2 - 4, x1 + 4:x2 - 4], cv2.CV_32F)).mean()
    assert face_detail < 3.0


def test_privacy_pixels_come_from_the_output_even_when_the_input_exists(tmp_path):
    red = np.zeros((200, 300, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros_like(red)
    blue[..., 2] = 255
    source = save_jpeg(tmp_path / "in" / "x.jpg", red)
    output = save_jpeg(tmp_path / "out" / "x.jpg", blue)
    near = {"label": "face", "score": 0.1, "box": [50, 50, 90, 90]}
    report = write_report(tmp_path / "r.jsonl", [line(source, "blurred", output, near_misses=[near],
                                                      detections=[{"label": "face", "score": 0.9,
                                                                   "box": [10, 10, 40, 40]}])])
    review.build_review(report, str(tmp_path / "review"))
    for path in glob.glob(str(tmp_path / "review" / "img" / "*" / "*.jpg")):
        with Image.open(path) as image:
            r, g, b = np.asarray(image.convert("RGB"), np.float32).reshape(-1, 3).mean(axis=0)
        assert b > 200 and r < 40, path


@pytest.mark.parametrize("page_size, expected", [(1, [1, 1, 1]), (2, [2, 1]), (3, [3]), (200, [3])])
def test_pagination(run_folder, page_size, expected):
    report, out = run_folder
    index = review.build_review(report, str(out), page_size=page_size)
    pages = [index] + [str(out / f"blurred-{n}.html") for n in range(2, len(expected) + 1)]
    counts = [sum(1 for t, a in markup(p).tags if t == "figure" and "card" in a.get("class", ""))
              for p in pages]
    assert counts == expected
    assert not os.path.exists(out / f"blurred-{len(expected) + 1}.html")
    links = {a["href"] for t, a in markup(index).tags if t == "a" and "href" in a}
    for n in range(2, len(expected) + 1):
        assert f"blurred-{n}.html#blurred" in links
    # Near misses (2) and failed (1) paginate the same way.
    assert os.path.exists(out / "near-misses-2.html") == (page_size < 2)
    assert not os.path.exists(out / "failed-2.html")


def test_pager_shows_ends_and_neighbours():
    nav = review.pager("blurred", 50, 500)
    numbers = re.findall(r">(\d+)<", nav)
    assert numbers == ["1", "47", "48", "49", "50", "51", "52", "53", "500"]
    assert '<span class="current">50</span>' in nav and nav.count("…") == 2
    assert review.pager("blurred", 1, 1) == ""


def test_odd_file_names_cannot_inject_markup(tmp_path, astronaut):
    out = tmp_path / "out"
    lines = []
    for number, name in enumerate(ODD_NAMES):
        output = save_jpeg(out / name, blurred_copy(astronaut, [ASTRONAUT_FACE_BOX])) \
            if "\n" not in name else save_jpeg(out / f"{number}.jpg", astronaut)
        lines.append(line(f"file:///in/{name}", "blurred", output,
                          detections=[{"label": "face<i>", "score": 0.9, "box": list(ASTRONAUT_FACE_BOX)}],
                          near_misses=[{"label": "face", "score": 0.15, "box": [10, 20, 60, 80]}]))
        lines.append(line(f"file:///in/failed {name}", "failed", reason=f"bad {name}"))
    report = write_report(tmp_path / "r.jsonl", lines)
    index = review.build_review(report, str(tmp_path / "review"), page_size=2)
    pages = glob.glob(str(tmp_path / "review" / "*.html"))
    assert len(pages) > 1
    for path in pages:
        page = markup(path)
        text = read(path)
        # Exactly one script (ours, unchanged); no event-handler attributes; only our tags.
        assert page.scripts == [review.SCRIPT]
        assert not [a for _, attrs in page.tags for a in attrs if a.startswith("on")]
        assert {t for t, _ in page.tags} <= {
            "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "a", "main", "section",
            "div", "p", "b", "code", "table", "thead", "tbody", "tr", "th", "td", "figure", "svg", "text",
            "line", "rect", "g", "title", "span", "img", "figcaption", "dl", "dt", "dd", "article", "button",
            "nav", "dialog", "form", "script", "i", "tspan"}
        for name in ODD_NAMES:
            assert name not in text or not re.search("[<>\"'&]", name)
        assert "face<i>" not in text
    assert os.path.basename(index) == "index.html"
    text = "".join(read(path) for path in pages)
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;.jpg" in text
    assert "it&#x27;s a &quot;quote&quot; &amp; &lt;b&gt;bold&lt;/b&gt;.jpg" in text
    # Asset names never come from file names.
    assets = [os.path.basename(p) for p in glob.glob(str(tmp_path / "review" / "img" / "*" / "*"))]
    assert all(re.fullmatch(r"\d{6}(-large|-near\d+-\d+)?\.jpg", a) for a in assets)


def test_rerun_command_is_shell_safe_for_odd_names():
    for name in ODD_NAMES + ["plain.jpg", "with space.jpg", "-dash.jpg"]:
        entry = review.Entry(index=0, path=f"file:///in/{name}", status="copied", output=f"/out/sub/{name}",
                             reason="", detections=(), near_misses=(), timings={})
        words = shlex.split(review.rerun_command(entry, 17))
        assert words == ["pii-blur", f"file:///in/{name}", posixpath.dirname(f"/out/sub/{name}"), "17",
                         "--report", f"/out/sub/{name}.pii-blur-report.jsonl"]


def test_rerun_command_keeps_the_runs_models_classes_and_projection():
    entry = review.Entry(index=0, path="file:///in/a.jpg", status="copied", output="/out/a.jpg", reason="",
                         detections=(), near_misses=(), timings={},
                         settings=(("classes", "face,person"), ("min_probability", 40), ("models", "my models.yaml"),
                                   ("projection", "equirectangular")))
    words = shlex.split(review.rerun_command(entry, 17))
    assert words[3] == "17" and words[6:] == ["--classes", "face,person", "--models", "my models.yaml",
                                              "--projection", "equirectangular"]


@pytest.mark.parametrize("label, score, precision, expected", [
    ("face", 0.15, "fp32", 29),   # CenterFace fp32: threshold 0.5 * N / 100 must fall below 0.15
    ("face", 0.1999, "fp32", 39),
    ("face", 0.15, None, 35),     # int8 by default: 0.85 * 0.5 * N / 100 < 0.15
    ("face", 0.15, "int8", 35),
    ("face", 0.004, "fp32", None),  # even N = 1 (threshold 0.005) does not reach it
    ("plate", 0.45, None, 26),    # PP-OCR: 0.35 + 0.375 * N / 100 < 0.45
    ("plate", 0.3, "fp32", None),
    ("bicycle", 0.25, None, 24),  # unknown class: the score is the probability
])
def test_rerun_threshold_blurs_the_near_miss(label, score, precision, expected):
    chosen = review.rerun_threshold(label, score, precision)
    assert chosen == expected
    if chosen is not None and label in review.THRESHOLD_FOR:
        to_threshold = review.THRESHOLD_FOR[label]
        assert to_threshold(chosen / 100, precision) < score
        assert chosen == 100 or to_threshold((chosen + 1) / 100, precision) >= score - review.SCORE_ROUNDING


def test_near_miss_commands_on_the_page(run_folder):
    report, out = run_folder
    text = read(review.build_review(report, str(out)))
    commands = [html.unescape(c) for c in re.findall(r"<code>(pii-blur .*?)</code>", text, re.S)]
    astro_out = str(out.parent / "out" / "a.jpg")
    # The run chose no --precision: int8 CenterFace, 0.85 * 0.5 * N / 100 must fall below the 0.15 near miss.
    assert shlex.split(commands[0])[:4] == ["pii-blur", "file:///in/a.jpg", os.path.dirname(astro_out), "35"]
    assert len(commands) == 1  # the copied street's plate (0.3) cannot be reached by any threshold
    assert "blur it by hand" in text
    fixed = read(review.build_review(report, str(out), near_miss_rerun_threshold=5))
    commands = [html.unescape(c) for c in re.findall(r"<code>(pii-blur .*?)</code>", fixed, re.S)]
    assert [shlex.split(c)[3] for c in commands] == ["5", "5"]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_follow_exif_orientation_like_pillow(orientation):
    stored = np.zeros((60, 100), np.uint8)
    box = (10, 5, 40, 20)
    stored[box[1]:box[3], box[0]:box[2]] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[review.ORIENTATION_TAG] = orientation
    image.info["exif"] = exif.tobytes()
    from PIL import ImageOps
    upright = np.asarray(ImageOps.exif_transpose(Image.open(_as_jpeg_file(image, exif))).convert("L")) > 128
    ys, xs = np.nonzero(upright)
    height, width = upright.shape
    expected = (xs.min() / width, ys.min() / height, (xs.max() + 1) / width, (ys.max() + 1) / height)
    got = review.orient_fractions(review.frame_fractions(box, (0, 0, 100, 60)), orientation)
    assert np.allclose(got, expected, atol=0.03), (got, expected)


def _as_jpeg_file(image, exif):
    handle = tempfile.SpooledTemporaryFile()
    image.save(handle, "PNG", exif=exif.tobytes())
    handle.seek(0)
    return handle


def test_rotated_output_is_shown_upright_with_boxes_on_it(tmp_path, astronaut):
    output = tmp_path / "out" / "rotated.jpg"
    os.makedirs(output.parent)
    exif = Image.Exif()
    exif[review.ORIENTATION_TAG] = 6
    Image.fromarray(astronaut[:, :400]).save(output, "JPEG", quality=90, exif=exif.tobytes())
    report = write_report(tmp_path / "r.jsonl", [line("file:///in/r.jpg", "blurred", str(output),
                                                      detections=[{"label": "face", "score": 0.9,
                                                                   "box": [0, 0, 100, 50]}])])
    text = read(review.build_review(report, str(tmp_path / "review")))
    with Image.open(tmp_path / "review" / "img" / "000" / "000000.jpg") as thumb:
        assert thumb.size == (320, 250)  # 400x512 stored, shown a quarter turn clockwise: 512x400
    # The stored top-left 25% x 9.8% lands at the top-right, 9.8% wide and 25% tall.
    assert '<rect x="90.234%" y="0.000%" width="9.766%" height="25.000%"/>' in text


def test_unreadable_output_is_reported_not_fatal(tmp_path):
    report = write_report(tmp_path / "r.jsonl", [
        line("file:///in/gone.jpg", "blurred", str(tmp_path / "missing.jpg"),
             detections=[{"label": "face", "score": 0.9, "box": [1, 2, 3, 4]}],
             near_misses=[{"label": "face", "score": 0.15, "box": [1, 2, 3, 4]}])])
    text = read(review.build_review(report, str(tmp_path / "review")))
    assert text.count("cannot read output: FileNotFoundError") == 2
    assert not glob.glob(str(tmp_path / "review" / "img" / "*" / "*.jpg"))


def test_bad_report_line_names_its_number(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(line("a", "copied", "b")) + "\n{not json\n")
    with pytest.raises(ValueError, match="report line 2"):
        review.build_review(str(path), str(tmp_path / "review"))


def test_main_arguments_and_errors(run_folder, tmp_path, capsys):
    report, out = run_folder
    assert review.main([report, str(out), "--page-size", "1", "--rerun-threshold", "10"]) == 0
    assert capsys.readouterr().out.strip() == f"pii-blur review: {out / 'index.html'}"
    assert os.path.exists(out / "blurred-3.html")
    assert review.main([str(tmp_path / "nope.jsonl"), str(out)]) == 2
    assert "error" in capsys.readouterr().err
    for bad in (["--page-size", "0"], ["--rerun-threshold", "101"]):
        with pytest.raises(SystemExit) as exit_info:
            review.main([report, str(out)] + bad)
        assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        review.main(["--help"])
    assert "(default: 200)" in capsys.readouterr().out


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1800"]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing: apt-get install chromium "
                                                         "chromium-driver")
def test_page_in_headless_chromium(run_folder, tmp_path, astronaut):
    """Open the page from a file URL in real Chromium: grid and near misses
    render, images load, the larger view opens, nothing injected runs, and
    the console stays clean. The screenshot goes to $PII_BLUR_REVIEW_SCREENSHOT
    (default: the test's tmp folder)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    report, out = run_folder
    lines = [json.loads(x) for x in read(report).splitlines()[:-1]]
    odd_output = save_jpeg(tmp_path / "out" / ODD_NAMES[0], blurred_copy(astronaut, [ASTRONAUT_FACE_BOX]))
    lines.append(line(f"file:///in/{ODD_NAMES[1]}", "blurred", odd_output,
                      detections=[{"label": "face", "score": 0.9, "box": list(ASTRONAUT_FACE_BOX)}],
                      near_misses=[{"label": "face", "score": 0.12, "box": [300, 300, 360, 370]}]))
    lines.append(line(f"file:///in/{ODD_NAMES[3]}", "failed", reason=ODD_NAMES[0]))
    index = review.build_review(write_report(tmp_path / "r.jsonl", lines), str(out))

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get("file://" + os.path.abspath(index))
        assert driver.title.startswith("pii-blur review")
        cards = driver.find_elements(By.CSS_SELECTOR, "#blurred .grid figure.card")
        near = driver.find_elements(By.CSS_SELECTOR, "#near-misses article.card.near")
        assert len(cards) == 4 and len(near) == 3
        assert near[0].is_displayed() and "pii-blur " in near[0].find_element(By.TAG_NAME, "code").text
        first_image = cards[0].find_element(By.TAG_NAME, "img")
        driver.execute_script("arguments[0].scrollIntoView();", first_image)
        loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", first_image)
        assert loaded > 0
        outline = cards[0].find_element(By.CSS_SELECTOR, "svg.marks rect").rect
        assert outline["width"] > 5 and outline["height"] > 5
        assert driver.execute_script("return window.pwned") is None
        driver.execute_script("window.scrollTo(0, 0)")
        shot = os.environ.get("PII_BLUR_REVIEW_SCREENSHOT") or str(tmp_path / "review.png")
        assert driver.save_screenshot(shot)

        cards[0].find_element(By.CSS_SELECTOR, "a.open").click()
        viewer = driver.find_element(By.ID, "viewer")
        assert viewer.get_attribute("open") is not None
        big = viewer.find_element(By.TAG_NAME, "img")
        driver.execute_script("return arguments[0].decode()", big)
        assert driver.execute_script("return arguments[0].naturalWidth", big) == 512
        assert viewer.find_elements(By.CSS_SELECTOR, "svg.marks rect")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
