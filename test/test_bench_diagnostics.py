"""The helpers of the vision diagnostics in bench/ on answers worked out by hand."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_box_moves_and_grows_by_fractions_of_its_width():
    moved = _load("segmenter_shift").moved
    assert moved((10, 0, 30, 50), shift=0.1) == pytest.approx((12, 0, 32, 50))
    assert moved((10, 0, 30, 50), shift=-0.1) == pytest.approx((8, 0, 28, 50))
    assert moved((10, 0, 30, 50), grow=0.1) == pytest.approx((8, 0, 32, 50))
    assert moved((10, 0, 30, 50), grow=-0.1) == pytest.approx((12, 0, 28, 50))


def test_a_fill_error_is_traced_to_the_glass_or_to_the_liquid_top():
    from mobile_chemist.vision.metrics import fill_parts

    truth = SimpleNamespace(glass_top=100.0, glass_bottom=200.0, fill_level=0.5)  # top at 150
    # Glass top read 10 px low, liquid top right: 50 / 90 of the glass read as filled.
    wrong_glass = SimpleNamespace(glass_top=110.0, glass_bottom=200.0, fill_level=50 / 90)
    assert fill_parts(wrong_glass, truth) == pytest.approx((0.0, 50 / 90 - 0.5))
    # Glass right, liquid top read 10 px low.
    wrong_top = SimpleNamespace(glass_top=100.0, glass_bottom=200.0, fill_level=0.4)
    assert fill_parts(wrong_top, truth) == pytest.approx((0.1, 0.0))
    # No glass read at all: the whole error stays in both.
    none = SimpleNamespace(glass_top=float("nan"), glass_bottom=float("nan"), fill_level=0.0)
    assert fill_parts(none, truth) == pytest.approx((0.5, 0.5))


def test_a_fill_tail_vial_is_put_down_to_one_cause():
    from mobile_chemist.vision.metrics import tail_cause

    truth = SimpleNamespace(glass_top=100.0, glass_bottom=200.0, fill_level=0.5)

    def read(fill, glass_top=100.0):
        return SimpleNamespace(glass_top=glass_top, glass_bottom=200.0, fill_level=fill)

    assert tail_cause(read(0.52), truth, 0.05) == "the box"       # right on the true box
    assert tail_cause(read(0.0), truth, 0.05) == "contents missed"
    assert tail_cause(read(0.3), SimpleNamespace(glass_top=100.0, glass_bottom=200.0,
                                                 fill_level=0.0), 0.05) == "contents invented"
    # Surface read at row 150 (right) on a glass read from row 130: 50 / 70 = 0.71.
    assert tail_cause(read(50 / 70, glass_top=130.0), truth, 0.05) == "glass extent"
    assert tail_cause(read(0.35), truth, 0.05) == "top of the contents"


def test_the_diagnostics_read_validation_seeds_unless_told_held_out(monkeypatch):
    import argparse

    from mobile_chemist.vision import scenes
    from mobile_chemist.vision.synthetic import EVAL_SEED_BASE, VAL_SEED_BASE

    asked = []
    monkeypatch.setattr(scenes, "iter_scenes",
                        lambda seeds, renderer, workers, kind, labels, n_vials:
                        asked.append((list(seeds), renderer, kind, n_vials)) or [])
    parser = argparse.ArgumentParser()
    scenes.add_scene_arguments(parser, scenes=60)
    assert parser.parse_args([]).scenes == 60
    scenes.scene_sets(parser.parse_args(["--scenes", "2"]))
    scenes.scene_sets(parser.parse_args(["--scenes", "1", "--held-out", "--kind", "rack"]))
    # Edge rows: the 2-D generator only draws them.
    scenes.scene_sets(parser.parse_args(["--scenes", "1", "--kind", "edge", "--vials", "16"]))
    assert asked == [([VAL_SEED_BASE, VAL_SEED_BASE + 1], "2d", "random", None),
                     ([VAL_SEED_BASE, VAL_SEED_BASE + 1], "mujoco", "random", None),
                     ([EVAL_SEED_BASE], "2d", "rack", None), ([EVAL_SEED_BASE], "mujoco", "rack", None),
                     ([VAL_SEED_BASE], "2d", "edge", 16)]


def test_two_configs_racks_fill_tails_are_compared_on_the_same_vials():
    difference = _load("campaign_racks").fill_p95_difference
    key = ("capper", "liquid >= 1 mL")
    # Ten vials, two looks each; the second config reads vial 9 far off.
    ids = [f"v{i}" for i in range(10) for _ in range(2)]
    a = {"fill_err": {key: [0.01] * 20}, "fill_vial": {key: ids}}
    b = {"fill_err": {key: [0.01] * 18 + [0.3, 0.3]}, "fill_vial": {key: ids}}
    diff, (lo, hi) = difference(a, b, key)
    assert diff == pytest.approx(0.3 - 0.01)   # p95 of 20 readings: the two 0.3 lie above it
    assert lo == pytest.approx(0.0) and hi == pytest.approx(0.29)   # resamples without v9: 0
    assert difference(a, a, key) == (0.0, [0.0, 0.0])


def test_a_threshold_trades_missed_vials_for_false_boxes():
    from mobile_chemist.vision.metrics import counts_at_threshold, f1
    from mobile_chemist.vision.pipeline import Detection

    truth = [SimpleNamespace(box=(0, 0, 10, 30), vial_type=0),
             SimpleNamespace(box=(20, 0, 30, 30), vial_type=0)]
    dets = [Detection(box=(0, 0, 10, 30), confidence=0.9),     # the first vial
            Detection(box=(21, 0, 31, 30), confidence=0.3),    # the second, IoU 0.82
            Detection(box=(50, 0, 60, 30), confidence=0.2)]    # nothing there
    assert counts_at_threshold([dets], [truth], 0.1) == (2, 1, 0)
    assert counts_at_threshold([dets], [truth], 0.25) == (2, 0, 0)
    assert counts_at_threshold([dets], [truth], 0.5) == (1, 0, 1)
    assert counts_at_threshold([dets, []], [truth, truth[:1]], 0.25) == (2, 0, 1)
    assert f1(2, 1, 0) == pytest.approx(0.8) and f1(2, 0, 0) == 1.0 and f1(0, 0, 0) == 0.0


def test_misses_split_by_the_height_of_the_vials_box():
    """`missed_by_height`: the matching of counts_at_threshold, each vial counted in the band
    of its box height (a box exactly at an edge goes to the band above)."""
    from mobile_chemist.vision.metrics import missed_by_height
    from mobile_chemist.vision.pipeline import Detection

    truth = [SimpleNamespace(box=(0, 0, 10, 30), vial_type=0),     # 30 px: under 40
             SimpleNamespace(box=(20, 0, 30, 40), vial_type=0),    # 40 px: 40-60
             SimpleNamespace(box=(40, 0, 50, 80), vial_type=0)]    # 80 px: 60 and taller
    dets = [Detection(box=(20, 0, 30, 40), confidence=0.9),
            Detection(box=(40, 0, 50, 80), confidence=0.1)]        # under the threshold
    assert missed_by_height([dets], [truth], 0.5) == [(1, 1), (0, 1), (1, 1)]
    assert missed_by_height([dets], [truth], 0.05) == [(1, 1), (0, 1), (0, 1)]
    assert missed_by_height([dets, []], [truth, truth[:1]], 0.05, edges=(35,)) == [(2, 2), (0, 2)]


def test_a_frame_is_complete_when_every_vial_in_it_is_found():
    """`frames_complete`: frames whose every vial a box at the threshold matches."""
    from mobile_chemist.vision.metrics import frames_complete
    from mobile_chemist.vision.pipeline import Detection

    truth = [SimpleNamespace(box=(0, 0, 10, 30), vial_type=0),
             SimpleNamespace(box=(20, 0, 30, 40), vial_type=0)]
    both = [Detection(box=(0, 0, 10, 30), confidence=0.9),
            Detection(box=(20, 0, 30, 40), confidence=0.2)]
    one = both[:1] + [Detection(box=(60, 0, 70, 40), confidence=0.9)]   # a false box instead
    assert frames_complete([both, one, []], [truth, truth, []], 0.1) == 2   # no vials: complete
    assert frames_complete([both, one], [truth, truth], 0.5) == 0


def _textured(h=60, w=80):
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w]
    grey = 60 + 120 * (((yy // 6) + (xx // 6)) % 2) + xx // 2
    return np.stack([grey, grey * 0.8, grey * 0.6], axis=-1).astype(np.uint8)


def test_each_camera_change_is_seeded_and_stronger_at_its_second_severity():
    import numpy as np

    from mobile_chemist.vision.corruptions import CORRUPTIONS, corrupt

    img = _textured()
    for name, (mild, strong) in CORRUPTIONS.items():
        a, b = corrupt(img, name, mild, seed=3), corrupt(img, name, mild, seed=3)
        assert a.shape == img.shape and a.dtype == np.uint8, name
        assert np.array_equal(a, b), name
        far = [np.abs(corrupt(img, name, s, seed=3).astype(float) - img).mean()
               for s in (mild, strong)]
        assert 0 < far[0] < far[1], (name, far)
    # A warm cast raises red and lowers blue; low gain darkens.
    warm = corrupt(img, "cast", 0.3).astype(float)
    assert warm[..., 2].mean() > img[..., 2].mean() and warm[..., 0].mean() < img[..., 0].mean()
    assert corrupt(img, "dark", 0.5).mean() == pytest.approx(img.mean() * 0.5, abs=0.5)


def test_a_smear_spreads_a_point_along_a_line_of_its_length():
    import numpy as np

    from mobile_chemist.vision.corruptions import _smear_kernel

    k = _smear_kernel(9, 0.0)
    assert k.sum() == pytest.approx(1.0)
    assert np.count_nonzero(k.sum(axis=1)) == 1          # one row: horizontal
    assert np.count_nonzero(k.sum(axis=0)) == 9          # across the whole length
    kv = _smear_kernel(9, np.pi / 2)
    assert np.count_nonzero(kv.sum(axis=0)) == 1 and np.count_nonzero(kv.sum(axis=1)) == 9


def test_an_unknown_camera_change_or_image_is_refused_by_name():
    import numpy as np

    from mobile_chemist.vision.corruptions import corrupt

    with pytest.raises(ValueError, match="unknown image change 'fog'.*blur"):
        corrupt(_textured(), "fog", 1.0)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(np.zeros((4, 4), np.float32), "blur", 1.0)


def test_changed_scenes_keep_their_labels_and_seed_each_image_by_its_scene():
    import numpy as np

    from mobile_chemist.vision.synthetic import Scene

    changed = _load("camera_shift").changed
    scenes = [Scene(image=_textured(), vials=["v"], seed=s) for s in (1, 2)]
    out = changed(scenes, "noise", 10.0)
    assert [s.vials for s in out] == [["v"], ["v"]] and [s.seed for s in out] == [1, 2]
    assert not np.array_equal(out[0].image, out[1].image)      # each scene its own noise
    assert np.array_equal(changed(scenes, "noise", 10.0)[0].image, out[0].image)
    assert np.array_equal(scenes[0].image, _textured())         # the rendered frame untouched


def test_frame_figures_follow_blur_noise_and_exposure():
    import cv2
    import numpy as np

    from mobile_chemist.vision.frame_quality import measure

    # Stripes 24 px wide: a sharp edge rises in a pixel or two, a blurred one over several
    # sigma (the Gaussian's tails), whatever the stripes' contrast.
    stripes = np.repeat(np.repeat(np.where((np.arange(240) // 24) % 2, 200, 50)[None, :], 120,
                                  axis=0)[..., None], 3, axis=2).astype(np.uint8)
    widths = [measure(stripes).edge_width] + [
        measure(cv2.GaussianBlur(stripes, (0, 0), s)).edge_width for s in (1.0, 2.5)]
    assert 1 <= widths[0] <= 2 < widths[1] < widths[2], widths
    img = _textured(120, 160)
    sharp = measure(img)
    # Noise of a known sigma on a smooth frame is read back; the edges of a textured one
    # are not taken for noise.
    yy, xx = np.mgrid[0:240, 0:320]
    smooth = np.repeat((60 + xx * 0.4 + yy * 0.2)[..., None], 3, axis=2)
    rng = np.random.default_rng(0)
    for sigma in (4.0, 10.0):
        noisy = np.clip(smooth + rng.normal(0, sigma, smooth.shape[:2])[..., None], 0, 255)
        assert measure(noisy.astype(np.uint8)).noise == pytest.approx(sigma, rel=0.2)
    assert measure(smooth.astype(np.uint8)).noise < 0.5
    squares = (((yy // 24) + (xx // 24)) % 2 * 120 + 60).astype(np.uint8)
    assert measure(np.repeat(squares[..., None], 3, axis=2)).noise < 0.5
    white = np.full((40, 40, 3), 255, np.uint8)
    white[:10] = 100
    q = measure(white)
    assert q.clipped == pytest.approx(0.75) and q.mean_level == pytest.approx(216.25)


def test_frame_limits_name_each_figure_past_them_and_refuse_unknown_keys():
    from mobile_chemist.vision.frame_quality import FrameLimits, FrameQuality

    limits = FrameLimits.from_config({"max_edge_width": 9, "max_noise": 4, "min_mean_level": 25,
                                      "max_mean_level": 239, "max_clipped": 0.5})
    fine = FrameQuality(edge_width=3.0, noise=1.0, mean_level=100.0, clipped=0.0)
    assert limits.problems(fine) == []
    bad = FrameQuality(edge_width=12.0, noise=9.0, mean_level=10.0, clipped=0.6)
    said = limits.problems(bad)
    assert [p.split(" ")[0] for p in said] == ["blurred", "noisy", "dark", "overexposed"]
    assert "noise sigma 9.0 > 4" in said[1] and said[0] == "blurred (edge width 12 px > 9)"
    assert limits.problems(FrameQuality(3.0, 1.0, 250.0, 0.0)) == ["bright (mean level 250 > 239)"]
    assert FrameLimits.from_config(None).problems(bad) == []     # no limits: nothing said
    with pytest.raises(ValueError, match="unknown frame_limits keys \\['max_nois'\\]"):
        FrameLimits.from_config({"max_nois": 4})


def test_the_committed_limits_pass_rendered_frames_and_flag_a_noisy_one():
    from mobile_chemist.vision.corruptions import corrupt
    from mobile_chemist.vision.frame_quality import FrameLimits, measure
    from mobile_chemist.vision.pipeline import load_config
    from mobile_chemist.vision.synthetic import render_scene

    limits = FrameLimits.from_config(load_config()["frame_limits"])
    for seed in (5_003_600, 5_003_601, 5_003_602):   # frames the limits were set on
        image = render_scene(seed).image
        assert limits.problems(measure(image)) == []
        said = limits.problems(measure(corrupt(image, "noise", 18.0, seed)))
        assert said and said[0].startswith("noisy")
