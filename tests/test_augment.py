"""Augmentations: timm's definitions on both sides (TF ops of the JAX pipeline, PIL ops of the
MindSpore side), determinism per seed, and one defining property each.

timm (PIL) is the reference: the MindSpore side's ops are timm's PIL calls and must equal timm's
output exactly; the TF ops reproduce PIL's rounding and must be within one grey level.
"""

from __future__ import annotations

import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm.data.auto_augment as timm_aa  # before TensorFlow: torch after TF crashes the process
from PIL import Image, ImageFilter

from ascend_port import augment as pil_aug
from input_pipeline import augment_rules as rules
from train_lib import erasing

SIZE = (37, 45)  # odd and unequal, so centre and axis conventions matter


@pytest.fixture(scope="module")
def tf():
    from input_pipeline.tf_runtime import tf

    return tf


@pytest.fixture(scope="module")
def tf_aug(tf):
    from input_pipeline import augment

    return augment


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A smoothed noise image: structure for the filters, every grey level for the LUT ops."""
    noise = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(noise).filter(ImageFilter.SMOOTH))


def _timm_op(name: str, img: np.ndarray, level: float, sign: float) -> np.ndarray:
    op = timm_aa.AugmentOp(
        name, prob=1.0, magnitude=level,
        hparams={"img_mean": rules.fill_color(), "interpolation": Image.BILINEAR},
    )  # fmt: skip
    real = random.random
    random.random = lambda: 0.9 if sign < 0 else 0.1  # timm negates when random() > 0.5
    try:
        return np.asarray(op(Image.fromarray(img)))
    finally:
        random.random = real


ALL_OPS = sorted(set(rules.RAND_TRANSFORMS + rules.RAND_INCREASING_TRANSFORMS) | {
    name for sub in rules.ORIGINAL_POLICY for name, _, _ in sub})  # fmt: skip


def test_every_op_follows_timm_on_both_sides(image, tf, tf_aug):
    for name in ALL_OPS:
        for level in (0.0, 3.0, 7.3, 10.0):
            for sign in (1.0, -1.0):
                pil = np.asarray(pil_aug.apply_op(name, Image.fromarray(image), level, sign))
                bits = rules.level_to_arg(name, level, sign, pil_aug._XP)
                if not (rules.IMAGE_OP[name] == "posterize" and bits == 0):  # PIL >= 10 raises
                    np.testing.assert_array_equal(pil, _timm_op(name, image, level, sign),
                                                  err_msg=f"{name} m{level} {sign}")  # fmt: skip
                out = tf_aug.apply_op(name, tf.constant(image), level, sign).numpy()
                assert out.dtype == np.uint8 and out.shape == image.shape
                diff = np.abs(out.astype(int) - pil)
                assert diff.max() <= 1 and diff.mean() < 0.05, (name, level, sign, diff.max())


def test_posterize_to_zero_bits_is_black_on_both_sides(image, tf, tf_aug):
    args = ("PosterizeIncreasing", 10.0, 1.0)
    assert not np.asarray(pil_aug.apply_op(args[0], Image.fromarray(image), *args[1:])).any()
    assert not tf_aug.apply_op(args[0], tf.constant(image), *args[1:]).numpy().any()


def test_magnitude_zero_leaves_geometric_ops_the_identity(image, tf, tf_aug):
    for name in rules.GEOMETRIC:
        for sign in (1.0, -1.0):
            pil = np.asarray(pil_aug.apply_op(name, Image.fromarray(image), 0.0, sign))
            np.testing.assert_array_equal(pil, image, err_msg=name)
            out = tf_aug.apply_op(name, tf.constant(image), 0.0, sign).numpy()
            np.testing.assert_array_equal(out, image, err_msg=name)


def test_parse_follows_timm_syntax():
    spec = rules.parse("rand-m9-mstd0.5-inc1")
    assert spec == rules.RandAugmentSpec(magnitude=9, magnitude_std=0.5, increasing=True)
    assert spec.ops == rules.RAND_INCREASING_TRANSFORMS
    assert rules.parse("rand-m7-n3-mstd101-p0.7").magnitude_std == math.inf
    assert rules.parse("rand-n1").num_layers == 1
    assert rules.parse("imagenet") == rules.AutoAugmentSpec()
    assert rules.parse("original-mstd0.5").magnitude_std == 0.5
    assert rules.parse("") is None
    assert len(rules.ORIGINAL_POLICY) == 25
    for bad in ("rand-x9", "randaug", "imagenet-m9", "rand-m9-m8", "v0", "rand-p1.5"):
        with pytest.raises(ValueError, match="data.auto_augment"):
            rules.parse(bad)


def _seeds(tf, n: int) -> list:
    return [tf.constant([7, i], tf.int64) for i in range(n)]


@pytest.mark.parametrize("config", ["imagenet", "rand-m9-mstd0.5-inc1", "jitter"])
def test_tf_policy_is_a_function_of_the_example_seed(image, tf, tf_aug, config):
    spec = None if config == "jitter" else rules.parse(config)
    jitter = 0.4 if config == "jitter" else 0.0
    fn = tf.function(lambda x, s: tf_aug.augment_image(x, s, spec, jitter))
    x = tf.constant(image)
    outs = [fn(x, s).numpy() for s in _seeds(tf, 12)]
    for out in outs:
        assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(fn(x, _seeds(tf, 1)[0]).numpy(), outs[0])
    assert len({o.tobytes() for o in outs}) > 4  # seeds pick different ops / factors


@pytest.mark.parametrize("config", ["imagenet", "rand-m9-mstd0.5-inc1"])
def test_pil_policy_is_a_function_of_the_generator_seed(image, config):
    spec = rules.parse(config)

    def run(seed):
        return pil_aug.TimmAugment(spec, np.random.default_rng(seed))(image)

    outs = [run(seed) for seed in range(12)]
    for out in outs:
        assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(run(0), outs[0])
    assert len({o.tobytes() for o in outs}) > 4


def test_color_jitter_factors_stay_in_range(image, tf, tf_aug):
    """Strength 0 is the identity; brightness alone at s bounds the mean by [1-s, 1+s]."""
    x = tf.constant(image)
    np.testing.assert_array_equal(tf_aug.color_jitter(x, _seeds(tf, 1)[0], 0.0).numpy(), image)
    for seed in _seeds(tf, 5):
        out = tf_aug.color_jitter(x, seed, 0.4).numpy()
        assert out.dtype == np.uint8 and out.shape == image.shape


def test_erasing_rectangle_rule_on_both_sides(tf, tf_aug):
    h, w = 24, 32
    for prob in (0.0,):
        for seed in _seeds(tf, 20):
            assert not tf_aug.erase_box(seed, h, w, prob).numpy().any()
        rng = np.random.default_rng(0)
        assert all(rules.erase_box(rng, h, w, prob) == (0, 0, 0, 0) for _ in range(20))
    tf_boxes = [tf_aug.erase_box(s, h, w, 1.0).numpy() for s in _seeds(tf, 200)]
    rng = np.random.default_rng(0)
    np_boxes = [np.array(rules.erase_box(rng, h, w, 1.0)) for _ in range(200)]
    for boxes in (tf_boxes, np_boxes):
        boxes = np.stack(boxes)
        top, left, bh, bw = boxes.T
        assert (bh > 0).all() and (bh < h).all() and (bw < w).all()
        assert (top >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
        frac = bh * bw / (h * w)
        assert 0.01 < frac.min() and frac.max() < 0.45  # round() moves the U(0.02, 1/3) bounds
        assert 0.1 < frac.mean() < 0.25  # uniform area: mean ~ 0.18
        assert (bh > bw).any() and (bw > bh).any()  # log-uniform ratio around 1
    np.testing.assert_array_equal(
        tf_aug.erase_box(_seeds(tf, 1)[0], h, w, 0.5).numpy(),
        tf_aug.erase_box(_seeds(tf, 1)[0], h, w, 0.5).numpy(),
    )


def test_erasing_fills_normal_values_in_normalised_space(tf, tf_aug):
    images = jnp.asarray(np.random.default_rng(1).uniform(-2, 2, (3, 24, 32, 3)), jnp.float32)
    key = jax.random.key(0)
    no_boxes = jnp.zeros((3, 4), jnp.int32)
    np.testing.assert_array_equal(erasing.apply(images, no_boxes, key), images)
    boxes = jnp.asarray([[2, 3, 10, 20], [0, 0, 0, 0], [5, 1, 19, 30]], jnp.int32)
    out = np.asarray(erasing.apply(images, boxes, key))
    np.testing.assert_array_equal(out, erasing.apply(images, boxes, key))
    assert not np.array_equal(out, erasing.apply(images, boxes, jax.random.key(1)))
    mask = np.zeros(out.shape, bool)
    mask[0, 2:12, 3:23] = mask[2, 5:24, 1:31] = True
    np.testing.assert_array_equal(out[~mask], np.asarray(images)[~mask])
    filled = out[mask]
    assert abs(filled.mean()) < 0.1 and abs(filled.std() - 1.0) < 0.1
    # The MindSpore side: the same rule on a CHW float image.
    chw = np.asarray(images[0]).transpose(2, 0, 1)
    np.testing.assert_array_equal(pil_aug.RandomErasing(0.0, np.random.default_rng(0))(chw), chw)
    erased = pil_aug.RandomErasing(1.0, np.random.default_rng(0))(chw)
    changed = (erased != chw).any(axis=0)
    rows, cols = np.nonzero(changed)
    box = (rows.min(), cols.min(), np.ptp(rows) + 1, np.ptp(cols) + 1)
    assert changed.sum() == box[2] * box[3]  # one rectangle
    assert box == rules.erase_box(np.random.default_rng(0), 24, 32, 1.0)


# --------------------------------------------------------------------------- MindSpore side
BATCH_CONFIGS = [
    {"auto_augment": "imagenet", "crop_min": 0.05},
    {"auto_augment": "rand-m9-mstd0.5-inc1", "random_erase": 1.0, "color_jitter": 0.4,
     "crop_max": 0.8, "ratio_min": 0.5, "ratio_max": 2.0},
]  # fmt: skip


def test_mindspore_side_agrees_with_the_tf_ops(tmp_path, image, tf, tf_aug):
    import json

    from tests.fake_data import make_folder
    from tests.test_ascend_port import run_ascend

    np.savez(tmp_path / "image.npz", image=image)
    make_folder(tmp_path / "folder", {"train": {"a": 4, "b": 4}}, seed=3)
    (tmp_path / "configs.json").write_text(json.dumps(BATCH_CONFIGS))
    run_ascend(["-m", "tests.ascend_side.check_augment", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["properties"] and all(results["properties"].values()), results["properties"]
    for batch in results["batches"]:
        assert batch == {**batch, "shape": [4, 3, 32, 32], "dtype": "float32", "finite": True}
    ops = np.load(tmp_path / "ops.npz")
    assert len(ops.files) == len(ALL_OPS) * 8
    for key in ops.files:
        name, level, sign = key.split("/")
        out = tf_aug.apply_op(name, tf.constant(image), float(level), float(sign)).numpy()
        diff = np.abs(out.astype(int) - ops[key])
        assert diff.max() <= 1 and diff.mean() < 0.05, (key, diff.max())
