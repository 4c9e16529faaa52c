"""The states of deployments, replicas and rollouts, and the one rule that gives a deployment's.

All three are ``str`` enums: a member is its name on the wire and in the store, so the JSON and
the database columns are what they were when these were bare strings. ``FAILED`` exists in all
three and means a different thing in each: use the enum of the thing you speak of.

``deployment_state`` is the deployment state machine of both controllers (local replicas and
Kubernetes); each backend only says what it observed (ready replicas, the count wanted, what
failed, what holds it back).
"""
from __future__ import annotations

from enum import StrEnum


class DeploymentState(StrEnum):
    """A live deployment as a whole."""

    STARTING = "STARTING"  # no replica ready yet (or never all of them yet), nothing wrong
    ACTIVE = "ACTIVE"  # serving the wanted count (or scaling up from it, or rolling out)
    DEGRADED = "DEGRADED"  # serving, but something failed or holds it back (the reason says)
    FAILED = "FAILED"  # nothing serves and something failed
    DISABLED = "DISABLED"  # turned off by its owner


class ReplicaState(StrEnum):
    """One replica (process or pod)."""

    STARTING = "STARTING"
    READY = "READY"
    DRAINING = "DRAINING"
    FAILED = "FAILED"


class RolloutState(StrEnum):
    """The rollout of a deployment's target (release, generation)."""

    PROGRESSING = "PROGRESSING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


def replica_health(state: ReplicaState | str) -> str:
    """What ``liveml status`` shows as a replica's health."""
    return {ReplicaState.READY: "HEALTHY", ReplicaState.FAILED: "UNHEALTHY"}.get(
        ReplicaState(state), "UNKNOWN")


def deployment_state(*, enabled: bool, ready: int, want: int, failure: str = "",
                     problem: str = "", progress: str = "", rolling: bool = False,
                     settled: int = 0, last_failure: str = "") -> tuple[DeploymentState, str]:
    """A deployment's state and reason from what its controller observed.

    ``ready`` replicas serve of ``want``; ``failure`` is what failed and will not fix itself (a
    stopped rollout, a crash loop, an image that cannot be pulled); ``problem`` what holds more
    replicas back for now (no GPU free, unschedulable); ``progress`` the count as text (default
    ``"<ready>/<want> replicas ready"``); ``rolling`` that a rollout is under way;
    ``settled`` the count that was last all ready (0: never yet); ``last_failure`` what went
    wrong last, for the reason of a deployment short of replicas.

    The rules: disabled is DISABLED. A failure is DEGRADED while replicas serve, else FAILED; a
    problem DEGRADED while they serve, else STARTING. Otherwise the wanted count ready is ACTIVE;
    none ready is STARTING; fewer than wanted is ACTIVE while at least ``settled`` serve (scaling
    up is not degradation), STARTING before the deployment was ever all ready, else DEGRADED (a
    replica was lost).
    """
    if not enabled:
        return DeploymentState.DISABLED, ""
    progress = progress or f"{ready}/{want} replicas ready"
    short = ready < want

    def why(*parts: str) -> str:
        return "; ".join(p for p in ((progress,) if short else ()) + parts if p)

    if failure:
        return (DeploymentState.DEGRADED, why(failure)) if ready else \
            (DeploymentState.FAILED, failure)
    if problem:
        return (DeploymentState.DEGRADED if ready else DeploymentState.STARTING), why(problem)
    if not short:
        return DeploymentState.ACTIVE, f"rolling out: {progress}" if rolling else ""
    if not ready or not settled:
        return DeploymentState.STARTING, why(last_failure)
    if ready >= settled:
        return DeploymentState.ACTIVE, f"scaling up: {progress}"
    return DeploymentState.DEGRADED, why(last_failure)
