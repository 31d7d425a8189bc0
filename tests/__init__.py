"""The tests mirror the package: tests/serving is mlmagics/serving, tests/core the core, tests/targets/<name> the
core's targets, tests/faces the magics, widgets and CLI, tests/server the Jupyter server extension. Every folder is a
package so that pytest's default import mode takes two test modules of one name (targets/docker/test_target.py,
targets/kubernetes/test_target.py) as two modules."""
