"""The vision node: message conversion, and the node on a real ROS 2 graph."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mobile_chemist.srv")

from mobile_chemist.msg import VialDetections
from mobile_chemist.srv import InspectVials
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from mobile_chemist.ros.common import HandoffExecutor
from mobile_chemist.ros.vision_node import array_to_image, detection_to_msg, image_to_array
from mobile_chemist.vision.classes import Phase, VialType
from mobile_chemist.vision.pipeline import Detection, ImageError, Layer
from mobile_chemist.vision.synthetic import render_scene

REPO = Path(__file__).resolve().parent.parent
HAVE_MODELS = (REPO / "models" / "vial_detector.pt").is_file() and \
    (REPO / "models" / "phase_segmenter.pt").is_file()


def _img(arr: np.ndarray, encoding: str = "bgr8", frame: str = "camera") -> Image:
    msg = array_to_image(arr, Header(frame_id=frame))
    msg.encoding = encoding
    return msg


def test_image_round_trip_and_encodings():
    bgr = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    assert np.array_equal(image_to_array(_img(bgr)), bgr)
    rgb_msg = _img(np.ascontiguousarray(bgr[..., ::-1]), "rgb8")
    assert np.array_equal(image_to_array(rgb_msg), bgr)
    mono = bgr[..., 0].copy()
    assert np.array_equal(image_to_array(array_to_image(mono, Header()))[..., 2], mono)
    # Rows padded to a longer step.
    padded = np.zeros((40, 64, 3), np.uint8)
    padded[:, :60] = bgr
    msg = Image(height=40, width=60, encoding="bgr8", step=64 * 3, data=padded.tobytes())
    assert np.array_equal(image_to_array(msg), bgr)


@pytest.mark.parametrize("msg, why", [
    (Image(height=0, width=0, encoding="bgr8"), "empty"),
    (Image(height=40, width=60, encoding="bgr8", step=180, data=bytes(100)), "truncated"),
    (Image(height=40, width=60, encoding="32FC1", step=240, data=bytes(9600)), "encoding"),
    (Image(height=40, width=60, encoding="bgr8", step=10, data=bytes(9600)), "step"),
])
def test_bad_image_messages(msg, why):
    with pytest.raises(ImageError, match=why):
        image_to_array(msg)


def test_detection_to_msg():
    d = Detection(box=(1, 2, 30, 90), confidence=0.9, vial_type=VialType.VIAL_4ML,
                  type_confidence=0.8, cap_present=True, cap_confidence=0.95,
                  content=Phase.TWO_LIQUID, content_confidence=0.7,
                  layers=[Layer(40, 60, Phase.HOMOGENEOUS, 0.9), Layer(60, 88, Phase.HOMOGENEOUS, 0.8)],
                  fill_level=0.6, backend="synthetic", mask=np.zeros((100, 120), np.uint8))
    m = detection_to_msg(d, Header(frame_id="cam"))
    assert (m.x_min, m.y_min, m.x_max, m.y_max) == (1, 2, 30, 90)
    assert m.vial_type == m.TYPE_VIAL_4ML and m.vial_type_name == "vial_4ml"
    assert m.cap_present and m.content == 4 and m.content_name == "two_liquid"
    assert [p.phase_name for p in m.phases] == ["homogeneous", "homogeneous"]
    assert m.phases[0].top == 40 and m.phases[1].bottom == 88
    assert abs(m.fill_level - 0.6) < 1e-6 and m.backend == "synthetic"
    assert m.mask.width == 120 and m.mask.encoding == "mono8"


class Client:
    def __init__(self, topic: str):
        rclpy.init()
        self.node = Node("vision_test_client")
        self.pub = self.node.create_publisher(Image, topic, qos_profile_sensor_data)
        self.got: list[VialDetections] = []
        self.annotated: list[Image] = []
        self.node.create_subscription(VialDetections, "/vision/detections", self.got.append, 10)
        self.node.create_subscription(Image, "/vision/annotated", self.annotated.append, 1)
        self.cli = self.node.create_client(InspectVials, "/vision/inspect")
        self.ex = HandoffExecutor()
        self.ex.add_node(self.node)
        threading.Thread(target=self.ex.spin, daemon=True).start()

    def wait(self, cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return False

    def inspect(self, max_age: float = 0.0, timeout: float = 60.0):
        done = threading.Event()
        fut = self.cli.call_async(InspectVials.Request(max_age_s=max_age))
        fut.add_done_callback(lambda _: done.set())
        assert done.wait(timeout), "no answer from /vision/inspect"
        return fut.result()

    def close(self):
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.shutdown()


@pytest.fixture(scope="module")
def vision_graph():
    if not HAVE_MODELS:
        pytest.skip("models/ not trained")
    topic = "/test_camera/image"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "nodes" / "vision"), "--ros-args", "-p",
         f"image_topic:={topic}", "-p", "rate_hz:=5.0", "-p", "camera_timeout_s:=1.0"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(l) for l in proc.stdout], daemon=True).start()
    client = Client(topic)
    try:
        assert client.cli.wait_for_service(timeout_sec=90), "".join(lines)
        yield client, proc, lines
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_node_detects_vials_in_a_published_image(vision_graph):
    client, _, lines = vision_graph
    resp = client.inspect()
    assert not resp.success and "no image" in resp.message
    scene = render_scene(10_000_002)
    msg = _img(scene.image, frame="rack_camera")
    assert client.wait(lambda: (client.pub.publish(msg), bool(client.got))[1], 60), "".join(lines)
    out = client.got[-1]
    assert out.header.frame_id == "rack_camera"
    assert len(out.detections) >= 1  # accuracy: bench/vision.py
    assert out.latency_ms > 0
    assert client.wait(lambda: bool(client.annotated), 10)
    assert client.annotated[-1].width == 640 and client.annotated[-1].encoding == "bgr8"
    resp = client.inspect(max_age=30.0)
    assert resp.success, resp.message
    assert resp.detections.header.frame_id == "rack_camera"
    assert len(resp.detections.detections) == len(out.detections)


def test_node_survives_bad_images_and_a_silent_camera(vision_graph):
    client, proc, lines = vision_graph
    # Sensor-data QoS is best effort: publish until the node has the image.
    def refused(msg, why):
        return client.wait(lambda: (client.pub.publish(msg), why in client.inspect().message)[1], 20)

    bad = Image(height=480, width=640, encoding="bgr8", step=1920, data=bytes(1000))
    assert refused(bad, "truncated"), "".join(lines)
    assert refused(_img(np.zeros((8, 4000, 3), np.uint8)), "size")
    assert refused(_img(render_scene(3).image, encoding="yuv422"), "encoding")
    # An image older than max_age_s is refused; the camera-silent warning is logged.
    time.sleep(1.5)
    assert "old" in client.inspect(max_age=0.5).message
    assert client.wait(lambda: any("camera silent" in l for l in lines), 10), "".join(lines)
    # Still alive: a good image is inspected again.
    good = _img(render_scene(10_000_003).image)
    assert client.wait(lambda: (client.pub.publish(good), client.inspect().success)[1], 20)
    assert proc.poll() is None


def test_missing_model_is_reported_and_the_node_keeps_running(tmp_path):
    import yaml
    from rclpy.parameter import Parameter

    from mobile_chemist.ros.vision_node import VisionNode
    from mobile_chemist.vision.pipeline import load_config

    cfg = load_config()
    cfg["backends"]["synthetic"]["detector"] = str(tmp_path / "missing_detector.pt")
    path = tmp_path / "vision.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ctx = rclpy.Context()  # the graph fixture's default context may still be up
    ctx.init()
    try:
        node = VisionNode(context=ctx, parameter_overrides=[Parameter("config", value=str(path))])
        assert node.pipeline is None and "missing_detector.pt" in node.pipeline_error
        resp = node._inspect(InspectVials.Request(), InspectVials.Response())
        assert not resp.success and "missing_detector.pt" in resp.message
        node._tick()  # the timer does nothing harmful without models
        node.destroy_node()
    finally:
        ctx.shutdown()


def test_on_demand_images_are_reliable_end_to_end():
    """The campaign's camera publishes reliably and its vision node subscribes reliably (a
    best-effort frame of ~1 MB is often lost on a busy machine); by default the node keeps
    sensor-data QoS, which a best-effort camera driver needs."""
    from rclpy.parameter import Parameter
    from rclpy.qos import ReliabilityPolicy

    from mobile_chemist.graph import vision_node
    from mobile_chemist.ros.vision_node import VisionNode

    assert vision_node().parameters["image_reliable"] is True
    ctx = rclpy.Context()
    ctx.init()
    try:
        for reliable, policy in ((True, ReliabilityPolicy.RELIABLE),
                                 (False, ReliabilityPolicy.BEST_EFFORT)):
            node = VisionNode(pipeline=object(), context=ctx, parameter_overrides=[
                Parameter("image_topic", value=f"/qos_test_{reliable}"),
                Parameter("image_reliable", value=reliable), Parameter("rate_hz", value=0.0)])
            info = node.get_subscriptions_info_by_topic(f"/qos_test_{reliable}")
            assert [i.qos_profile.reliability for i in info] == [policy]
            node.destroy_node()
    finally:
        ctx.shutdown()


def test_look_asks_the_camera_again_and_gives_up_after_its_timeout():
    """LabClient.look: a new capture every recapture_after_s until vision reads an image
    newer than the look, and a failed Look (not a hang) after look_timeout_s."""
    from std_srvs.srv import Trigger

    from mobile_chemist.msg import VialDetection
    from mobile_chemist.ros.lab_client import LabClient

    ctx = rclpy.Context()
    ctx.init()
    captures: list[float] = []
    fresh_after = {"captures": 10**9}  # vision reads a fresh image from this capture on

    def capture(_req, resp):
        captures.append(time.monotonic())
        resp.success = True
        return resp

    def inspect(_req, resp):
        resp.success = len(captures) >= fresh_after["captures"]
        resp.message = "1 vials" if resp.success else "no image newer than 0.5 s"
        resp.caution = "frame unlike the models' training frames: dark" if resp.success else ""
        if resp.success:
            resp.detections.detections = [VialDetection(x_min=10.0, x_max=40.0, y_min=5.0,
                                                        y_max=90.0, cap_present=True)]
        return resp

    ex = HandoffExecutor(context=ctx)
    try:
        # Names of this test's own: the module's vision node (vision_graph) may still serve
        # /vision/inspect, and a client takes whichever server answers first.
        camera = Node("fake_camera_and_vision", context=ctx)
        camera.create_service(Trigger, "/look_test/capture", capture)
        camera.create_service(InspectVials, "/look_test/inspect", inspect)
        planner = Node("look_test_planner", context=ctx, cli_args=[
            "--ros-args", "-r", "/vision/inspect:=/look_test/inspect"])
        client = LabClient(planner, capture_service="/look_test/capture",
                           look_timeout_s=1.5, recapture_after_s=0.4)
        for n in (camera, planner):
            ex.add_node(n)
        threading.Thread(target=ex.spin, daemon=True).start()
        began = time.monotonic()
        look = client.look("r1", "capper")
        took = time.monotonic() - began
        assert not look.success and "no fresh reading after 1.5 s" in look.message
        assert "no image newer" in look.message
        assert 1.4 < took < 10.0
        assert len(captures) >= 3  # one at the start, then one per 0.4 s without a reading
        assert min(np.diff(captures)) >= 0.35
        # Vision reads a fresh image after the second capture of the next look.
        fresh_after["captures"] = len(captures) + 2
        look = client.look("r2", "capper")
        assert look.success and len(look.vials) == 1 and look.vials[0].cap_present
        assert look.caution == "frame unlike the models' training frames: dark"
        assert len(captures) == fresh_after["captures"]
    finally:
        ex.shutdown()
        ctx.shutdown()


def test_inspection_says_when_a_frame_is_unlike_the_training_frames(vision_graph):
    from mobile_chemist.vision.corruptions import corrupt

    client, proc, lines = vision_graph
    image = render_scene(5_003_600).image     # inside config/vision.yaml's frame_limits
    said = []

    def answer_to(msg):
        client.pub.publish(msg)
        resp = client.inspect()
        said.append((resp.success, resp.message, resp.caution))
        return resp

    assert client.wait(lambda: (r := answer_to(_img(image))).success and not r.caution, 20), said
    # The noisy frame is still read, and the answer says what is wrong with it.
    noisy = _img(corrupt(image, "noise", 18.0, seed=0))
    assert client.wait(lambda: (r := answer_to(noisy)).success and "noisy" in r.caution, 20), said
    assert said[-1][2].startswith("frame unlike the models' training frames: noisy (noise sigma")
    assert said[-1][1].endswith("vials")
    assert client.wait(lambda: any("frame unlike" in line for line in lines), 10)
    assert proc.poll() is None
