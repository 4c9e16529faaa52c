"""The deployment, replica and rollout states and the one rule that gives a deployment's state
(``liveml_ext.core.states``), as both controllers use it. Pure: no replicas, no cluster."""
from __future__ import annotations

import json

from liveml_ext.core import models as m
from liveml_ext.core.states import DeploymentState, ReplicaState, RolloutState, deployment_state


def test_scaling_up_from_a_settled_count_is_not_degraded() -> None:
    """The autoscaler asks for 3 where 2 were all ready: the 2 still serve, nothing is wrong."""
    state, reason = deployment_state(enabled=True, ready=2, want=3, settled=2)
    assert (state, reason) == (DeploymentState.ACTIVE, "scaling up: 2/3 replicas ready")
    # the same deployment losing one of its 2 is degraded (with what went wrong last)
    state, reason = deployment_state(enabled=True, ready=1, want=3, settled=2,
                                     last_failure="last failure: replica r1 crashed")
    assert state == DeploymentState.DEGRADED
    assert reason == "1/3 replicas ready; last failure: replica r1 crashed"


def test_short_of_replicas_before_the_first_full_count_is_starting() -> None:
    assert deployment_state(enabled=True, ready=1, want=2) == \
        (DeploymentState.STARTING, "1/2 replicas ready")
    assert deployment_state(enabled=True, ready=0, want=2, settled=2) == \
        (DeploymentState.STARTING, "0/2 replicas ready")
    assert deployment_state(enabled=True, ready=1, want=2, settled=2)[0] == DeploymentState.DEGRADED


def test_failures_and_problems() -> None:
    assert deployment_state(enabled=True, ready=0, want=2, failure="crash loop") == \
        (DeploymentState.FAILED, "crash loop")
    assert deployment_state(enabled=True, ready=2, want=2, failure="crash loop") == \
        (DeploymentState.DEGRADED, "crash loop")
    assert deployment_state(enabled=True, ready=1, want=2, failure="crash loop") == \
        (DeploymentState.DEGRADED, "1/2 replicas ready; crash loop")
    assert deployment_state(enabled=True, ready=0, want=1, problem="no GPU free") == \
        (DeploymentState.STARTING, "0/1 replicas ready; no GPU free")
    assert deployment_state(enabled=True, ready=1, want=2, problem="no GPU free", settled=2) == \
        (DeploymentState.DEGRADED, "1/2 replicas ready; no GPU free")


def test_active_rolling_and_disabled() -> None:
    assert deployment_state(enabled=True, ready=2, want=2) == (DeploymentState.ACTIVE, "")
    assert deployment_state(enabled=True, ready=3, want=2, rolling=True, progress="1/2 new") == \
        (DeploymentState.ACTIVE, "rolling out: 1/2 new")
    assert deployment_state(enabled=False, ready=2, want=2, failure="x") == \
        (DeploymentState.DISABLED, "")


def test_states_are_their_names_on_the_wire() -> None:
    assert json.dumps([DeploymentState.ACTIVE, ReplicaState.READY, RolloutState.FAILED]) == \
        '["ACTIVE", "READY", "FAILED"]'
    status = m.DeploymentStatus(
        state=DeploymentState.DEGRADED, is_ready=True,
        replicas=[m.ReplicaStatus(node_id="n", state=ReplicaState.READY, health="HEALTHY",
                                  release_version="1.0")],
        rollout=m.RolloutStatus(release_version="1.0", generation=1,
                                state=RolloutState.PROGRESSING, updated_replicas=1,
                                desired_replicas=2))
    doc = json.loads(status.model_dump_json(by_alias=True))
    assert (doc["state"], doc["replicas"][0]["state"], doc["rollout"]["state"]) == \
        ("DEGRADED", "READY", "PROGRESSING")
    assert m.DeploymentStatus.model_validate({"state": "ACTIVE", "isReady": True}).state is \
        DeploymentState.ACTIVE
