"""Model API: towers, conv_stack/head split, save/load, ids, errors (tiny configs, fast)."""
import json
import os

import numpy as np
import pytest

from utils_py.log import UnspeechError
from utils_py.model.network import (CONFIG_FILE, MODEL_TRANSFORMS, WEIGHTS_FILE, UnspeechModel, build_model,
                            load_model_dir, min_frames_of)

TINY = {"feature_dim": 16, "window_length": 16, "window_neg_length": 32, "embedding_size": 6,
        "fc_size": 12, "embedding_transformation": "VggCpu"}


def windows(n, length, dim=16, seed=0):
    return np.random.default_rng(seed).normal(5.0, 2.0, (n, length, dim)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    m = build_model(TINY)
    m.set_input_stats(np.full(16, 5.0), np.full(16, 2.0))
    return m


def test_min_frames_of_transforms():
    assert min_frames_of("Vgg16") == 16 and min_frames_of("Vgg16big") == 32
    assert min_frames_of("VggCpu") == 16 and min_frames_of("Resnet") == 16
    with pytest.raises(UnspeechError, match="unknown --embedding-transformation"):
        min_frames_of("Vgg99")


@pytest.mark.parametrize("transform", sorted(MODEL_TRANSFORMS))
def test_embed_equals_head_of_conv_stack(transform):
    big = transform == "Vgg16big"
    cfg = dict(TINY, embedding_transformation=transform, feature_dim=32 if big else 16,
               window_length=32 if big else 16)
    m = build_model(cfg)
    for tower in ("target", "context"):
        x = windows(5, m.window_length_of(tower), cfg["feature_dim"], seed=1)
        emb = m.embed(x, tower)
        assert emb.shape == (5, 6) and emb.dtype == np.float32
        fmap = m.conv_stack(tower)(x)
        np.testing.assert_allclose(m.head(tower)(fmap, training=False).numpy(), emb, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(m.tower(tower)(x, training=False).numpy(), emb, rtol=1e-5, atol=1e-5)


def test_conv_stack_any_length(tiny):
    pools = len(MODEL_TRANSFORMS["VggCpu"][1])
    for t in (16, 17, 40, 103):
        fmap = tiny.conv_stack("target")(windows(2, t))
        assert tuple(fmap.shape[:3]) == (2, t // 2 ** pools, 16 // 2 ** pools)
    # a window's map is a slice of the map of the whole utterance, away from the edges
    utt = windows(1, 160)
    full = tiny.conv_stack("target")(utt).numpy()
    part = tiny.conv_stack("target")(utt[:, 64:128]).numpy()
    np.testing.assert_allclose(part[0, 1:-1], full[0, 5:7], rtol=1e-4, atol=1e-4)


def test_tied_and_untied_conv_stacks():
    tied = build_model(dict(TINY, window_neg_length=16))
    assert tied.conv_stack("target") is tied.conv_stack("context")
    assert tied.head("target") is not tied.head("context")
    untied = build_model(dict(TINY, tied_embeddings_transforms=False))
    assert untied.conv_stack("target") is not untied.conv_stack("context")
    assert len(untied.variables) > len(tied.variables)


def test_unit_normalize_and_scale():
    m = build_model(dict(TINY, unit_normalize=True, unit_normalize_var=True))
    scale = [v for v in m.variables if v.path.startswith("unit_normalize_var")]
    assert len(scale) == 1, "one scalar shared by both towers"
    scale[0].assign(3.0)
    for tower in ("target", "context"):
        e = m.embed(windows(4, m.window_length_of(tower)), tower)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 3.0, rtol=1e-4)


def test_save_load_identical(tmp_path, tiny):
    tiny.save(str(tmp_path), extra_config={"learn_rate": 0.1})
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert cfg["feature_dim"] == 16 and cfg["learn_rate"] == 0.1
    loaded = load_model_dir(str(tmp_path))
    assert isinstance(loaded, UnspeechModel) and loaded.min_frames == 16
    for tower in ("target", "context"):
        x = windows(7, tiny.window_length_of(tower), seed=2)
        np.testing.assert_array_equal(loaded.embed(x, tower), tiny.embed(x, tower))
    assert loaded.model_id == tiny.model_id and len(tiny.model_id) == 32
    assert loaded.config["learn_rate"] == 0.1


def test_model_id_depends_on_weights():
    a, b = build_model(TINY), build_model(TINY)
    b.set_weights(a.get_weights())
    assert a.model_id == b.model_id
    v = b.trainable_variables[0]
    v.assign(v.numpy() + 1e-3)
    assert a.model_id != b.model_id


def test_mixed_precision_outputs_float32():
    m = build_model(dict(TINY, mixed_precision=True))
    e = m.embed(windows(3, 16))
    assert e.dtype == np.float32 and np.all(np.isfinite(e))


def test_errors(tmp_path, tiny):
    with pytest.raises(UnspeechError, match="smaller than the 32 frames Vgg16big needs"):
        build_model(dict(TINY, feature_dim=40, window_length=24, embedding_transformation="Vgg16big"))
    with pytest.raises(UnspeechError, match="expects windows of shape"):
        tiny.embed(windows(2, 17))
    with pytest.raises(UnspeechError, match="model config not found"):
        load_model_dir(str(tmp_path / "nothing"))
    tiny.save(str(tmp_path))
    with open(tmp_path / WEIGHTS_FILE, "wb") as f:
        f.write(b"not a zip")
    with pytest.raises(UnspeechError, match="cannot read model weights"):
        load_model_dir(str(tmp_path))
    (tmp_path / CONFIG_FILE).write_text("{broken")
    with pytest.raises(UnspeechError, match="cannot parse model config"):
        load_model_dir(str(tmp_path))
    other = tmp_path / "other"
    build_model(dict(TINY, fc_size=13)).save(str(other))
    cfg = json.loads((other / CONFIG_FILE).read_text())
    cfg["fc_size"] = 12
    (other / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(UnspeechError, match="has shape"):
        load_model_dir(str(other))
    assert os.path.isfile(other / WEIGHTS_FILE)
