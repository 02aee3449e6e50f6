"""After --used-by, importlib.metadata still reads every distribution whose dist-info
stays, and the verification rolls back a shrink after which it does not."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.install import copy_tree
from shrinkconda import Options, distmeta, shrink
from shrinkconda.appaware import used_by
from shrinkconda.verify import python_of

pytestmark = pytest.mark.skipif(shutil.which("strace") is None,
                                reason="strace is not installed (apt-get install strace)")

WORKLOAD = 'python -c "import chaintop, demopkg"'
#: Every call users make, on every distribution left in site-packages.
READ_ALL = """\
import sys
from importlib import metadata
names = sorted(d.metadata["Name"] for d in metadata.distributions())
for name in names:
    dist = metadata.distribution(name)
    print(name, metadata.version(name), metadata.requires(name), len(metadata.files(name)),
          sorted(e.name for e in dist.entry_points))
print(sorted(e.name for e in metadata.entry_points(group="chaintop.plugins")))
"""


@pytest.fixture(scope="module")
def template(template_doctor_prefix: Path) -> Path:
    return template_doctor_prefix


@pytest.fixture
def prefix(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    copy = copy_tree(template, tmp_path / "prefix")
    monkeypatch.chdir(tmp_path)
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def read_all(prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(prefix / "bin/python"), "-I", "-B", "-c", READ_ALL],
                          capture_output=True, text=True, check=False,
                          env={"PATH": f"{prefix}/bin:/usr/bin:/bin", "LANG": "C.UTF-8"})


def test_metadata_of_what_stays_reads_after_used_by(prefix: Path) -> None:
    report = shrink(prefix, Options(used_by=(WORKLOAD,), strip_mode=None))
    assert not report.rolled_back, report.broken
    run = read_all(prefix)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["chaintop", "demopkg"]
    assert lines[0] == "chaintop 3.0 ['chainmid>=2'] 6 ['value']"
    assert lines[1].startswith("demopkg 1.0 None 12 ['demo-cli', 'hello']")
    assert lines[-1] == "['value']"
    assert distmeta.unreadable(prefix, python_of(prefix)) == {}


def test_verification_rolls_back_unreadable_metadata(prefix: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the probe in the trace, nothing the workload does reads metadata: the
    # stdlib code that does goes, and only the verification can tell.
    monkeypatch.setattr(used_by.distmeta, "probe",
                        lambda python, workdir: [str(python), "-c", "pass"])
    report = shrink(prefix, Options(used_by=(WORKLOAD,), strip_mode=None))
    assert report.rolled_back
    # The trace saw no importlib.metadata, nor the email.parser it imports.
    assert [(b.check, b.error.split(":")[0]) for b in report.broken if b.kind == "metadata"] \
        == [("importlib.metadata: importlib.metadata", "ModuleNotFoundError")]
    assert read_all(prefix).returncode == 0


def test_unreadable_names_the_broken_distribution(prefix: Path) -> None:
    python = python_of(prefix)
    assert distmeta.unreadable(prefix, python) == {}
    meta = prefix / "lib/python3.11/site-packages/chaintop-3.0.dist-info/METADATA"
    meta.write_bytes(meta.read_bytes() + b"Summary: \xff\n")  # not UTF-8
    found = distmeta.unreadable(prefix, python)
    assert list(found) == ["chaintop-3.0.dist-info"]
