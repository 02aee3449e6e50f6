"""Real image builds: a shrink saves image bytes only in the RUN that creates the env.

`podman build --isolation chroot` runs RUN steps without a daemon (`podman run` is refused
by this machine's OCI runtime, so every check inside an image is a RUN of a later build).
The base image is made from the host's libraries by scripts/make_base_image.py, with no
registry; it is cached in podman's storage under a name that digests its contents.

Four images carry the fixture environment at /opt/env:

- ``plain``: ``COPY env /opt/env``, no shrink;
- ``separate``: ``FROM plain`` plus ``RUN python shrinkconda.pyz shrink``, the layers a
  Dockerfile with the shrink in its own RUN after the env's step gets;
- ``same``: one RUN creates the env (copies it from the build context), copies in the
  zipapp, shrinks and deletes the zipapp;
- ``multi``: a builder stage shrinks, the final stage does ``COPY --from=builder``.

An image's size is ``podman image inspect --format {{.Size}}``, the sum of its layers'
uncompressed tar streams: what `podman images` shows and roughly what a registry stores
before compression. A later layer can only add to it, never take bytes out of an earlier
one; that is the point these tests make.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fixtures.install import copy_tree

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(shutil.which("podman") is None,
                       reason="podman is not installed (apt-get install podman)"),
]

#: How much less than the report's bytes_saved the image may shrink. A layer is a tar
#: stream: each file is padded to 512 bytes and the stream to 10 KiB records, and the
#: shrunk image also holds the report itself (~1.5 KiB). A file rewritten in place (the
#: strip phase) can thus count up to 511 bytes less than it saved; 128 KiB covers that
#: for every ELF file of the fixture, and is under 1 % of its saving (15.5 MiB, or
#: 31.5 MiB with the strip phase).
TOLERANCE = 128 * 1024
REPORT = "/shrink-report.json"
#: The shrink every variant runs: the env's own python, no bytecode written by it.
SHRINK = "/opt/env/bin/python -B {pyz} shrink -y --json /opt/env > " + REPORT
CHECK = "import demopkg, astro; assert demopkg.add(2, 3) == 5"

DOCKERFILES = {
    "plain": """\
FROM {base}
COPY env /opt/env
""",
    "separate": """\
FROM {plain}
RUN --mount=type=bind,source=shrinkconda.pyz,target=/tmp/shrinkconda.pyz \\
    """ + SHRINK.format(pyz="/tmp/shrinkconda.pyz") + "\n",
    "same": """\
FROM {base}
RUN --mount=type=bind,target=/ctx \\
    cp -a /ctx/env /opt/env \\
    && cp /ctx/shrinkconda.pyz /tmp/shrinkconda.pyz \\
    && """ + SHRINK.format(pyz="/tmp/shrinkconda.pyz") + """ \\
    && rm /tmp/shrinkconda.pyz
""",
    "multi": """\
FROM {base} AS builder
COPY env /opt/env
COPY shrinkconda.pyz /tmp/shrinkconda.pyz
RUN """ + SHRINK.format(pyz="/tmp/shrinkconda.pyz") + """

FROM {base}
COPY --from=builder /opt/env /opt/env
COPY --from=builder """ + REPORT + " " + REPORT + "\n",
}
VARIANTS = tuple(DOCKERFILES)


@dataclass
class Built:
    """The images built from one context, by variant."""

    context: Path
    names: dict[str, str]
    """Variant -> image name."""
    sizes: dict[str, int]
    """Variant -> image size in bytes."""
    reports: dict[str, dict[str, object]]
    """Variant -> the shrink's JSON report read back from the image (shrunk ones only)."""


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} failed ({done.returncode}):\n"
                    f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def build(context: Path, dockerfile: str, name: str) -> None:
    """Build one image. ``--layers=false`` keeps no intermediate images and squashes a
    build's steps into one layer, so each Dockerfile here adds exactly one layer to the
    image it starts from (``separate`` thus starts from ``plain``)."""
    path = context / f"{name.rpartition(':')[2]}.Dockerfile"
    path.write_text(dockerfile)
    podman("build", "--isolation", "chroot", "--pull=never", "--layers=false", "--force-rm",
           "--quiet", "-f", str(path), "-t", name, str(context))


def read_from_image(name: str, path: str, scratch: Path) -> str:
    """A file's text, copied out of a created (never started) container."""
    container = podman("create", name, "true").stdout.strip()
    copy = scratch / f"{container}-{Path(path).name}"
    try:
        podman("cp", f"{container}:{path}", str(copy))
    finally:
        podman("rm", container)
    return copy.read_text()


def image_size(name: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout)


@pytest.fixture(scope="module")
def built(template_prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    context = tmp_path_factory.mktemp("container")
    copy_tree(template_prefix, context / "env")
    zipapp = subprocess.run([sys.executable, str(REPO / "scripts/build_zipapp.py"), "--offline",
                             "-o", str(context / "shrinkconda.pyz")],
                            check=False, capture_output=True, text=True)
    assert zipapp.returncode == 0, zipapp.stderr
    base = subprocess.run([sys.executable, str(REPO / "scripts/make_base_image.py"),
                           str(context / "env")], check=False, capture_output=True, text=True)
    assert base.returncode == 0, base.stderr
    # A tag of our own: another test session may be building at the same time.
    token = uuid.uuid4().hex[:12]
    names = {v: f"localhost/shrinkconda-test:{v}-{token}" for v in VARIANTS}
    result = Built(context, names, {}, {})
    try:
        for variant in VARIANTS:
            dockerfile = DOCKERFILES[variant].format(base=base.stdout.strip(),
                                                     plain=names["plain"])
            build(context, dockerfile, names[variant])
            result.sizes[variant] = image_size(names[variant])
            if variant != "plain":
                text = read_from_image(names[variant], REPORT, context)
                result.reports[variant] = json.loads(text)
        print(_summary(result))  # shown with -s / -rP: the numbers docs/docker.md quotes
        yield result
    finally:
        subprocess.run(["podman", "rmi", "--force", *names.values()], check=False,
                       capture_output=True)


def test_only_a_shrink_in_the_env_creating_step_makes_the_image_smaller(built: Built) -> None:
    sizes = built.sizes
    assert sizes["same"] < sizes["plain"]
    assert sizes["multi"] < sizes["plain"]
    # The plain image's env layer keeps every byte; a later layer can only add.
    assert sizes["separate"] >= sizes["plain"]


@pytest.mark.parametrize("variant", ["same", "multi"])
def test_the_image_shrinks_by_what_the_report_claims(built: Built, variant: str) -> None:
    report = built.reports[variant]
    assert report["errors"] == []
    claimed = report["bytes_saved"]
    assert isinstance(claimed, int) and claimed > 1024 * 1024
    saved = built.sizes["plain"] - built.sizes[variant]
    assert saved >= claimed - TOLERANCE, (
        f"{variant}: the image is {saved:,} bytes smaller, the report claims {claimed:,}")


def test_the_same_env_claims_the_same_saving_wherever_it_is_shrunk(built: Built) -> None:
    claims = {v: r["bytes_saved"] for v, r in built.reports.items()}
    assert len(set(claims.values())) == 1, claims


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_environment_works_inside_the_image(built: Built, variant: str) -> None:
    check = built.names[variant].replace("shrinkconda-test:", "shrinkconda-test:check-")
    try:
        build(built.context,
              f"FROM {built.names[variant]}\nRUN /opt/env/bin/python -c '{CHECK}'\n", check)
    finally:
        subprocess.run(["podman", "rmi", "--force", check], check=False, capture_output=True)


def _summary(result: Built) -> str:
    lines = ["image sizes (podman image inspect --format {{.Size}}), in bytes:"]
    for variant in VARIANTS:
        size, delta = result.sizes[variant], result.sizes[variant] - result.sizes["plain"]
        claim = result.reports.get(variant, {}).get("bytes_saved")
        lines.append(f"  {variant:<9}{size:>12,}  {delta:>+12,} vs plain"
                     + (f"  (report: bytes_saved {claim:,})" if claim is not None else ""))
    return "\n".join(lines)


#: Inside a RUN: shrink for one app, then run the app and look for what it never used.
USED_BY_APP = "import appdemo; assert appdemo.table_sum() == 10"
USED_BY_DOCKERFILE = """\
FROM {base}
RUN --mount=type=bind,target=/ctx \\
    cp -a /ctx/env /opt/env \\
    && cd /tmp \\
    && /opt/env/bin/python -B /ctx/shrinkconda.pyz shrink -y --json \\
       --used-by 'python -c "{app}"' /opt/env > /used-by-report.json \\
    && /opt/env/bin/python -c '{app}' \\
    && test -e /opt/env/share/appdemo/table.dat \\
    && ! test -e /opt/env/share/appdemo/unused.dat \\
    && ! test -e /opt/env/lib/python3.11/site-packages/purepkg
"""


def test_used_by_traces_inside_a_podman_build(template_app_prefix: Path, tmp_path: Path) -> None:
    """ptrace works in a RUN of ``podman build --isolation chroot``: the shrink traces the
    app there, prunes, and the app still runs in the image."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    context = tmp_path / "context"
    context.mkdir()
    copy_tree(template_app_prefix, context / "env")
    zipapp = subprocess.run([sys.executable, str(REPO / "scripts/build_zipapp.py"), "--offline",
                             "-o", str(context / "shrinkconda.pyz")],
                            check=False, capture_output=True, text=True)
    assert zipapp.returncode == 0, zipapp.stderr
    base = subprocess.run([sys.executable, str(REPO / "scripts/make_base_image.py"),
                           "--tool", "strace", "--tool", "test", str(context / "env")],
                          check=False, capture_output=True, text=True)
    assert base.returncode == 0, base.stderr
    name = f"localhost/shrinkconda-test:used-by-{uuid.uuid4().hex[:12]}"
    try:
        build(context, USED_BY_DOCKERFILE.format(base=base.stdout.strip(), app=USED_BY_APP),
              name)
        report = json.loads(read_from_image(name, "/used-by-report.json", tmp_path))
    finally:
        subprocess.run(["podman", "rmi", "--force", name], check=False, capture_output=True)
    assert report["rolled_back"] is False and report["verified"] is True
    line = next(s for s in report["strategies"] if s["name"] == "used-by")
    assert line["bytes_saved"] > 1024 * 1024
    assert "purepkg" in report["removed_packages"]
