"""The vision library: classes, synthetic labels, fill level, bad images, a small training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mobile_chemist.vision.classes import (
    HEINSIGHT_CONTENT,
    HEINSIGHT_VESSEL,
    Phase,
    Row,
    VialType,
    content_of,
)
from mobile_chemist.vision.crops import CROP_H, crop_vial, row_labels
from mobile_chemist.vision.pipeline import (
    ImageError,
    ModelError,
    VisionPipeline,
    load_config,
    resolve_path,
    validate_image,
)
from mobile_chemist.vision.segmenter import N_ROWS, clean_rows, decode
from mobile_chemist.vision.synthetic import render_scene

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
HAVE_MODELS = (MODELS / "vial_detector.pt").is_file() and (MODELS / "phase_segmenter.pt").is_file()


def test_classes_match_the_messages():
    msg = pytest.importorskip("mobile_chemist.msg")
    for p in Phase:
        assert getattr(msg.VialPhase, p.name) == p.value
    for t in VialType:
        assert getattr(msg.VialDetection, f"TYPE_{t.name}") == t.value


def test_content_precedence():
    assert content_of({Row.HEADSPACE}) == Phase.EMPTY
    assert content_of({Row.HEADSPACE, Row.RESIDUE}) == Phase.RESIDUE
    assert content_of({Row.LIQUID, Row.RESIDUE}) == Phase.HOMOGENEOUS
    assert content_of({Row.LIQUID, Row.FOAM}) == Phase.FOAM
    assert content_of({Row.LIQUID_UPPER, Row.LIQUID_LOWER}) == Phase.TWO_LIQUID
    assert content_of({Row.SOLID}) == Phase.SOLID


def test_synthetic_scenes_are_deterministic_and_labels_consistent():
    a, b = render_scene(123), render_scene(123)
    assert np.array_equal(a.image, b.image) and a.vials == b.vials
    assert not np.array_equal(a.image, render_scene(124).image)
    h, w = a.image.shape[:2]
    assert (h, w) == (480, 640)
    for seed in range(20):
        for v in render_scene(seed).vials:
            x1, y1, x2, y2 = v.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert 0.0 <= v.fill_level <= 1.0
            assert v.segments[0][0] == pytest.approx(y1) and v.segments[-1][1] == pytest.approx(y2)
            assert (v.segments[0][2] == Row.CAP) == v.cap
            assert content_of({Row(r) for _, _, r in v.segments}) == v.content
            bulk = v.content not in (Phase.EMPTY, Phase.RESIDUE)
            assert (v.fill_level > 0) == bulk


def test_rack_of_16():
    scene = render_scene(7, n_vials=16)
    assert len(scene.vials) == 16


def _one_hot(labels: np.ndarray) -> np.ndarray:
    p = np.full((N_ROWS, CROP_H), 0.01, np.float32)
    p[labels, np.arange(CROP_H)] = 0.9
    return p


def test_decode_recovers_fill_level_cap_and_layers_from_exact_rows():
    """Known answers: perfect row labels give the fill level to one crop row."""
    errs = []
    for seed in range(30):
        for v in render_scene(seed).vials:
            box = v.box
            r = decode(_one_hot(row_labels(v.segments, box)), box)
            row_h = (box[3] - box[1]) * 1.16 / CROP_H / (v.glass_bottom - v.glass_top)
            assert r.cap_present == v.cap
            errs.append(abs(r.fill_level - v.fill_level))
            assert errs[-1] <= 2.5 * row_h + 1e-6, (seed, v)
            if r.content != v.content:
                # Only a layer thinner than the de-flicker filter may be lost.
                thin = [s for s in v.segments if (s[1] - s[0]) < 3 * row_h * (v.glass_bottom - v.glass_top)]
                assert thin, (seed, v.content, r.content)
    assert np.percentile(errs, 95) < 0.03


def test_clean_rows_removes_flicker():
    rows = np.array([2] * 10 + [5] + [2] * 10 + [5] * 10)
    assert list(clean_rows(rows)) == [2] * 21 + [5] * 10


@pytest.mark.skipif(not HAVE_MODELS, reason="models/ not trained")
def test_trained_segmenter_fill_level_on_known_scenes():
    from mobile_chemist.vision.segmenter import Segmenter

    seg = Segmenter(MODELS / "phase_segmenter.pt")
    errs, ok = [], []
    for seed in range(30_000_000, 30_000_010):  # seeds used by no training set
        scene = render_scene(seed)
        readings = seg.read(scene.image, [v.box for v in scene.vials])
        for v, r in zip(scene.vials, readings):
            errs.append(abs(r.fill_level - v.fill_level))
            ok.append(r.content == v.content)
    assert np.percentile(errs, 90) < 0.05
    assert np.mean(ok) > 0.8


@pytest.mark.parametrize("bad, why", [
    (None, "no image"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((100, 100, 3), np.float32), "8-bit"),
    (np.zeros((100, 100, 5), np.uint8), "H x W x 3"),
    (np.zeros((10, 100, 3), np.uint8), "size"),
    (np.zeros((100, 100000, 3), np.uint8), "size"),
])
def test_bad_images_are_refused_with_a_reason(bad, why):
    with pytest.raises(ImageError, match=why):
        validate_image(bad)


def test_mono_and_bgra_images_are_accepted():
    assert validate_image(np.zeros((40, 50), np.uint8)).shape == (40, 50, 3)
    assert validate_image(np.zeros((40, 50, 4), np.uint8)).shape == (40, 50, 3)


def test_crop_outside_the_image_is_black_not_an_error():
    img = np.full((100, 100, 3), 200, np.uint8)
    c = crop_vial(img, (-50, -50, 10, 150))
    assert c.shape == (CROP_H, 32, 3) and c[0, 0].sum() == 0 and c[CROP_H // 2, -2].sum() > 0


def test_missing_model_file_is_a_model_error(tmp_path):
    cfg = load_config()
    cfg["backends"]["synthetic"]["detector"] = str(tmp_path / "nope.pt")
    with pytest.raises(ModelError, match="nope.pt"):
        VisionPipeline(cfg)


def test_corrupt_model_file_is_a_model_error(tmp_path):
    cfg = load_config()
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a model")
    cfg["backends"]["synthetic"]["segmenter"] = str(bad)
    with pytest.raises(ModelError, match="corrupt.pt"):
        VisionPipeline(cfg)


def test_config_names_only_known_backends(tmp_path):
    bad = tmp_path / "v.yaml"
    bad.write_text("backends: {a: {}}\ndecide: {vials: b}\n")
    with pytest.raises(ValueError, match="unknown backend"):
        load_config(bad)


def test_heinsight_class_mapping_covers_its_models():
    pytest.importorskip("heinsight")
    from mobile_chemist.vision.ultra import load_yolo

    content = load_yolo(resolve_path("heinsight:models/best_content.pt"))
    assert set(content.names.values()) == set(HEINSIGHT_CONTENT)
    vessel = load_yolo(resolve_path("heinsight:models/best_vessel.pt"))
    assert set(vessel.names.values()) == set(HEINSIGHT_VESSEL)


@pytest.mark.skipif(not HAVE_MODELS, reason="models/ not trained")
def test_pipeline_on_a_synthetic_rack():
    pipe = VisionPipeline()
    scene = render_scene(10_000_001)
    dets = pipe(scene.image)
    # Loose: accuracy is the benchmark's business (bench/vision.py).
    assert len(scene.vials) // 2 <= len(dets) <= 2 * len(scene.vials)
    for d in dets:
        assert d.backend == "synthetic" and 0 <= d.confidence <= 1
        assert all(l.top < l.bottom for l in d.layers)
        assert [l.top for l in d.layers] == sorted(l.top for l in d.layers)


def test_small_data_training_run(tmp_path):
    """Both models train end to end on a handful of scenes (1 epoch) and then load."""
    from mobile_chemist.vision.segmenter import Segmenter, make_crops, train_segmenter
    from mobile_chemist.vision.train import TrainPlan, train_detector
    from mobile_chemist.vision.ultra import load_yolo

    plan = TrainPlan(det_train_images=4, det_val_images=2, det_epochs=1, det_imgsz=160,
                     det_batch=4, det_stage2_epochs=0)
    best = train_detector(plan, work=tmp_path, log=lambda *_: None)
    assert best.is_file()
    assert len(load_yolo(best).names) == 3
    crops, labels = make_crops(range(3))
    out = train_segmenter(crops, labels, tmp_path / "seg.pt", epochs=1, log=lambda *_: None)
    seg = Segmenter(out)
    assert seg.probabilities(crops[:2]).shape == (2, N_ROWS, CROP_H)
