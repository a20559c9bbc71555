"""Shared fixtures. Every test session gets its own ROS_DOMAIN_ID and loopback discovery."""

import os
import random

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(110, 200)))


@pytest.fixture(scope="session")
def lab():
    from mobile_chemist.config import load_lab
    return load_lab()


@pytest.fixture(scope="session")
def campaign():
    from mobile_chemist.config import load_campaign
    return load_campaign()


@pytest.fixture(scope="session")
def space(campaign):
    from mobile_chemist.space import FormulationSpace
    return FormulationSpace.from_config(campaign.campaign_section)


@pytest.fixture(scope="session")
def workflow(lab, space):
    from mobile_chemist.workflow import load_workflow
    return load_workflow(lab, space.names)
