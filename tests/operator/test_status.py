"""The ToolModel status: phases and conditions, and pod trouble said in plain words."""

from __future__ import annotations

from typing import Any

import pytest

from toolmodel_operator.status import compute_status, pod_problems

NOW = "2026-11-23T12:00:00Z"
TOOLMODEL = {"metadata": {"name": "m", "generation": 3}, "spec": {"serving": {"replicas": 2}}}


def deployment(ready: int, updated: int = 2) -> dict[str, Any]:
    return {"status": {"readyReplicas": ready, "updatedReplicas": updated, "replicas": 2}}


def pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "m-1"}, "status": status}


def waiting(reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return pod(
        containerStatuses=[
            {"name": "engine", "image": "vllm:x", "state": {"waiting": {"reason": reason, "message": message}}, **extra}
        ]
    )


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_all_replicas_ready_is_ready():
    status = compute_status(TOOLMODEL, workload=deployment(2), now=NOW, endpoint="http://m.ns.svc:8000/v1")
    assert status["phase"] == "Ready" and status["readyReplicas"] == 2 and status["observedGeneration"] == 3
    ready = conditions(status)["Ready"]
    assert ready["status"] == "True" and ready["reason"] == "Serving" and ready["observedGeneration"] == 3
    assert conditions(status)["Progressing"]["status"] == "False"
    assert status["endpoint"] == "http://m.ns.svc:8000/v1"


def test_a_rollout_in_progress_is_progressing_and_says_the_model_may_be_loading():
    status = compute_status(TOOLMODEL, workload=deployment(0, 1), now=NOW)
    assert status["phase"] == "Progressing"
    assert "loading the model" in conditions(status)["Ready"]["message"]
    assert conditions(status)["Progressing"]["status"] == "True"


def test_no_deployment_yet_is_pending():
    assert compute_status(TOOLMODEL, workload=None, now=NOW)["phase"] == "Pending"


def test_an_invalid_spec_fails_with_the_message():
    status = compute_status(TOOLMODEL, workload=None, invalid="spec.x: fix it", now=NOW)
    assert status["phase"] == "Failed"
    assert conditions(status)["Ready"] | {"lastTransitionTime": None} == {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "message": "spec.x: fix it",
        "lastTransitionTime": None,
        "observedGeneration": 3,
    }


def test_a_condition_keeps_its_transition_time_while_its_status_holds():
    first = compute_status(TOOLMODEL, workload=deployment(2), now="2026-01-01T00:00:00Z")
    later = compute_status({**TOOLMODEL, "status": first}, workload=deployment(2), now=NOW)
    assert conditions(later)["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    degraded = compute_status(
        {**TOOLMODEL, "status": first}, workload=deployment(0), pods=[waiting("ImagePullBackOff")], now=NOW
    )
    assert conditions(degraded)["Ready"]["lastTransitionTime"] == NOW


@pytest.mark.parametrize(
    ("the_pod", "reason", "words"),
    [
        (
            pod(
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
                    }
                ]
            ),
            "Unschedulable",
            ["Insufficient nvidia.com/gpu", "lower tensorParallelSize"],
        ),
        (
            pod(
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "message": "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
                    }
                ]
            ),
            "Unschedulable",
            ["gpu.product, nodeSelector or affinity"],
        ),
        (
            waiting("ImagePullBackOff", 'Back-off pulling image "vllm:x"'),
            "ImagePullFailed",
            ["cannot pull image vllm:x"],
        ),
        (
            waiting("CreateContainerConfigError", 'secret "hf" not found'),
            "ContainerConfigError",
            ['secret "hf" not found'],
        ),
        (
            waiting(
                "CrashLoopBackOff", restartCount=4, lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137}}
            ),
            "OutOfMemory",
            ["ran out of memory", "lower maxModelLen"],
        ),
        (
            waiting(
                "CrashLoopBackOff",
                lastState={"terminated": {"reason": "Error", "exitCode": 1, "message": "unknown dtype"}},
            ),
            "CrashLoopBackOff",
            ["exit code 1", "unknown dtype", "kubectl logs"],
        ),
    ],
    ids=["no-gpus", "no-matching-node", "image-pull", "missing-secret", "oom", "crash"],
)
def test_pod_trouble_is_explained(the_pod, reason, words):
    status = compute_status(TOOLMODEL, workload=deployment(0), pods=[the_pod], now=NOW)
    assert status["phase"] == "Degraded"
    ready = conditions(status)["Ready"]
    assert ready["status"] == "False" and ready["reason"] == reason
    assert all(word in ready["message"] for word in words), ready["message"]
    assert conditions(status)["Degraded"]["status"] == "True"


def test_some_replicas_serving_with_trouble_is_ready_but_degraded():
    status = compute_status(TOOLMODEL, workload=deployment(1), pods=[waiting("ImagePullBackOff")], now=NOW)
    assert status["phase"] == "Degraded"
    assert conditions(status)["Ready"]["status"] == "True"
    assert conditions(status)["Degraded"]["reason"] == "ImagePullFailed"


def test_warning_events_explain_what_pod_status_does_not():
    event = {
        "type": "Warning",
        "reason": "FailedMount",
        "message": 'configmap "tpl" not found',
        "involvedObject": {"kind": "Pod", "name": "m-1"},
        "lastTimestamp": "2026-11-23T11:59:00Z",
    }
    (problem,) = pod_problems([pod(phase="Pending")], [event])
    assert problem.reason == "FailedMount" and problem.message == 'pod m-1: configmap "tpl" not found'


# -- a proxy that exits saying why (token-id dialects: no usable tokenizer) -------------------------

TOKENIZER_GONE = (
    "no usable tokenizer: waiting for tokenizer.model of THUDM/chatglm3-6b in /models/hub (the engine downloads "
    "it); gave up after 1800 s (--tokenizer-wait)"
)


def two_containers(proxy: dict[str, Any]) -> dict[str, Any]:
    engine = {"name": "engine", "ready": False, "restartCount": 0, "state": {"running": {}}}
    return pod(containerStatuses=[engine, {"name": "proxy", "image": "proxy:x", **proxy}])


@pytest.mark.parametrize(
    ("proxy", "reason", "words"),
    [
        (
            {
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1, "message": TOKENIZER_GONE}},
            },
            "CrashLoopBackOff",
            ["keeps crashing (exit code 1, restarted 3 times)"],
        ),
        (
            {
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"reason": "Error", "exitCode": 1, "message": TOKENIZER_GONE}},
            },
            "ContainerExited",
            ["exited (exit code 1)"],
        ),
        (
            {
                "ready": False,
                "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1, "message": TOKENIZER_GONE + "\n"}},
            },
            "ContainerExited",
            ["exited (exit code 1) and was restarted (once)"],
        ),
    ],
    ids=["back-off", "stopped", "restarted-and-waiting-again"],
)
def test_a_proxy_that_gives_up_on_its_tokenizer_is_named_with_its_reason(proxy, reason, words):
    status = compute_status(TOOLMODEL, workload=deployment(0), pods=[two_containers(proxy)], now=NOW)
    assert status["phase"] == "Degraded"
    ready = conditions(status)["Ready"]
    assert ready["status"] == "False" and ready["reason"] == reason
    message = ready["message"]
    assert message.startswith("the tool-call proxy (container proxy of pod m-1) "), message
    assert f": {TOKENIZER_GONE}; " in message, message
    assert all(word in message for word in words), message
    assert "storage.hfTokenSecretRef" in message and "kubectl logs m-1 -c proxy" in message
    assert "engine arguments" not in message


def test_a_proxy_s_log_tail_gives_its_last_line():
    # FallbackToLogsOnError: a proxy that wrote no termination message leaves the end of its log.
    log = "INFO proxy listening on 0.0.0.0:8000\nTraceback (most recent call last):\n  ...\nValueError: bad port\n\n"
    proxy = {
        "ready": False,
        "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 1, "message": log}},
    }
    (problem,) = pod_problems([two_containers(proxy)])
    assert problem.message == (
        "the tool-call proxy (container proxy of pod m-1) keeps crashing (exit code 1, restarted 2 times): "
        "ValueError: bad port; see `kubectl logs m-1 -c proxy --previous`"
    )


def test_a_long_termination_message_is_cut():
    proxy = {"ready": False, "state": {"terminated": {"reason": "Error", "exitCode": 1, "message": "x" * 4000}}}
    (problem,) = pod_problems([two_containers(proxy)])
    assert len(problem.message) < 1000 and "x…;" in problem.message


def test_a_proxy_that_exited_before_but_is_ready_now_or_stopped_cleanly_is_no_problem():
    earlier = {"terminated": {"reason": "Error", "exitCode": 1, "message": TOKENIZER_GONE}}
    ready_now = {"ready": True, "restartCount": 1, "state": {"running": {}}, "lastState": earlier}
    assert pod_problems([two_containers(ready_now)]) == []
    stopped = {"ready": False, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}
    assert pod_problems([two_containers(stopped)]) == []
    # a restart after an exit that said nothing (killed by its liveness probe, say) is left to back-off
    silent = {
        "ready": False,
        "restartCount": 1,
        "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 137}},
    }
    assert pod_problems([two_containers(silent)]) == []


def test_an_engine_that_exits_with_a_termination_message_keeps_the_engine_hint():
    engine = {
        "name": "engine",
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {"reason": "Error", "exitCode": 1, "message": "unknown dtype"}},
    }
    (problem,) = pod_problems([pod(containerStatuses=[engine])])
    assert problem.reason == "ContainerExited"
    assert problem.message == (
        "container engine of pod m-1 exited (exit code 1): unknown dtype; "
        "check the engine arguments (engineArgs, dtype, maxModelLen) and `kubectl logs`"
    )


def test_a_pod_on_its_way_out_is_no_problem():
    proxy = {"ready": False, "state": {"terminated": {"reason": "Error", "exitCode": 143, "message": "stopped"}}}
    leaving = two_containers(proxy)
    leaving["metadata"]["deletionTimestamp"] = "2026-11-23T11:59:00Z"
    assert pod_problems([leaving]) == []


@pytest.mark.parametrize("spec", ["a string", ["a"], {"serving": "fast"}, {"serving": {"replicas": "many"}}, None])
def test_a_malformed_object_still_gets_a_status(spec):
    status = compute_status({"metadata": {"name": "m"}, "spec": spec}, workload=None, invalid="spec: broken", now=NOW)
    assert status["phase"] == "Failed"
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["message"] == "spec: broken"
