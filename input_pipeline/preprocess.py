"""Per-example decoding, cropping and flipping on undecoded image bytes, all in TensorFlow.

Train: a random-resized crop sampled *before* decoding, so JPEGs are decoded only inside the crop
window (tf.io.decode_and_crop_jpeg); eval: the centre square that "resize the short side to
size / crop_pct, then centre-crop size" would keep, again decoded only there. Bytes that are not
JPEG (a PNG named .JPEG, GIF, BMP, WebP) are decoded whole and then cropped; CMYK JPEGs come out as
RGB. All randomness is stateless and seeded per example, so a resumed run crops and flips exactly
like an uninterrupted one. Outputs stay uint8: normalisation happens on the device.
"""

from __future__ import annotations

from collections.abc import Callable

from input_pipeline.tf_runtime import tf

ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10
_WHOLE_IMAGE = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
RESIZE_METHODS = {"bilinear": "bilinear", "bicubic": "bicubic"}

Window = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]  # top, left, height, width (int32)


def check_interpolation(name: str) -> str:
    if name not in RESIZE_METHODS:
        raise ValueError(f"interpolation {name!r} is not one of {sorted(RESIZE_METHODS)}")
    return name


def _decode_window(
    data: tf.Tensor, window_fn: Callable[[tf.Tensor, tf.Tensor], Window]
) -> tf.Tensor:
    """Decodes the window that `window_fn(height, width)` picks, uint8 [h, w, 3]."""

    def jpeg() -> tf.Tensor:
        shape = tf.image.extract_jpeg_shape(data)
        window = tf.stack(window_fn(shape[0], shape[1]))
        # The accurate IDCT, as PIL, torchvision and MindSpore decode: TF's default fast integer
        # IDCT moves pixels by up to 14 grey levels, so the same checkpoint scored differently
        # here and under ascend_port.eval (2 of 359 digits).
        return tf.io.decode_and_crop_jpeg(data, window, channels=3, dct_method="INTEGER_ACCURATE")

    def other() -> tf.Tensor:
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        image.set_shape([None, None, 3])
        shape = tf.shape(image)
        top, left, height, width = window_fn(shape[0], shape[1])
        return image[top : top + height, left : left + width]

    image = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def decode_full(data: tf.Tensor) -> tf.Tensor:
    """The whole image, uint8 [h, w, 3]; fails on bytes no decoder accepts (truncated, garbage)."""
    return _decode_window(data, lambda h, w: (tf.constant(0), tf.constant(0), h, w))


def _resize(image: tf.Tensor, size: int, interpolation: str) -> tf.Tensor:
    # antialias: PIL (which the reference models were evaluated with) always filters when shrinking.
    resized = tf.image.resize(
        image, [size, size], method=RESIZE_METHODS[interpolation], antialias=True
    )
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    resized.set_shape([size, size, 3])
    return resized


def _clamped_centre_window(
    height: tf.Tensor, width: tf.Tensor, aspect_range: tuple[float, float] = ASPECT_RANGE
) -> Window:
    """The largest centred window whose aspect ratio is within aspect_range (the crop fallback)."""
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    ratio = w / h
    lo, hi = aspect_range
    crop_h = tf.where(ratio < lo, tf.round(w / lo), h)
    crop_w = tf.where(ratio > hi, tf.round(h * hi), w)
    crop_h = tf.minimum(tf.cast(crop_h, tf.int32), height)
    crop_w = tf.minimum(tf.cast(crop_w, tf.int32), width)
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def example_seed(seed: int, epoch: tf.Tensor, process_index: int, position: tf.Tensor) -> tf.Tensor:
    """A stateless seed for one example, from (run seed, epoch, process, position in the epoch)."""
    fold_in = tf.random.experimental.stateless_fold_in
    base = tf.constant([seed % 2**63, process_index], tf.int64)
    return fold_in(fold_in(base, tf.cast(epoch, tf.int64), alg="philox"), position, alg="philox")


def train_image(
    data: tf.Tensor,
    seed: tf.Tensor,
    *,
    size: int,
    crop_min: float,
    interpolation: str,
    flip: bool = True,
    crop_max: float = 1.0,
    aspect_range: tuple[float, float] = ASPECT_RANGE,
) -> tf.Tensor:
    """Random-resized crop (area in [crop_min, crop_max], w/h in aspect_range) + horizontal
    flip, uint8."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))

    def window(height: tf.Tensor, width: tf.Tensor) -> Window:
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([height, width, 3]),
            bounding_boxes=_WHOLE_IMAGE,
            seed=crop_seed,
            min_object_covered=0.0,
            aspect_ratio_range=aspect_range,
            area_range=(crop_min, crop_max),
            max_attempts=CROP_ATTEMPTS,
            use_image_if_no_bounding_boxes=True,
        )
        # After CROP_ATTEMPTS misses the op returns the whole image: fall back to a centre crop.
        missed = tf.logical_and(tf.equal(extent[0], height), tf.equal(extent[1], width))
        sampled = (begin[0], begin[1], extent[0], extent[1])
        fallback = _clamped_centre_window(height, width, aspect_range)
        return tuple(tf.where(missed, f, s) for f, s in zip(fallback, sampled, strict=True))

    image = _resize(_decode_window(data, window), size, interpolation)
    return tf.image.stateless_random_flip_left_right(image, flip_seed) if flip else image


def eval_image(data: tf.Tensor, *, size: int, crop_pct: float, interpolation: str) -> tf.Tensor:
    """Centre crop as "resize short side to floor(size / crop_pct), centre-crop size", uint8."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    scale_size = int(size / crop_pct)

    def window(height: tf.Tensor, width: tf.Tensor) -> Window:
        short = tf.minimum(height, width)
        crop = tf.cast(tf.round(tf.cast(short, tf.float32) * (size / scale_size)), tf.int32)
        crop = tf.clip_by_value(crop, 1, short)
        return (height - crop + 1) // 2, (width - crop + 1) // 2, crop, crop

    return _resize(_decode_window(data, window), size, interpolation)


def guarded(
    fn: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]],
    failed: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]],
) -> Callable[..., tf.data.Dataset]:
    """Turns `fn(record)` into an interleave function that never fails the pipeline.

    Each record runs in its own one-element dataset: if `fn` raises (a truncated or non-image file)
    the element is dropped by ignore_errors and `failed(record)` takes its place, so the output keeps
    one element per input, in order, with an 'ok' flag. That keeps positions (and so batches and
    resumption) fixed however many files are bad.
    """

    def per_record(record: dict[str, tf.Tensor]) -> tf.data.Dataset:
        good = tf.data.Dataset.from_tensors(record).map(
            lambda r: {**fn(r), "ok": tf.constant(True)}
        )
        bad = tf.data.Dataset.from_tensors({**failed(record), "ok": tf.constant(False)})
        return good.ignore_errors().concatenate(bad).take(1)

    return per_record
