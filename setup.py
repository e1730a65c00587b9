"""pii-blur: blur faces and licence plates in photo archives with Apache Beam.

Also usable as Beam's --setup_file, so remote workers get the package and its
vendored model weights.
"""

from setuptools import find_packages, setup

setup(
    name="pii-blur",
    version="0.1.0",
    description="Find and blur faces and licence plates in photos, from a laptop folder to millions of photos",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pii_blur", "pii_blur.*"]),
    package_data={"pii_blur.models": ["weights/*.onnx", "weights/NOTICE"],
                  "pii_blur": ["sample/*"]},
    install_requires=[
        "apache-beam==2.77.0",
        "fsspec>=2024.2",
        "jpeglib>=1.0",
        "numpy>=1.24",
        "onnxruntime>=1.17",
        "opencv-python-headless>=4.8",
        "pillow>=10.0",
        "pyexiftool>=0.5.6",
        "PyYAML>=6.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "s3": ["s3fs"],
        "gcs": ["gcsfs"],
        "dataflow": ["apache-beam[gcp]==2.77.0", "gcsfs", "build"],
        "dask": ["apache-beam[dask]==2.77.0", "dask[distributed]"],
        # Model backends (see README, "Models and backends"); the core install has no TF and no torch.
        "tensorflow": ["tensorflow-cpu>=2.15; platform_system == 'Linux' and platform_machine == 'x86_64'",
                       "tensorflow>=2.15; platform_system != 'Linux' or platform_machine != 'x86_64'"],
        "imageai": ["imageai>=3.0.3,<4", "torch>=2.0", "torchvision>=0.15"],
        # onnxruntime-gpu provides the same `onnxruntime` module; uninstall onnxruntime first (see README).
        "gpu": ["onnxruntime-gpu>=1.17"],
        # Every backend; not gpu, whose onnxruntime-gpu must replace onnxruntime rather than join it.
        "all": ["tensorflow-cpu>=2.15; platform_system == 'Linux' and platform_machine == 'x86_64'",
                "tensorflow>=2.15; platform_system != 'Linux' or platform_machine != 'x86_64'",
                "imageai>=3.0.3,<4", "torch>=2.0", "torchvision>=0.15"],
        # onnx: tests and benchmarks build small models; tools/ derives the vendored CenterFace.
        "test": ["pytest", "onnx>=1.15", "scikit-image", "moto[server]", "s3fs", "boto3", "apache-beam[gcp]==2.77.0",
                 "build",
                 "dask[distributed]", "selenium"],
    },
    entry_points={"console_scripts": ["pii-blur=pii_blur.cli:main"]},
)
