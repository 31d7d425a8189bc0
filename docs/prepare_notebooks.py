"""Give the docs the notebooks *with their outputs*: `make docs` runs this before Sphinx.

The notebooks in notebooks/ are committed without outputs. Executing them deploys real services
(06 needs a Docker engine), which the test suite does anyway: tests/notebooks/notebook_helpers.py keeps each
executed copy in .artifacts/notebooks/. So for every notebook:

- an executed copy at least as new as the source, that ran to the end, is used as it is;
- a missing, older or failed one is executed here, through the same papermill runner as the tests
  (`run_notebook`), with the values the tests give it;

then the executed copies are written to docs/tour/ (generated, git-ignored) for myst-nb, which renders
them without executing anything. The cell papermill injects (test values) and the `summary` cell
(what the tests assert on) are tagged `remove-cell`: the page shows the notebook as a user reads it.

    python docs/prepare_notebooks.py            # what make docs runs
    python docs/prepare_notebooks.py --force    # execute every notebook again
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TOUR = ROOT / "docs" / "tour"
HIDDEN = {"injected-parameters", "summary"}  # test plumbing, not documentation
TEST_BASE = "mlmagics/test-base:bookworm"  # what .ci/base-image.sh builds (Docker Hub is unreachable here)


def load_runner():
    """`run_notebook` and the folder it writes to, from the tests' notebook helpers (wherever tests/ keeps them)."""
    found = sorted(ROOT.glob("tests/**/notebook_helpers.py"))
    if not found:
        sys.exit("docs: tests/**/notebook_helpers.py (the papermill runner the tests use) is missing")
    sys.path.insert(0, str(found[0].parent))
    import notebook_helpers

    return notebook_helpers.run_notebook, notebook_helpers.ARTIFACTS


def failed(executed: Path) -> str | None:
    """Why an executed copy cannot be shown (it stopped on an error, or never finished), or None."""
    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception as e:  # noqa: BLE001 - a half-written file is just stale
        return f"unreadable ({e})"
    if nb.metadata.get("papermill", {}).get("exception"):
        return "it stopped on an error"
    for cell in nb.cells:
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return "it holds an error"
        if cell.cell_type == "code" and cell.metadata.get("papermill", {}).get("status") not in (None, "completed"):
            return "it did not run to the end"
    return None


def why_stale(source: Path, executed: Path) -> str | None:
    if not executed.exists():
        return "no executed copy"
    if executed.stat().st_mtime < source.stat().st_mtime:
        return "the executed copy is older than the notebook"
    return failed(executed)


def docker_parameters(tmp: Path) -> dict:
    """What notebook 06 needs, as tests/notebooks/test_docker.py gives it: an engine and a base image it can build from."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure means: no engine to run on
        raise SystemExit(
            f"docs: notebook 06 needs a Docker engine to execute ({e}); run `make test` where one runs "
            "(sudo bash .ci/services.sh starts it), or start dockerd, then `make docs` again"
        ) from None
    base = os.environ.get("MLMAGICS_BASE_IMAGE") or TEST_BASE
    try:
        client.images.get(base)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
        raise SystemExit(f"docs: notebook 06 builds from {base}, not on the engine (sudo bash .ci/base-image.sh)") from None
    os.environ.setdefault("MLMAGICS_IMAGE_REPO", f"mlmagics-docs-{os.getpid()}")  # the kernel inherits it
    return {"service_name": "docs-docker", "base_image": base, "cpu_cores": 1.0, "memory_gb": 0.5, "workdir": str(tmp / "work")}


def parameters(notebook: Path, tmp: Path) -> tuple[dict, float]:
    """Injected values (beyond the workspace, which run_notebook gives) and the per-cell timeout."""
    if notebook.name.startswith("06-"):
        return docker_parameters(tmp), 600
    if notebook.name.startswith("07-"):
        return {"context": ""}, 600  # no cluster here: the dry run, as the test does without one
    return {}, 300


def clean_up(workspace: Path) -> None:
    """After a failed run: stop what the notebook deployed before it stopped (local services outlive their kernel)."""
    if not (workspace / "workspace.db").exists():
        return
    try:
        from mlmagics import Webservice, Workspace

        for service in Webservice.list(Workspace(workspace)):
            service.delete(delete_collected_data=True)
    except Exception as e:  # noqa: BLE001 - best effort; the failure itself is what gets reported
        print(f"docs:   could not clean up {workspace}: {e}", flush=True)


def execute(run_notebook, notebook: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"mlmagics-docs-{notebook.stem}-") as name:
        tmp = Path(name)
        extra, timeout = parameters(notebook, tmp)
        started = time.monotonic()
        try:
            run_notebook(notebook, tmp, timeout=timeout, **extra)
        except BaseException:
            clean_up(tmp / "ws")
            clean_up(tmp / "team-ws")  # notebook 08's own
            raise
        print(f"docs:   executed in {time.monotonic() - started:.0f} s", flush=True)


def publish(executed: Path) -> None:
    """Write the executed notebook to docs/tour/ with the test plumbing hidden."""
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if HIDDEN & set(tags) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    TOUR.mkdir(parents=True, exist_ok=True)
    target, text = TOUR / executed.name, nbformat.writes(nb)
    if not target.exists() or target.read_text(encoding="utf-8") != text:  # unchanged: Sphinx keeps its page
        target.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="execute every notebook, even when a fresh executed copy exists")
    args = parser.parse_args(argv)
    run_notebook, artifacts = load_runner()
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    started = time.monotonic()
    for notebook in notebooks:
        executed = artifacts / notebook.name
        reason = "--force" if args.force else why_stale(notebook, executed)
        if reason is None:
            print(f"docs: {notebook.name}: executed copy is fresh", flush=True)
        else:
            print(f"docs: {notebook.name}: executing ({reason})", flush=True)
            execute(run_notebook, notebook)
            if problem := failed(executed):
                sys.exit(f"docs: {notebook.name} executed, but {problem}: see {executed}")
        publish(executed)
    for stray in set(TOUR.glob("*.ipynb")) - {TOUR / n.name for n in notebooks}:
        stray.unlink()  # a notebook renamed or removed since the last build
    print(f"docs: {len(notebooks)} notebooks in {TOUR.relative_to(ROOT)} ({time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
