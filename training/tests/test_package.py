"""Publication primitives: never replace a version, leave nothing half-written."""

from __future__ import annotations

import math

import pytest

from liveprofile_training import package
from liveprofile_training.package import PackageError, PackageExistsError, publish_files

FILES = {name: name.encode() for name in package.PACKAGE_FILES}


def test_publish_writes_a_complete_readable_folder(tmp_path):
    dest = publish_files(tmp_path, "m", 3, FILES)
    assert dest == tmp_path / "m" / "3"
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == FILES
    assert dest.stat().st_mode & 0o055  # not the private mode of a temporary folder
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["3"]


def test_rename_never_replaces_even_an_empty_folder(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "f").write_text("new")
    dst.mkdir()  # plain rename(2) would silently replace an empty folder
    with pytest.raises(PackageExistsError):
        package._rename_noreplace(src, dst)
    assert (src / "f").exists() and not any(dst.iterdir())


def test_publish_refuses_an_existing_version(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(PackageExistsError):
        publish_files(tmp_path, "m", 1, FILES)
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["1"]


@pytest.mark.parametrize("name, version", [("", 1), ("a/b", 1), (".hidden", 1), ("m", 0)])
def test_bad_names_and_versions(tmp_path, name, version):
    with pytest.raises(PackageError):
        publish_files(tmp_path, name, version, FILES)


def test_incomplete_package_is_refused(tmp_path):
    with pytest.raises(PackageError, match="golden.json"):
        publish_files(tmp_path, "m", 1, {k: v for k, v in FILES.items() if k != "golden.json"})
    assert not (tmp_path / "m").exists()


def test_json_safe_turns_nan_into_null():
    import numpy as np

    out = package.json_safe({"a": float("nan"), "b": np.float32(0.5), "c": [np.int64(3), math.inf]})
    assert out == {"a": None, "b": 0.5, "c": [3, None]}
