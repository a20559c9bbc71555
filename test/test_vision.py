"""The vision library: classes, synthetic labels, fill level, bad images, a small training run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from mobile_chemist.vision.classes import (
    DETECTOR_CLASSES,
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
    load_segmenter,
    resolve_path,
    validate_image,
)
from mobile_chemist.vision.segmenter import (
    ALLOWED_ROWS,
    N_ROWS,
    N_TYPES,
    clean_rows,
    decode,
    joint_rows,
)
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


def test_variants_add_settled_solids_and_low_fills(monkeypatch):
    """Generator v4: some liquids and suspensions stand on a settled solid bed, some fill
    the vial only a little; with the variants' rates at zero neither occurs. v5: the liquid
    over a bed is at least MIN_LAYER deep."""
    from mobile_chemist.vision import synthetic

    def liquids():
        return [v for s in range(40) for v in render_scene(s).vials
                if v.content in (Phase.HOMOGENEOUS, Phase.HETEROGENEOUS)]

    found = liquids()
    rows = [[Row(r) for _, _, r in v.segments] for v in found]
    settled = [r for r in rows if r[-1] == Row.SOLID]
    assert 0.15 < len(settled) / len(found) < 0.45
    for r in settled:  # the bed is the bottom; the liquid (or suspension) stands on it
        assert r[-2] in (Row.LIQUID, Row.TURBID) and Row.SOLID not in r[:-1]
    low = [v for v in found if v.fill_level < synthetic.LIQUID_FILL_RANGE[0]]
    assert 0.04 < len(low) / len(found) < 0.35
    assert min(v.fill_level for v in found) < 0.1  # glass floor ~0.05 + 2 % of the interior
    # A liquid over a bed is deep enough to be seen (v5), low fill or not.
    rng, var = np.random.default_rng(0), np.random.default_rng(1)
    over_bed = [layers[1] for layers in (synthetic._contents(rng, Phase.HOMOGENEOUS, var)
                                         for _ in range(500)) if layers[0][2] == Row.SOLID]
    assert len(over_bed) > 100
    assert min(hi - lo for lo, hi, _ in over_bed) >= synthetic.MIN_LAYER - 1e-9
    monkeypatch.setitem(synthetic.VARIANTS, "low_fill", 0.0)
    monkeypatch.setitem(synthetic.VARIANTS, "settled_solid",
                        {Phase.HOMOGENEOUS: 0.0, Phase.HETEROGENEOUS: 0.0})
    plain = liquids()
    assert not any(Row(v.segments[-1][2]) == Row.SOLID for v in plain)
    assert min(v.fill_level for v in plain) > synthetic.LIQUID_FILL_RANGE[0]
    # variants=False (the detector plan's det_variants) draws the same scenes as zero rates.
    for seed in (3, 11):
        zero, off = render_scene(seed), render_scene(seed, variants=False)
        assert np.array_equal(zero.image, off.image)
        assert [v.segments for v in zero.vials] == [v.segments for v in off.vials]


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


def test_allowed_rows_describe_their_class():
    for phase, allowed in ALLOWED_ROWS.items():
        assert content_of(allowed) == phase


def test_joint_decoding_follows_a_confident_vial_head():
    """Rows that waver between clear and turbid liquid: the vial head settles it, and the
    layers agree with the content class whichever way it goes."""
    labels = np.array([Row.OUTSIDE] * 8 + [Row.CAP] * 10 + [Row.HEADSPACE] * 40
                      + [Row.LIQUID] * 62 + [Row.OUTSIDE] * 8)
    probs = _one_hot(labels)
    liquid = labels == Row.LIQUID
    probs[Row.LIQUID, liquid], probs[Row.TURBID, liquid] = 0.45, 0.50  # rows: turbid, barely
    box = (10.0, 10.0, 40.0, 138.0)
    head = np.full(N_TYPES + len(Phase), 0.01, np.float32)
    head[1] = 0.98                                   # vial_4ml
    head[N_TYPES + Phase.HOMOGENEOUS] = 0.9
    rows_only = decode(probs, box, head, head_weight=0.0)
    joint = decode(probs, box, head, head_weight=10.0)
    assert rows_only.content == Phase.HETEROGENEOUS
    assert joint.content == Phase.HOMOGENEOUS
    assert {l[2] for l in joint.layers} == {Phase.HOMOGENEOUS}
    assert joint.vial_type == VialType.VIAL_4ML and joint.type_confidence == pytest.approx(0.98)
    assert joint.fill_level == pytest.approx(rows_only.fill_level)
    # A head that is unsure leaves the rows' reading alone.
    head[N_TYPES:] = 1 / len(Phase)
    assert decode(probs, box, head, head_weight=10.0).content == Phase.HETEROGENEOUS
    # Without the head the rows decide.
    assert np.array_equal(joint_rows(probs, None, 10.0), clean_rows(probs.argmax(0)))


def test_clean_rows_removes_flicker():
    rows = np.array([2] * 10 + [5] + [2] * 10 + [5] * 10)
    assert list(clean_rows(rows)) == [2] * 21 + [5] * 10


@pytest.mark.skipif(not HAVE_MODELS, reason="models/ not trained")
def test_trained_segmenter_fill_level_on_known_scenes():
    from mobile_chemist.vision.segmenter import Segmenter

    seg = load_segmenter(load_config()["backends"]["synthetic"])   # as deployed
    errs, ok = [], []
    for seed in range(30_000_000, 30_000_040):  # seeds used by no training set (~290 vials)
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
    import torch

    cfg = load_config()
    cfg["threads"] = 3   # not what ultralytics picks on any machine with 2 or 4 cores
    pipe = VisionPipeline(cfg)
    scene = render_scene(10_000_001)
    dets = pipe(scene.image)
    # The detector's first predict resets torch's threads (ultralytics' select_device);
    # the configured count must hold for the rest of the frame and after it.
    assert torch.get_num_threads() == 3
    # Loose: accuracy is the benchmark's business (bench/vision.py).
    assert len(scene.vials) // 2 <= len(dets) <= 2 * len(scene.vials)
    for d in dets:
        assert d.backend == "synthetic" and 0 <= d.confidence <= 1
        assert all(l.top < l.bottom for l in d.layers)
        assert [l.top for l in d.layers] == sorted(l.top for l in d.layers)


def test_small_data_training_run(tmp_path, monkeypatch):
    """Both models train end to end on a handful of scenes (1 epoch) and then load."""
    from mobile_chemist.vision.segmenter import CropSet, Segmenter, make_crops, train_segmenter
    from mobile_chemist.vision.train import TrainPlan, train_detector
    from mobile_chemist.vision.ultra import load_yolo, offline_ultralytics

    import torch

    # 3 threads: neither the default nor what ultralytics sets on a 2- or 4-core machine.
    plan = TrainPlan(det_train_images=4, det_val_images=2, det_epochs=1, det_imgsz=160,
                     det_batch=4, det_finetune=[], det_threads=3)
    before = torch.get_num_threads()
    offline_ultralytics()
    from ultralytics.utils.callbacks import base

    seen = []

    def hook(trainer):
        seen.append(torch.get_num_threads())

    base.default_callbacks["on_train_epoch_end"].append(hook)
    try:
        # A relative work directory: the weights must land where train_detector says.
        monkeypatch.chdir(tmp_path)
        best = train_detector(plan, work=Path("work"), log=lambda *_: None)
    finally:
        base.default_callbacks["on_train_epoch_end"].remove(hook)
        torch.set_num_threads(before)
    assert seen == [3], "the plan's thread count did not hold while training"
    assert best.is_file()
    assert len(load_yolo(best).names) == 3
    data = make_crops(range(3))
    assert len(data) == len(data.rows) == len(data.vial_type) == len(data.content) > 0
    out = train_segmenter(data, tmp_path / "seg.pt", epochs=1, log=lambda *_: None)
    seg = Segmenter(out, head_weight=4.0)
    rows, vial = seg.probabilities(data.crops[:2], data.aspect[:2])
    assert rows.shape == (2, N_ROWS, CROP_H) and vial.shape == (2, N_TYPES + len(Phase))
    assert np.allclose(vial[:, :N_TYPES].sum(1), 1, atol=1e-5)
    assert np.allclose(vial[:, N_TYPES:].sum(1), 1, atol=1e-5)
    # The crop set survives its cache file.
    data.save(tmp_path / "crops.npz")
    back = CropSet.load(tmp_path / "crops.npz")
    assert np.array_equal(back.crops, data.crops) and np.array_equal(back.aspect, data.aspect)
    # A wider network: the width travels with the weights.
    wide = train_segmenter(data, tmp_path / "seg_w2.pt", epochs=1, batch=16, width=2,
                           log=lambda *_: None)
    seg2 = Segmenter(wide)
    n_params = [sum(p.numel() for p in s.models[0].parameters()) for s in (seg, seg2)]
    assert n_params[1] > 3 * n_params[0]
    assert seg2.probabilities(data.crops[:2], data.aspect[:2])[0].shape == rows.shape


def test_segmenter_training_is_repeatable(tmp_path):
    """Same crops and seed, same weights: what lets `vision train` reproduce models/."""
    from mobile_chemist.vision.segmenter import Segmenter, make_crops, train_segmenter

    data = make_crops(range(2))
    outputs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = train_segmenter(data, tmp_path / f"{name}.pt", epochs=1, batch=16, seed=seed,
                              log=lambda *_: None)
        outputs.append(Segmenter(out).probabilities(data.crops, data.aspect))
    (rows_a, vial_a), (rows_b, vial_b), (rows_c, _) = outputs
    assert np.array_equal(rows_a, rows_b) and np.array_equal(vial_a, vial_b)
    assert not np.allclose(rows_a, rows_c, atol=1e-4)   # the seed does matter


def test_flip_average_is_the_mean_of_the_crop_and_its_mirror_image():
    from mobile_chemist.vision.segmenter import Segmenter

    weights = REPO / "models" / "phase_segmenter.pt"
    scene = render_scene(11)
    crops = np.stack([crop_vial(scene.image, v.box) for v in scene.vials])
    aspects = np.array([(v.box[3] - v.box[1]) / (v.box[2] - v.box[0]) for v in scene.vials])
    plain = Segmenter(weights)
    rows_a, vial_a = plain.probabilities(crops, aspects)
    rows_b, vial_b = plain.probabilities(np.ascontiguousarray(crops[:, :, ::-1]), aspects)
    rows, vial = Segmenter(weights, flip_average=True).probabilities(crops, aspects)
    assert not np.allclose(rows_a, rows_b, atol=1e-3)  # the mirror image reads differently
    assert np.allclose(rows, (rows_a + rows_b) / 2, atol=1e-5)
    assert np.allclose(vial, (vial_a + vial_b) / 2, atol=1e-5)


def test_several_segmenters_read_as_one_with_their_probabilities_averaged(tmp_path):
    from mobile_chemist.vision.pipeline import ModelError, load_config, load_segmenter
    from mobile_chemist.vision.segmenter import Segmenter

    first = REPO / "models" / "phase_segmenter.pt"
    second = REPO / "models" / "phase_segmenter_18000.pt"
    scene = render_scene(11)
    crops = np.stack([crop_vial(scene.image, v.box) for v in scene.vials])
    aspects = np.array([(v.box[3] - v.box[1]) / (v.box[2] - v.box[0]) for v in scene.vials])
    rows_a, vial_a = Segmenter(first).probabilities(crops, aspects)
    rows_b, vial_b = Segmenter(second).probabilities(crops, aspects)
    rows, vial = Segmenter([first, second]).probabilities(crops, aspects)
    assert not np.allclose(rows_a, rows_b, atol=1e-3)  # two trainings read differently
    assert np.allclose(rows, (rows_a + rows_b) / 2, atol=1e-5)
    assert np.allclose(vial, (vial_a + vial_b) / 2, atol=1e-5)
    # From the config: a list of paths; a missing one is named, an empty list refused.
    cfg = dict(load_config()["backends"]["synthetic"])
    assert len(load_segmenter(dict(cfg, segmenter=[str(first), str(second)])).models) == 2
    with pytest.raises(ModelError, match="nowhere.pt"):
        load_segmenter(dict(cfg, segmenter=[str(first), str(tmp_path / "nowhere.pt")]))
    with pytest.raises(ValueError, match="segmenter must be"):
        load_segmenter(dict(cfg, segmenter=[]))


def test_shift_average_is_the_mean_of_the_box_and_its_sideways_moves():
    from mobile_chemist.vision.segmenter import Segmenter, box_aspect, decode

    weights = REPO / "models" / "phase_segmenter.pt"
    scene = render_scene(11)
    boxes = [v.box for v in scene.vials]
    aspects = np.array([box_aspect(b) for b in boxes])
    plain = Segmenter(weights)
    probs = []
    for s in (0.0, -0.06, 0.06):
        moved = [(b[0] + s * (b[2] - b[0]), b[1], b[2] + s * (b[2] - b[0]), b[3]) for b in boxes]
        probs.append(plain.probabilities(np.stack([crop_vial(scene.image, b) for b in moved]),
                                         aspects))
    assert not np.allclose(probs[0][0], probs[2][0], atol=1e-3)  # a moved box reads differently
    rows, vial = (np.mean([p[k] for p in probs], 0) for k in (0, 1))
    shifted = Segmenter(weights, shift_average=0.06).read(scene.image, boxes)
    for got, p, v, b in zip(shifted, rows, vial, boxes):
        want = decode(p, b, v)
        assert got.content == want.content
        assert got.fill_level == pytest.approx(want.fill_level, abs=1e-6, nan_ok=True)
        assert np.array_equal(got.rows, want.rows)
    with pytest.raises(ValueError, match="shift_average"):
        Segmenter(weights, shift_average=0.7)


def test_segmenter_width_must_be_a_positive_integer():
    from mobile_chemist.vision.segmenter import build_model

    with pytest.raises(ValueError, match="width"):
        build_model(0)


def test_segmenter_data_renders_only_the_scenes_a_larger_plan_adds(tmp_path):
    from mobile_chemist.vision.segmenter import make_crops
    from mobile_chemist.vision.synthetic import SEG_SEED_BASE
    from mobile_chemist.vision.train import TrainPlan, segmenter_data

    said = []
    small = segmenter_data(TrainPlan(seg_scenes=2, seg_mujoco_scenes=0), tmp_path, said.append)
    large = segmenter_data(TrainPlan(seg_scenes=4, seg_mujoco_scenes=0), tmp_path, said.append)
    assert said == ["[segmenter] rendering 2d scenes 0..1 for crops",
                    "[segmenter] rendering 2d scenes 2..3 for crops"]
    direct = make_crops(range(SEG_SEED_BASE, SEG_SEED_BASE + 4), jitter=0.06)
    assert np.array_equal(large.crops, direct.crops) and np.array_equal(large.rows, direct.rows)
    assert np.array_equal(large.crops[:len(small)], small.crops)
    # Both ranges are cached now: the same plan again renders nothing.
    segmenter_data(TrainPlan(seg_scenes=4, seg_mujoco_scenes=0), tmp_path, said.append)
    assert len(said) == 2


def test_a_degraded_frame_takes_one_trained_change_at_a_size_inside_its_range(monkeypatch):
    from mobile_chemist.vision import corruptions

    img = np.full((8, 8, 3), 100, np.uint8)
    calls = []
    real = corruptions.corrupt
    monkeypatch.setattr(corruptions, "corrupt",
                        lambda im, name, sev, seed=0: calls.append((name, sev)) or real(
                            im, name, sev, seed))
    for k in range(200):
        corruptions.degrade(img, np.random.default_rng(k))
    assert {name for name, _ in calls} == set(corruptions.TRAINED)
    for name, sev in calls:
        lo, hi = corruptions.TRAINED[name]
        assert lo <= sev <= hi, (name, sev)
    # Smear, a low-resolution sensor and a colour cast stay out for the bench to test.
    assert not {"motion", "lowres", "cast"} & set(corruptions.TRAINED)
    a = corruptions.degrade(img, np.random.default_rng(5))
    assert np.array_equal(a, corruptions.degrade(img, np.random.default_rng(5)))


def test_degraded_copies_crop_each_frame_again_with_the_same_labels():
    from mobile_chemist.vision.segmenter import make_crops

    plain = make_crops(range(2), jitter=0.06)
    both = make_crops(range(2), jitter=0.06, degraded_copies=1)
    assert len(both) == 2 * len(plain)
    # Scene by scene: its crops as rendered (as without copies), then the degraded ones.
    first = len(make_crops(range(1), jitter=0.06))
    assert np.array_equal(both.crops[:first], plain.crops[:first])
    assert np.array_equal(both.content[first:2 * first], plain.content[:first])
    assert np.array_equal(both.vial_type[first:2 * first], plain.vial_type[:first])
    assert not np.array_equal(both.crops[first:2 * first], plain.crops[:first])


def test_the_degraded_stage_takes_fresh_scenes_after_every_segmenters_crops(monkeypatch, tmp_path):
    from mobile_chemist.vision import segmenter, train
    from mobile_chemist.vision.cli import build_parser, plan_from_args
    from mobile_chemist.vision.synthetic import SEG_SEED_BASE

    made = []
    monkeypatch.setattr(segmenter, "make_crops", lambda seeds, **kw: made.append(
        (kw["renderer"], list(seeds), kw["degraded_copies"])) or _tiny_crops())
    plan = train.TrainPlan(seg_scenes=3, seg_mujoco_scenes=4, seg_ensemble_mujoco_scenes=[6])
    said = []
    data = train.degraded_crops(plan, 2, 3, tmp_path, log=said.append)
    assert said == ["[segmenter] rendering 2d (and degraded) scenes 3..4 for crops",
                    "[segmenter] rendering mujoco (and degraded) scenes 6..8 for crops"]
    assert made == [("2d", [SEG_SEED_BASE + 3, SEG_SEED_BASE + 4], 1),
                    ("mujoco", [SEG_SEED_BASE + k for k in (6, 7, 8)], 1)]
    assert len(data) == 2 * len(_tiny_crops())
    train.degraded_crops(plan, 2, 3, tmp_path, log=lambda _: None)
    assert len(made) == 2    # cached, apart from the plain crops of the same seeds
    assert sorted(p.name.split("_j")[0] for p in tmp_path.glob("seg_crops*")) == [
        "seg_crops_degraded1_3-5", "seg_crops_mujoco_degraded1_6-9"]
    stage = plan_from_args(build_parser().parse_args(
        ["train", "--seg-degraded-stage", "6:0.0003:500:3000"])).seg_degraded_stage
    assert stage == [6, 0.0003, 500, 3000]
    assert plan_from_args(build_parser().parse_args(
        ["train", "--seg-degraded-stage", ""])).seg_degraded_stage == []
    for bad in ("6:0.0003:500", "0:0.0003:1:1", "6:0.0003:0:0", "x:1:1:1"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "--seg-degraded-stage", bad])


def test_a_plans_degraded_stage_fine_tunes_each_segmenter_last(monkeypatch, tmp_path):
    from mobile_chemist.vision import segmenter, train

    made, trained = [], []
    monkeypatch.setattr(segmenter, "make_crops", lambda seeds, **kw: made.append(
        kw["degraded_copies"]) or _tiny_crops())
    monkeypatch.setattr(segmenter, "train_segmenter", lambda data, out, **kw: trained.append(
        (out.name, len(data), kw.get("epochs"), kw.get("lr"), kw.get("start"))) or out)
    plan = train.TrainPlan(seg_scenes=1, seg_mujoco_scenes=0, seg_ensemble_mujoco_scenes=[],
                           seg_epochs=2, seg_degraded_stage=[3, 0.0003, 1, 0])
    out = train.train_phase_segmenter(plan, tmp_path, log=lambda _: None)
    first = tmp_path / "train" / "phase_segmenter.pt"
    assert made == [0, 1]           # the plan's crops, then the stage's degraded ones
    assert trained == [("phase_segmenter.pt", 2, 2, None, None),
                       ("phase_segmenter_degraded.pt", 2, 3, 0.0003, first)]
    assert out == tmp_path / "train" / "phase_segmenter_degraded.pt"


def test_metrics_score_an_oracle_perfectly_and_a_wrong_reader_badly():
    """The benchmark's scoring on exact answers, and on answers wrong in known ways."""
    from mobile_chemist.vision.evaluation import report
    from mobile_chemist.vision.metrics import evaluate
    from mobile_chemist.vision.pipeline import Detection

    scenes = [render_scene(s) for s in range(6)]
    by_image = {id(s.image): s for s in scenes}

    def oracle(image, wrong=False):
        vials = by_image[id(image)].vials
        return [Detection(box=v.box, confidence=0.9, vial_type=VialType(v.vial_type),
                          type_confidence=1.0, cap_present=v.cap != wrong,
                          content=Phase((v.content + wrong) % len(Phase)),
                          fill_level=v.fill_level + 0.1 * wrong)
                for i, v in enumerate(vials) if not (wrong and i % 2)]

    r = evaluate(oracle, scenes, conf_threshold=0.5)
    n = sum(len(s.vials) for s in scenes)
    assert r["matched_vials"] == n and r["detection"]["any_vial"]["ap50"] == pytest.approx(1)
    assert r["detection"]["map50"] == pytest.approx(1)
    assert r["vial_type_accuracy"] == r["cap_accuracy"] == r["phase_accuracy"] == 1
    assert r["fill_error"]["p95"] == pytest.approx(0, abs=1e-9)
    w = evaluate(lambda im: oracle(im, wrong=True), scenes, conf_threshold=0.5)
    kept = sum((len(s.vials) + 1) // 2 for s in scenes)
    assert w["matched_vials"] == kept
    assert w["detection"]["any_vial"]["recall"] == pytest.approx(kept / n)
    assert w["cap_accuracy"] == 0 and w["phase_accuracy"] == 0
    assert w["fill_error"]["mean"] == pytest.approx(0.1)
    assert r["phase_accuracy_ci95"] == [1, 1] and w["fill_error"]["p95_ci95"] == \
        pytest.approx([0.1, 0.1])
    text = report({"sets": {"2d": {"synthetic": r}}, "latency_16_vials": {}})
    assert "phase (content) accuracy 1.000 (95 % CI over scenes 1.000-1.000)" in text
    assert "2d scenes" in text


def test_latency_counts_vials_found_not_detections(monkeypatch):
    """A frame with a vial missed and a stray box has 16 detections but 15 vials found."""
    from mobile_chemist.vision import evaluation
    from mobile_chemist.vision.pipeline import Detection

    scenes = [render_scene(s, n_vials=16) for s in range(4)]
    monkeypatch.setattr(evaluation, "iter_scenes", lambda seeds, n_vials: scenes[:len(seeds)])
    frame = iter(range(len(scenes)))

    def reader(image):
        k = next(frame)
        dets = [Detection(box=v.box, confidence=0.9) for v in scenes[k].vials]
        if k == 3:  # the last frame: one vial missed, one box on the background
            dets = dets[1:] + [Detection(box=(0.0, 0.0, 5.0, 5.0), confidence=0.9)]
        return dets

    lat = evaluation.latency(reader, frames=2, warmup=2)
    assert lat["frames"] == 2 and lat["found_mean"] == 16
    assert lat["matched_mean"] == 15.5 and lat["frames_all_found"] == 1
    assert "15.5 of 16 vials found, 16.0 detections; all found in 1 frames" in \
        evaluation.report({"sets": {}, "latency_16_vials": {"synthetic": lat}})


def test_paired_bootstrap_sees_a_steady_difference_that_side_by_side_intervals_miss():
    from mobile_chemist.vision.metrics import paired_scene_bootstrap, scene_bootstrap

    rng = np.random.default_rng(1)
    n = 30
    scene = np.repeat(np.arange(n), 8)
    hardness = np.repeat(rng.uniform(0.0, 0.2, n), 8)   # shared by both models in a scene
    a = hardness + rng.normal(0, 0.002, len(scene))
    b = a + 0.01                                        # b is worse by 0.01 everywhere
    lo_a, hi_a = scene_bootstrap(a, scene, np.mean)
    lo_b, hi_b = scene_bootstrap(b, scene, np.mean)
    assert lo_b < hi_a, "side by side, the intervals overlap"
    assert paired_scene_bootstrap(a, scene, b, scene, n, np.mean) == pytest.approx([0.01, 0.01])
    assert paired_scene_bootstrap(a, scene, a, scene, n, np.mean) == [0.0, 0.0]
    # Values pair by scene, not by position: the same vials listed in another order.
    order = rng.permutation(len(scene))
    assert paired_scene_bootstrap(a, scene, b[order], scene[order], n, np.mean) == \
        pytest.approx([0.01, 0.01])


@pytest.mark.skipif(not HAVE_MODELS, reason="models/ not trained")
def test_comparing_a_config_with_itself_finds_no_difference(monkeypatch):
    from mobile_chemist.vision import evaluation
    from mobile_chemist.vision.synthetic import VAL_SEED_BASE

    monkeypatch.setattr(evaluation, "iter_scenes", lambda seeds, renderer="2d", workers=1:
                        [render_scene(s) for s in seeds])
    res = evaluation.compare(None, REPO / "config" / "vision.yaml", scenes=3, mujoco_scenes=0,
                             log=lambda m: None)
    for name in ("phase_accuracy", "fill_error_p95"):
        r = res["sets"]["2d"][name]
        assert r["base"] == r["candidate"] and r["difference"] == 0
        assert r["difference_ci95"] == [0.0, 0.0]
    two = res["sets"]["2d"]["map50_types"]
    assert two["base"] == two["candidate"] > 0.5
    assert res["validation_seeds"] == VAL_SEED_BASE
    assert "difference +0.000" in evaluation.report_comparison(res)
    # --skip: the same comparison on seeds no earlier choice has seen.
    seen = []
    monkeypatch.setattr(evaluation, "iter_scenes", lambda seeds, renderer="2d", workers=1:
                        seen.extend(seeds) or [render_scene(s) for s in seeds])
    res = evaluation.compare(None, REPO / "config" / "vision.yaml", scenes=2, mujoco_scenes=0,
                             skip=400, log=lambda m: None)
    assert seen == [VAL_SEED_BASE + 400, VAL_SEED_BASE + 401]
    assert res["validation_seeds"] == VAL_SEED_BASE + 400


def test_the_diagnostics_scene_choice_can_skip_the_seeds_choices_were_made_on(monkeypatch):
    import argparse

    from mobile_chemist.vision import scenes
    from mobile_chemist.vision.synthetic import EVAL_SEED_BASE, VAL_SEED_BASE

    calls = []
    monkeypatch.setattr(scenes, "iter_scenes",
                        lambda seeds, renderer, workers, kind, labels, n_vials:
                        calls.append((renderer, list(seeds), labels)) or [])
    p = argparse.ArgumentParser()
    scenes.add_scene_arguments(p, scenes=2)
    scenes.scene_sets(p.parse_args(["--skip", "5"]))
    assert calls == [("2d", [VAL_SEED_BASE + 5, VAL_SEED_BASE + 6], None),
                     ("mujoco", [VAL_SEED_BASE + 5, VAL_SEED_BASE + 6], None)]
    calls.clear()
    scenes.scene_sets(p.parse_args(["--held-out"]), labels=("unseen", 1.0))
    assert calls[0] == ("2d", [EVAL_SEED_BASE, EVAL_SEED_BASE + 1], ("unseen", 1.0))
    with pytest.raises(SystemExit):
        p.parse_args(["--skip", "-1"])


def test_scene_bootstrap_resamples_whole_scenes():
    """The interval of a figure comes from resampling scenes, not single vials."""
    from mobile_chemist.vision.metrics import scene_bootstrap

    # Two scenes, one all right and one all wrong: any resample holds 0, 1 or 2 copies of
    # the wrong one, so the interval spans 0 to 1 (resampling 40 vials would give ~0.35-0.65).
    ok = [1.0] * 20 + [0.0] * 20
    scene = [0] * 20 + [1] * 20
    assert scene_bootstrap(ok, scene, np.mean) == [0.0, 1.0]
    # Forty scenes of one vial each with the same values: a narrow interval around 0.5.
    lo, hi = scene_bootstrap(ok, list(range(40)), np.mean)
    assert 0.3 < lo < 0.5 < hi < 0.7
    assert all(np.isnan(scene_bootstrap([], [], np.mean)))


@pytest.mark.skipif(not HAVE_MODELS, reason="models/ not trained")
def test_backends_mix_per_class_as_configured():
    """HeinSight finds the vessels, the project's models read type, cap and phases."""
    pytest.importorskip("heinsight")
    cfg = load_config()
    cfg["decide"] = {"vials": "heinsight", "cap": "synthetic", "phases": "synthetic"}
    pipe = VisionPipeline(cfg)
    scene = render_scene(10_000_004)
    dets = pipe(scene.image)
    assert dets, "HeinSight found no vessel"
    for d in dets:
        assert d.backend == "heinsight+synthetic"
        assert d.vial_type != VialType.UNKNOWN and 0 < d.type_confidence <= 1
        assert 0 < d.cap_confidence <= 1 and np.isfinite(d.fill_level)


def test_the_training_plan_defaults_are_the_plan_that_made_the_committed_models():
    """`mobile-chemist vision train` with no options must reproduce models/ (its card says so)."""
    import json
    from dataclasses import asdict

    from mobile_chemist.vision.train import TrainPlan

    recorded = json.loads((REPO / "models" / "train_plan.json").read_text())
    assert recorded == json.loads(json.dumps(asdict(TrainPlan())))


def test_train_options_override_only_what_they_name():
    from mobile_chemist.vision.cli import build_parser, plan_from_args
    from mobile_chemist.vision.train import TrainPlan

    plan = plan_from_args(build_parser().parse_args(
        ["train", "--seg-flip", "--seg-width", "2", "--seg-device", "cuda", "--workers", "15"]))
    assert (plan.seg_flip, plan.seg_width, plan.seg_device, plan.workers) == (True, 2, "cuda", 15)
    assert plan.seg_epochs == TrainPlan().seg_epochs
    assert plan_from_args(build_parser().parse_args(["train"])) == TrainPlan()
    off = plan_from_args(build_parser().parse_args(["train", "--no-det-variants", "--no-seg-flip"]))
    assert (off.det_variants, off.seg_flip) == (False, False)


def test_each_model_trains_with_its_own_seed(monkeypatch, tmp_path):
    """--det-seed reaches ultralytics' trainer and --seg-seed the segmenter and its crops;
    neither moves the other model's seed (so one model can be trained again alone)."""
    from mobile_chemist.vision import segmenter, train
    from mobile_chemist.vision.cli import build_parser, plan_from_args
    from mobile_chemist.vision.train import TrainPlan

    plan = plan_from_args(build_parser().parse_args(["train", "--det-seed", "3"]))
    assert (plan.det_seed, plan.seg_seed) == (3, TrainPlan().seg_seed)

    class FakeYOLO:
        def add_callback(self, *a):
            pass

        def train(self, **kw):
            self.kw = kw

    model = FakeYOLO()
    train._train_yolo(model, plan, tmp_path / "data.yaml", tmp_path, "detector")
    assert model.kw["seed"] == 3 and model.kw["deterministic"] is True

    seeds = []
    monkeypatch.setattr(segmenter, "make_crops",
                        lambda s, **kw: seeds.append(("crops", kw["seed"])) or _tiny_crops())
    monkeypatch.setattr(segmenter, "train_segmenter",
                        lambda data, out, **kw: seeds.append(("train", kw["seed"])) or out)
    plan = plan_from_args(build_parser().parse_args(
        ["train", "--seg-seed", "2", "--seg-scenes", "1", "--seg-mujoco-scenes", "0"]))
    assert plan.det_seed == TrainPlan().det_seed
    train.train_phase_segmenter(plan, tmp_path, log=lambda _: None)
    assert seeds == [("crops", 2), ("train", 2)]
    # Crops made with another seed's box noise are cached apart, not reused.
    assert [p.name for p in tmp_path.glob("seg_crops_*")] == [
        f"seg_crops_0-1_j{plan.seg_jitter:g}_s2_v{train.GENERATOR_VERSION}.npz"]


def test_each_ensemble_member_is_the_plans_segmenter_on_its_mujoco_scenes(monkeypatch, tmp_path):
    from mobile_chemist.vision import train
    from mobile_chemist.vision.cli import build_parser, plan_from_args

    trained = []

    def fake(plan, work, log, name="phase_segmenter"):
        trained.append((name, plan.seg_mujoco_scenes, plan.seg_epochs, plan.seg_seed))
        out = work / f"{name}.pt"
        out.write_text(name)
        return out

    monkeypatch.setattr(train, "train_phase_segmenter", fake)
    plan = plan_from_args(build_parser().parse_args(
        ["train", "--seg-mujoco-scenes", "30", "--seg-ensemble-mujoco-scenes", "40", "50",
         "--seg-epochs", "3"]))
    got = train.train_phase_segmenters(plan, tmp_path, log=lambda _: None)
    assert trained == [("phase_segmenter", 30, 3, 0), ("phase_segmenter_40", 40, 3, 0),
                       ("phase_segmenter_50", 50, 3, 0)]
    models = tmp_path / "models"
    train.install(None, got, plan, models)
    assert sorted(f.name for f in models.iterdir()) == [
        "phase_segmenter.pt", "phase_segmenter_40.pt", "phase_segmenter_50.pt", "train_plan.json"]
    assert (models / "phase_segmenter_50.pt").read_text() == "phase_segmenter_50"
    # No members: one segmenter, as before the ensemble.
    one = plan_from_args(build_parser().parse_args(["train", "--seg-ensemble-mujoco-scenes"]))
    assert one.seg_ensemble_mujoco_scenes == []
    # The committed config averages exactly the files the plan installs.
    from mobile_chemist.vision.pipeline import load_config, segmenter_paths
    named = [p.name for p in segmenter_paths(load_config()["backends"]["synthetic"])]
    plan = train.TrainPlan()
    assert named == ["phase_segmenter.pt"] + [
        f"phase_segmenter_{n}.pt" for n in plan.seg_ensemble_mujoco_scenes]


def test_the_benchmark_scores_validation_scenes_when_asked(monkeypatch):
    """--validation swaps the held-out seeds for the validation ones, nothing else."""
    from mobile_chemist.vision import evaluation
    from mobile_chemist.vision.synthetic import EVAL_SEED_BASE, VAL_SEED_BASE

    asked = []

    def scenes(seeds, renderer="2d", n_vials=None, workers=1):
        asked.append((list(seeds), renderer))
        return [render_scene(s, n_vials=n_vials) for s in asked[-1][0]]

    monkeypatch.setattr(evaluation, "iter_scenes", scenes)
    for validation, base in ((True, VAL_SEED_BASE), (False, EVAL_SEED_BASE)):
        asked.clear()
        res = evaluation.run_benchmark(scenes=2, heinsight_scenes=0, latency_frames=1,
                                       mujoco_scenes=0, validation=validation, log=lambda m: None)
        split = "validation_seeds" if validation else "held_out_seeds"
        assert res[split] == {"2d": [base, base + 2]} and len(res) == 4
        assert asked[0] == ([base, base + 1], "2d")
        truth = sum(len(render_scene(s).vials) for s in (base, base + 1))
        assert res["sets"]["2d"]["synthetic"]["detection"]["any_vial"]["truth"] == truth
        assert f"2d scenes: {split.replace('_', ' ')} {base}..{base + 1}" in evaluation.report(res)


def test_the_benchmark_without_latency_frames_scores_accuracy_only(monkeypatch):
    """--latency-frames 0 (as when comparing weights) skips the timing; it used to crash."""
    from mobile_chemist.vision import evaluation
    from mobile_chemist.vision.cli import build_parser

    monkeypatch.setattr(evaluation, "iter_scenes", lambda seeds, renderer="2d", n_vials=None,
                        workers=1: [render_scene(s, n_vials=n_vials) for s in seeds])
    res = evaluation.run_benchmark(scenes=1, heinsight_scenes=0, latency_frames=0,
                                   mujoco_scenes=0, log=lambda m: None)
    assert "latency_16_vials" not in res and res["sets"]["2d"]["synthetic"]["matched_vials"] > 0
    assert "latency" not in evaluation.report(res)
    # And the other way round (--scenes 0 --mujoco-scenes 0): timing only, no empty seed range.
    timing = evaluation.run_benchmark(scenes=0, heinsight_scenes=0, latency_frames=1,
                                      mujoco_scenes=0, log=lambda m: None)
    assert timing["held_out_seeds"] == {} and not timing["sets"]
    assert "scenes:" not in evaluation.report(timing) and "latency" in evaluation.report(timing)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--latency-frames", "-1"])
    assert build_parser().parse_args(["eval", "--latency-frames", "0"]).latency_frames == 0


def test_an_interrupted_detector_data_set_is_rendered_again(monkeypatch, tmp_path):
    """The mixed set gets its data.yaml with the 2-D part: a render stopped during the
    MuJoCo part must not count as a finished set."""
    from mobile_chemist.vision import synthetic, train

    calls = []

    def write(root, train_seeds, val_seeds, renderer="2d", workers=1, kind="random",
              variants=True):
        calls.append(renderer)
        if renderer == "mujoco" and calls.count("mujoco") == 1:
            raise KeyboardInterrupt  # the first MuJoCo render is stopped
        return synthetic.write_yolo_dataset(root, range(0), range(0), renderer,
                                            variants=variants)

    monkeypatch.setattr(train, "write_yolo_dataset", write)
    plan = train.TrainPlan(det_train_images=1, det_val_images=1,
                           det_mujoco_train_images=1, det_mujoco_val_images=1)
    with pytest.raises(KeyboardInterrupt):
        train.detector_data(plan, "mix", tmp_path, log=lambda _: None)
    data = train.detector_data(plan, "mix", tmp_path, log=lambda _: None)
    assert calls == ["2d", "mujoco", "2d", "mujoco"] and data.is_file()
    assert train.detector_data(plan, "mix", tmp_path, log=lambda _: None) == data
    assert len(calls) == 4  # finished: not rendered a third time


def _record_dataset_writes(monkeypatch, train) -> list[dict]:
    """Stand in for `write_yolo_dataset` in `train`: each call is recorded (renderer, kind,
    train_seeds, variants) and leaves a minimal data.yaml, nothing rendered."""
    written: list[dict] = []

    def write(root, train_seeds, val_seeds, renderer="2d", workers=1, kind="random",
              variants=True):
        written.append(dict(renderer=renderer, kind=kind, train_seeds=list(train_seeds),
                            variants=variants))
        root.mkdir(parents=True, exist_ok=True)
        (root / "data.yaml").write_text('{"path": "x", "train": "images/train", '
                                        '"val": "images/val", "names": {"0": "gc_2ml"}}')
        return root / "data.yaml"

    monkeypatch.setattr(train, "write_yolo_dataset", write)
    return written


def test_a_detector_stage_can_name_the_size_of_its_mixed_set(monkeypatch, tmp_path):
    """"mixN": a stage on the mixed set with N MuJoCo images, a set of its own."""
    from mobile_chemist.vision import train
    from mobile_chemist.vision.cli import build_parser

    plan = train.TrainPlan(det_train_images=2, det_val_images=1, det_mujoco_train_images=1,
                           det_mujoco_val_images=1)
    assert [train.data_counts(plan, d) for d in ("2d", "mix", "mix3", "mix3+neg5")] == [
        train.DetectorSet(0), train.DetectorSet(1), train.DetectorSet(3),
        train.DetectorSet(3, negatives=5)]
    assert train.data_counts(plan, "2d+label2+neg5+print7") == train.DetectorSet(
        mujoco=0, negatives=5, printed=7, labelled=2)
    assert train.data_counts(plan, "mix3+varied4+label2") == train.DetectorSet(
        mujoco=3, labelled=2, varied=4)
    assert train.data_counts(plan, "mix3+camera5+varied4") == train.DetectorSet(
        mujoco=3, varied=4, camera=5)
    assert train.data_counts(plan, "mix3+tall6") == train.DetectorSet(mujoco=3, tall=6)
    for bad in ("mix0", "mixx", "mix-2", "3d", "", "mix3+neg0", "mix3+neg", "+neg2",
                "mix3+neg2+neg2", "mix3+print", "mix3+labels2", "mix3+neg2+", "2d+neg-1",
                "mix3+varied", "mix3+varied1+varied1", "mix3+camera0", "mix3+cameras2",
                "mix3+tall", "mix3+tall1+tall2"):
        with pytest.raises(ValueError, match="mixN"):
            train.data_counts(plan, bad)
    written = _record_dataset_writes(monkeypatch, train)
    data = train.detector_data(plan, "mix3", tmp_path, log=lambda _: None)
    assert data.parent.name == "det_data_2_mj3_v%d" % train.GENERATOR_VERSION
    assert (written[1]["renderer"], written[1]["train_seeds"]) == (
        "mujoco", [train.TRAIN_SEED_BASE + k for k in range(3)])
    assert train.detector_data(plan, "mix", tmp_path, log=lambda _: None) != data
    args = build_parser().parse_args(["train", "--det-finetune", "10:0.001:mix,6:0.0005:mix1800"])
    assert args.det_finetune == [[10, 0.001, "mix"], [6, 0.0005, "mix1800"]]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--det-finetune", "6:0.0005:mixx"])


def test_frames_without_vials_join_a_detector_set_without_rendering_it_again(monkeypatch,
                                                                            tmp_path):
    """"+negM": M frames without vials (empty labels) beside a set's own training images."""
    import cv2

    from mobile_chemist.vision import train
    from mobile_chemist.vision.negatives import render_vial_free

    plan = train.TrainPlan(det_train_images=2, det_val_images=1)
    written = _record_dataset_writes(monkeypatch, train)
    plain = train.detector_data(plan, "2d", tmp_path, log=lambda _: None)
    data = train.detector_data(plan, "2d+neg3", tmp_path, log=lambda _: None)
    # The scenes are shared, not rendered twice.
    assert [w["renderer"] for w in written] == ["2d"]
    spec = json.loads(data.read_text())
    neg = tmp_path / "det_vial_free_3"
    assert spec["train"] == [str((plain.parent / "images" / "train").resolve()),
                             str((neg / "images" / "train").resolve())]
    assert spec["val"] == "images/val" and spec["path"] == str(plain.parent.resolve())
    images = sorted((neg / "images" / "train").glob("*.png"))
    assert [p.stem for p in images] == ["n000000000", "n000000001", "n000000002"]
    assert all((neg / "labels" / "train" / f"{p.stem}.txt").read_text() == "" for p in images)
    assert np.array_equal(cv2.imread(str(images[1])), render_vial_free(1))
    assert render_vial_free(1).shape == (480, 640, 3)
    assert not np.array_equal(render_vial_free(1), render_vial_free(2))


def test_printed_matter_and_labelled_vials_join_a_detector_set(monkeypatch, tmp_path):
    """"+printM" and "+labelN": directories of their own, in a fixed order after the scenes
    and the frames without vials, whatever order the spec names them in."""
    import cv2

    from mobile_chemist.vision import train
    from mobile_chemist.vision.negatives import render_printed_matter

    plan = train.TrainPlan(det_train_images=2, det_val_images=1, workers=1)
    _record_dataset_writes(monkeypatch, train)
    data = train.detector_data(plan, "2d+varied1+label1+print2+neg1", tmp_path,
                               log=lambda _: None)
    assert data.parent.name.endswith("_neg1_print2_label1_varied1")
    names = ["det_vial_free_1", "det_printed_2", f"det_labelled_1_v{train.GENERATOR_VERSION}",
             f"det_varied_labels_1_v{train.GENERATOR_VERSION}"]
    assert json.loads(data.read_text())["train"][1:] == [
        str((tmp_path / n / "images" / "train").resolve()) for n in names]
    printed = sorted((tmp_path / names[1] / "images" / "train").glob("*.png"))
    assert [p.stem for p in printed] == ["p000000000", "p000000001"]
    assert np.array_equal(cv2.imread(str(printed[1])), render_printed_matter(1))
    assert (tmp_path / names[1] / "labels" / "train" / "p000000001.txt").read_text() == ""
    # Labelled vials: scene 0 of each renderer again, its vials' boxes as labels.
    labelled = tmp_path / names[2]
    assert sorted(p.stem for p in (labelled / "images" / "train").glob("*.png")) == [
        "lm000000000", "ls000000000"]
    from mobile_chemist.vision.synthetic import render_scene, yolo_label_lines

    scene = render_scene(0)
    assert (labelled / "labels" / "train" / "ls000000000.txt").read_text() == \
        yolo_label_lines(scene.vials, 640, 480)
    # "Varied" labels: the same scenes, other labels on them, the same boxes.
    varied = tmp_path / names[3]
    assert sorted(p.stem for p in (varied / "images" / "train").glob("*.png")) == [
        "vm000000000", "vs000000000"]
    assert (varied / "labels" / "train" / "vs000000000.txt").read_text() == \
        yolo_label_lines(scene.vials, 640, 480)
    assert not np.array_equal(cv2.imread(str(varied / "images" / "train" / "vs000000000.png")),
                              cv2.imread(str(labelled / "images" / "train" / "ls000000000.png")))


def test_printed_matter_is_a_pure_function_of_its_seed_and_shows_print():
    from mobile_chemist.vision.negatives import render_printed_matter, render_vial_free

    a = render_printed_matter(3)
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_printed_matter(3))
    assert not np.array_equal(a, render_printed_matter(4))
    # Its own stream: not a frame without vials of the same seed.
    assert not np.array_equal(render_vial_free(3), a)


def test_paper_labels_cover_the_glass_and_leave_the_rest_of_the_frame():
    """A label is opaque light paper with dark print across the front of the glass, between
    the glass top and bottom; pixels outside every vial box do not change."""
    from mobile_chemist.vision.paper_labels import add_paper_labels
    from mobile_chemist.vision.synthetic import render_scene

    scene = render_scene(5)
    out = add_paper_labels(scene.image, scene.vials, seed=1, fraction=1.0)
    assert np.array_equal(out, add_paper_labels(scene.image, scene.vials, 1, 1.0))
    changed = np.any(out != scene.image, axis=2)
    inside = np.zeros_like(changed)
    for v in scene.vials:
        x1, _, x2, _ = (int(round(c)) for c in v.box)
        inside[int(v.glass_top):int(np.ceil(v.glass_bottom)) + 1, max(x1 - 1, 0):x2 + 1] = True
    assert changed.any() and not (changed & ~inside).any()
    for v in scene.vials:   # each vial's middle, a third of the way down, is paper
        x = int((v.box[0] + v.box[2]) / 2)
        rows = changed[int(v.glass_top):int(v.glass_bottom), x]
        if v.box[2] - v.box[0] >= 12:
            assert rows.mean() > 0.2
    assert np.array_equal(add_paper_labels(scene.image, scene.vials, 1, fraction=0.0),
                          scene.image)
    # "unseen": dark paper, taller than the others, on the glass, from a stream of its own.
    dark = add_paper_labels(scene.image, scene.vials, 1, 1.0, style="unseen")
    dark_changed = np.any(dark != scene.image, axis=2)
    assert dark_changed.any() and not (dark_changed & ~inside).any()
    assert dark_changed.sum() > changed.sum()
    assert dark[dark_changed].mean() < 0.6 * out[changed].mean()
    assert np.array_equal(dark, add_paper_labels(scene.image, scene.vials, 1, 1.0, "unseen"))
    with pytest.raises(ValueError, match="style"):
        add_paper_labels(scene.image, scene.vials, 1, style="handwritten")


def test_varied_labels_stay_on_the_glass_and_keep_the_unseen_style_out():
    """"varied" training labels: inside each vial's box, on most vials across 40 draws, and
    not the dark paper "unseen" keeps back for the test: far brighter on average."""
    from mobile_chemist.vision.paper_labels import add_paper_labels, write_labelled_images
    from mobile_chemist.vision.synthetic import render_scene

    scene = render_scene(5)
    inside = np.zeros(scene.image.shape[:2], bool)
    for v in scene.vials:
        x1, _, x2, _ = (int(round(c)) for c in v.box)
        inside[int(v.glass_top):int(np.ceil(v.glass_bottom)) + 1, max(x1 - 1, 0):x2 + 1] = True
    labelled = 0
    for seed in range(40):
        out = add_paper_labels(scene.image, scene.vials, seed, 1.0, "varied")
        assert np.array_equal(out, add_paper_labels(scene.image, scene.vials, seed, 1.0,
                                                    "varied"))
        changed = np.any(out != scene.image, axis=2)
        assert not (changed & ~inside).any()
        labelled += sum(changed[int(v.glass_top):int(v.glass_bottom),
                                int(v.box[0]):int(v.box[2])].mean() > 0.05 for v in scene.vials)
    assert labelled > 0.8 * 40 * len(scene.vials)
    unseen = add_paper_labels(scene.image, scene.vials, 0, 1.0, "unseen")
    varied = add_paper_labels(scene.image, scene.vials, 0, 1.0, "varied")
    dark, light = (np.any(x != scene.image, axis=2) for x in (unseen, varied))
    assert varied[light].mean() > 1.5 * unseen[dark].mean()
    with pytest.raises(ValueError, match="training labels"):
        write_labelled_images(Path("/nonexistent"), [0], "2d", style="check")


def _far_from_vials(scene, margin: int) -> np.ndarray:
    """Pixels more than `margin` px outside every vial box of `scene`."""
    near = np.zeros(scene.image.shape[:2], bool)
    for v in scene.vials:
        x1, y1, x2, y2 = (int(round(c)) for c in v.box)
        near[max(y1 - margin, 0):y2 + margin, max(x1 - margin, 0):x2 + margin] = True
    return ~near


def test_camera_labels_are_painted_before_the_camera_effects(tmp_path):
    """"camera" labels go onto the frame before gain, blur, noise and JPEG: the same scene
    and truths, every other draw unchanged (far from the vials, where neither blur nor a
    JPEG block reaches, not a pixel differs), the labels darkened and softened with the
    rest of a dark, blurred frame (seed 4), and the training frames write_labelled_images
    makes are these renders."""
    import cv2

    from mobile_chemist.vision.paper_labels import (add_paper_labels, label_seed,
                                                    write_labelled_images)
    from mobile_chemist.vision.scenes import iter_scenes
    from mobile_chemist.vision.synthetic import render_scene

    plain = render_scene(4)
    under = render_scene(4, labels=("camera", 1.0))
    assert under.vials == plain.vials
    assert np.array_equal(under.image, render_scene(4, labels=("camera", 1.0)).image)
    far = _far_from_vials(plain, 24)
    assert far.any() and np.array_equal(under.image[far], plain.image[far])
    # The same labels painted onto the finished frame, as the other styles are.
    after = add_paper_labels(plain.image, plain.vials, label_seed(4, "2d"), 1.0, "camera")
    label = np.any(after != plain.image, axis=2)
    assert label.mean() > 0.01
    assert under.image[label].mean() < 0.8 * after[label].mean()

    def sharpness(im):
        return np.abs(cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), cv2.CV_32F))[label].mean()

    assert sharpness(under.image) < 0.5 * sharpness(after)
    write_labelled_images(tmp_path, [4], "2d", fraction=1.0, style="camera")
    written = cv2.imread(str(tmp_path / "images" / "train" / "cs000000004.png"))
    assert np.array_equal(written, under.image)
    with pytest.raises(ValueError, match="random scenes only"):
        list(iter_scenes([4], "2d", kind="rack", labels=("camera", 1.0)))


def test_tall_labels_cover_most_of_the_glass_under_the_camera(tmp_path):
    """"tall": "camera" labels 40-85 % of the glass high (the "camera" ones 12-50 %), painted
    by the renderer before its camera effects; write_labelled_images writes those renders."""
    import cv2

    from mobile_chemist.vision.paper_labels import add_paper_labels, write_labelled_images
    from mobile_chemist.vision.synthetic import render_scene

    def label_heights(scene, style):
        # Painted onto the finished frame to see each label's rows; the glass's share of them.
        after = add_paper_labels(scene.image, scene.vials, 5, 1.0, style)
        changed = np.any(after != scene.image, axis=2)
        out = []
        for v in scene.vials:
            x1, y1, x2, y2 = (int(round(c)) for c in v.box)
            rows = np.flatnonzero(changed[y1:y2, x1:x2].any(axis=1))
            if len(rows):
                out.append((rows[-1] - rows[0] + 1) / (v.glass_bottom - v.glass_top))
        return np.array(out)

    scenes = [render_scene(s) for s in range(6)]
    tall = np.concatenate([label_heights(sc, "tall") for sc in scenes])
    camera = np.concatenate([label_heights(sc, "camera") for sc in scenes])
    assert len(tall) > 20 and tall.min() > 0.35 and np.median(tall) > 0.55
    assert camera.max() < 0.55 and np.median(camera) < 0.4
    under = render_scene(2, labels=("tall", 0.7))
    assert under.vials == scenes[2].vials and not np.array_equal(under.image, scenes[2].image)
    write_labelled_images(tmp_path, [2], "2d", style="tall")
    written = cv2.imread(str(tmp_path / "images" / "train" / "ts000000002.png"))
    assert np.array_equal(written, under.image)


def test_rack_camera_views_are_random_racks_filling_the_frame():
    """`random_rack_view`: the station-camera framing for training, a function of its seed."""
    from mobile_chemist.vision.scenes import iter_scenes
    from mobile_chemist.vision.synthetic import random_rack_view

    views = [random_rack_view(s) for s in range(40)]
    assert random_rack_view(3) == views[3] and views[3] != views[4]
    assert {v.vial_type for v in views} == set(DETECTOR_CLASSES)
    assert {spec.content for v in views for spec in v.slots if spec} == set(Phase)
    assert all(4 <= len(v.slots) <= 16 for v in views)
    scenes = list(iter_scenes([3, 4], "2d", kind="rack"))
    for scene, view in zip(scenes, views[3:5]):
        # Every filled slot is one labelled vial, with the content its spec says.
        assert scene.slots == [i for i, spec in enumerate(view.slots) if spec]
        assert [v.content for v in scene.vials] == [int(view.slots[i].content) for i in scene.slots]
        boxes = np.array([v.box for v in scene.vials])
        assert boxes[:, 2].max() - boxes[:, 0].min() > 0.5 * scene.image.shape[1]
    with pytest.raises(ValueError, match="scene kind"):
        next(iter_scenes([0], "2d", kind="shelf"))


def test_edge_rows_move_each_rack_to_an_edge_of_the_frame():
    """`render_scene(edge_rows=True)` (scene kind "edge"): each row moved sideways so that
    its end slot stands 3-11 px from the left or right edge, the vials whole."""
    from mobile_chemist.vision.scenes import iter_scenes

    seeds = range(30)
    plain = list(iter_scenes(seeds, "2d"))
    edge = list(iter_scenes(seeds, "2d", kind="edge"))
    sides, at_edge = set(), 0
    for e in edge:
        w = e.image.shape[1]
        assert all(0 < v.box[0] and v.box[2] < w for v in e.vials)
        # 3-11 px, and the slot's jitter (3 % of the pitch) on top.
        left = any(v.box[0] < 16 for v in e.vials)
        right = any(v.box[2] > w - 16 for v in e.vials)
        sides |= {name for name, there in (("left", left), ("right", right)) if there}
        at_edge += left or right
    assert sides == {"left", "right"} and at_edge >= 24   # an empty end slot: 1 in 10
    near = sum(any(v.box[0] < 16 or v.box[2] > 624 for v in s.vials) for s in plain)
    assert near < 0.5 * at_edge   # the plain scenes put a vial there far less often
    again = next(iter_scenes([7], "2d", kind="edge"))
    assert np.array_equal(again.image, edge[7].image) and again.vials == edge[7].vials
    with pytest.raises(ValueError, match="no 'edge' scenes"):
        next(iter_scenes([0], "mujoco", kind="edge"))


def test_the_plan_can_add_rack_camera_views_to_both_training_sets(monkeypatch, tmp_path):
    from mobile_chemist.vision import segmenter, train
    from mobile_chemist.vision.cli import build_parser, plan_from_args

    written = _record_dataset_writes(monkeypatch, train)
    plan = train.TrainPlan(det_train_images=2, det_val_images=1, det_mujoco_train_images=1,
                           det_mujoco_val_images=1, det_mujoco_rack_images=3)
    data = train.detector_data(plan, "mix", tmp_path, log=lambda _: None)
    assert data.parent.name.endswith("_mj1_rk3_v%d" % train.GENERATOR_VERSION)
    assert [(w["renderer"], w["kind"], len(w["train_seeds"]), w["variants"])
            for w in written] == [("2d", "random", 2, True), ("mujoco", "random", 1, True),
                                  ("mujoco", "rack", 3, True)]
    # Without the variants every part is drawn without them, into a set of its own.
    written.clear()
    plain = train.detector_data(dataclasses.replace(plan, det_variants=False), "mix", tmp_path,
                                log=lambda _: None)
    assert plain.parent.name.endswith("_mj1_rk3_novar_v%d" % train.GENERATOR_VERSION)
    assert [w["variants"] for w in written] == [False, False, False]
    made = []

    def crops(seeds, **kw):
        made.append((kw["renderer"], kw["kind"], len(seeds)))
        return _tiny_crops()

    monkeypatch.setattr(segmenter, "make_crops", crops)
    plan = train.TrainPlan(seg_scenes=1, seg_mujoco_scenes=0, seg_mujoco_rack_scenes=2)
    assert len(train.segmenter_data(plan, tmp_path, log=lambda _: None)) == 2 * len(_tiny_crops())
    assert made == [("2d", "random", 1), ("mujoco", "rack", 2)]
    assert list(tmp_path.glob("seg_crops_mujoco_rack_0-2_*.npz"))
    parsed = plan_from_args(build_parser().parse_args(
        ["train", "--seg-mujoco-rack-scenes", "500", "--det-mujoco-rack-images", "100"]))
    assert (parsed.seg_mujoco_rack_scenes, parsed.det_mujoco_rack_images) == (500, 100)


def test_the_segmenter_trains_on_the_plans_threads_not_what_ultralytics_left(monkeypatch,
                                                                              tmp_path):
    """In one `vision train` run the detector trains first, and ultralytics leaves torch at
    cpu_count - 1 threads; the segmenter must train on the plan's count anyway."""
    import torch
    from mobile_chemist.vision import segmenter, train
    from mobile_chemist.vision.cli import build_parser, plan_from_args

    seen = []
    monkeypatch.setattr(train, "segmenter_data", lambda plan, work, log: _tiny_crops())
    monkeypatch.setattr(segmenter, "train_segmenter",
                        lambda data, out, **kw: seen.append(torch.get_num_threads()) or out)
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # what ultralytics leaves on a 2-core machine
    try:
        train.train_phase_segmenter(train.TrainPlan(seg_threads=3), tmp_path, log=lambda _: None)
    finally:
        torch.set_num_threads(before)
    assert seen == [3]
    assert plan_from_args(build_parser().parse_args(["train", "--seg-threads", "4"])
                          ).seg_threads == 4


def _tiny_crops():
    from mobile_chemist.vision.segmenter import CropSet
    return CropSet(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4), np.int64),
                   np.zeros(2, np.int64), np.zeros(2, np.int64), np.ones(2, np.float32))


@pytest.mark.skipif(not HAVE_MODELS, reason="models/ not trained")
def test_false_vials_are_counted_in_photographs_without_vials(tmp_path):
    import cv2

    from mobile_chemist.vision import evaluation
    from mobile_chemist.vision.cli import build_parser, photos_from_args

    grey = np.full((480, 640, 3), 128, np.uint8)
    scene = render_scene(10_000_002)
    cv2.imwrite(str(tmp_path / "b_bench.png"), grey)
    cv2.imwrite(str(tmp_path / "a_rack.png"), scene.image)
    (tmp_path / "notes.txt").write_text("not a photograph")
    photos = evaluation.vial_free_photos(tmp_path)
    assert [p.name for p in photos] == ["a_rack.png", "b_bench.png"]
    pipe = VisionPipeline()
    res = evaluation.false_vials(pipe, photos)
    # A plain grey frame shows nothing; a frame that does show vials is all "false" here.
    assert res["per_photo"]["b_bench.png"] == []
    found = pipe.backends["synthetic"].detect(scene.image)
    assert len(res["per_photo"]["a_rack.png"]) == len(found) > 0
    assert res["false_vials"] == len(found) and res["photos"] == 2
    line = evaluation.report({"sets": {}, "photos_without_vials": {"synthetic": res}})
    assert f"{len(found)} false vials in 2 photographs (most: {len(found)} in a_rack.png" in line
    # Bad input: an unreadable photograph is named, an empty or missing directory refused.
    (tmp_path / "c_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match="c_broken.jpg"):
        evaluation.false_vials(pipe, evaluation.vial_free_photos(tmp_path))
    cv2.imwrite(str(tmp_path / "d_strip.png"), np.zeros((8, 640, 3), np.uint8))
    with pytest.raises(ImageError, match="d_strip.png: image size 640x8"):
        evaluation.false_vials(pipe, [tmp_path / "d_strip.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no photographs"):
        evaluation.vial_free_photos(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        evaluation.vial_free_photos(tmp_path / "missing")
    assert photos_from_args(build_parser().parse_args(["eval", "--photos", "none"])) == []
    # By default the photographs that the vision requirements ship (ultralytics, scikit-learn,
    # matplotlib, scikit-image), every one of them there; those that chose stage 7 counted apart.
    shipped = photos_from_args(build_parser().parse_args(["eval"]))
    assert [p.name for p in shipped] == [Path(rel).name for _, rel in evaluation.SHIPPED_PHOTOS]
    chose = shipped[0]
    assert chose.name == "bus.jpg"
    both = evaluation.false_vials(pipe, [chose, tmp_path / "a_rack.png"])
    assert both["choice_photos"] == 1 and res["choice_photos"] == 0
    assert both["false_vials_in_choice_photos"] == len(both["per_photo"]["bus.jpg"])
    assert f"in the 1 that chose detector stages 7 and 8, {len(found)} in the other 1" in \
        evaluation.report({"sets": {}, "photos_without_vials": {"synthetic": both}})
