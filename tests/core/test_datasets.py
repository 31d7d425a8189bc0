"""Datastores and datasets: v1's calls on folders of the workspace (no Azure storage), v1's messages."""

from __future__ import annotations

import json

import pytest

from mlmagics import Dataset, Datastore, Model, NotFoundError, ResourceConfiguration, UserError, dataset_type_definitions


@pytest.fixture
def store(ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,2\n3,4\n")
    (tmp_path / "data" / "sub" / "b.csv").write_text("x,y\n5,6\n")
    return Datastore.get_default(ws)


def test_upload_files_names_them_under_their_common_folder_and_skips_existing(store, capsys):
    ref = store.upload_files(["./data/a.csv", "./data/sub/b.csv"], target_path="../../train/")
    assert ref.path_on_datastore == "train", "leading ../ runs are stripped, as v1"
    assert sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*.csv")) == ["train/a.csv", "train/sub/b.csv"]
    assert "Uploaded 2 files" in capsys.readouterr().out
    store.upload_files(["./data/a.csv"], relative_root="data", target_path="train")
    assert "Target already exists. Skipping upload for train/a.csv" in capsys.readouterr().out
    with pytest.raises(UserError, match="does not point to a file"):
        store.upload_files(["./nope.csv"])
    with pytest.raises(UserError, match="is not part of the file_path"):
        store.upload_files(["./data/a.csv"], relative_root="elsewhere")


def test_upload_and_download_a_folder(store, tmp_path):
    store.upload("data", target_path="copy", show_progress=False)
    assert store.download(str(tmp_path / "out"), prefix="copy", show_progress=False) == 2
    assert (tmp_path / "out" / "copy" / "sub" / "b.csv").read_text() == "x,y\n5,6\n"
    with pytest.raises(UserError, match="src_path must be a directory."):
        store.upload("data/a.csv")


def test_a_tabular_dataset_reads_globs_and_registers_by_version(ws, store):
    store.upload("data", target_path="t", show_progress=False)
    table = Dataset.Tabular.from_delimited_files([(store, "t/**/*.csv")])
    assert table.to_pandas_dataframe()["y"].tolist() == [2, 4, 6]
    first = table.register(ws, "numbers", description="x and y")
    assert (first.name, first.version, first.description) == ("numbers", 1, "x and y")
    assert table.register(ws, "numbers").version == 1, "an identical definition is the same version"
    other = Dataset.Tabular.from_delimited_files([(store, "t/a.csv")])
    with pytest.raises(UserError, match='There is already a dataset registered under name "numbers"'):
        other.register(ws, "numbers")
    assert other.register(ws, "numbers", create_new_version=True).version == 2
    assert Dataset.get_by_name(ws, "numbers").to_pandas_dataframe().shape == (2, 2)
    assert Dataset.get_by_name(ws, "numbers", version=1).to_pandas_dataframe().shape == (3, 2)
    with pytest.raises(NotFoundError, match=r'name "nothing" \(version: None\)'):
        Dataset.get_by_name(ws, "nothing")
    with pytest.raises(UserError, match='Invalid value newest for version. Version value must be number or "latest".'):
        Dataset.get_by_name(ws, "numbers", version="newest")


def test_one_request_per_line_is_one_column_and_profiles_take_it(ws, store, tmp_path):
    (tmp_path / "requests.txt").write_text("\n".join(json.dumps({"data": [[i]]}) for i in range(3)) + "\n")
    store.upload_files(["requests.txt"], target_path="sample", show_progress=False)
    no_headers = dataset_type_definitions.PromoteHeadersBehavior.NO_HEADERS
    rows = Dataset.Tabular.from_delimited_files(store.path("sample/requests.txt"), separator="\n", header=no_headers)
    frame = rows.to_pandas_dataframe()
    assert list(frame.columns) == ["Column1"] and json.loads(frame.iloc[2, 0]) == {"data": [[2]]}
    from mlmagics.core.profiling import requests_from

    assert requests_from(rows) == [json.dumps({"data": [[i]]}) for i in range(3)], "Model.profile sends each line"


def test_path_and_option_checks(store):
    with pytest.raises(UserError, match="Invalid tuple for path"):
        Dataset.Tabular.from_delimited_files([(store, "a", "b")])
    with pytest.raises(UserError, match="Invalid argument type for `path`"):
        Dataset.File.from_files(42)
    with pytest.raises(UserError, match="Invalid encoding 'ebcdic'"):
        Dataset.Tabular.from_delimited_files([(store, "x.csv")], encoding="ebcdic")
    with pytest.raises(UserError, match="Unsupported header provided. The allowed values are NO_HEADERSONLY_FIRST"):
        Dataset.Tabular.from_delimited_files([(store, "x.csv")], header="SOME")
    with pytest.raises(UserError, match="Failed to validate the data.If data is inaccessible, please set validate to False."):
        Dataset.Tabular.from_delimited_files([(store, "missing.csv")])
    assert Dataset.Tabular.from_delimited_files([(store, "missing.csv")], validate=False).files()


def test_a_file_dataset_downloads_its_files(store, tmp_path):
    store.upload("data", target_path="f", show_progress=False)
    files = Dataset.File.from_files((store, "f"))
    assert files.to_path() == ["/a.csv", "/sub/b.csv"]
    downloaded = sorted(files.download(str(tmp_path / "dl")))
    assert downloaded == [str(tmp_path / "dl" / "a.csv"), str(tmp_path / "dl" / "sub" / "b.csv")]
    with pytest.raises(UserError, match="exists; pass overwrite=True"):
        files.download(str(tmp_path / "dl"))


def test_a_model_records_its_sample_datasets_and_sizing(ws, store):
    store.upload("data", target_path="s", show_progress=False)
    sample = Dataset.Tabular.from_delimited_files([(store, "s/a.csv")]).register(ws, "sample")
    model = Model.register(ws, "data/a.csv", "m", model_framework=Model.Framework.SCIKITLEARN, sample_input_dataset=sample,
                           resource_configuration=ResourceConfiguration(cpu=1, memory_in_gb=0.5))  # fmt: skip
    assert model.properties["sampleInputDataset"] == "sample:1"
    assert json.loads(model.properties["resourceConfiguration"]) == {"cpu": 1, "memoryInGB": 0.5, "gpu": None}
    with pytest.raises(UserError, match="Model framework version cannot be provided without a valid framework"):
        Model.register(ws, "data/a.csv", "m", model_framework_version="1.0")
    with pytest.raises(UserError, match="Invalid configuration, cpu must be greater than zero."):
        ResourceConfiguration(cpu=0)


def test_take_is_a_dataset_of_the_first_rows(store):
    table = Dataset.Tabular.from_delimited_files("data/a.csv")
    first = table.take(1)
    assert type(first) is type(table) and first.to_pandas_dataframe()["y"].tolist() == [2]
    assert first.take(5).to_pandas_dataframe().shape == (1, 2), "take of a take keeps the smaller count"
    with pytest.raises(UserError, match="take\\(\\) needs a row count"):
        table.take(-1)


def test_bad_names_versions_tags_and_paths_are_one_line(ws, store, tmp_path, monkeypatch):
    table = Dataset.Tabular.from_delimited_files("data/a.csv")
    for name in (None, "", " ", "x" * 256, "tab\there"):
        with pytest.raises(UserError, match="a dataset name is 1-255 printable characters"):
            table.register(ws, name)
    with pytest.raises(UserError, match="tags must be a dict"):
        table.register(ws, "t", tags=5)
    with pytest.raises(UserError, match="Version value must be number"):
        Dataset.get_by_name(ws, "t", version="9" * 30)
    for path in ("", "a\0b"):
        with pytest.raises(UserError, match="Invalid argument type for `path`"):
            Dataset.File.from_files(path)
    from mlmagics.core import datasets

    monkeypatch.setattr(datasets, "MAX_FILES", 1)
    with pytest.raises(UserError, match="name more than 1 files"):
        Dataset.File.from_files("data")
    with pytest.raises(UserError, match="name more than 1 files"):
        Dataset.File.from_files("data/**/*.csv")


def test_upload_files_refuses_no_files_and_a_root_that_only_prefixes_the_name(store, tmp_path):
    for files in ([], "data/a.csv"):
        with pytest.raises(UserError, match="files must be a non-empty list"):
            store.upload_files(files)
    (tmp_path / "database").mkdir()
    (tmp_path / "database" / "c.csv").write_text("x\n1\n")
    with pytest.raises(UserError, match="is not part of the file_path"):
        store.upload_files(["./database/c.csv"], relative_root="data")


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"cpu": "a"}, "cpu must be greater than zero"),
        ({"cpu": float("nan")}, "cpu must be greater than zero"),
        ({"memory_in_gb": [1]}, "memory_in_gb must be greater than zero"),
        ({"gpu": -1}, "gpu must be integer and greater than zero"),
        ({"gpu": True}, "gpu must be integer and greater than zero"),
    ],
)
def test_a_resource_configuration_that_is_not_a_positive_number_is_refused(kwargs, said):
    with pytest.raises(UserError, match=said):
        ResourceConfiguration(**kwargs)
    assert ResourceConfiguration(cpu=0.5, memory_in_gb=1, gpu=1).serialize() == {"cpu": 0.5, "memoryInGB": 1, "gpu": 1}
