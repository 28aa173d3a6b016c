"""The NumPy towers (utils_py/model/inference.py) against the Keras model, and the extraction job's
choice between them (utils_py/extract/extractor.py)."""
import os
import subprocess
import sys

import kaldiio
import numpy as np
import pytest

from conftest import REPO
from test_extract import make_data, speechlike
from utils_py.extract.extractor import Extractor
from utils_py.log import UnspeechError
from utils_py.model.inference import NumpyModel, bfloat16, load_numpy_model
from utils_py.model.network import build_model

SMALL = {"embedding_size": 8, "fc_size": 32}
CASES = {
    "Vgg16": dict(feature_dim=24, window_length=16, window_neg_length=32, embedding_transformation="Vgg16"),
    "Vgg16big-untied": dict(feature_dim=32, window_length=32, window_neg_length=32,
                            embedding_transformation="Vgg16big", tied_embeddings_transforms=False),
    "VggCpu-unit-norm": dict(feature_dim=40, window_length=32, window_neg_length=48,
                             embedding_transformation="VggCpu", unit_normalize=True),
    "Resnet": dict(feature_dim=20, window_length=16, window_neg_length=16, embedding_transformation="Resnet"),
    "end-to-end-tanh": dict(feature_dim=1, window_length=600, window_neg_length=640, embedding_transformation="VggCpu",
                            end_to_end=True, frontend_filter_size=64, frontend_filters=24, frontend_pool=2,
                            sample_rate=8000),
    "end-to-end-leaky": dict(feature_dim=1, window_length=600, window_neg_length=600, embedding_transformation="VggCpu",
                             end_to_end=True, frontend_filter_size=32, frontend_filters=16, frontend_pool=3,
                             frontend_activation="leaky_relu", frontend_log1p=False, sample_rate=8000,
                             input_normalization=False),
}


def trained_like(config, seed=0):
    """A Keras model whose normalisation statistics, LayerNorm and scale weights are not at their init."""
    model = build_model(dict(config, **SMALL))
    rng = np.random.RandomState(seed)
    weights = {}
    for name, w in model.get_weights().items():
        if name.endswith("/std"):
            w = np.abs(w + rng.randn(*w.shape)) + 0.5
        elif name.endswith(("/mean", "/gamma", "/beta", "/scale")):
            w = w + 0.2 * rng.randn(*w.shape)
        weights[name] = np.asarray(w, np.float32)
    model.set_weights(weights)
    return model


def assert_same_rows(got, want, mixed):
    """float32: equal up to summation order; mixed_bfloat16: within bfloat16 rounding (the Keras
    path's own tf.function and eager results differ by as much)."""
    scale = max(1.0, float(np.abs(want).max()))
    if not mixed:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-2 * scale)
        assert np.abs(got - want).mean() < 1.5e-2 * np.abs(want).mean()


@pytest.mark.parametrize("mixed", [False, True], ids=["float32", "mixed"])
@pytest.mark.parametrize("case", CASES)
def test_numpy_towers_equal_keras(case, mixed):
    model = trained_like(dict(CASES[case], mixed_precision=mixed))
    numpy_model = NumpyModel(model.config, model.get_weights())
    assert numpy_model.model_id == model.model_id
    rng = np.random.RandomState(1)
    dim = model.config["feature_dim"]
    for tower in ("target", "context"):
        window = model.window_length_of(tower)
        x = (2 * rng.randn(9, window, dim)).astype(np.float32)
        assert_same_rows(numpy_model.embed(x, tower, batch_size=4), model.embed(x, tower), mixed)
        # fast mode's parts: conv stack over a long input, head on one window's slice of its map
        long = (2 * rng.randn(1, 3 * window + 5, dim)).astype(np.float32)
        want = np.asarray(model.conv_stack(tower)(long, training=False), np.float32)
        got = numpy_model.conv_stack(tower)(long)
        assert got.shape == want.shape and numpy_model.head_input_shape(tower) == model.head(tower).input_shape[1:]
        assert_same_rows(got, want, mixed)
        part = want[:, :numpy_model.head_input_shape(tower)[0]]
        assert_same_rows(numpy_model.head(tower)(part), np.asarray(model.head(tower)(part, training=False)), mixed)


def test_bfloat16_rounds_like_ml_dtypes():
    """Ties to even (1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6), otherwise nearest: as ml_dtypes' cast."""
    import ml_dtypes
    ties = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -7 + 2 ** -9, 0.0], np.float32)
    np.testing.assert_array_equal(bfloat16(ties), [1.0, 1.0, 1 + 2 ** -6, 1 + 2 ** -7, 0.0])
    x = (np.random.RandomState(0).randn(100000) * 10.0 ** np.arange(-5, 5).repeat(10000)).astype(np.float32)
    np.testing.assert_array_equal(bfloat16(x), x.astype(ml_dtypes.bfloat16).astype(np.float32))
    y = x.copy()
    assert bfloat16(y, inplace=True) is not None and np.array_equal(y, bfloat16(x))


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
def test_extractor_rows_equal_with_either_model(fast):
    model = trained_like(dict(CASES["VggCpu-unit-norm"], embedding_size=8))
    numpy_model = NumpyModel(model.config, model.get_weights())
    utts = [(f"u{i}", speechlike(n, i)) for i, n in enumerate((5, 32, 77, 260))]
    for combine in (False, True):
        want = dict(Extractor(model, 10, combine_contexts=combine, fast=fast).extract(utts))
        got = dict(Extractor(numpy_model, 10, combine_contexts=combine, fast=fast).extract(utts))
        for key, rows in want.items():
            assert got[key].shape == rows.shape
            assert_same_rows(got[key], rows, False)


def test_weights_that_do_not_fit_the_config_are_one_line_errors(tmp_path):
    model = trained_like(CASES["VggCpu-unit-norm"])
    weights = model.get_weights()
    with pytest.raises(UnspeechError, match="missing shared_conv2_1/kernel"):
        NumpyModel(model.config, {k: v for k, v in weights.items() if k != "shared_conv2_1/kernel"})
    with pytest.raises(UnspeechError, match=r"unexpected \['extra/kernel'\]"):
        NumpyModel(model.config, dict(weights, **{"extra/kernel": np.zeros(3, np.float32)}))
    with pytest.raises(UnspeechError, match="weights do not match"):
        NumpyModel(model.config, dict(weights, **{"target_fc/kernel": np.zeros((7, 32), np.float32)}))
    with pytest.raises(UnspeechError, match="model config not found|no such|not found"):
        load_numpy_model(str(tmp_path))


JOB = """
import sys
from utils_py.extract import extractor
extractor.NUMPY_MAX_FLOPS = float(sys.argv[4])
extractor.run_job(sys.argv[1] + "/split1/1", sys.argv[2], sys.argv[3], 1, num_threads=1, period=10)
print(type(extractor.load_model(sys.argv[2], "numpy")).__name__, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_job_runs_small_work_in_numpy_without_tensorflow_and_large_work_in_keras(tmp_path):
    import keras
    keras.utils.set_random_seed(3)
    model_dir = str(tmp_path / "model")
    trained_like(dict(CASES["VggCpu-unit-norm"], mixed_precision=True)).save(model_dir)
    data = make_data(str(tmp_path / "data"))
    from utils_py.kaldi import datadir
    datadir.split(data, 1)
    outs = {}
    env = dict(os.environ, PYTHONPATH=REPO)
    for name, budget in (("numpy", "1e15"), ("keras", "0")):
        out = str(tmp_path / name)
        p = subprocess.run([sys.executable, "-c", JOB, data, model_dir, out, budget], capture_output=True,
                           text=True, env=env, cwd=REPO)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == ["NumpyModel", str(name == "keras"), str(name == "keras")], p.stdout
        outs[name] = {k: np.asarray(v) for k, v in kaldiio.load_scp(os.path.join(out, "ivector_online.1.scp")).items()}
        outs[name + "_stamp"] = open(os.path.join(out, ".extract.1.done")).read()
    assert outs["numpy_stamp"] == outs["keras_stamp"]   # same model id, rows, utterances
    assert sorted(outs["numpy"]) == sorted(outs["keras"])
    for key, rows in outs["keras"].items():
        assert outs["numpy"][key].shape == rows.shape
        assert_same_rows(outs["numpy"][key], rows, True)
