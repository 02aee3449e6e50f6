"""--config FILE: every key, the command line over the file, and bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from treeutil import run_cli, snapshot

from shrinkconda import config
from shrinkconda.cli import audit, main, shrink
from shrinkconda.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shrinkconda.toml"
    path.write_text(text)
    return path


def _long_options(command: object) -> set[str]:
    return {opt[2:] for p in command.params  # type: ignore[attr-defined]
            for opt in getattr(p, "opts", []) if opt.startswith("--") and p.expose_value}


EVERY_KEY = '''\
profile = "aggressive"
only = ["docs", "headers", "strip", "python-code"]
skip = ["headers"]
keep = ["share/doc/libdemo/*"]
keep-locale = ["de"]
strip-mode = "unneeded"
no-strip = false
python-code = "both"
jobs = 1
conda-pack-views = false
by = "package"
compressed = false
used-by = []
used-by-timeout = 300
target-cpu = "x86_64_v3"
target-gpu = "sm_90"
no-ptx = true
json = true
quiet = true
yes = true
no-verify = false
verify-command = ["python -c 'import demopkg'"]
'''


def test_every_key_of_shrink_is_read(prefix: Path, tmp_path: Path) -> None:
    text = EVERY_KEY + f'html = "{tmp_path / "report.html"}"\n'
    keys = {line.split(" = ")[0] for line in text.splitlines()}
    assert keys == _long_options(shrink), "a shrink option the test does not cover"
    result = run_cli("shrink", "--config", str(_write(tmp_path, text)), str(prefix))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # json = true
    assert [s["name"] for s in doc["strategies"]] == ["docs", "target-cpu", "gpu-target",
                                                      "python-code", "gpu-code", "strip",
                                                      "conda-meta"]
    assert doc["verified"] is True
    assert history_added(prefix), "python-code = both compiled nothing"
    history = json.loads((prefix / "conda-meta/shrinkconda-history.jsonl").read_text())
    assert history["strip_mode"] == "unneeded"
    assert (prefix / "share/doc/libdemo/README.md").exists()  # keep
    assert (tmp_path / "report.html").read_text().startswith("<!")  # html
    assert not (prefix / "share/man").exists()


def history_added(prefix: Path) -> dict[str, object]:
    history = json.loads((prefix / "conda-meta/shrinkconda-history.jsonl").read_text())
    return {**history.get("added", {}), **history.get("rewritten", {})}


def test_the_command_line_overrides_the_file(prefix: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, 'only = ["docs"]\nstrip-mode = "all"\njson = true\n')
    result = run_cli("audit", "--config", str(path), "--only", "tests", "--no-strip",
                     str(prefix))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [s["name"] for s in doc["strategies"]] == ["tests", "conda-meta"]


def test_shrink_only_keys_are_accepted_by_audit(prefix: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, 'verify-command = ["true"]\nyes = true\nprofile = "safe"\n')
    result = CliRunner().invoke(main, ["audit", "--config", str(path), str(prefix)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("text", "message"), [
    ('profil = "safe"\n', "unknown key 'profil'"),
    ('skip = "docs"\n', "key 'skip' must be a list"),
    ("no-strip = 1\n", "key 'no-strip' must be true or false"),
    ('jobs = "2"\n', "key 'jobs'"),
    ("jobs = 0\n", "key 'jobs'"),
    ('strip-mode = "most"\n', "key 'strip-mode'"),
    ("keep = [1]\n", "key 'keep'"),
    ("[profile]\nname = 'safe'\n", "key 'profile' must be a string"),
    ("profile = \n", "not valid TOML"),
], ids=["unknown", "list", "flag", "int-as-string", "range", "choice", "list-item", "table",
        "syntax"])
def test_bad_input_is_a_usage_error_naming_the_key(prefix: Path, tmp_path: Path, text: str,
                                                   message: str) -> None:
    before = snapshot(prefix)
    path = _write(tmp_path, text)
    result = run_cli("shrink", "-y", "--config", str(path), str(prefix))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and str(path) in result.stderr
    assert len([ln for ln in result.stderr.splitlines() if ln.startswith("Error")]) == 1
    assert snapshot(prefix) == before


def test_a_missing_file_is_a_usage_error(prefix: Path, tmp_path: Path) -> None:
    result = run_cli("audit", "--config", str(tmp_path / "nope.toml"), str(prefix))
    assert result.returncode == 2 and "cannot read the config file" in result.stderr


def test_a_new_option_is_a_key_without_changes_to_config() -> None:
    # Keys come from the command's own parameters: whatever option audit has is a key.
    settings = config.resolve({"strip-mode": "all", "profile": "safe"},
                              [config.Setting("strip-mode", "strip_mode", config.VALUE, str),
                               config.Setting("profile", "profile", config.VALUE, str)],
                              "f.toml")
    assert settings == {"strip_mode": "all", "profile": "safe"}
    assert {"profile", "strip-mode", "keep-locale", "only"} <= _long_options(audit)
    with pytest.raises(ConfigError, match="unknown key 'used-by'"):
        config.resolve({"used-by": ["x"]}, [], "f.toml")
    assert config.resolve({"used-by": ["x"]}, [], "f.toml", elsewhere={"used-by"}) == {}
