"""The SavedModel itself: two serving signatures around one Keras model, via ExportArchive.

``serving_default``: ``images`` uint8 ``[None, H, W, C]`` -> ``probabilities``
float32 ``[None, classes]``, ``class_ids`` int64 ``[None]``.
``serve_bytes``: ``image_bytes`` string ``[None]`` (PNG or JPEG) -> the same;
each image is decoded with ``channels=C`` and prepared with
``reskeras.preprocessing.resize_square`` (shorter side, then a central crop:
what the trainer did to the dataset), as :func:`export.serving.serving_resize` says:

* the record's ``resize`` is set and differs from ``H`` (or the input is not
  square): every image, whatever its size, has its shorter side resized to
  ``resize`` and the central ``H x W`` cropped (torchvision's ``Resize(256)``
  + ``CenterCrop(224)``), with the record's ``interpolation``;
* otherwise, for a square input, an image is resized (shorter side to ``H``,
  central crop) only when its size is not ``H x W``; a non-square input
  without ``resize`` must be sent at exactly ``H x W``.

Both signatures run ``reskeras.preprocessing.normalize`` with the run's
recorded mean (and std) baked in as constants, so clients send raw pixels. The
graph is traced once with ``autograph=False`` (``keras.export.ExportArchive``):
it holds TensorFlow ops only, and ``tf.saved_model.load`` in a process without
reskeras runs it.
"""

from __future__ import annotations

import tensorflow as tf

from export.serving import probabilities, serving_resize
from reskeras._backend import keras
from reskeras.preprocessing import resize_square

SIGNATURES = ("serving_default", "serve_bytes")


def describe_signatures(input_shape, classes: int, preprocessing: dict) -> dict:
    """The signatures as JSON (what ``assets/reskeras.json`` records).

    Args:
        input_shape: ``(H, W, C)`` of the model.
        classes: number of outputs.
        preprocessing: the normalization record baked into the export (its
            ``resize`` and ``interpolation`` decide what ``serve_bytes`` does).

    Returns:
        ``{signature: {"inputs", "outputs", "description"}}``; ``serve_bytes``
        also has ``"resize"`` (:func:`serving_resize`).
    """
    height, width, channels = input_shape
    resize = serving_resize(preprocessing, input_shape)
    outputs = {"probabilities": {"dtype": "float32", "shape": [None, classes]},
               "class_ids": {"dtype": "int64", "shape": [None]}}
    if resize is None:
        bytes_text = f"PNG or JPEG bytes of exactly {height}x{width}, {channels} channel(s)"
    elif resize["every_image"]:
        bytes_text = (f"PNG or JPEG bytes, decoded to {channels} channel(s); every image is "
                      f"resized (shorter side to {resize['shorter_side']}, "
                      f"{resize['interpolation']}, antialiased) and its central "
                      f"{height}x{width} cropped")
    else:
        bytes_text = (f"PNG or JPEG bytes, decoded to {channels} channel(s); other sizes "
                      f"are resized (shorter side to {height}, central crop)")
    return {
        "serving_default": {
            "inputs": {"images": {"dtype": "uint8", "shape": [None, height, width, channels]}},
            "outputs": outputs,
            "description": "raw uint8 pixels; the training normalization is applied inside"},
        "serve_bytes": {
            "inputs": {"image_bytes": {"dtype": "string", "shape": [None]}},
            "outputs": outputs, "description": bytes_text, "resize": resize},
    }


def _check_batch(images, input_shape):
    """Asserts (as a graph op, so TF Serving reports it) that ``images`` is ``[B, H, W, C]``."""
    shape = tf.shape(images)
    padded = tf.concat([shape, tf.constant([-1, -1, -1, -1])], axis=0)[:4]
    ok = tf.logical_and(tf.equal(tf.size(shape), 4),
                        tf.reduce_all(tf.equal(padded[1:], tf.constant(list(input_shape)))))
    message = (f"`images` must be uint8 [batch, {', '.join(map(str, input_shape))}] "
               "(height, width, channels). Received shape:")
    with tf.control_dependencies([tf.debugging.Assert(ok, [message, shape], summarize=8)]):
        return tf.identity(images)


def build_archive(source) -> keras.export.ExportArchive:
    """An ExportArchive with both signatures for an :class:`export.sources.ExportSource`."""
    model, pre = source.model, source.preprocessing
    height, width, channels = source.input_shape

    # One traced function shared by both signatures: the network's graph is stored once.
    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, height, width, channels], tf.uint8)])
    def core(images):
        probs = probabilities(model, _check_batch(images, source.input_shape), pre)
        return {"probabilities": probs,
                "class_ids": tf.argmax(probs, axis=-1, output_type=tf.int64)}

    resize = serving_resize(pre, source.input_shape)

    def decode(data):
        image = tf.io.decode_image(data, channels=channels, expand_animations=False,
                                   dtype=tf.uint8)
        if resize is not None and resize["every_image"]:
            return tf.ensure_shape(resize_square(
                image, resize["shorter_side"], crop=(height, width),
                method=resize["interpolation"]), [height, width, channels])
        size = tf.shape(image)[:2]
        same = tf.reduce_all(tf.equal(size, tf.constant([height, width])))
        if resize is not None:
            image = tf.cond(same, lambda: image, lambda: resize_square(
                image, height, method=resize["interpolation"]))
        else:
            with tf.control_dependencies([tf.debugging.Assert(same, [
                    f"`image_bytes` must decode to {height}x{width} images. Received:", size])]):
                image = tf.identity(image)
        return tf.ensure_shape(image, [height, width, channels])

    def serve_images(images):
        return core(images)

    def serve_bytes(image_bytes):
        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec(
            [height, width, channels], tf.uint8))
        return core(images)

    archive = keras.export.ExportArchive()
    # No archive.track(model): add_endpoint finds the variables the endpoints use by itself,
    # and tracking the model as well stores every weight twice (once as the Keras variable,
    # once as the tf.Variable the graph captures; measured with Keras 3.15: variables/ 2.0x
    # the parameter bytes with track, 1.0x without).
    archive.add_endpoint("serving_default", serve_images, input_signature=[
        tf.TensorSpec([None, height, width, channels], tf.uint8, name="images")])
    archive.add_endpoint("serve_bytes", serve_bytes, input_signature=[
        tf.TensorSpec([None], tf.string, name="image_bytes")])
    return archive


def write_savedmodel(source, directory: str) -> None:
    """Writes the SavedModel (graph and variables) of ``source`` into ``directory``."""
    build_archive(source).write_out(directory, verbose=False)


__all__ = ["SIGNATURES", "build_archive", "describe_signatures", "write_savedmodel"]
