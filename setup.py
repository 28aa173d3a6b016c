"""unspeech: unsupervised speech context embeddings as a Kaldi recipe add-on.

Install (CPU, the default)::

    pip install -e .[test]

GPU build of TensorFlow instead of the CPU one. Both provide the same
``tensorflow`` module, so exactly one of them is a dependency, chosen at install
time::

    UNSPEECH_TF=gpu pip install -e .[test]     # tensorflow[and-cuda] instead
"""
import os

from setuptools import find_packages, setup

TF_CPU = "tensorflow-cpu==2.21.0"
TF_GPU = "tensorflow[and-cuda]==2.21.0"
tensorflow = TF_GPU if os.environ.get("UNSPEECH_TF", "cpu").lower() == "gpu" else TF_CPU

setup(
    name="unspeech",
    version="0.1.0",
    description="Unsupervised speech context embeddings for Kaldi recipes",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["utils_py", "utils_py.*"]),
    install_requires=[
        tensorflow,
        "numpy==2.4.6",
        "kaldiio==2.18.1",
        "kaldi-native-fbank==1.23.0",
        "hdbscan==0.8.44",
        "scikit-learn==1.9.1",
        "threadpoolctl==3.8.0",   # imported directly (BLAS threads of extraction and clustering)
        "soundfile==0.14.0",
        "tqdm==4.70.1",
        "matplotlib==3.11.2",
    ],
    extras_require={"test": ["pytest==9.2.0"]},
)
