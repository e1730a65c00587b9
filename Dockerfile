# The pii-blur worker image: Beam's Python SDK image at the Beam version that
# setup.py pins, with exiftool and jpegtran, and pii-blur with its model weights.
# It serves Dataflow (--sdk_container_image IMAGE) and Flink and Spark
# (--environment_type DOCKER --environment_config IMAGE); see the README,
# "Worker image". Build from the repository root:
#   docker build -t REGISTRY/pii-blur-worker:2.77.0 .
# The base image's tag must stay equal to setup.py's apache-beam pin
# (tests/test_schedules.py checks it): workers and launcher must run the same Beam.
FROM apache/beam_python3.11_sdk:2.77.0

# exiftool (metadata), jpegtran (lossless JPEG steps), Ghostscript's CMYK
# profile (CMYK inputs). --no-install-recommends keeps the image small.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libimage-exiftool-perl libjpeg-turbo-progs libgs-common \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/pii-blur
COPY setup.py README.md ./
COPY pii_blur ./pii_blur
# s3 and gcs: the fsspec drivers for object stores (Beam's GCP extras are in the base image).
# Beam itself is already installed at the pinned version, so pip keeps it.
RUN pip install --no-cache-dir '.[s3,gcs]' \
    && python -c "from pii_blur.models.weights import VENDORED_WEIGHTS, read_vendored; [read_vendored(n) for n in VENDORED_WEIGHTS]"

# The entry point stays Beam's SDK harness (/opt/apache/beam/boot), as runners expect.
