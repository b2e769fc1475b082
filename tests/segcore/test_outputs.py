import json

import pytest

from segcore.outputs import atomic_dir, atomic_file, write_json


def test_atomic_dir_renames_on_success(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("x")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_existing_only_when_complete(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(ValueError), atomic_dir(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise ValueError
    assert (final / "old.txt").exists() and not (final / "new.txt").exists()
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_file_and_json(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1, "b": [1.5, 2]})
    assert json.loads(path.read_text()) == {"a": 1, "b": [1.5, 2]}
    with pytest.raises(KeyError), atomic_file(tmp_path / "x.json") as tmp:
        tmp.write_text("{")
        raise KeyError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
