"""Supervised classifier: data preparation, training loop, threshold, cancellation, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from adcore.backbones import build_classifier
from adcore.classifier import (
    Classifier,
    ClassifierConfig,
    ClassifierModel,
    LabelledImage,
    train_classifier,
)
from adcore.classifier import training as training_module
from adcore.classifier.data import (
    augment,
    epoch_order,
    stratified_split,
    type_of,
    type_vocabulary,
)
from adcore.classifier.torch_model import gradcam_target_layer
from adcore.detectors.registry import load_any_model
from adcore.errors import DatasetError, JobCancelled, ModelFileError, WeightsNotFoundError
from adcore.thresholds import select_threshold

TINY = ClassifierConfig(image_size=32, batch_size=8, max_epochs=1, patience=1)


def scratched_part(seed: int, defect: bool, size: int = 32, vertical: bool = False) -> np.ndarray:
    """A noisy grey part, (size, size, 3) uint8; a defect is a bright scratch somewhere."""
    rng = np.random.default_rng(seed)
    img = 100 + rng.normal(0, 8, (size, size))
    if defect:
        length, width = size * 3 // 8, max(2, size // 32)
        y = int(rng.integers(2, size - length - 2))
        x = int(rng.integers(2, size - length - 2))
        if vertical:
            img[y : y + length, x : x + width] = 250
        else:
            img[y : y + width, x : x + length] = 250
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def labelled_parts(n: int, size: int = 32, every: int = 3, seed: int = 0) -> list[LabelledImage]:
    return [
        LabelledImage(
            scratched_part(seed + i, i % every == 0, size), "defect" if i % every == 0 else "good"
        )
        for i in range(n)
    ]


# --------------------------------------------------------------------------- data preparation
def test_rare_defect_types_fold_into_generic_defect() -> None:
    samples = (
        [LabelledImage(np.zeros((8, 8, 3), np.uint8), "defect", "crack")] * 3
        + [LabelledImage(np.zeros((8, 8, 3), np.uint8), "defect", "stain")] * 2
        + [LabelledImage(np.zeros((8, 8, 3), np.uint8), "defect", "chip")]
        + [LabelledImage(np.zeros((8, 8, 3), np.uint8), "good")] * 5
    )
    vocabulary = type_vocabulary(samples, min_examples=2)
    assert vocabulary == ("crack", "defect", "stain")
    assert type_of(samples[-1], vocabulary) == -1
    assert vocabulary[type_of(samples[5], vocabulary)] == "defect"  # the lone "chip"
    assert type_vocabulary(samples, min_examples=10) == ("defect",)


def test_label_must_be_good_or_defect() -> None:
    with pytest.raises(ValueError, match="label"):
        LabelledImage(np.zeros((8, 8, 3), np.uint8), "scratch")


def test_split_is_stratified_and_needs_both_classes() -> None:
    keys = ["good"] * 40 + ["crack"] * 10 + ["stain"] * 10
    train, validation = stratified_split(keys, 0.25, seed=0)
    assert len(set(train) & set(validation)) == 0 and len(train) + len(validation) == 60
    held_out = [keys[i] for i in validation]
    assert held_out.count("crack") >= 2 and held_out.count("stain") >= 2
    with pytest.raises(DatasetError, match="at least 2"):
        stratified_split(["good"] * 10 + ["crack"], 0.2, seed=0)


def test_balanced_sampler_draws_both_classes_equally_often() -> None:
    is_defect = torch.tensor([1.0] * 10 + [0.0] * 190)
    draws = torch.cat(
        [epoch_order(is_defect, "sampler", torch.Generator().manual_seed(i)) for i in range(20)]
    )
    share = float(is_defect[draws].mean())
    assert 0.4 < share < 0.6
    plain = epoch_order(is_defect, "class_weights", torch.Generator().manual_seed(0))
    assert sorted(plain.tolist()) == list(range(200))


def test_augmentation_without_rotation_or_flips_is_the_identity() -> None:
    images = torch.rand(4, 3, 32, 32)
    same = augment(images, 0.0, False, torch.Generator().manual_seed(0))
    assert torch.allclose(same, images, atol=1e-5)
    moved = augment(images, 10.0, True, torch.Generator().manual_seed(0))
    assert moved.shape == images.shape and not torch.allclose(moved, images, atol=1e-3)


# --------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18", "mobilenet_v3_large"])
def test_every_architecture_builds_with_random_weights(backbone: str) -> None:
    model = ClassifierModel(backbone, n_types=3, pretrained=False).eval()
    with torch.no_grad():
        defect_logit, type_logits = model(torch.rand(2, 3, 64, 64))
    assert defect_logit.shape == (2,) and type_logits is not None and type_logits.shape == (2, 3)
    assert isinstance(gradcam_target_layer(model), torch.nn.Module)
    assert ClassifierModel(backbone, n_types=1, pretrained=False).type_head is None


def test_missing_torchvision_weights_are_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("LOUPE_WEIGHTS_DIR", raising=False)

    def offline(*_args, **_kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsNotFoundError, match="mobilenet_v3_large-8738ca79.pth"):
        ClassifierModel("mobilenet_v3_large")


def test_mobilenet_weights_load_from_a_local_torchvision_file(tmp_path, monkeypatch) -> None:
    import torchvision.models

    reference = torchvision.models.mobilenet_v3_large(weights=None)
    torch.save(reference.state_dict(), tmp_path / "mobilenet_v3_large-8738ca79.pth")
    monkeypatch.setenv("LOUPE_WEIGHTS_DIR", str(tmp_path))
    model = build_classifier("mobilenet_v3_large")
    assert torch.equal(model.features[0][0].weight, reference.features[0][0].weight)


# --------------------------------------------------------------------------- training loop
def test_training_skips_bad_images_and_reports_them(tmp_path) -> None:
    missing = tmp_path / "gone.png"
    samples = labelled_parts(24) + [
        LabelledImage(b"definitely not an image", "good"),
        LabelledImage(missing, "defect"),
    ]
    classifier, report = train_classifier(samples, TINY, pretrained=False, device="cpu")
    assert len(report.skipped) == 2
    assert {name for name, _ in report.skipped} == {"image-24", str(missing)}
    assert report.n_train + report.n_validation == 24
    assert report.epochs_run == 1 and report.best_epoch == 1
    assert classifier.threshold == report.threshold
    assert report.class_counts["validation"]["good"] >= 1
    assert report.class_counts["validation"]["defect"] >= 1


def test_threshold_is_the_fnr_first_choice_on_the_validation_images() -> None:
    samples = labelled_parts(40)
    config = ClassifierConfig(
        image_size=32, batch_size=8, max_epochs=2, patience=2, target_fnr=0.25
    )
    classifier, report = train_classifier(samples, config, pretrained=False, device="cpu")
    positions = [int(name.removeprefix("image-")) for name in report.validation_names]
    images = [samples[i].source for i in positions]
    labels = np.array([int(samples[i].is_defect) for i in positions])
    scores, _ = classifier.predict_proba(images)
    expected = select_threshold(scores, labels, target_fnr=0.25)
    assert report.threshold == pytest.approx(expected.value, abs=1e-6)
    assert report.validation_fnr == pytest.approx(expected.fnr)
    assert report.validation_fnr <= 0.25


def test_early_stopping_keeps_the_best_epoch(monkeypatch) -> None:
    """Validation gets worse after epoch 2: stop after `patience` more epochs, restore epoch 2."""
    real = training_module.predict_logits
    snapshots: list[dict[str, torch.Tensor]] = []
    quality = iter([1.0, 3.0, 0.5, 0.2, 0.1, 0.1, 0.1])

    def scripted(model, pixels, batch_size, device, should_stop=None):
        logits, types = real(model, pixels, batch_size, device, should_stop)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        labels = scripted.labels[: len(logits)]
        return (labels * 2 - 1) * next(quality) + 0.0 * logits, types

    def with_labels(*args, **kwargs):
        scripted.labels = args[2].is_defect
        return original_train(*args, **kwargs)

    original_train = training_module.train_model
    monkeypatch.setattr(training_module, "predict_logits", scripted)
    monkeypatch.setattr("adcore.classifier.classifier.train_model", with_labels)
    config = ClassifierConfig(image_size=32, batch_size=8, max_epochs=7, patience=2)
    classifier, report = train_classifier(
        labelled_parts(30), config, pretrained=False, device="cpu"
    )
    assert report.stop_reason == "patience"
    assert report.best_epoch == 2 and report.epochs_run == 4
    restored = classifier.model.state_dict()
    assert all(torch.equal(restored[k], snapshots[1][k]) for k in restored)
    assert not all(torch.equal(restored[k], snapshots[3][k]) for k in restored)


def test_time_budget_stops_between_epochs() -> None:
    config = ClassifierConfig(
        image_size=32, batch_size=8, max_epochs=5, patience=5, max_train_seconds=1e-6
    )
    _, report = train_classifier(labelled_parts(24), config, pretrained=False, device="cpu")
    assert report.epochs_run == 1 and report.stop_reason == "time_budget"


def test_cancellation_raises_between_batches() -> None:
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 25  # past loading (24 calls), at the second batch of epoch 1

    progress: list[str] = []
    with pytest.raises(JobCancelled, match="epoch 1"):
        train_classifier(
            labelled_parts(24),
            TINY,
            pretrained=False,
            device="cpu",
            should_stop=should_stop,
            progress=lambda _f, message: progress.append(message),
        )
    assert any("Epoch 1" in m for m in progress)


def test_too_few_defects_is_a_dataset_error() -> None:
    samples = labelled_parts(12, every=100)  # only image 0 is a defect
    with pytest.raises(DatasetError, match="2 defective"):
        train_classifier(samples, TINY, pretrained=False, device="cpu")


# --------------------------------------------------------------------------- persistence
def test_save_load_round_trip_gives_identical_predictions(tmp_path) -> None:
    samples = labelled_parts(30)
    samples += [
        LabelledImage(scratched_part(100 + i, True, vertical=True), "defect", "vertical")
        for i in range(6)
    ]
    config = ClassifierConfig(image_size=32, batch_size=8, max_epochs=1, min_examples_per_type=5)
    classifier, _ = train_classifier(samples, config, pretrained=False, device="cpu")
    assert classifier.defect_types == ("defect", "vertical")
    classifier.save(tmp_path / "m", extra={"note": "test"})

    again = Classifier.load(tmp_path / "m", device="cpu")
    images = [scratched_part(500 + i, i % 2 == 0) for i in range(6)]
    before, after = classifier.predict(images), again.predict(images)
    assert [p.probability for p in before] == [p.probability for p in after]
    assert [p.defect_type for p in before] == [p.defect_type for p in after]
    assert again.threshold == classifier.threshold
    assert again.training_hash == classifier.training_hash
    assert isinstance(load_any_model(tmp_path / "m", device="cpu"), Classifier)


def test_tampered_and_pickled_models_are_refused(tmp_path) -> None:
    classifier, _ = train_classifier(labelled_parts(24), TINY, pretrained=False, device="cpu")
    classifier.save(tmp_path / "m")
    document = json.loads((tmp_path / "m" / "config.json").read_text())
    document["threshold"] = 0.0
    (tmp_path / "m" / "config.json").write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="changed"):
        Classifier.load(tmp_path / "m")

    (tmp_path / "p").mkdir()
    torch.save(classifier.model.state_dict(), tmp_path / "p" / "model.pt")
    for loader in (Classifier.load, load_any_model):
        with pytest.raises(ModelFileError, match="pickle"):
            loader(tmp_path / "p")


def test_untrained_classifier_is_not_saved(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="untrained"):
        Classifier(TINY, pretrained=False, device="cpu").save(tmp_path / "m")


def test_predict_files_reports_bad_files(tmp_path) -> None:
    classifier = Classifier(TINY, pretrained=False, device="cpu").with_threshold(0.5)
    good = tmp_path / "part.png"
    Image.fromarray(scratched_part(1, False)).save(good)
    results, failures = classifier.predict_files([good, b"junk"])
    assert len(results) == 1 and len(failures) == 1
    prediction = results[0][1]
    assert 0.0 <= prediction.probability <= 1.0
    assert prediction.is_defect == (prediction.probability >= 0.5)


# --------------------------------------------------------------------------- learning (slow)
@pytest.mark.slow
def test_learns_scratches_and_their_direction() -> None:
    """Shipped ImageNet Lite0, 96 px: held-out parts are separated and scratch types named."""
    samples = [LabelledImage(scratched_part(i, False, 96), "good") for i in range(60)]
    samples += [
        LabelledImage(
            scratched_part(1000 + i, True, 96, vertical=i % 2 == 1),
            "defect",
            "vertical" if i % 2 else "horizontal",
        )
        for i in range(48)
    ]
    config = ClassifierConfig(
        image_size=96,
        batch_size=16,
        max_epochs=8,
        patience=3,
        min_examples_per_type=20,
        max_rotation_degrees=5.0,
        flips=False,
    )
    classifier, report = train_classifier(samples, config, device="cpu")
    assert report.defect_types == ("horizontal", "vertical")
    good = [scratched_part(5000 + i, False, 96) for i in range(20)]
    vertical = [scratched_part(6000 + i, True, 96, vertical=True) for i in range(10)]
    horizontal = [scratched_part(7000 + i, True, 96) for i in range(10)]
    p_good, _ = classifier.predict_proba(good)
    p_defect, _ = classifier.predict_proba(vertical + horizontal)
    assert p_defect.min() > p_good.max()  # perfectly separated held-out parts
    named = classifier.predict(vertical + horizontal)
    correct = sum(p.defect_type == "vertical" for p in named[:10]) + sum(
        p.defect_type == "horizontal" for p in named[10:]
    )
    assert correct >= 16


def test_frozen_stages_keep_their_weights_and_statistics() -> None:
    config = ClassifierConfig(image_size=32, batch_size=8, max_epochs=1, frozen_stages=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the same initial weights as train_classifier's
        untrained = Classifier(config, pretrained=False, device="cpu")
    before = {k: v.clone() for k, v in untrained.model.state_dict().items()}
    classifier, _ = train_classifier(labelled_parts(24), config, pretrained=False, device="cpu")
    after = classifier.model.state_dict()
    frozen = [k for k in after if k.startswith(("body.conv_stem", "body.bn1", "body.blocks.0."))]
    trained = [k for k in after if k.startswith("body.blocks.5.") and k.endswith("weight")]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)  # running stats included
    assert not all(torch.equal(before[k], after[k]) for k in trained)
    assert len(after) == len(before)  # no duplicated entries in the saved tensors
