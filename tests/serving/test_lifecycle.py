"""Workers, start-up failures, shutdown, and the service settings the server enforces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

ECHO = """
import json, os, time

def init():
    with open(f"init-{os.getpid()}.txt", "w") as f:
        f.write("ok")
    print("init ran in", os.getpid())

def run(raw_data, request_headers):
    d = json.loads(raw_data) if raw_data else {}
    if "sleep" in d:
        time.sleep(d["sleep"])
    print("scoring", d)
    return {"pid": os.getpid(), "headers": request_headers, "cwd": os.getcwd()}
"""


def test_init_runs_once_per_worker_in_the_app_root(tmp_path, serve, app_with):
    app = app_with(tmp_path, ECHO)
    server = serve(app, workers=2)
    deadline = time.monotonic() + 10
    while len(list(app.glob("init-*.txt"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = {int(p.stem.split("-")[1]) for p in app.glob("init-*.txt")}
    assert pids == set(server.worker_pids())
    answer = server.post(json_body={}).json()
    assert answer["cwd"] == str(app)
    assert answer["pid"] in pids


def test_request_headers_parameter_receives_the_headers(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, ECHO))
    headers = server.post(json_body={}, headers={"X-Custom-Thing": "42"}).json()["headers"]
    assert headers["X-Custom-Thing"] == "42"
    assert headers["Content-Type"] == "application/json"


def test_print_from_the_script_reaches_the_log(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, ECHO))
    server.post(json_body={"hello": "log"})
    prints = [r["msg"] for r in server.log_records() if r["logger"] == "print"]
    assert any(m.startswith("init ran in") for m in prints)
    assert "scoring {'hello': 'log'}" in prints


USES_LOGGING = """
import logging

log = logging.getLogger(__name__)

def init():
    logging.info("model loaded")
    logging.getLogger("some.library").debug("too detailed for INFO")

def run(raw_data):
    log.warning("odd input: %s", raw_data)
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("scoring failed")
    return raw_data
"""


def test_the_scripts_logging_calls_reach_the_log_as_json_lines(tmp_path, serve, app_with):
    """v1 scripts log with `logging`; their records become lines of the server's log, at its level."""
    server = serve(app_with(tmp_path, USES_LOGGING))
    server.post(data="abc")
    records = {r["msg"]: r for r in server.log_records()}
    assert records["model loaded"]["logger"] == "root" and records["model loaded"]["level"] == "INFO"
    assert records["odd input: abc"]["logger"] == "entry_module" and records["odd input: abc"]["level"] == "WARNING"
    assert records["odd input: abc"]["where"].endswith("score.py:11")
    assert "ZeroDivisionError: division by zero" in records["scoring failed"]["traceback"]
    assert "too detailed for INFO" not in records  # AZUREML_LOG_LEVEL (default INFO) applies


def test_a_logging_json_in_the_app_root_configures_logging_as_in_v1(tmp_path, serve, app_with):
    app = app_with(tmp_path, USES_LOGGING)
    (app / "logging.json").write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {"plain": {"format": "%(levelname)s|%(name)s|%(message)s"}},
                "handlers": {"file": {"class": "logging.FileHandler", "filename": str(app / "user.log"), "formatter": "plain"}},
                "root": {"level": "DEBUG", "handlers": ["file"]},
            }
        )
    )
    server = serve(app)
    server.post(data="abc")
    assert any(r["msg"] == f"logging configured from {app / 'logging.json'}" for r in server.log_records())
    user_log = (app / "user.log").read_text().splitlines()
    assert user_log[:3] == [
        "INFO|root|model loaded",
        "DEBUG|some.library|too detailed for INFO",
        "WARNING|entry_module|odd input: abc",
    ]

    (app / "logging.json").write_text('{"version": 1, "handlers": {"x": {"class": "no.such.Handler"}}}')
    broken = serve(app)
    assert broken.post(data="abc").status_code == 200  # a broken logging.json is reported, not fatal
    assert any("logging.json was not applied (ValueError" in r["msg"] for r in broken.log_records())


def test_one_json_log_line_per_request(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, ECHO))
    for i in range(5):
        server.post(json_body={"i": i}, headers={"x-request-id": f"req-{i}"})
    access = [r for r in server.log_records() if r["logger"] == "access"]
    assert [r["request_id"] for r in access] == [f"req-{i}" for i in range(5)]
    assert all(r["status"] == 200 and r["path"] == "/score" and r["duration_ms"] > 0 for r in access)


NATIVE_OUTPUT = """
import os

def init():
    pass

def run(raw_data):
    if raw_data == "native":
        os.write(2, b"straight to file descriptor 2\\n")  # what a C library's output looks like
    return raw_data
"""


def test_a_log_file_is_rotated_by_size_and_every_process_follows(tmp_path, serve, app_with):
    """Two workers write one log file; it rotates at log_max_bytes into log_backups files, no line is
    torn or lost to a stale file, and output that bypasses Python (fd 2) lands in it too."""
    log_file = tmp_path / "logs" / "server.log"
    log_file.parent.mkdir()
    server = serve(
        app_with(tmp_path, NATIVE_OUTPUT),
        workers=2,
        config={"log_max_bytes": 8192, "log_backups": 2},
        extra_args=["--log-file", str(log_file)],
    )
    for i in range(300):  # ~250 bytes of access line each: about 9 files' worth
        assert server.post(data=f"body-{i}", headers={"x-request-id": f"rotation-{i:03d}"}).status_code == 200
    assert server.post(data="native").status_code == 200

    kept = [log_file, log_file.with_name("server.log.1"), log_file.with_name("server.log.2")]
    newest = {f"rotation-{i:03d}" for i in range(280, 300)}
    deadline = time.monotonic() + 10  # every process flushes (and follows a rotation) every 50 ms; a busy machine lags
    while True:
        lines = [line for p in reversed(kept) if p.exists() for line in p.read_text().splitlines()]
        records = [json.loads(line) for line in lines if line != "straight to file descriptor 2"]  # none torn
        ids = [r["request_id"] for r in records if r["logger"] == "access" and r["request_id"].startswith("rotation-")]
        # the newest lines are all there (two workers flush their lines every 50 ms, so not necessarily in order)
        if newest <= set(ids[-40:]) and "straight to file descriptor 2" in lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert newest <= set(ids[-40:])
    assert "straight to file descriptor 2" in lines
    assert all(p.exists() for p in kept)
    assert not log_file.with_name("server.log.3").exists()  # log_backups=2: older files are dropped
    assert sum(p.stat().st_size for p in kept) < 3 * (8192 + 16384)  # bounded, not 75 KB and growing
    assert len(ids) < 200  # and the oldest were rotated away
    assert server.log_path.read_text() == ""  # nothing went to stdout


def test_request_ids_are_echoed_or_created(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, ECHO))
    r = server.post(json_body={}, headers={"x-request-id": "abc", "x-ms-client-request-id": "client-1", "TraceId": "t1"})
    assert (r.headers["x-request-id"], r.headers["x-ms-request-id"]) == ("abc", "client-1")
    assert (r.headers["x-ms-client-request-id"], r.headers["traceid"]) == ("client-1", "t1")
    created = {server.post(json_body={}).headers["x-request-id"] for _ in range(3)}
    assert len(created) == 3 and all(len(i) == 36 and i[14] == "4" for i in created)


def test_a_worker_killed_with_sigkill_is_replaced_and_counted(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, ECHO), workers=2)
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(0.05)
    assert len(pids) == 2 and victim not in pids
    server.wait_ready()
    answers = [server.post(json_body={}) for _ in range(20)]
    assert all(r.status_code == 200 for r in answers)
    time.sleep(1.2)  # workers publish their metrics every second
    metrics = server.get("/metrics").text
    assert "mlmagics_worker_restarts_total 1.0" in metrics
    assert any(r["level"] == "WARNING" and f"worker {victim} died (signal 9)" in r["msg"] for r in server.log_records())


def test_sigterm_drains_in_flight_requests(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, ECHO))
    result = {}
    slow = threading.Thread(target=lambda: result.setdefault("r", server.post(json_body={"sleep": 1.0})))
    slow.start()
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    slow.join(10)
    assert result["r"].status_code == 200, "the in-flight request finished"
    assert server.process.wait(10) == 0
    assert "server stopped" in server.log()


FAILING_INIT = """
import os
from azureml.core.model import Model

def init():
    global model
    model = open(Model.get_model_path("missing_model")).read()

def run(raw_data):
    return raw_data
"""


def test_a_separate_health_port_answers_liveness_and_readiness_only(tmp_path, serve, free_port, app_with):
    """v1's SEPERATE_HEALTH_ENDPOINT=true + HEALTH_PORT: a second port for the probes, answering
    even while every worker is busy in run()."""
    health_port = free_port()
    server = serve(app_with(tmp_path, ECHO), env={"SEPERATE_HEALTH_ENDPOINT": "true", "HEALTH_PORT": str(health_port)})
    health = f"http://127.0.0.1:{health_port}"
    busy = threading.Thread(target=server.post, kwargs={"json_body": {"sleep": 1.5}})
    busy.start()
    time.sleep(0.3)
    started = time.monotonic()
    live = requests.get(health + "/", timeout=5)
    assert (live.status_code, live.text) == (200, "Healthy") and time.monotonic() - started < 0.5
    assert requests.get(health + "/ready", timeout=5).json()["status"] == "Ready"
    refused = requests.post(health + "/score", json={}, timeout=5)
    assert refused.status_code == 404
    assert refused.json()["message"].startswith("The requested URL was not found on the server.")  # v1's text
    busy.join()
    assert server.get("/").text == "Healthy" and server.post(json_body={}).status_code == 200  # the main port is unchanged
    records = server.log_records()
    assert any(f"health on http://127.0.0.1:{health_port}/" in r["msg"] for r in records)
    assert any(f"score on port {server.port}" in r.get("hint", "") for r in records), "the log line says where to score"


def test_the_health_port_serves_metrics_without_a_key_while_the_scoring_port_asks_for_one(tmp_path, serve, free_port, app_with):
    health_port = free_port()
    server = serve(app_with(tmp_path, ECHO), config={"auth_enabled": True, "primary_key": "k1", "health_port": health_port})
    assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 401
    scraped = requests.get(f"http://127.0.0.1:{health_port}/metrics", timeout=5)
    assert scraped.status_code == 200 and "mlmagics_workers_ready" in scraped.text
    assert requests.post(f"http://127.0.0.1:{health_port}/score", json={}, timeout=5).status_code == 404


def test_https_with_a_certificate_and_key(tmp_path, serve, self_signed_certificate, app_with):
    cert, key = self_signed_certificate(tmp_path / "tls")
    server = serve(
        app_with(tmp_path, ECHO),
        ready=False,
        config={"auth_enabled": True, "primary_key": "k1"},
        extra_args=["--ssl-cert", str(cert), "--ssl-key", str(key)],
    )
    https = f"https://localhost:{server.port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(https + "/ready", verify=str(cert), timeout=2).raise_for_status()
            break
        except requests.RequestException:
            time.sleep(0.05)
    answer = requests.post(https + "/score", json={}, headers={"Authorization": "Bearer k1"}, verify=str(cert), timeout=10)
    assert answer.status_code == 200 and answer.json()["cwd"] == str(tmp_path / "app")
    with pytest.raises(requests.exceptions.SSLError):  # an unknown certificate is refused by a careful client
        requests.get(https + "/", timeout=5)
    with pytest.raises(requests.ConnectionError):  # plain HTTP gets no answer ...
        requests.get(f"http://127.0.0.1:{server.port}/", timeout=5)
    assert requests.get(https + "/", verify=str(cert), timeout=5).text == "Healthy"  # ... and harms nothing
    assert any(r["msg"].startswith("mlmagics scoring server listening on https://") for r in server.log_records())


def test_a_tls_client_that_never_closes_does_not_hold_a_stopping_server(tmp_path, serve, self_signed_certificate, app_with):
    import socket
    import ssl

    cert, key = self_signed_certificate(tmp_path / "tls")
    server = serve(app_with(tmp_path, ECHO), ready=False, extra_args=["--ssl-cert", str(cert), "--ssl-key", str(key)])
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 30
    while True:
        try:
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    held = context.wrap_socket(raw, server_hostname="localhost")  # handshake done, then silence: no close_notify ever
    held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"Healthy" in held.recv(4096)
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 8, "the idle TLS connection is closed, not waited for until graceful_timeout_s"
    held.close()


def test_https_settings_are_checked_at_start(tmp_path, app_with, self_signed_certificate):
    app = app_with(tmp_path, ECHO)
    cert, key = self_signed_certificate(tmp_path / "tls")
    other_cert, _ = self_signed_certificate(tmp_path / "other")

    def start(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mlmagics.serving", "score.py", "--port", "1", *args],
            cwd=app, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 2
        return done.stderr.strip()

    assert start("--ssl-cert", str(cert)) == (
        "python -m mlmagics.serving: error: HTTPS needs both ssl_cert_file and ssl_key_file (PEM files); give both or neither"
    )
    mismatch = start("--ssl-cert", str(other_cert), "--ssl-key", str(key))
    assert mismatch.startswith(
        f"python -m mlmagics.serving: error: cannot use the TLS certificate {other_cert} with the key {key}"
    )
    assert mismatch.endswith("give PEM files that belong together")
    missing = start("--ssl-cert", str(tmp_path / "nope.pem"), "--ssl-key", str(key))
    assert "cannot use the TLS certificate" in missing and "No such file or directory" in missing


def test_init_failure_is_reported_with_its_traceback_not_served_as_500s(tmp_path, serve, app_with):
    app = app_with(tmp_path, FAILING_INIT)
    (app / "azureml-models" / "other" / "1").mkdir(parents=True)
    (app / "azureml-models" / "other" / "1" / "model.pkl").write_text("x")
    server = serve(app, model_dir=str(app / "azureml-models"))
    ready = server.get("/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "Failed" and body["stage"] == "init"
    assert body["message"].startswith("init() raised ModelNotFoundException: Model 'missing_model' not found")
    assert 'Model.get_model_path("missing_model")' in body["traceback"]
    score = server.post(data="{}")
    assert score.status_code == 503
    assert score.json()["message"].startswith("The scoring script could not start: init() raised ModelNotFoundException")
    assert server.get("/").text == "Healthy", "the process lives: liveness stays green, readiness tells why"
    error = next(r for r in server.log_records() if r["level"] == "ERROR")
    assert "model.pkl" in error["model_dir_tree"], "v1 logs the model folder when init() fails"


def test_import_failure_and_missing_functions_are_explained(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, "def init():\n    pass\n\ndef run(x:\n"))
    body = server.get("/ready").json()
    assert body["stage"] == "import" and body["message"].startswith("importing the script raised SyntaxError")
    other = serve(app_with(tmp_path / "b", "def init():\n    pass\n"))
    body = other.get("/ready").json()
    assert body["message"].endswith("has no run() function; a scoring script defines init() and run()")


def test_run_signature_is_checked_like_v1(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, "def init(): pass\ndef run(*args): pass\n"))
    assert server.get("/ready").json()["message"] == "run() cannot accept positional-only arguments, *args, or **kwargs."


def test_cors_origins_are_answered_only_for_allowed_origins(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, ECHO), config={"cors_origins": "http://a.example, http://b.example"})
    pre = requests.options(
        server.url + "/score",
        headers={
            "Origin": "http://a.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=10,
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "http://a.example"
    assert pre.headers["access-control-allow-methods"] == "GET, POST"
    assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
    simple = server.post(json_body={}, headers={"Origin": "http://b.example"})
    assert simple.headers["access-control-allow-origin"] == "http://b.example"
    other = server.post(json_body={}, headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_regenerated_keys_in_the_keys_file_apply_without_restart(tmp_path, serve, app_with):
    app = app_with(tmp_path, ECHO)
    keys = app / "keys.json"
    keys.write_text(json.dumps({"primary_key": "old-1", "secondary_key": "old-2"}))
    server = serve(app, config={"auth_enabled": True, "keys_file": str(keys)})
    assert server.post(json_body={}, headers={"Authorization": "Bearer old-1"}).status_code == 200
    keys.write_text(json.dumps({"primary_key": "new-1", "secondary_key": "old-2"}))
    os.utime(keys, (time.time() + 5, time.time() + 5))  # a distinct mtime even on coarse clocks
    time.sleep(1.1)
    assert server.post(json_body={}, headers={"Authorization": "Bearer old-1"}).status_code == 401
    assert server.post(json_body={}, headers={"Authorization": "Bearer new-1"}).status_code == 200


def test_metrics_count_requests_by_status_and_time_them(tmp_path, serve, app_with):
    server = serve(app_with(tmp_path, ECHO), workers=2)
    for _ in range(6):
        server.post(json_body={})
    server.get("/nope")
    time.sleep(1.2)
    text = server.get("/metrics").text
    assert 'mlmagics_requests_total{method="POST",route="/score",status="200"} 6.0' in text
    assert 'mlmagics_requests_total{method="GET",route="other",status="404"} 1.0' in text
    assert 'mlmagics_request_duration_seconds_count{route="/score"} 6.0' in text
    assert "mlmagics_run_duration_seconds_count 6.0" in text
    assert "mlmagics_workers_ready 2.0" in text
    assert "mlmagics_requests_in_flight 0.0" in text


def test_model_data_collector_writes_rotated_json_lines_when_enabled(tmp_path, serve, app_with, collecting_script):
    app = app_with(tmp_path, collecting_script)
    server = serve(app, config={"collect_model_data": True}, env={"MLMAGICS_DATA_COLLECTION_FILE_BYTES": "600"})
    ids = [server.post(json_body={"data": [[i, i + 1]]}, headers={"x-request-id": f"r{i}"}).json() for i in range(8)]
    assert ids == [f"r{i}" for i in range(8)], "the correlation id is the request id"
    files = sorted((app / "model-data" / "best_model" / "inputs").rglob("*.jsonl"))
    assert len(files) > 1, "rotated once past the size limit"
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(r["correlation_id"] for r in records) == sorted(ids)
    assert {r["feature_names"] == ["a", "b"] and r["model"] == "best_model" for r in records} == {True}
    predictions = [
        json.loads(line)
        for f in (app / "model-data" / "best_model" / "predictions").rglob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert sorted(r["data"][0] for r in predictions) == [2 * i + 1 for i in range(8)]


def test_model_data_collector_records_nothing_when_disabled(tmp_path, serve, app_with, collecting_script):
    app = app_with(tmp_path, collecting_script)
    server = serve(app)
    assert server.post(json_body={"data": [[1, 2]]}).status_code == 200
    assert not (app / "model-data").exists()


VERSIONED = """
import time
VERSION = {version!r}

def init():
    time.sleep(0.5)  # a model that takes a moment to load
    if VERSION == "broken":
        raise RuntimeError("the new model does not load")

def run(raw_data):
    return VERSION
"""


def _reload(server, app, version: str) -> dict:
    script = app / f"score_{version}.py"
    script.write_text(VERSIONED.format(version=version))
    state_file = app / "state.json"
    before = json.loads(state_file.read_text()).get("reload")
    (app / "state.json.reload").write_text(json.dumps({"entry_script": str(script), "app_root": str(app)}))
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = json.loads(state_file.read_text())
        if state.get("reload") and state["reload"] != before:
            return state
        time.sleep(0.05)
    raise AssertionError("no reload outcome in the state file")


def _hammer(server, stop: threading.Event, answers: list) -> None:
    session = requests.Session()
    while not stop.is_set():
        try:
            r = session.post(server.url + "/score", data="{}", timeout=10)
            answers.append((r.status_code, r.json()))
        except requests.RequestException as e:  # noqa: PERF203
            answers.append((0, repr(e)))


def test_sighup_reload_switches_version_on_the_same_port_without_dropping_a_request(tmp_path, serve, app_with):
    app = app_with(tmp_path, VERSIONED.format(version="v1"))
    server = serve(app, workers=2, extra_args=["--state-file", str(app / "state.json")])
    stop, answers = threading.Event(), []
    load = threading.Thread(target=_hammer, args=(server, stop, answers))
    load.start()
    state = _reload(server, app, "v2")
    time.sleep(0.3)
    stop.set()
    load.join()
    assert state["reload"]["ok"] and state["generation"] == 1 and state["port"] == server.port
    assert {status for status, _ in answers} == {200}, [a for a in answers if a[0] != 200][:3]
    versions = [body for _, body in answers]
    assert versions[0] == "v1" and versions[-1] == "v2"
    assert versions == sorted(versions), "every request after the switch gets the new version"


def test_a_failed_reload_keeps_the_previous_version_serving(tmp_path, serve, app_with):
    app = app_with(tmp_path, VERSIONED.format(version="v1"))
    server = serve(app, extra_args=["--state-file", str(app / "state.json")])
    old_workers = server.worker_pids()
    state = _reload(server, app, "broken")
    assert state["reload"]["ok"] is False and state["generation"] == 0
    assert "init() raised RuntimeError: the new model does not load" in state["reload"]["message"]
    assert 'raise RuntimeError("the new model does not load")' in state["reload"]["traceback"]
    assert server.post(data="{}").json() == "v1"
    time.sleep(0.3)
    assert server.worker_pids() == old_workers, "the failed generation is gone, the old one untouched"
