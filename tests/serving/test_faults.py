"""Faults injected for real: a worker SIGKILLed in the middle of a request, the supervisor SIGKILLed,
and the scoring timeout's alarm landing right as run() returns."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import psutil
import pytest
import requests

from mlmagics.core import LocalWebservice, Webservice, Workspace
from mlmagics.serving.scorer import Scorer, ScoringTimeout
from mlmagics.serving.script import ScoringScript

PID_SCRIPT = """
import json, os, time

def init():
    pass

def run(raw_data):
    data = json.loads(raw_data)
    if data.get("mark"):
        with open(data["mark"], "w") as f:
            f.write(str(os.getpid()))
    time.sleep(data.get("sleep", 0))
    return {"pid": os.getpid()}
"""


def _pinned_session(url: str, avoid: int) -> requests.Session:
    """A keep-alive session whose connection a worker other than `avoid` accepted."""
    for _ in range(50):
        session = requests.Session()
        answer = session.post(url, json={}, timeout=10)
        if answer.status_code == 200 and answer.json()["pid"] != avoid:
            return session
        session.close()
    raise AssertionError(f"no connection reached a worker other than {avoid}")


def test_a_worker_killed_in_the_middle_of_a_request_fails_that_request_only(tmp_path, serve, app_with):
    # a connection the busy worker accepts gets its 503 quickly, so that finding the other worker is quick
    server = serve(app_with(tmp_path, PID_SCRIPT), workers=2, config={"max_request_wait_time": 200})
    mark = tmp_path / "victim"
    outcome: dict = {}

    def slow() -> None:
        try:
            outcome["slow"] = server.post(json_body={"sleep": 30, "mark": str(mark)})
        except requests.RequestException as e:
            outcome["slow"] = e

    threading.Thread(target=slow, daemon=True).start()
    deadline = time.monotonic() + 10
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    victim = int(mark.read_text())
    session = _pinned_session(server.url + "/score", avoid=victim)
    answers, stop = [], threading.Event()

    def steady() -> None:
        while not stop.is_set():
            answers.append(session.post(server.url + "/score", json={}, timeout=10).status_code)

    runner = threading.Thread(target=steady)
    runner.start()
    time.sleep(0.3)
    assert "slow" not in outcome, "the slow request is still inside the victim when it is killed"
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.5)
    stop.set()
    runner.join()
    deadline = time.monotonic() + 10
    while "slow" not in outcome and time.monotonic() < deadline:
        time.sleep(0.05)
    slow_outcome = outcome["slow"]
    assert isinstance(slow_outcome, requests.ConnectionError), (
        f"the request inside the killed worker {victim} fails; got {getattr(slow_outcome, 'text', slow_outcome)}"
    )
    assert len(answers) > 10 and set(answers) == {200}, "the other worker's requests all succeed"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (len(server.worker_pids()) != 2 or victim in server.worker_pids()):
        time.sleep(0.05)
    assert len(server.worker_pids()) == 2 and victim not in server.worker_pids(), "the worker is replaced"


def test_a_killed_supervisor_takes_its_workers_along_and_the_local_target_says_so(tmp_path, echo_image):
    ws = Workspace(tmp_path / "ws")
    image = echo_image(ws, tmp_path / "src")
    service = Webservice.deploy_from_image(ws, "fault-local", image, LocalWebservice.deploy_configuration(workers=2))
    try:
        service.wait_for_deployment()
        supervisor = psutil.Process(service.target["pid"])
        workers = supervisor.children()
        assert len(workers) == 2
        supervisor.kill()
        gone, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, "workers leave once their supervisor is gone, instead of serving unsupervised"
        assert service.update_deployment_state() == "Unhealthy"
        assert "not running" in service.error and "reload()" in service.error
        with pytest.raises(requests.ConnectionError):
            requests.post(service.scoring_uri, json={"x": 1}, timeout=5)
        service.reload()  # the way back that the message names
        assert service.run({"x": 1})["input"] == {"x": 1}
    finally:
        service.delete()


def test_an_alarm_that_lands_as_run_returns_does_not_turn_its_answer_into_a_timeout():
    """SIGALRM is handled between bytecodes of whatever frame runs: in the script's frames it ends run();
    in the server's own frames (run() just returned, or has not started) it is ignored and, the timer
    repeating, comes back while run() is still running."""
    script = ScoringScript("")
    scorer = Scorer(script, timeout_ms=1000, wait_ms=None, service_name="t", metrics=None)
    scorer._in_run = True
    seen = {}

    def run(data):
        try:
            scorer._on_alarm(signal.SIGALRM, sys._getframe(0))  # inside the script: a timeout
        except ScoringTimeout:
            seen["in_run"] = "timeout"
        return sys._getframe(1)  # the server's frame that called run()

    script.run, script.wants_headers = run, False
    caller = script.call({"data": 1}, None)
    scorer._on_alarm(signal.SIGALRM, caller)  # run() has returned into the server's frame: nothing happens
    assert seen == {"in_run": "timeout"}


def test_a_run_just_under_the_timeout_always_answers(tmp_path, serve, app_with):
    script = "import time, json\ndef init(): pass\ndef run(d):\n    time.sleep(json.loads(d)['s'])\n    return 'ok'\n"
    app = app_with(tmp_path, script)
    server = serve(app, config={"scoring_timeout_ms": 120})  # 40 ms of room: a loaded machine oversleeps
    statuses = [server.post(json_body={"s": 0.08}).status_code for _ in range(30)]
    assert statuses == [200] * 30
    late = server.post(json_body={"s": 0.5})
    assert late.status_code == 500 and json.loads(late.content)["message"] == "Scoring timeout after 120 ms"
