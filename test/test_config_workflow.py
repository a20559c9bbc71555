"""Config and workflow validation: every mistake is named by file and key."""

import copy

import pytest
import yaml

from mobile_chemist.config import default_config_path, load_lab, parse_campaign, parse_lab
from mobile_chemist.errors import ConfigError
from mobile_chemist.workflow import ExecuteStep, parse_workflow


@pytest.fixture
def lab_data():
    return yaml.safe_load(default_config_path("lab.yaml").read_text())


@pytest.fixture
def campaign_data():
    return yaml.safe_load(default_config_path("campaign.yaml").read_text())


@pytest.fixture
def workflow_data():
    return yaml.safe_load(default_config_path("workflow.yaml").read_text())


def test_shipped_configs_load(lab, campaign, workflow):
    assert set(lab.stations) >= {"rack_storage", "solid_dispenser", "liquid_dispenser", "capper",
                                 "sonicator", "photolysis", "gc"}
    assert campaign.batch_size * campaign.n_batches == 688
    assert campaign.suggestions_per_batch == 14
    assert any(isinstance(s, ExecuteStep) and s.operation == "measure_hydrogen"
               for s in workflow.steps)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["stations"]["gc"]["operations"]["measure_hydrogen"]["duration"].update(
        fixed_s="long"), "stations.gc.operations.measure_hydrogen.duration.fixed_s"),
    (lambda d: d["stations"]["sonicator"]["operations"]["sonicate"]["parameters"][
        "duration_s"].update(low=10, high=1), "low (10.0) > high (1.0)"),
    (lambda d: d["stations"]["capper"].pop("approach"), "missing key 'approach'"),
    (lambda d: d["stations"]["capper"]["approach"].update(x=40.0), "outside the room"),
    (lambda d: d["robot"].update(home_station="garage"), "unknown station 'garage'"),
    (lambda d: d["stations"]["gc"].update(driver={}), "missing key 'type'"),
    (lambda d: d["stations"]["photolysis"]["operations"]["irradiate"]["failure_probability"]
     .update(per_operation=1.5), "must be <= 1"),
    (lambda d: d["stations"]["photolysis"]["operations"]["irradiate"]["duration"].update(
        parameter="power"), "not one of this operation's parameters"),
])
def test_lab_errors_name_the_key(lab_data, mutate, message):
    mutate(lab_data)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_lab(lab_data, "lab.yaml")


def test_missing_or_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_lab(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lab: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_lab(bad)


def test_campaign_errors(campaign_data):
    data = copy.deepcopy(campaign_data)
    data["campaign"]["controls"]["per_batch"] = 16
    with pytest.raises(ConfigError, match="no room for experiments"):
        parse_campaign(data)
    data = copy.deepcopy(campaign_data)
    data["campaign"]["objective"]["goal"] = "maximise-ish"
    with pytest.raises(ConfigError, match="'maximize' or 'minimize'"):
        parse_campaign(data)


@pytest.mark.parametrize("step, message", [
    ({"navigate": "cafeteria"}, "unknown station 'cafeteria'"),
    ({"transfer": {"object": "rack", "from": "gc/shelf", "to": "robot/deck"}},
     "unknown location 'gc/shelf'"),
    ({"transfer": {"object": "flask", "from": "gc/rack_holder", "to": "robot/deck"}},
     "must be 'rack' or 'vial'"),
    ({"execute": {"station": "gc", "operation": "fly"}}, "has no operation 'fly'"),
    ({"execute": {"station": "sonicator", "operation": "sonicate",
                  "parameters": {"duration_s": 99999}}}, "outside"),
    ({"execute": {"station": "sonicator", "operation": "sonicate",
                  "vial_parameters": ["P10"]}}, "takes no per-vial parameter 'P10'"),
    ({"execute": {"station": "solid_dispenser", "operation": "dispense_solid",
                  "vial_parameters": ["gold"]}}, "'gold' is not a component"),
    ({"navigate": "gc", "transfer": {}}, "exactly one of"),
    ({"inspect": {"station": "charger", "expect": {"capped": True}}}, "no slot for a rack"),
    ({"inspect": {"station": "capper", "expect": {"capped": "yes"}}}, "true or false"),
    ({"inspect": {"station": "capper", "expect": {"no_phase": ["plasma"]}}}, "unknown phase"),
    ({"inspect": {"station": "capper", "expect": {}}}, "expect one or both"),
    ({"inspect": {"station": "capper", "expect": {"capped": True}, "looks": 1}},
     "at least as many looks"),
    ({"inspect": {"station": "capper", "expect": {"capped": True}, "zoom": 2}}, "unknown keys"),
])
def test_workflow_errors(workflow_data, lab, space, step, message):
    workflow_data["workflow"]["steps"].insert(3, step)
    with pytest.raises(ConfigError, match=message):
        parse_workflow(workflow_data, lab, space.names)


def test_workflow_must_dispense_every_component(workflow_data, lab, space):
    workflow_data["workflow"]["steps"] = [
        s for s in workflow_data["workflow"]["steps"]
        if not ("execute" in s and s["execute"]["operation"] == "dispense_solid")]
    with pytest.raises(ConfigError, match=r"no step dispenses the components \['P10'\]"):
        parse_workflow(workflow_data, lab, space.names)
