"""Vision: vials, caps, phases and fill levels from camera images (importable without ROS).

synthetic (scene generator), crops + segmenter (row-wise phase reading), pipeline
(backends, config/vision.yaml), metrics + evaluation (bench/vision.py), train + cli
(`mobile-chemist vision train|eval`).
"""
