"""v1's CondaDependencies (reference azureml-v1-later-api.md §3): the file, its edits and v1's errors."""

from __future__ import annotations

import pytest
import yaml

from mlmagics.core import CondaDependencies, UserError
from mlmagics.core.conda_dependencies import PYTHON_DEFAULT_VERSION


def test_create_takes_pip_indexurl_first_and_defaults_to_azureml_defaults():
    positional = CondaDependencies.create(["numpy"])  # v1: the first positional is pip_indexurl, not pip_packages
    assert list(positional.pip_packages) == ["azureml-defaults"]
    assert [o.split()[0] for o in positional.pip_options] == ["--find-links"]

    default = CondaDependencies.create()
    assert list(default.pip_packages) == ["azureml-defaults"]
    assert default.get_python_version() == PYTHON_DEFAULT_VERSION

    given = CondaDependencies.create(pip_packages=["scikit-learn==1.0", "joblib"], conda_packages=["numpy"],
                                     python_version="3.9.7")  # fmt: skip
    assert list(given.pip_packages) == ["scikit-learn==1.0", "joblib"], "a given list without azureml-defaults: none"
    assert list(given.conda_packages) == ["python=3.9.7", "numpy"]
    assert list(given.pip_options) == []

    with_defaults = CondaDependencies.create(pip_packages=["azureml-defaults", "scikit-learn==0.22"], conda_packages=["numpy"])
    assert list(with_defaults.pip_packages) == ["azureml-defaults", "scikit-learn==0.22"]


def test_the_serialized_file_has_v1s_layout():
    text = CondaDependencies.create(
        pip_packages=["azureml-defaults", "scikit-learn==0.22"], conda_packages=["numpy"], python_version="3.8.13"
    ).serialize_to_string()
    assert text.startswith(
        "# Conda environment specification. The dependencies defined in this file will\n"
        "# be automatically provisioned for runs with userManagedDependencies=False.\n"
    )
    body = text[text.index("name:") :]
    assert body == (
        "name: project_environment\n"
        "dependencies:\n"
        "- python=3.8.13\n"
        "- pip:\n"
        "  - azureml-defaults\n"
        "  - scikit-learn==0.22\n"
        "- numpy\n"
        "channels:\n"
        "- anaconda\n"
        "- conda-forge\n"
    )
    assert yaml.safe_load(text) == CondaDependencies(_underlying_structure=yaml.safe_load(text)).as_dict()


def test_add_pip_package_replaces_the_same_name_and_moves_it_to_the_end():
    cd = CondaDependencies.create(pip_packages=["scikit-learn==0.22", "joblib", "pandas"])
    cd.add_pip_package("scikit-learn>=1.0")
    assert list(cd.pip_packages) == ["joblib", "pandas", "scikit-learn>=1.0"]
    cd.add_pip_package("JOBLIB[extra]==1.3")  # names compare case-insensitively, extras are not part of the name
    assert list(cd.pip_packages) == ["pandas", "scikit-learn>=1.0", "JOBLIB[extra]==1.3"]
    cd.add_pip_package("pandas")
    assert list(cd.pip_packages) == ["scikit-learn>=1.0", "JOBLIB[extra]==1.3", "pandas"]
    cd.add_pip_package("dist/mypkg-1.0-py3-none-any.whl")
    cd.add_pip_package("mypkg-1.1-py3-none-any.whl")  # a wheel: the file name's prefix is its name
    assert list(cd.pip_packages)[-1] == "mypkg-1.1-py3-none-any.whl"
    assert len([p for p in cd.pip_packages if "mypkg" in p]) == 1
    cd.remove_pip_package("scikit-learn")
    assert "scikit-learn>=1.0" not in list(cd.pip_packages)


def test_add_pip_package_creates_the_pip_entry_when_absent(tmp_path):
    path = tmp_path / "env.yml"
    path.write_text("name: x\ndependencies:\n- python=3.10\n- numpy\n")
    cd = CondaDependencies(path)
    assert list(cd.pip_packages) == []
    cd.add_pip_package("joblib")
    assert list(cd.pip_packages) == ["joblib"]
    assert {"pip": ["joblib"]} in cd.as_dict()["dependencies"]


@pytest.mark.parametrize("option", ["--extra-index-url https://example.org/simple", "-e ."])
def test_option_strings_are_not_package_names(option):
    cd = CondaDependencies()
    with pytest.raises(UserError) as info:
        cd.add_pip_package(option)
    assert info.value.message == f"Invalid package name {option}"
    assert list(cd.pip_packages) == ["azureml-defaults"]


def test_set_pip_option_needs_a_dash_and_replaces_the_same_option():
    cd = CondaDependencies()
    cd.set_pip_option("--extra-index-url https://a.example/simple")
    cd.set_pip_option("--pre")
    cd.set_pip_option("--extra-index-url https://b.example/simple")
    assert sorted(cd.pip_options) == ["--extra-index-url https://b.example/simple", "--pre"]
    assert list(cd.pip_packages) == ["azureml-defaults"], "options are not packages"
    with pytest.raises(UserError) as info:
        cd.set_pip_option("extra-index-url")
    assert info.value.message == "Invalid pip option extra-index-url"


def test_set_pip_requirements_replaces_the_whole_list():
    cd = CondaDependencies()
    cd.set_pip_requirements(["--extra-index-url https://x.example/simple", "numpy==1.26.4"])
    assert list(cd.pip_packages) == ["numpy==1.26.4"]
    assert list(cd.pip_options) == ["--extra-index-url https://x.example/simple"]


def test_conda_packages_are_added_unless_the_exact_string_is_there():
    cd = CondaDependencies()
    cd.add_conda_package("numpy")
    cd.add_conda_package("numpy")
    cd.add_conda_package("numpy=1.26")  # another string: both stay, as v1
    assert list(cd.conda_packages) == [f"python={PYTHON_DEFAULT_VERSION}", "numpy", "numpy=1.26"]
    cd.add_conda_package("python-dateutil")  # not python
    assert list(cd.conda_packages)[-1] == "python-dateutil"
    cd.remove_conda_package("numpy")
    assert "numpy" not in list(cd.conda_packages)


def test_python_is_one_entry_updated_in_place_and_cannot_be_removed():
    cd = CondaDependencies.create(conda_packages=["numpy"], python_version="3.8.13")
    cd.add_conda_package("python=3.10")
    assert list(cd.conda_packages) == ["python=3.10", "numpy"]
    assert cd.get_python_version() == "3.10"
    cd.set_python_version("3.11.7")
    assert list(cd.conda_packages)[0] == "python=3.11.7"
    assert [p for p in cd.conda_packages if p.startswith("python")] == ["python=3.11.7"]
    for spec in ("python", "python=3.11.7"):
        with pytest.raises(UserError) as info:
            cd.remove_conda_package(spec)
        assert info.value.message == "python must not be removed from conda dependencies"
    assert cd.get_python_version() == "3.11.7"


def test_channels():
    cd = CondaDependencies()
    cd.add_channel("pytorch")
    cd.add_channel("pytorch")
    assert list(cd.conda_channels) == ["anaconda", "conda-forge", "pytorch"]
    cd.remove_channel("anaconda")
    assert list(cd.conda_channels) == ["conda-forge", "pytorch"]


def test_the_lists_are_iterators_over_copies():
    cd = CondaDependencies.create(pip_packages=["joblib"], conda_packages=["numpy"])
    for name in ("pip_packages", "conda_packages", "conda_channels", "pip_options"):
        with pytest.raises(TypeError):
            len(getattr(cd, name))  # v1 notebooks wrap them in list()
    packages = list(cd.pip_packages)
    packages.append("pandas")
    assert list(cd.pip_packages) == ["joblib"]
    iterator = cd.conda_packages
    cd.add_conda_package("scipy")
    assert "scipy" not in list(iterator), "a copy taken when asked for"


def test_serialize_round_trips_through_a_file(tmp_path):
    cd = CondaDependencies.create(pip_packages=["azureml-defaults", "scikit-learn==1.3.2"], conda_packages=["numpy"])
    cd.set_pip_option("--extra-index-url https://x.example/simple")
    cd.add_channel("pytorch")
    path = tmp_path / "myenv.yml"
    path.write_text(cd.serialize_to_string())
    again = CondaDependencies(str(path))
    assert again.serialize_to_string() == cd.serialize_to_string()
    assert again == cd
    assert list(again.pip_packages) == ["azureml-defaults", "scikit-learn==1.3.2"]
    assert again.get_python_version() == cd.get_python_version()


def test_save_writes_the_file_and_refuses_what_v1_refuses(tmp_path):
    cd = CondaDependencies.create(pip_packages=["joblib"])
    target = tmp_path / "env.yml"
    assert cd.save(str(target)) == str(target)
    assert CondaDependencies(target) == cd

    with pytest.raises(UserError) as info:
        cd.save(str(tmp_path))
    assert info.value.message == (
        "Cannot save a conda environment specification file to a directory. Please specify a fully qualified path "
        "along with the file name to save the file."
    )
    with pytest.raises(UserError) as info:
        cd.save(str(tmp_path / "missing" / "env.yml"))
    assert info.value.message == "Cannot save the conda environment specification file to an invalid path."
    no_python = tmp_path / "nopython.yml"
    no_python.write_text("name: x\ndependencies:\n- numpy\n")
    with pytest.raises(UserError) as info:
        CondaDependencies(no_python).save(str(tmp_path / "out.yml"))
    assert info.value.message == "Python package is missing."
    assert not (tmp_path / "out.yml").exists()
    with pytest.raises(TypeError):
        cd.save()  # type: ignore[call-arg]


def test_save_to_file_is_relative_to_its_folder(tmp_path):
    cd = CondaDependencies.create(pip_packages=["joblib"])
    written = cd.save_to_file(str(tmp_path), conda_file_path="myenv.yml")
    assert written == str(tmp_path / "myenv.yml") and CondaDependencies(written) == cd


def test_unknown_top_level_keys_and_non_mappings_are_refused(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\ndependencies:\n- python=3.10\nrequirements:\n- numpy\n")
    with pytest.raises(UserError) as info:
        CondaDependencies(bad)
    assert info.value.message == "Environment error: unknown requirements key in environment specification"
    for key in ("name", "channels", "dependencies", "prefix", "variables"):
        CondaDependencies(_underlying_structure={key: None if key != "dependencies" else []})
    listing = tmp_path / "list.yml"
    listing.write_text("- numpy\n- scipy\n")
    with pytest.raises(UserError) as info:
        CondaDependencies(listing)
    assert info.value.message == "Environment error: not a valid YAML structure"


@pytest.mark.parametrize(
    "text, said",
    [
        ("dependencies: numpy\n", "dependencies must be a list, got str"),
        ("dependencies: 5\n", "dependencies must be a list, got int"),
        ("dependencies:\n  numpy: 1\n", "dependencies must be a list, got dict"),
        ("dependencies:\n- pip: numpy\n", "the pip entry of dependencies must be a list"),
        ("dependencies:\n- pip: 3\n", "the pip entry of dependencies must be a list"),
        ("dependencies:\n- [numpy]\n", "not a package string"),
        ("channels: conda-forge\n", "channels must be a list"),
    ],
)
def test_a_malformed_structure_is_one_line_not_a_traceback(tmp_path, text, said):
    conda = tmp_path / "env.yml"
    conda.write_text(text)
    with pytest.raises(UserError) as info:
        CondaDependencies(conda)
    assert said in info.value.message
    assert "\n" not in info.value.message
