"""Installed without an extra, mlmagics works for what needs none, and a target that needs one says which."""

from __future__ import annotations

import subprocess
import sys

import pytest

WITHOUT = """
import sys
for name in {missing!r}:
    sys.modules[name] = None  # as if the extra were not installed: importing it raises ImportError
import mlmagics.core as core
from mlmagics.core import TargetUnavailable
assert not {{"docker", "kubernetes"}} & set(k for k, v in sys.modules.items() if v is not None), "not imported by the core"
try:
    {call}
except TargetUnavailable as e:
    print(e.message)
"""


@pytest.mark.parametrize(
    ("missing", "call", "extra"),
    [
        (["docker"], "core.DockerWebservice.build_image(None)", "mlmagics[docker]"),
        (["kubernetes", "kubernetes.client", "kubernetes.config"], "core.KubernetesCompute(context='x').namespace",
         "mlmagics[kubernetes]"),
    ],
    ids=["docker", "kubernetes"],
)
def test_a_target_without_its_extra_says_in_one_line_which_to_install(missing, call, extra):
    done = subprocess.run([sys.executable, "-c", WITHOUT.format(missing=missing, call=call)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert f"pip install '{extra}'" in line


def test_the_local_target_needs_no_extra(tmp_path):
    code = (
        "import sys; [sys.modules.__setitem__(n, None) for n in ('docker', 'kubernetes', 'matplotlib', 'jupyter_server')]; "
        "from mlmagics import LocalWebservice, target_class; "
        "print(target_class('local') is LocalWebservice, LocalWebservice.deploy_configuration(port=8890).port)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.stdout.split() == ["True", "8890"], done.stderr
