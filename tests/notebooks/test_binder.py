"""What Binder does with `binder/`, done here: a fresh environment, `pip install -r binder/requirements.txt`
from the repository root (a wheel build of mlmagics, frontend included), then `binder/postBuild`, which
must find both Jupyter extensions enabled and OK. mybinder.org itself is out of reach from this machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about 2 minutes: a fresh environment and a wheel build
def test_binder_installs_mlmagics_with_both_extensions_enabled(tmp_path):
    env_dir = tmp_path / "binder-env"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "HATCH_JUPYTER_BUILDER_SKIP_NPM")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"

    def run(*args: str, cwd: Path = tmp_path) -> str:  # away from the checkout, so nothing imports it by accident
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout + done.stderr

    python = str(bin_dir / "python")
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", "binder/requirements.txt", cwd=ROOT)
    installed = run(python, "-c", "import mlmagics, sys; print(mlmagics.__file__)")
    assert installed.strip().startswith(str(env_dir)), "a real install into the environment, not the checkout"

    listed = re.sub(r"\x1b\[[0-9;]*m", "", run("bash", str(ROOT / "binder" / "postBuild")))  # without the colours
    assert re.search(r"^\s+mlmagics enabled$", listed, re.M), f"the server extension is enabled:\n{listed}"
    assert re.search(r"^\s+mlmagics \S+ OK$", listed, re.M), f"the server extension validates:\n{listed}"
    lab = r"^\s+mlmagics v\S+ enabled OK \(python, mlmagics\)$"
    assert re.search(lab, listed, re.M), f"the prebuilt lab extension is enabled and OK:\n{listed}"

    show_target = "import os; print(os.environ['MLMAGICS_DEFAULT_TARGET'])"
    started = run("bash", str(ROOT / "binder" / "start"), sys.executable, "-c", show_target)
    assert started.strip() == "local"  # no Docker or Kubernetes on Binder
