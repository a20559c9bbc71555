"""planner node: runs the campaign (CampaignRunner) against the lab's action servers.

Publishes /campaign/status (CampaignStatus, latched) at every change and
/campaign/experiments (Experiment) for every experiment that finishes, done or failed.
The node exits when the campaign is finished.
"""

from __future__ import annotations

import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from mobile_chemist.campaign import CampaignRunner, CampaignStopped
from mobile_chemist.config import load_campaign, load_lab
from mobile_chemist.database import CampaignDatabase
from mobile_chemist.msg import CampaignStatus, Experiment
from mobile_chemist.optimizer import BatchBayesianOptimizer
from mobile_chemist.ros.common import (LATCHED_QOS, GraphSleeper, declare, make_executor,
                                       to_named_values, to_time_msg)
from mobile_chemist.ros.lab_client import LabClient
from mobile_chemist.space import FormulationSpace
from mobile_chemist.workflow import load_workflow

_STATUS = {"planned": Experiment.STATUS_PLANNED, "running": Experiment.STATUS_RUNNING,
           "done": Experiment.STATUS_DONE, "failed": Experiment.STATUS_FAILED}


class PlannerNode(Node):
    def __init__(self):
        super().__init__("planner")
        lab_path = declare(self, "lab_config", "", "lab layout file; empty = the package's")
        campaign_path = declare(self, "campaign_config", "", "campaign file; empty = the package's")
        workflow_path = declare(self, "workflow_config", "", "workflow file; empty = the package's")
        self.database_path = declare(self, "database", "campaign.db",
                                     "SQLite campaign record; an existing one is resumed")
        self.n_batches = declare(self, "batches", 0, "batches to run; 0 = the campaign's n_batches")
        self.vision = declare(self, "vision", True,
                              "run the workflow's inspect steps (/vision/inspect); false skips them")
        capture = declare(self, "camera_capture_service", "/sim_camera/capture",
                          "std_srvs/Trigger that renders a fresh image (simulated camera); "
                          "empty where the camera streams")
        camera_info = declare(self, "camera_info_topic", "/camera/camera_info",
                              "CameraInfo of the inspected images (their width)")
        look_timeout = declare(self, "look_timeout_s", 60.0,
                               "an inspection fails when vision has read no fresh image by then")
        recapture = declare(self, "recapture_after_s", 2.0,
                            "ask the simulated camera again when no fresh image was read by then")
        self.lab = load_lab(lab_path or None)
        self.campaign = load_campaign(campaign_path or None)
        self.space = FormulationSpace.from_config(self.campaign.campaign_section)
        self.workflow = load_workflow(self.lab, self.space.names, workflow_path or None)
        self.status_pub = self.create_publisher(CampaignStatus, "/campaign/status", LATCHED_QOS)
        self.experiment_pub = self.create_publisher(Experiment, "/campaign/experiments", 100)
        self.client = LabClient(self, capture_service=capture if self.vision else "",
                                camera_info_topic=camera_info if self.vision else "",
                                look_timeout_s=look_timeout, recapture_after_s=recapture)
        self.sleeper = GraphSleeper(self)

    def run(self) -> int:
        """Run the campaign to its end; returns a process exit code."""
        if not self.sleeper.wait_for_time():
            self.get_logger().error("no clock: is the sim_clock node (or Gazebo) running?")
            return 2
        db = CampaignDatabase(self.database_path)
        optimizer = BatchBayesianOptimizer.from_config(self.space, self.campaign.optimizer_section)
        runner = CampaignRunner(
            db=db, campaign=self.campaign, lab=self.lab, workflow=self.workflow,
            space=self.space, optimizer=optimizer, dispatcher=self.client,
            on_status=self._publish_status, on_experiment=self._publish_experiment,
            log=self.get_logger().info, inspect=self.vision)
        try:
            summary = runner.run(self.n_batches or None)
        except CampaignStopped as exc:
            self.get_logger().error(f"campaign stopped: {exc}")
            return 3
        finally:
            db.close()
        for line in summary.format(self.campaign.objective).splitlines():
            self.get_logger().info(line)
        return 0

    def _publish_status(self, s: dict):
        msg = CampaignStatus(
            campaign=s["campaign"], state=s["state"], batch=s["batch"],
            batches_total=s["batches_total"], experiments_done=s["experiments_done"],
            experiments_failed=s["experiments_failed"],
            experiments_total=s["experiments_total"], current_step=s["current_step"],
            best_value=float(s["best_value"]),
            best_parameters=to_named_values(s["best_parameters"]),
            baseline_mean=float(s["baseline_mean"]), started=to_time_msg(s["started"]))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    def _publish_experiment(self, r):
        self.experiment_pub.publish(Experiment(
            id=r.id, batch=r.batch, vial_id=r.vial_id, is_control=r.is_control,
            parameters=to_named_values(r.parameters), status=_STATUS[r.status],
            failure_reason=r.failure_reason,
            measurements=to_named_values(r.measurements)))


def main(args=None):
    rclpy.init(args=args)
    node = PlannerNode()
    executor = make_executor(4)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    code = 1
    try:
        code = node.run()
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 130
    finally:
        # Shut the context down first: it wakes the spinning executor, which then returns.
        rclpy.try_shutdown()
        spinner.join(timeout=5.0)
        executor.shutdown()
        node.destroy_node()
    sys.exit(code)
