"""``folder:DIR`` datasets: layouts, exact pixels and splits, sizes, channels, bad input, CLI."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from reskeras import rundir
from reskeras.cli import main
from reskeras.data import canonical_name, dataset_slug, load_dataset
from reskeras.preprocessing import resize_square
from reskeras.sources import split as split_module


def write_images(folder, count, shape=(12, 10, 3), fmt="png", seed=0, sizes=None):
    """``count`` random images in ``folder``; returns ``{path: uint8 array as written}``."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for index in range(count):
        height, width = sizes[index % len(sizes)] if sizes else shape[:2]
        pixels = rng.integers(0, 256, (height, width, *shape[2:]), dtype=np.uint8)
        path = os.path.join(str(folder), f"img{index:02d}.{fmt}")
        Image.fromarray(pixels.squeeze(-1) if shape[2:] == (1,) else pixels).save(path)
        written[path] = pixels if shape[2:] else pixels[..., None]
    return written


def make_classes(root, counts, **kwargs):
    written = {}
    for seed, (name, count) in enumerate(counts.items()):
        written[name] = write_images(os.path.join(str(root), name), count, seed=seed, **kwargs)
    return written


def test_held_out_layout_gives_a_fixed_stratified_split_of_the_exact_pixels(tmp_path):
    written = make_classes(tmp_path / "pets", {"owl": 5, "cat": 5, "dog": 10})
    (tmp_path / "pets" / "notes.txt").write_text("not an image, not in a class folder")
    (tmp_path / "pets" / "cat" / "README").write_text("ignored: no image extension")
    data = load_dataset(f"folder:{tmp_path / 'pets'}")
    info = data.info
    assert info.name == f"folder:{tmp_path / 'pets'}" and info.class_names == ("cat", "dog", "owl")
    assert (info.input_shape, info.classes, info.test_split) == ((12, 10, 3), 3, "test")
    assert (info.train_examples, info.test_examples) == (16, 4)  # 20% of each class held out
    assert (info.augment, info.pad, info.preprocessing["resize"]) == ("pad_crop_flip", 1, None)
    by_pixels = {pixels.tobytes(): (name, path) for name, files in written.items()
                 for path, pixels in files.items()}
    seen = {}
    for split in ("train", "test"):
        images, labels = data.arrays(split)
        for image, label in zip(images, labels):
            name, path = by_pixels[image.tobytes()]  # PNG is lossless: the exact pixels
            assert info.class_names[label] == name
            seen[path] = split
    assert len(seen) == 20  # every image once, in one split
    assert np.bincount(data.arrays("test")[1]).tolist() == [1, 2, 1]
    again = load_dataset(f"folder:{tmp_path / 'pets'}")  # the split does not move
    for split in ("train", "test"):
        assert all(np.array_equal(a, b) for a, b in zip(data.arrays(split), again.arrays(split)))
    mean = np.asarray(info.preprocessing["mean"])
    np.testing.assert_allclose(mean, data.arrays("train")[0].mean(axis=0) / 255, atol=1e-12)


@pytest.mark.parametrize("test_dir", ["test", "validation"])
def test_train_and_test_folders_are_the_splits_and_grayscale_keeps_one_channel(tmp_path,
                                                                               test_dir):
    train = make_classes(tmp_path / "d" / "train", {"a": 3, "b": 4}, shape=(9, 9, 1))
    test = make_classes(tmp_path / "d" / test_dir, {"b": 2}, shape=(9, 9, 1))
    data = load_dataset(f"folder:{tmp_path / 'd'}")
    assert (data.info.train_examples, data.info.test_examples) == (7, 2)
    assert data.info.test_split == test_dir
    assert data.info.input_shape == (9, 9, 1) and data.info.class_names == ("a", "b")
    images, labels = data.arrays("test")
    assert labels.tolist() == [1, 1]
    expected = sorted(p.tobytes() for p in test["b"].values())
    assert sorted(x.tobytes() for x in images) == expected
    train_images = data.arrays("train")[0]
    assert sorted(x.tobytes() for x in train_images) == sorted(
        p.tobytes() for files in train.values() for p in files.values())


def test_varying_sizes_are_resized_as_the_exporter_resizes(tmp_path):
    sizes = [(20, 30), (40, 16), (16, 16)]
    written = make_classes(tmp_path / "v", {"x": 3, "y": 3}, sizes=sizes)
    data = load_dataset(f"folder:{tmp_path / 'v'}", image_size=16)
    assert data.info.input_shape == (16, 16, 3) and data.info.preprocessing["resize"] == 16
    expected = {resize_square(p, 16).numpy().tobytes() for files in written.values()
                for p in files.values()}
    got = {x.tobytes() for split in ("train", "test") for x in data.arrays(split)[0]}
    assert got == expected
    default = load_dataset(f"folder:{tmp_path / 'v'}")  # sizes vary: 224, as for imagenette
    assert default.info.input_shape == (224, 224, 3)


def test_jpeg_and_rgba_png_decode_as_tensorflow_decodes_them(tmp_path):
    jpegs = write_images(tmp_path / "j" / "a", 3, fmt="jpg")
    write_images(tmp_path / "j" / "b", 3, shape=(12, 10, 4), fmt="png", seed=3)
    data = load_dataset(f"folder:{tmp_path / 'j'}")
    assert data.info.input_shape == (12, 10, 3)  # alpha dropped
    decoded = {tf.io.decode_image(tf.io.read_file(p), channels=3).numpy().tobytes(): p
               for p in jpegs}
    got = [x.tobytes() for split in ("train", "test") for x in data.arrays(split)[0]]
    assert sum(g in decoded for g in got) == 3  # lossy JPEGs: TF's decoder, as in serving


def test_a_relative_folder_is_recorded_absolute(tmp_path, monkeypatch):
    make_classes(tmp_path / "rel", {"a": 2, "b": 2})
    monkeypatch.chdir(tmp_path)
    assert canonical_name("folder:rel/") == f"folder:{tmp_path / 'rel'}"
    assert load_dataset("folder:rel").info.name == f"folder:{tmp_path / 'rel'}"
    assert dataset_slug("folder:rel") == "rel" and dataset_slug("cifar10/3.0.2") == "cifar10"


def test_a_large_folder_is_streamed_with_the_same_examples(tmp_path, monkeypatch):
    make_classes(tmp_path / "s", {"a": 6, "b": 6})
    in_memory = load_dataset(f"folder:{tmp_path / 's'}")
    monkeypatch.setattr(split_module, "IN_MEMORY_LIMIT_BYTES", -1)
    streamed = load_dataset(f"folder:{tmp_path / 's'}")
    assert streamed.info == in_memory.info
    with pytest.raises(ValueError, match="must be held in memory"):
        streamed.arrays("train")
    plain = lambda d: [tuple(t.numpy() for t in b)
                       for b in d.train(5, seed=1, epoch=2, augment=False)]
    epoch, again = plain(streamed), plain(streamed)
    assert len(epoch) == len(again) == 2  # same arguments, bitwise the same batches
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(epoch, again))
    images = np.concatenate([b[0] for b in epoch])
    assert len({x.tobytes() for x in images}) == 10  # 2 full batches of distinct images
    evaluated = [b for b in streamed.evaluation(4)]
    assert sum(int(b[2].numpy().sum()) for b in evaluated) == in_memory.info.test_examples


@pytest.mark.parametrize("setup, message", [
    (lambda root: root.mkdir(), r"must hold class sub-folders of PNG/JPEG images .* has none"),
    (lambda root: write_images(root / "only", 3), r"at least 2 classes .* has 1: 'only'"),
    (lambda root: (write_images(root / "a", 2), write_images(root / "b", 2),
                   (root / "c").mkdir()), r"class folders must hold PNG/JPEG images; .*/c has none"),
    (lambda root: (write_images(root / "a", 2), write_images(root / "b", 2),
                   (root / "b" / "broken.png").write_bytes(b"not a png at all")),
     r"images must be PNG or JPEG files; .*/b/broken\.png cannot be read as an image"),
    (lambda root: (write_images(root / "a", 2), write_images(root / "b", 2, fmt="png"),
                   (root / "b" / "img00.png").write_bytes(
                       (root / "b" / "img00.png").read_bytes()[:120])),
     r"images must decode as PNG or JPEG; .*/b/img00\.png does not \(InvalidArgumentError"),
    (lambda root: (write_images(root / "a", 2), write_images(root / "b", 2),
                   Image.new("RGB", (4, 4)).save(root / "b" / "gif.jpg", format="GIF")),
     r"images must be PNG or JPEG files; .*/b/gif\.jpg is a GIF image, not PNG or JPEG"),
    (lambda root: (write_images(root / "train" / "a", 2), write_images(root / "train" / "b", 2),
                   write_images(root / "test" / "z", 1)),
     r"test classes must also be training classes: test/ has 'z', train/ does not"),
    (lambda root: (write_images(root / "a", 1), write_images(root / "b", 1)),
     r"must leave images for the test split"),
    (lambda root: (write_images(root / "a", 2), write_images(root / "test" / "a", 2)),
     r"with a test/ folder must also hold train/ .*; without both, every sub-folder is a class"),
])
def test_bad_folders_fail_before_training_with_one_line_naming_the_cause(tmp_path, setup,
                                                                         message):
    root = tmp_path / "bad"
    setup(root)
    with pytest.raises(ValueError, match=message) as caught:
        load_dataset(f"folder:{root}")
    text = str(caught.value)
    assert "\n" not in text and text.endswith(f"Received: dataset='folder:{root}'")


def test_missing_or_empty_folder_names(tmp_path):
    with pytest.raises(ValueError, match=r"is not a directory\. Received: dataset='folder:"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match=r"must be folder:DIR .* Received: dataset='folder:'"):
        load_dataset("folder:")


def test_cli_trains_on_a_folder_and_refuses_a_bad_one_without_a_run_dir(tmp_path, capsys):
    make_classes(tmp_path / "imgs", {"a": 10, "b": 10}, sizes=[(14, 18), (18, 14)])
    out = tmp_path / "run"
    code = main(["train", "--model", "resnet8", "--width", "4", "--dataset",
                 f"folder:{tmp_path / 'imgs'}", "--image-size", "12", "--steps", "3",
                 "--batch-size", "8", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = rundir.read_config(str(out))
    assert config["dataset"]["name"] == f"folder:{tmp_path / 'imgs'}"
    assert config["dataset"]["image_size"] == 12 and config["input_shape"] == [12, 12, 3]
    assert config["class_names"] == ["a", "b"] and config["preprocessing"]["resize"] == 12
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
    (tmp_path / "imgs" / "b" / "img03.png").write_bytes(b"\x89PNG but nothing else")
    code = main(["train", "--model", "resnet8", "--dataset", f"folder:{tmp_path / 'imgs'}",
                 "--steps", "3", "--out", str(tmp_path / "run2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("reskeras train: error: `dataset`")
    assert "img03.png" in err[0] and not (tmp_path / "run2").exists()


@pytest.mark.slow  # 40 s (110 s on busy cores): a study, a search and a verified export
def test_a_folder_serves_study_tune_and_export(tmp_path, capsys):
    from export import export_savedmodel
    from tuning import read_leaderboard

    make_classes(tmp_path / "shapes", {"a": 20, "b": 20, "c": 20}, sizes=[(14, 18), (18, 14)])
    dataset = f"folder:{tmp_path / 'shapes'}"
    study = tmp_path / "study"
    assert main(["study", "--dataset", dataset, "--image-size", "10", "--depths", "8",
                 "--steps", "4", "--max-doublings", "1", "--seeds", "1", "--batch-size", "16",
                 "--no-bn-cells", "--skip", "lesion", "shattering", "landscape",
                 "--out", str(study)]) == 0, capsys.readouterr().err
    saved = json.loads((study / "study.json").read_text())
    assert (saved["dataset"], saved["image_size"]) == (dataset, 10)
    for cell in ("plain8-bn-s0", "resnet8-bn-s0"):
        config = rundir.read_config(str(study / "runs" / cell))
        assert config["input_shape"] == [10, 10, 3] and config["class_names"] == ["a", "b", "c"]
    tune = tmp_path / "tune"
    assert main(["tune", "--dataset", dataset, "--image-size", "10", "--tuner", "grid",
                 "--depths", "8", "--widths", "2", "--max-trials", "1", "--max-epochs", "1",
                 "--batch-size", "16", "--out", str(tune), "--export-top", "1",
                 "--export-base", str(tmp_path / "exports")]) == 0, capsys.readouterr().err
    board = read_leaderboard(str(tune))
    assert [t["status"] for t in board["trials"]] == ["COMPLETED"]
    exported = export_savedmodel(str(study / "runs" / "resnet8-bn-s0"), str(tmp_path / "exports"),
                                 "study-best")
    assert exported.report.ok
    assert sorted(os.listdir(tmp_path / "exports")) == ["reskeras-shapes", "study-best"]
    meta = exported.metadata
    assert meta["reference"]["kind"] == "dataset" and meta["reference"]["dataset"] == dataset
    served = tf.saved_model.load(exported.path)
    spec = served.signatures["serving_default"].structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [None, 10, 10, 3] and spec.dtype == tf.uint8
    photo = tf.io.encode_png(np.full((30, 20, 3), 200, np.uint8))  # another size: resized
    out = served.signatures["serve_bytes"](image_bytes=tf.reshape(photo, [1]))
    assert out["probabilities"].shape == (1, 3)
