"""The ToolModel's status, computed from what the cluster reports: a pure function.

Users read ``kubectl get tm`` and ``kubectl describe tm`` to learn why a model is not serving, so
the conditions say it in plain words, taken from the pods' status and events: no node with
enough GPUs, an image that cannot be pulled, an engine that runs out of memory or keeps crashing,
a proxy that exits saying why (its termination message: no usable tokenizer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Problem", "compute_status", "pod_problems"]

_IMAGE_PULL = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
_CONFIG = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
_WARNING_EVENTS = frozenset({"FailedScheduling", "FailedMount", "FailedAttachVolume", "FailedCreate", "Failed"})
_PROXY = "proxy"  # the sidecar's container name (render.py)
_MAX_DETAIL = 600


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    message: str


def pod_problems(pods: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]] = ()) -> list[Problem]:
    """What keeps the pods from serving, most telling first."""
    problems: list[Problem] = []
    for pod in pods:
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue  # on its way out (a rollout, a scale-down): its containers stop by design
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                problems.append(Problem("Unschedulable", _unschedulable(name, condition.get("message", ""))))
        for container in status.get("containerStatuses") or []:
            problem = _container_problem(name, container)
            if problem is not None:
                problems.append(problem)
    if not problems:
        for event in _latest_warnings(events):
            problems.append(Problem(str(event.get("reason")), f"{_involved(event)}: {event.get('message', '')}"))
    return problems


def _unschedulable(pod: str, message: str) -> str:
    hint = ""
    if "Insufficient" in message:
        hint = "; no node has that many free GPUs: lower tensorParallelSize, or add GPU nodes"
    elif "node affinity" in message or "node selector" in message or "didn't match" in message:
        hint = "; no node matches gpu.product, nodeSelector or affinity: check the node labels"
    elif "untolerated taint" in message:
        hint = "; the GPU nodes are tainted: add a matching entry to gpu.tolerations"
    return f"pod {pod} cannot be scheduled: {message}{hint}"


def _container_problem(pod: str, container: Mapping[str, Any]) -> Problem | None:
    name = container.get("name", "?")
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    # The run that ended: the current one when the container is stopped, else the one before.
    ended = state.get("terminated") or (container.get("lastState") or {}).get("terminated") or {}
    reason = waiting.get("reason")
    if reason in _IMAGE_PULL:
        return Problem(
            "ImagePullFailed",
            f"container {name} of pod {pod} cannot pull image {container.get('image')}: "
            f"{waiting.get('message', reason)}",
        )
    if reason in _CONFIG:
        return Problem(
            "ContainerConfigError", f"container {name} of pod {pod} cannot start: {waiting.get('message', reason)}"
        )
    if ended.get("reason") == "OOMKilled":
        return Problem(
            "OutOfMemory",
            f"container {name} of pod {pod} ran out of memory (OOMKilled, restarted "
            f"{_times(container.get('restartCount', 0))}): raise its memory limit, or lower maxModelLen",
        )
    return _crash_problem(pod, container, ended)


def _crash_problem(pod: str, container: Mapping[str, Any], ended: Mapping[str, Any]) -> Problem | None:
    """A container that keeps exiting: in back-off; stopped with an error; or restarted after an
    error that it stated (its termination message, such as the proxy's missing tokenizer) and not
    ready since."""
    name = container.get("name", "?")
    state = container.get("state") or {}
    failed = ended.get("exitCode") not in (None, 0)
    restarts = container.get("restartCount", 0)
    if (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
        reason, what = (
            "CrashLoopBackOff",
            f"keeps crashing (exit code {ended.get('exitCode', '?')}, restarted {_times(restarts)})",
        )
    elif failed and state.get("terminated"):
        reason, what = "ContainerExited", f"exited (exit code {ended['exitCode']})"
    elif failed and ended.get("message") and not container.get("ready"):
        reason, what = (
            "ContainerExited",
            f"exited (exit code {ended['exitCode']}) and was restarted ({_times(restarts)})",
        )
    else:
        return None
    detail = _termination_detail(ended)
    if name == _PROXY:
        hint = f"`kubectl logs {pod} -c {_PROXY} --previous`"
        if "tokenizer" in detail:
            hint = (
                "the proxy needs the model's tokenizer files from the engine's download (the model cache) or the "
                "hub: check model, tokenizer, revision and storage.hfTokenSecretRef, and " + hint
            )
        else:
            hint = "see " + hint
        return Problem(reason, f"the tool-call proxy (container {name} of pod {pod}) {what}: {detail}; {hint}")
    return Problem(
        reason,
        f"container {name} of pod {pod} {what}: {detail}; "
        "check the engine arguments (engineArgs, dtype, maxModelLen) and `kubectl logs`",
    )


def _desired_replicas(toolmodel: Mapping[str, Any], workload: Mapping[str, Any] | None) -> int:
    """``spec.serving.replicas``, or for an autoscaled ToolModel the count its autoscaler set on the
    workload (``minReplicas`` until there is one); 1 where a malformed object (a spec that is a
    string, replicas that are no number: rejected at admission, but not by every API server) has
    none to give."""
    spec = toolmodel.get("spec")
    serving = spec.get("serving") if isinstance(spec, Mapping) else None
    serving = serving if isinstance(serving, Mapping) else {}
    autoscaling = serving.get("autoscaling")
    if isinstance(autoscaling, Mapping):
        replicas = ((workload or {}).get("spec") or {}).get("replicas", autoscaling.get("minReplicas", 1))
    else:
        replicas = serving.get("replicas", 1)
    return replicas if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 0 else 1


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _termination_detail(ended: Mapping[str, Any]) -> str:
    """The container's own words on why it ended: its termination message (with
    FallbackToLogsOnError, its log's last lines: the last of them), else the reason."""
    lines = [line.strip() for line in str(ended.get("message") or "").splitlines() if line.strip()]
    if not lines:
        return str(ended.get("reason") or "see `kubectl logs`")
    detail = lines[-1]
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 1] + "…"


def _latest_warnings(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    warnings = [e for e in events if e.get("type") == "Warning" and e.get("reason") in _WARNING_EVENTS]
    warnings.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)
    return warnings[:1]


def _involved(event: Mapping[str, Any]) -> str:
    involved = event.get("involvedObject") or {}
    return f"{str(involved.get('kind', 'object')).lower()} {involved.get('name', '?')}"


def _condition(
    kind: str, status: bool, reason: str, message: str, generation: int | None, previous: Mapping[str, Any], now: str
) -> dict[str, Any]:
    value = "True" if status else "False"
    old = next((c for c in previous.get("conditions") or [] if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == value and old.get("lastTransitionTime") else now
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def compute_status(
    toolmodel: Mapping[str, Any],
    *,
    workload: Mapping[str, Any] | None,
    workload_kind: str = "Deployment",
    pods: Sequence[Mapping[str, Any]] = (),
    events: Sequence[Mapping[str, Any]] = (),
    invalid: str | None = None,
    endpoint: str | None = None,
    served_model_name: str | None = None,
    dialect: str | None = None,
    now: str,
) -> dict[str, Any]:
    """The status block for a ToolModel, from its workload (the Deployment, or on several nodes the
    LeaderWorkerSet, whose replicas are groups of pods) and their pods. ``invalid`` is the InvalidSpec
    message, if any."""
    generation = toolmodel.get("metadata", {}).get("generation")
    previous = toolmodel.get("status") or {}
    desired = _desired_replicas(toolmodel, workload)
    state = (workload or {}).get("status") or {}
    ready = int(state.get("readyReplicas") or 0)
    updated = int(state.get("updatedReplicas") or 0)

    def condition(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        return _condition(kind, status, reason, message, generation, previous, now)

    if invalid is not None:
        phase = "Failed"
        conditions = [
            condition("Ready", False, "InvalidSpec", invalid),
            condition("Progressing", False, "InvalidSpec", "nothing is created or changed until the spec is fixed"),
            condition("Degraded", True, "InvalidSpec", invalid),
        ]
    else:
        problems = pod_problems(pods, events) if workload is not None else []
        rolled_out = updated >= desired and ready >= desired
        if workload is None:
            phase, ready_reason, ready_message = "Pending", "Creating", f"creating the {workload_kind}"
        elif desired == 0:
            phase, ready_reason, ready_message = "Pending", "ScaledToZero", "replicas is 0"
        elif problems:
            phase, ready_reason, ready_message = "Degraded", problems[0].reason, problems[0].message
        elif rolled_out:
            phase, ready_reason, ready_message = "Ready", "Serving", f"{ready}/{desired} replicas ready"
        else:
            phase, ready_reason = "Progressing", "Starting"
            ready_message = (
                f"{ready}/{desired} replicas ready; the engine may still be downloading or loading the model"
            )
        conditions = [
            condition("Ready", ready > 0, "Serving" if ready > 0 and not problems else ready_reason, ready_message),
            condition(
                "Progressing",
                workload is None or not rolled_out,
                "RollingOut" if workload is not None and not rolled_out else ("Complete" if workload else "Creating"),
                f"{updated}/{desired} replicas updated, {ready} ready",
            ),
            condition(
                "Degraded",
                bool(problems),
                problems[0].reason if problems else "AsExpected",
                "; ".join(p.message for p in problems[:3]) if problems else "no problems reported",
            ),
        ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "observedGeneration": generation,
        "replicas": desired,
        "readyReplicas": ready,
    }
    if endpoint is not None:
        status["endpoint"] = endpoint
    if served_model_name is not None:
        status["servedModelName"] = served_model_name
    if dialect is not None:
        status["dialect"] = dialect
    return status
