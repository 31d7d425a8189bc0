"""mlmagics.migrate: the migration contract's three rewrites, on notebooks and .py files."""

from __future__ import annotations

import textwrap

import nbformat

from mlmagics.migrate import migrate_file, migrate_notebook, rewrite_source


def test_the_three_rewrites():
    source = textwrap.dedent(
        """\
        from azureml.core import Workspace, Model
        from azureml.core.webservice import LocalWebservice, Webservice
        from azureml.core.model import InferenceConfig
        from azureml.exceptions import WebserviceException
        import azureml.core
        print("SDK version:", azureml.core.VERSION)
        """
    )
    assert rewrite_source(source) == textwrap.dedent(
        """\
        from mlmagics import Workspace, Model
        from mlmagics import LocalWebservice, Webservice
        from mlmagics import InferenceConfig
        from mlmagics import WebserviceException
        import mlmagics
        print("SDK version:", mlmagics.VERSION)
        """
    )


def test_nothing_else_changes():
    source = textwrap.dedent(
        """\
        import azureml_helpers
        from azureml_helpers import x
        from notazureml.core import y
        # from azureml.core import Workspace
        model_path = "azureml-models/sklearn/1"
        text = "import azureml.core"
        azureml.core.model.Model.get_model_path("x")
        """
    )
    expected = source  # nothing here is one of the three forms at the start of a line
    assert rewrite_source(source) == expected


def test_multi_line_and_indented_imports_and_an_alias():
    source = textwrap.dedent(
        """\
        from azureml.core import (
            Environment,
            Workspace,
        )
        try:
            from azureml.core.webservice import AciWebservice
            import azureml.core as core
        except ImportError:
        \timport azureml.core
        print(core.VERSION, azureml.core.VERSION)
        """
    )
    assert rewrite_source(source) == textwrap.dedent(
        """\
        from mlmagics import (
            Environment,
            Workspace,
        )
        try:
            from mlmagics import AciWebservice
            import mlmagics as core
        except ImportError:
        \timport mlmagics
        print(core.VERSION, mlmagics.VERSION)
        """
    )
    import mlmagics as core

    assert isinstance(core.VERSION, str) and core.VERSION == core.__version__


def test_a_notebooks_code_cells_change_and_writefile_cells_do_not():
    scoring = textwrap.dedent(
        """\
        %%writefile score.py
        import json
        from azureml.core.model import Model

        def init():
            global model
            model = Model.get_model_path("sklearn")
        """
    )
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("from azureml.core import Workspace"),
            nbformat.v4.new_code_cell("import azureml.core\nprint(azureml.core.VERSION)"),
            nbformat.v4.new_code_cell(scoring),
            nbformat.v4.new_code_cell("from azureml.core import Workspace\nws = Workspace.from_config()"),
        ]
    )
    migration = migrate_notebook(notebook)
    assert notebook.cells[0].source == "from azureml.core import Workspace", "markdown is left alone"
    assert notebook.cells[1].source == "import mlmagics\nprint(mlmagics.VERSION)"
    assert notebook.cells[2].source == scoring, "a script the service runs keeps its azureml imports"
    assert notebook.cells[3].source == "from mlmagics import Workspace\nws = Workspace.from_config()"
    assert migration.scripts_left == [3]
    assert migration.changes == [
        (2, "import azureml.core", "import mlmagics"),
        (2, "print(azureml.core.VERSION)", "print(mlmagics.VERSION)"),
        (4, "from azureml.core import Workspace", "from mlmagics import Workspace"),
    ]


def test_migrate_file_writes_next_to_the_original_by_default(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from azureml.core import Model")])
    original = tmp_path / "deploy-to-local.ipynb"
    nbformat.write(notebook, original)
    before = original.read_text()
    target, migration = migrate_file(original)
    assert target == tmp_path / "deploy-to-local.mlmagics.ipynb"
    assert original.read_text() == before, "the original is never overwritten"
    assert nbformat.read(target, as_version=4).cells[0].source == "from mlmagics import Model"
    assert migration.changes == [(1, "from azureml.core import Model", "from mlmagics import Model")]


def test_a_py_file(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import os\nfrom azureml.core import Workspace, Model\n    import azureml.core\n")
    target, migration = migrate_file(script)
    assert target == tmp_path / "train.mlmagics.py"
    assert target.read_text() == "import os\nfrom mlmagics import Workspace, Model\n    import mlmagics\n"
    assert migration.changes == [
        (0, "from azureml.core import Workspace, Model", "from mlmagics import Workspace, Model"),
        (0, "    import azureml.core", "    import mlmagics"),
    ]
    assert migration.scripts_left == []

    chosen = tmp_path / "out" / "migrated.py"
    chosen.parent.mkdir()
    target, _ = migrate_file(str(script), output=str(chosen))
    assert target == chosen and chosen.read_text() == "import os\nfrom mlmagics import Workspace, Model\n    import mlmagics\n"
    in_place, _ = migrate_file(script, output=script)
    assert in_place == script and "azureml" not in script.read_text(), "only when output names it"


def test_the_cli_writes_the_migrated_copy_and_lists_each_change(tmp_path):
    import json as _json
    import subprocess
    import sys

    source = tmp_path / "deploy.py"
    source.write_text("import azureml.core\nfrom azureml.core.model import Model\nprint(azureml.core.VERSION)\n")
    done = subprocess.run([sys.executable, "-m", "mlmagics", "migrate", str(source), "--json"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    report = _json.loads(done.stdout)
    assert report[0]["written"] == str(tmp_path / "deploy.mlmagics.py")
    assert [c["after"] for c in report[0]["changes"]] == ["import mlmagics", "from mlmagics import Model",
                                                           "print(mlmagics.VERSION)"]  # fmt: skip
    assert source.read_text().startswith("import azureml.core"), "the original is never overwritten by default"
    missing = subprocess.run([sys.executable, "-m", "mlmagics", "migrate", str(tmp_path / "nope.ipynb")],
                             capture_output=True, text=True)  # fmt: skip
    assert (missing.returncode, missing.stderr.strip()) == (1, f"mlmagics: error: {tmp_path / 'nope.ipynb'} does not exist")
