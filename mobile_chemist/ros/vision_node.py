"""vision node: vials, caps, phases and fill levels from a camera image.

Subscribes a sensor_msgs/Image topic (sensor-data QoS), runs
`mobile_chemist.vision.pipeline.VisionPipeline` at a fixed rate on the latest image, and
publishes /vision/detections (VialDetections) and /vision/annotated (an image for RViz);
/vision/inspect (InspectVials) inspects the latest image on demand. Bad images, a missing
model file or a silent camera are reported (log, service message) and the node keeps
running; a missing model is looked for again every `model_retry_s`.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from mobile_chemist.msg import VialDetection, VialDetections, VialPhase
from mobile_chemist.ros.common import ON_DEMAND_IMAGE_QOS, declare, spin_node
from mobile_chemist.srv import InspectVials
from mobile_chemist.vision.pipeline import (
    Detection,
    ImageError,
    ModelError,
    VisionPipeline,
    annotate,
    load_config,
)

#: sensor_msgs/Image encodings accepted, with their channel count and channel order.
ENCODINGS = {"bgr8": (3, None), "rgb8": (3, [2, 1, 0]), "bgra8": (4, [0, 1, 2]),
             "rgba8": (4, [2, 1, 0]), "mono8": (1, None)}


def image_to_array(msg: Image) -> np.ndarray:
    """BGR uint8 H x W x 3 array from a sensor_msgs/Image; ImageError when unusable."""
    enc = msg.encoding.lower()
    if enc not in ENCODINGS:
        raise ImageError(f"unsupported encoding {msg.encoding!r} (use one of "
                         f"{', '.join(ENCODINGS)})")
    channels, order = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ImageError(f"empty image ({w}x{h})")
    if step < w * channels:
        raise ImageError(f"step {step} too small for {w} pixels of {enc}")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size < step * h:
        raise ImageError(f"truncated image: {data.size} bytes, expected {step * h} "
                         f"({w}x{h} {enc}, step {step})")
    rows = data[:step * h].reshape(h, step)[:, :w * channels]
    img = rows.reshape(h, w, channels)
    if channels == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    return np.ascontiguousarray(img[..., order] if order else img)


def array_to_image(img: np.ndarray, header: Header) -> Image:
    """sensor_msgs/Image (bgr8 or mono8) from a uint8 array."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    mono = img.ndim == 2
    msg = Image(header=header, height=img.shape[0], width=img.shape[1],
                encoding="mono8" if mono else "bgr8", is_bigendian=0,
                step=img.shape[1] * (1 if mono else 3))
    msg.data = img.tobytes()
    return msg


def detection_to_msg(d: Detection, header: Header) -> VialDetection:
    msg = VialDetection(
        x_min=float(d.box[0]), y_min=float(d.box[1]), x_max=float(d.box[2]),
        y_max=float(d.box[3]), confidence=float(d.confidence), vial_type=int(d.vial_type),
        vial_type_name=d.vial_type.label, type_confidence=float(d.type_confidence),
        cap_present=bool(d.cap_present), cap_confidence=float(d.cap_confidence),
        content=int(d.content), content_name=d.content.label,
        content_confidence=float(d.content_confidence), fill_level=float(d.fill_level),
        backend=d.backend)
    msg.phases = [VialPhase(phase_class=int(l.phase), phase_name=l.phase.label,
                            top=float(l.top), bottom=float(l.bottom),
                            confidence=float(l.confidence)) for l in d.layers]
    if d.mask is not None:
        msg.mask = array_to_image(d.mask, header)
    return msg


def detections_to_msg(dets: list[Detection], header: Header, latency_ms: float) -> VialDetections:
    return VialDetections(header=header, detections=[detection_to_msg(d, header) for d in dets],
                          latency_ms=float(latency_ms))


class VisionNode(Node):
    def __init__(self, pipeline: VisionPipeline | None = None, **node_kwargs):
        super().__init__("vision", **node_kwargs)
        topic = declare(self, "image_topic", "/camera/image_raw", "sensor_msgs/Image to inspect")
        rate = declare(self, "rate_hz", 2.0, "pipeline runs per second on the latest image; "
                                             "0 = only when /vision/inspect asks")
        self.config_path = declare(self, "config", "", "vision config; empty = the package's")
        self.publish_annotated = declare(self, "publish_annotated", True,
                                         "publish /vision/annotated for RViz")
        self.silent_after_s = declare(self, "camera_timeout_s", 5.0,
                                      "warn when no image arrived for this long")
        self.model_retry_s = declare(self, "model_retry_s", 10.0,
                                     "look again for missing models this often")
        reliable = declare(self, "image_reliable", False,
                           "subscribe reliably (images taken on demand, none may be lost); "
                           "false = sensor-data QoS, which also matches best-effort cameras")
        self.pub = self.create_publisher(VialDetections, "/vision/detections", 10)
        # Reliable, depth 1: matches RViz's default (reliable) and best-effort subscribers,
        # and large frames are not silently lost as best-effort fragments.
        self.pub_img = self.create_publisher(Image, "/vision/annotated", 1)
        self._latest: tuple[Image, float] | None = None
        self._processed: Image | None = None
        self._data_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.pipeline = pipeline
        self.pipeline_error = ""
        self._last_load_try = -math.inf
        self._started = time.monotonic()
        self.last_error = ""
        if self.pipeline is None:
            self._load_pipeline()
        group = ReentrantCallbackGroup()
        self.create_subscription(Image, topic, self._on_image,
                                 ON_DEMAND_IMAGE_QOS if reliable else qos_profile_sensor_data,
                                 callback_group=group)
        if rate > 0:
            self.create_timer(1.0 / rate, self._tick,
                              callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(InspectVials, "/vision/inspect", self._inspect, callback_group=group)
        self.get_logger().info(f"inspecting {topic} " + (f"at {rate:g} Hz" if rate > 0
                                                          else "on request"))

    def _load_pipeline(self) -> bool:
        self._last_load_try = time.monotonic()
        try:
            load_config(self.config_path or None)  # a bad config fails here with its path
            self.pipeline = VisionPipeline(self.config_path or None)
            self.pipeline_error = ""
            self.get_logger().info("vision models loaded")
            return True
        except (ModelError, FileNotFoundError, ValueError, OSError, RuntimeError) as exc:
            self.pipeline_error = f"vision pipeline unavailable: {exc}"
            self.get_logger().error(f"{self.pipeline_error} (retrying every "
                                    f"{self.model_retry_s:g} s)")
            return False

    def _ready(self) -> bool:
        if self.pipeline is not None:
            return True
        if time.monotonic() - self._last_load_try >= self.model_retry_s:
            return self._load_pipeline()
        return False

    def _on_image(self, msg: Image) -> None:
        with self._data_lock:
            self._latest = (msg, time.monotonic())

    def _run(self, msg: Image) -> tuple[VialDetections, str]:
        """Pipeline on one image message, and what makes the frame unlike the models'
        training frames ("" if nothing; logged); raises ImageError for a bad one."""
        img = image_to_array(msg)
        with self._run_lock:
            dets, ms = self.pipeline.timed(img)
            out = detections_to_msg(dets, msg.header, ms)
            self.pub.publish(out)
            if self.publish_annotated:
                self.pub_img.publish(array_to_image(annotate(img, dets), msg.header))
            problems = self.pipeline.frame_problems(img)
        caution = ""
        if problems:
            caution = f"frame unlike the models' training frames: {', '.join(problems)}"
            self.get_logger().warning(caution, throttle_duration_sec=10.0)
        return out, caution

    def _tick(self) -> None:
        with self._data_lock:
            latest = self._latest
        if latest is None or time.monotonic() - latest[1] > self.silent_after_s:
            since = time.monotonic() - (latest[1] if latest else self._started)
            if since > self.silent_after_s:
                self.get_logger().warning(f"camera silent: no image for {since:.0f} s",
                                          throttle_duration_sec=10.0)
            return
        msg = latest[0]
        if msg is self._processed or not self._ready():
            return
        self._processed = msg
        try:
            self._run(msg)
            self.last_error = ""
        except ImageError as exc:
            self.last_error = f"bad image: {exc}"
            self.get_logger().warning(self.last_error, throttle_duration_sec=5.0)
        except Exception as exc:  # noqa: BLE001 - a model failure must not kill the node
            self.last_error = f"pipeline failed: {exc!r}"
            self.get_logger().error(self.last_error, throttle_duration_sec=5.0)

    def _inspect(self, request, response):
        with self._data_lock:
            latest = self._latest
        response.success = False
        if not self._ready():
            response.message = self.pipeline_error
        elif latest is None:
            response.message = "no image received yet"
        elif request.max_age_s > 0 and time.monotonic() - latest[1] > request.max_age_s:
            response.message = (f"latest image is {time.monotonic() - latest[1]:.1f} s old "
                                f"(max_age_s {request.max_age_s:g})")
        else:
            try:
                response.detections, response.caution = self._run(latest[0])
                response.success = True
                response.message = f"{len(response.detections.detections)} vials"
            except ImageError as exc:
                response.message = f"bad image: {exc}"
            except Exception as exc:  # noqa: BLE001
                response.message = f"pipeline failed: {exc!r}"
        return response


def main(args=None):
    spin_node(VisionNode, args, num_threads=3)
