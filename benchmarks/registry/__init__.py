"""registry_bench.py's parts: the side workers (run in each tool's venv) and the driver's report.

``common.py`` is what both side workers share (operations, timing, memory, barrier);
``mlmagics_side.py`` and ``mlflow_side.py`` each adapt one registry to it; ``report.py``
renders the Markdown report in the driver.
"""
