"""Training augmentations as TensorFlow ops on one uint8 [H, W, 3] image, seeded per example.

Definitions are timm's (input_pipeline/augment_rules.py holds the policy tables, the config
syntax and the magnitude rules). timm runs its ops in PIL; each op here reproduces the PIL
function it calls (named per op below), including PIL's integer rounding, so the result equals
PIL's to within one grey level (affine ops: away from the border). Neither TensorFlow nor Keras
ships these ops with PIL's definitions and a per-example stateless seed (keras' RandAugment and
AutoAugment layers draw from a stateful generator and use other magnitude scales), so they are
written here. One deliberate difference: rotate/shear/translate resample bilinearly (TF's
projective transform has no bicubic), where timm uses the recipe's interpolation.

Every random draw is a stateless op keyed by the example's seed, so a resumed run augments each
example exactly as the uninterrupted run did.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from input_pipeline import augment_rules as rules
from input_pipeline.tf_runtime import tf

_XP = SimpleNamespace(floor=tf.math.floor, minimum=tf.minimum, maximum=tf.maximum)


# --------------------------------------------------------------------------- PIL's image ops
def _u8(x: tf.Tensor) -> tf.Tensor:
    """float -> uint8 as PIL's C code stores a float: clip to [0, 255], truncate."""
    return tf.cast(tf.floor(tf.clip_by_value(x, 0.0, 255.0)), tf.uint8)


def _lut(image: tf.Tensor, lut: tf.Tensor) -> tf.Tensor:
    """Per-channel lookup table: lut [3, 256] (or [256] for all channels) applied to uint8."""
    lut = tf.broadcast_to(tf.cast(lut, tf.int32), [3, 256])
    idx = tf.cast(image, tf.int32) + tf.constant([0, 256, 512], tf.int32)
    return tf.cast(tf.gather(tf.reshape(lut, [-1]), idx), tf.uint8)


def _histograms(image: tf.Tensor) -> tf.Tensor:
    """[3, 256] int32 per-channel histograms."""
    idx = tf.cast(tf.reshape(image, [-1, 3]), tf.int32) + tf.constant([0, 256, 512], tf.int32)
    return tf.reshape(
        tf.math.bincount(tf.reshape(idx, [-1]), minlength=768, maxlength=768), [3, 256]
    )


def _grey(image: tf.Tensor) -> tf.Tensor:
    """PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 2^15) >> 16, int32 [H, W]."""
    rgb = tf.cast(image, tf.int32)
    weighted = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000
    return tf.bitwise.right_shift(weighted, 16)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL Image.blend(degenerate, image, factor) (ImageEnhance's enhance): float32, truncated."""
    d = tf.cast(degenerate, tf.float32)
    return _u8(d + tf.cast(factor, tf.float32) * (tf.cast(image, tf.float32) - d))


def invert(image: tf.Tensor) -> tf.Tensor:
    """ImageOps.invert."""
    return 255 - image


def posterize(image: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
    """ImageOps.posterize (keep the top `bits` bits; 8 = identity). 0 bits gives black, as
    PIL < 10 did; newer PIL raises there, which timm reaches at magnitude 10 of
    PosterizeIncreasing."""
    shift = 8 - tf.cast(bits, tf.int32)
    mask = tf.bitwise.left_shift(tf.bitwise.right_shift(255, shift), shift)
    return tf.bitwise.bitwise_and(image, tf.cast(mask, tf.uint8))


def solarize(image: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
    """ImageOps.solarize: values >= threshold are inverted (256 = identity)."""
    return tf.where(
        tf.cast(image, tf.float32) >= tf.cast(threshold, tf.float32), 255 - image, image
    )


def solarize_add(image: tf.Tensor, add: tf.Tensor, threshold: float = 128.0) -> tf.Tensor:
    """timm's solarize_add: values < threshold get min(255, v + add)."""
    v = tf.cast(image, tf.float32)
    added = tf.cast(tf.minimum(255.0, v + tf.cast(add, tf.float32)), tf.uint8)
    return tf.where(v < threshold, added, image)


def auto_contrast(image: tf.Tensor) -> tf.Tensor:
    """ImageOps.autocontrast (cutoff 0): per channel, [lo, hi] -> [0, 255] through
    int(ix * 255 / (hi - lo) - lo * 255 / (hi - lo)), identity where hi <= lo."""
    present = _histograms(image) > 0
    levels = tf.range(256)
    lo = tf.reduce_min(tf.where(present, levels, 256), axis=1, keepdims=True)
    hi = tf.reduce_max(tf.where(present, levels, -1), axis=1, keepdims=True)
    scale = 255.0 / tf.cast(tf.maximum(hi - lo, 1), tf.float64)
    mapped = tf.cast(levels, tf.float64) * scale - tf.cast(lo, tf.float64) * scale
    lut = tf.clip_by_value(tf.cast(mapped, tf.int32), 0, 255)  # int(): toward zero
    return _lut(image, tf.where(hi <= lo, levels, lut))


def equalize(image: tf.Tensor) -> tf.Tensor:
    """ImageOps.equalize: per channel, step = (N - count of the last used level) // 255,
    lut[i] = (step // 2 + pixels below i) // step; identity where step == 0."""
    hist = _histograms(image)
    levels = tf.range(256)
    last = tf.reduce_max(tf.where(hist > 0, levels, -1), axis=1, keepdims=True)
    last_count = tf.gather(hist, tf.maximum(last, 0), batch_dims=1)
    step = (tf.reduce_sum(hist, axis=1, keepdims=True) - last_count) // 255
    lut = (step // 2 + tf.cumsum(hist, axis=1, exclusive=True)) // tf.maximum(step, 1)
    return _lut(image, tf.where(step == 0, levels, tf.minimum(lut, 255)))


def color(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Color: blend with the image's PIL greyscale."""
    return _blend(tf.repeat(_grey(image)[..., None], 3, axis=-1), image, factor)


def contrast(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Contrast: blend with int(mean of the PIL greyscale + 0.5)."""
    mean = tf.floor(tf.reduce_mean(tf.cast(_grey(image), tf.float64)) + 0.5)
    return _blend(tf.fill(tf.shape(image), tf.cast(mean, tf.float32)), image, factor)


def brightness(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Brightness: blend with black."""
    return _blend(tf.zeros_like(image), image, factor)


_SMOOTH = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0


def sharpness(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH (3x3, centre 5, /13, rounded; the
    one-pixel border keeps the original values, as PIL's filter does)."""
    x = tf.cast(image, tf.float32)[None]
    kernel = tf.tile(_SMOOTH[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.cast(tf.floor(tf.clip_by_value(smooth + 0.5, 0.0, 255.0)), tf.uint8)
    degenerate = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    shape = tf.shape(image)
    rows, cols = tf.range(shape[0])[:, None, None], tf.range(shape[1])[None, :, None]
    interior = (rows > 0) & (rows < shape[0] - 1) & (cols > 0) & (cols < shape[1] - 1)
    return _blend(tf.where(interior, degenerate, image), image, factor)


def _affine(image: tf.Tensor, transform: list[tf.Tensor]) -> tf.Tensor:
    """PIL Image.transform(AFFINE, bilinear, fillcolor=timm's mean): `transform` maps output
    pixel indices to input ones ([a0, a1, a2, b0, b1, b2]); samples inside the image are
    bilinear with edge clamping, samples outside take the fill colour, as in PIL."""
    t = tf.cast(tf.stack([*transform, 0.0, 0.0]), tf.float32)[None]
    shape = tf.shape(image)[:2]

    def warp(x: tf.Tensor, interpolation: str, fill_mode: str) -> tf.Tensor:
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x[None], transforms=t, output_shape=shape, fill_value=0.0,
            interpolation=interpolation, fill_mode=fill_mode,
        )[0]  # fmt: skip

    warped = warp(tf.cast(image, tf.float32), "BILINEAR", "NEAREST")
    inside = warp(tf.ones_like(image[..., :1], tf.float32), "NEAREST", "CONSTANT") > 0.5
    fill = tf.constant(rules.fill_color(), tf.float32)
    out = tf.where(inside, warped, fill)
    return _u8(out)  # PIL stores the bilinear sum truncated


def rotate(image: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
    """Image.rotate(degrees) about the centre (counter-clockwise), same size."""
    a = -tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(a), tf.sin(a)
    h, w = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32))
    cx, cy = w / 2.0, h / 2.0
    tx = cos * (0.5 - cx) + sin * (0.5 - cy) + cx - 0.5
    ty = -sin * (0.5 - cx) + cos * (0.5 - cy) + cy - 0.5
    return _affine(image, [cos, sin, tx, -sin, cos, ty])


def shear_x(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Image.transform(AFFINE, (1, factor, 0, 0, 1, 0)) on pixel centres."""
    f = tf.cast(factor, tf.float32)
    return _affine(image, [1.0, f, 0.5 * f, 0.0, 1.0, 0.0])


def shear_y(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Image.transform(AFFINE, (1, 0, 0, factor, 1, 0)) on pixel centres."""
    f = tf.cast(factor, tf.float32)
    return _affine(image, [1.0, 0.0, 0.0, f, 1.0, 0.5 * f])


def translate_x(image: tf.Tensor, pct: tf.Tensor) -> tf.Tensor:
    """timm translate_x_rel: shift by pct * width pixels."""
    pixels = tf.cast(pct, tf.float32) * tf.cast(tf.shape(image)[1], tf.float32)
    return _affine(image, [1.0, 0.0, pixels, 0.0, 1.0, 0.0])


def translate_y(image: tf.Tensor, pct: tf.Tensor) -> tf.Tensor:
    """timm translate_y_rel: shift by pct * height pixels."""
    pixels = tf.cast(pct, tf.float32) * tf.cast(tf.shape(image)[0], tf.float32)
    return _affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, pixels])


IMAGE_OPS = {
    "auto_contrast": auto_contrast, "equalize": equalize, "invert": invert, "rotate": rotate,
    "posterize": posterize, "solarize": solarize, "solarize_add": solarize_add, "color": color,
    "contrast": contrast, "brightness": brightness, "sharpness": sharpness, "shear_x": shear_x,
    "shear_y": shear_y, "translate_x": translate_x, "translate_y": translate_y,
}  # fmt: skip


def apply_op(name: str, image: tf.Tensor, level: tf.Tensor, sign: tf.Tensor) -> tf.Tensor:
    """timm op `name` (e.g. 'SolarizeIncreasing') at magnitude `level` with the drawn sign."""
    fn = IMAGE_OPS[rules.IMAGE_OP[name]]
    arg = rules.level_to_arg(name, tf.cast(level, tf.float32), tf.cast(sign, tf.float32), _XP)
    out = fn(image) if arg is None else fn(image, arg)
    return tf.ensure_shape(out, image.shape)


# --------------------------------------------------------------------------- random policies
def _uniform(seed: tf.Tensor, shape=()) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed, dtype=tf.float32)


def _sign(seed: tf.Tensor) -> tf.Tensor:
    """timm's _randomly_negate: -1 when random() > 0.5."""
    return tf.where(_uniform(seed) > 0.5, -1.0, 1.0)


def _magnitude(seed: tf.Tensor, magnitude: float, std: float, upper: float) -> tf.Tensor:
    """timm AugmentOp: gauss(m, std) (uniform(0, m) for std inf), clipped to [0, upper]."""
    if std == math.inf:
        m = _uniform(seed) * magnitude
    elif std > 0:
        m = magnitude + std * tf.random.stateless_normal((), seed)
    else:
        m = tf.constant(magnitude, tf.float32)
    return tf.clip_by_value(m, 0.0, upper)


def _maybe_op(image, name, prob, magnitude, std, upper, seed) -> tf.Tensor:
    """One timm AugmentOp: applied with probability `prob`."""
    s = tf.random.experimental.stateless_split(seed, 3)
    level = _magnitude(s[1], magnitude, std, upper)
    if prob >= 1.0:
        return apply_op(name, image, level, _sign(s[2]))
    return tf.cond(
        _uniform(s[0]) <= prob, lambda: apply_op(name, image, level, _sign(s[2])), lambda: image
    )


def rand_augment(image: tf.Tensor, seed: tf.Tensor, spec: rules.RandAugmentSpec) -> tf.Tensor:
    """timm RandAugment: `num_layers` ops drawn uniformly with replacement, each applied with
    probability spec.prob at a magnitude drawn around spec.magnitude."""
    ops = spec.ops
    for layer_seed in tf.unstack(tf.random.experimental.stateless_split(seed, spec.num_layers)):
        pick, op_seed = tf.unstack(tf.random.experimental.stateless_split(layer_seed, 2))
        index = tf.random.stateless_uniform((), pick, 0, len(ops), dtype=tf.int32)
        branches = [
            (lambda name=name, x=image, s=op_seed: _maybe_op(
                x, name, spec.prob, spec.magnitude, spec.magnitude_std, spec.magnitude_max, s))
            for name in ops
        ]  # fmt: skip
        image = tf.switch_case(index, branches)
    return image


def auto_augment(image: tf.Tensor, seed: tf.Tensor, spec: rules.AutoAugmentSpec) -> tf.Tensor:
    """timm AutoAugment: one sub-policy drawn uniformly; each of its ops applied with its
    probability at its magnitude."""
    pick, first, second = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    index = tf.random.stateless_uniform((), pick, 0, len(spec.policy), dtype=tf.int32)

    def branch(sub_policy):
        def run():
            out = image
            for (name, prob, magnitude), op_seed in zip(sub_policy, (first, second), strict=True):
                out = _maybe_op(out, name, prob, float(magnitude), spec.magnitude_std,
                                rules.LEVEL_DENOM, op_seed)  # fmt: skip
            return out

        return run

    return tf.switch_case(index, [branch(sp) for sp in spec.policy])


def color_jitter(image: tf.Tensor, seed: tf.Tensor, strength: float) -> tf.Tensor:
    """torchvision ColorJitter(brightness=s, contrast=s, saturation=s) on a PIL image (timm's
    color_jitter=s): factors uniform in [max(0, 1 - s), 1 + s], the three in random order, each
    PIL's ImageEnhance (Brightness, Contrast, Color)."""
    order_seed, *factor_seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
    factors = [lo + (hi - lo) * _uniform(s) for s in factor_seeds]
    ops = [brightness, contrast, color]
    order = tf.argsort(_uniform(order_seed, [3]))
    for i in range(3):
        image = tf.switch_case(
            order[i],
            [lambda fn=fn, f=f, x=image: fn(x, f) for fn, f in zip(ops, factors, strict=True)],
        )
    return image


def erase_box(seed: tf.Tensor, height: int, width: int, prob: float) -> tf.Tensor:
    """int32 [4] (top, left, h, w) of timm's erasing rectangle (augment_rules.erase_box's rule,
    its 10 tries drawn at once), zeros for none. The device fills it with N(0, 1) values after
    normalisation (train_lib/erasing.py), where timm erases."""
    s = tf.random.experimental.stateless_split(seed, 4)
    n = rules.ERASE_ATTEMPTS
    area = float(height * width)
    lo, hi = rules.ERASE_AREA
    target = (lo + (hi - lo) * tf.random.stateless_uniform([n], s[1], dtype=tf.float64)) * area
    lr_lo, lr_hi = rules.ERASE_LOG_RATIO
    ratio = tf.exp(
        lr_lo + (lr_hi - lr_lo) * tf.random.stateless_uniform([n], s[2], dtype=tf.float64)
    )
    h = tf.cast(tf.round(tf.sqrt(target * ratio)), tf.int32)
    w = tf.cast(tf.round(tf.sqrt(target / ratio)), tf.int32)
    fits = (h < height) & (w < width)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    h, w = h[first], w[first]
    u = tf.random.stateless_uniform([2], s[3], dtype=tf.float64)
    top = tf.cast(tf.floor(u[0] * tf.cast(height - h + 1, tf.float64)), tf.int32)
    left = tf.cast(tf.floor(u[1] * tf.cast(width - w + 1, tf.float64)), tf.int32)
    box = tf.stack([top, left, h, w])
    keep = (_uniform(s[0]) < prob) & tf.reduce_any(fits)
    return tf.where(keep, box, tf.zeros_like(box))


def augment_image(
    image: tf.Tensor, seed: tf.Tensor, spec: rules.AugmentSpec, color_jitter_strength: float
) -> tf.Tensor:
    """After the crop and flip, as timm's train transform: AutoAugment or RandAugment, then
    colour jitter (timm skips jitter when auto_augment is set; the recipes set it to 0 then)."""
    aa_seed, jitter_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if isinstance(spec, rules.RandAugmentSpec):
        image = rand_augment(image, aa_seed, spec)
    elif isinstance(spec, rules.AutoAugmentSpec):
        image = auto_augment(image, aa_seed, spec)
    if color_jitter_strength > 0:
        image = color_jitter(image, jitter_seed, color_jitter_strength)
    return image
