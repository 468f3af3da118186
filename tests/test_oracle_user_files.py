"""`oracle export` and `export-suite` never replace a file the oracle did not write (issue 20, item 7).

Catches: a user's manifest.json or arrays.npz (or suite.json) overwritten by an export into their directory, and an
export into a suite directory that writes some fixtures before it finds the user's file.
"""
import json

import numpy as np
import pytest

from iwae_np.cli import main


def _export(d, *extra):
    return main(["oracle", "export", str(d), "--architecture", "small-one-layer", "--k", "2", "--batch", "1", *extra])


@pytest.mark.parametrize("name, content", [("manifest.json", b'{"mine": 1}\n'), ("arrays.npz", b"not a fixture"),
                                           ("manifest.json", b"not json at all")])
def test_export_refuses_a_users_file_and_leaves_the_directory_as_it_was(tmp_path, capsys, name, content):
    d = tmp_path / "d"
    d.mkdir()
    (d / name).write_bytes(content)
    assert _export(d) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and "left alone" in err
    assert sorted(p.name for p in d.iterdir()) == [name] and (d / name).read_bytes() == content


def test_export_replaces_a_fixture_the_oracle_wrote(tmp_path):
    d = tmp_path / "d"
    assert _export(d) == 0
    assert _export(d, "--seed", "3") == 0  # its own earlier fixture is replaced
    assert json.loads((d / "manifest.json").read_text())["seed"] == 3


def test_export_suite_checks_every_place_before_writing_any(tmp_path, capsys):
    d = tmp_path / "suite"
    d.mkdir()
    (d / "suite.json").write_text('{"my": "index"}')
    assert main(["oracle", "export-suite", str(d)]) == 2
    assert "suite.json" in capsys.readouterr().err
    assert sorted(p.name for p in d.iterdir()) == ["suite.json"]  # no fixture written before the refusal
    (d / "suite.json").unlink()
    late = d / "17_small-two-layer_k5_b3_softplus-threshold"  # the last fixture of the suite
    late.mkdir()
    np.save(late / "arrays.npy", np.zeros(1))
    (late / "arrays.npz").write_bytes(b"mine")
    assert main(["oracle", "export-suite", str(d)]) == 2
    assert sorted(p.name for p in d.iterdir()) == [late.name] and (late / "arrays.npz").read_bytes() == b"mine"
