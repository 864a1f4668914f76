"""Manifests (CSV and TOML): paths relative to the manifest, windows, one-line errors for bad rows."""

import pytest

from opensim_pinn.errors import InputError
from opensim_pinn.manifest import read_manifest


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "data").mkdir()
    for name in ("a.mot", "b.mot", "a_grf.xml"):
        (tmp_path / "data" / name).write_text("x")
    return tmp_path


def test_csv_paths_relative_to_manifest_and_windows(folder):
    manifest = folder / "trials.csv"
    manifest.write_text("motion,external_loads,start,end\ndata/a.mot,data/a_grf.xml,0.5,1.5\n\ndata/b.mot,,,\n")
    first, second = read_manifest(manifest)
    assert first.motion == (folder / "data" / "a.mot").resolve()
    assert first.external_loads == (folder / "data" / "a_grf.xml").resolve()
    assert (first.start, first.end, first.name) == (0.5, 1.5, "a")
    assert second.external_loads is None and second.start is None and second.end is None


def test_toml_and_repeated_stems_get_unique_names(folder):
    manifest = folder / "trials.toml"
    manifest.write_text('[[trial]]\nmotion = "data/a.mot"\nend = 1.0\n'
                        '[[trial]]\nmotion = "data/a.mot"\nstart = 1.0\n')
    names = [t.name for t in read_manifest(manifest)]
    assert names == ["a", "a_2"]


@pytest.mark.parametrize("text, message", [
    ("motion,speed\ndata/a.mot,1\n", "unknown manifest column"),
    ("file\ndata/a.mot\n", "'motion' column"),
    ("motion\ndata/missing.mot\n", "not found"),
    ("motion,start,end\ndata/a.mot,1.5,0.5\n", "is not before end"),
    ("motion,start\ndata/a.mot,soon\n", "is not a time"),
    ("motion\n", "lists no trials"),
    ("motion,name\ndata/a.mot,x\ndata/b.mot,x\n", "used twice"),
])
def test_bad_manifest_is_one_line_error(folder, text, message):
    manifest = folder / "trials.csv"
    manifest.write_text(text)
    with pytest.raises(InputError, match=message) as error:
        read_manifest(manifest)
    assert "\n" not in str(error.value)
