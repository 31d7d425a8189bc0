"""Rollout diagnosis on real API objects: each situation in api_responses/ (API responses,
deserialized by the official client) is diagnosed as what it is, with the pod whose logs explain it."""

from __future__ import annotations

import json

import pytest

from mlmagics.core.targets.kubernetes.rollout import (
    CRASH_LOOP_BACK_OFF,
    CREATE_CONTAINER_CONFIG_ERROR,
    DEPLOYMENT_FAILED,
    HEALTHY,
    IMAGE_PULL_BACK_OFF,
    PROBE_FAILURE,
    PROGRESSING,
    UNSCHEDULABLE,
    current_pods,
    diagnose,
    explain_log,
    rollout_status,
)

POD = "mnist-7d9c5b6f4-x2x9q"
EXPECTED = {
    "healthy": (HEALTHY, None),
    "container-creating": (PROGRESSING, None),
    "init-running": (PROGRESSING, None),
    "not-observed": (PROGRESSING, None),
    "update-old-pods-terminating": (PROGRESSING, None),
    "unschedulable-scaling-up": (PROGRESSING, None),
    "err-image-pull": (IMAGE_PULL_BACK_OFF, POD),
    "image-pull-backoff": (IMAGE_PULL_BACK_OFF, POD),
    "create-container-config-error": (CREATE_CONTAINER_CONFIG_ERROR, POD),
    "first-crash": (CRASH_LOOP_BACK_OFF, POD),
    "crash-loop": (CRASH_LOOP_BACK_OFF, POD),
    "oom-killed": (CRASH_LOOP_BACK_OFF, POD),
    "readiness-503": (PROBE_FAILURE, POD),
    "liveness-killed": (PROBE_FAILURE, POD),
    "unschedulable": (UNSCHEDULABLE, POD),
    "update-new-version-crashing": (CRASH_LOOP_BACK_OFF, POD),
    "progress-deadline": (DEPLOYMENT_FAILED, None),
    "replica-failure": (DEPLOYMENT_FAILED, None),
}


def test_every_recorded_situation_has_an_expected_diagnosis(api_responses):
    assert sorted(p.name for p in api_responses.iterdir() if p.is_dir()) == sorted(EXPECTED)


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_each_situation_is_diagnosed_as_what_it_is(scenario, load_scenario):
    kind, pod = EXPECTED[scenario]
    found = diagnose(*load_scenario(scenario))
    assert (found.kind, found.pod) == (kind, pod), found
    assert found.failed == (kind not in (HEALTHY, PROGRESSING))
    assert found.message


def test_an_image_that_cannot_be_pulled_names_the_image_and_the_registrys_answer(load_scenario):
    found = diagnose(*load_scenario("err-image-pull"))
    assert "registry.example.com/team/echo:2" in found.message and "not found" in found.message
    assert "image_pull_secret" in found.message
    assert any("Failed to pull image" in e for e in found.events)


def test_a_crash_loop_says_the_exit_code_and_asks_for_the_previous_containers_log(load_scenario):
    found = diagnose(*load_scenario("crash-loop"))
    assert "exited with code 1 (Error), restarted 2 times" in found.message
    assert found.previous_logs
    assert any(e.startswith("Warning BackOff (x2): Back-off restarting failed container") for e in found.events)


@pytest.mark.parametrize(
    "scenario, said",
    [
        pytest.param("oom-killed", ("code 137 (OOMKilled)", "memory_gb"), id="an out-of-memory kill says to raise memory"),
        pytest.param(
            "liveness-killed",
            ("liveness probe (GET /)", "initial_delay_seconds"),
            id="a liveness kill suggests the probe settings",
        ),
        pytest.param(
            "create-container-config-error",
            ("runAsNonRoot and image will run as root",),
            id="root images refused by runAsNonRoot are reported as such",
        ),
    ],
)
def test_a_failure_says_what_it_is_and_what_to_change(load_scenario, scenario, said):
    found = diagnose(*load_scenario(scenario))
    assert all(text in found.message for text in said), found.message


def test_a_503_from_ready_means_init_failed_while_a_timeout_means_it_is_still_running(load_scenario):
    failed = diagnose(*load_scenario("readiness-503"))
    assert "GET /ready answers 503" in failed.message and "init()" in failed.message
    running = diagnose(*load_scenario("init-running"))
    assert running.kind == PROGRESSING and "init() still running" in running.message


def test_no_room_on_any_node_is_reported_unless_the_cluster_autoscaler_is_adding_one(load_scenario):
    found = diagnose(*load_scenario("unschedulable"))
    assert "0/3 nodes are available: 3 Insufficient cpu" in found.message and "cpu_cores" in found.message
    assert diagnose(*load_scenario("unschedulable-scaling-up")).kind == PROGRESSING


def test_during_an_update_only_the_new_versions_pods_count(load_scenario):
    deployment, pods, events = load_scenario("update-new-version-crashing")
    assert [p.metadata.name for p in current_pods(deployment, pods)] == [POD]
    assert diagnose(deployment, pods, events).kind == CRASH_LOOP_BACK_OFF
    deployment, pods, _ = load_scenario("update-old-pods-terminating")
    assert [p.metadata.name for p in current_pods(deployment, pods)] == [POD], "terminating pods are not the rollout's"


@pytest.mark.parametrize(
    "scenario, message",
    [
        ("healthy", 'deployment "mnist" successfully rolled out'),
        ("not-observed", "Waiting for deployment spec update to be observed..."),
        ("container-creating", 'Waiting for deployment "mnist" rollout to finish: 0 of 1 updated replicas are available...'),
        (
            "update-old-pods-terminating",
            'Waiting for deployment "mnist" rollout to finish: 1 old replicas are pending termination...',
        ),
        ("replica-failure", 'Waiting for deployment "mnist" rollout to finish: 0 out of 1 new replicas have been updated...'),
    ],
)
def test_rollout_status_speaks_like_kubectl(scenario, message, load_scenario):
    deployment, _, _ = load_scenario(scenario)
    assert rollout_status(deployment)[0] == message


def test_a_deployment_not_created_yet_is_progressing():
    assert diagnose(None, [], []).kind == PROGRESSING


def test_the_report_shows_the_events_and_the_traceback_from_the_runtimes_json_log(load_scenario):
    found = diagnose(*load_scenario("readiness-503"))
    log = "\n".join(
        [
            json.dumps(
                {"time": "2026-03-02T09:12:48.101", "level": "INFO", "logger": "user_script", "pid": 7, "msg": "calling init()"}
            ),
            json.dumps(
                {
                    "time": "2026-03-02T09:12:48.130",
                    "level": "ERROR",
                    "logger": "user_script",
                    "pid": 7,
                    "msg": "init() raised RuntimeError: the model file is corrupt",
                    "traceback": 'Traceback (most recent call last):\n  File "score.py", line 3, in init\n'
                    "RuntimeError: the model file is corrupt",
                }
            ),
            "not json: printed by something else",
        ]
    )
    report = found.report(log)
    assert report.startswith(
        f"ProbeFailure: the scoring script did not start: GET /ready answers 503 (init() or the import failed; "
        f"the traceback is in the log) (pod {POD})"
    )
    assert "\nEvents:\n  Warning Unhealthy: Readiness probe failed: Get" in report, "in the order they happened"
    assert "\n  Warning Unhealthy (x3): Readiness probe failed: HTTP probe failed with statuscode: 503\n" in report
    assert "E user_script: init() raised RuntimeError: the model file is corrupt\n    Traceback" in report
    assert report.endswith("not json: printed by something else")
    assert explain_log("") == ""
