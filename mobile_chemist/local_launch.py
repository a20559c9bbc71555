"""Run NodeSpecs as processes: `ros2 launch` for machines that have only the ROS 2 core."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Sequence

from mobile_chemist.graph import NodeSpec, executable_path


def ros_args(spec: NodeSpec) -> list[str]:
    args = ["--ros-args", "-r", f"__node:={spec.name}"]
    for key, value in spec.parameters.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = value if value else "''"
        else:
            text = repr(value)
        args += ["-p", f"{key}:={text}"]
    return args


class LocalLaunch:
    """Start nodes as child processes; stop them all on exit (context manager)."""

    def __init__(self, env: dict | None = None):
        self.env = dict(os.environ if env is None else env)
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, spec: NodeSpec, **popen) -> subprocess.Popen:
        cmd = [sys.executable, str(executable_path(spec.executable)), *ros_args(spec)]
        proc = subprocess.Popen(cmd, env=self.env, start_new_session=True, **popen)
        self.processes[spec.name] = proc
        return proc

    def start_all(self, specs: Sequence[NodeSpec], **popen) -> None:
        for spec in specs:
            self.start(spec, **popen)

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"node {name} exited with code {proc.returncode}")

    def stop(self, timeout_s: float = 5.0) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
