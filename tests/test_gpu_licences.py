"""Whose files a shrink may modify: the licence a distribution ships decides, not its
name; NVIDIA's agreement quotes open-source licences and stays what it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shrinkconda.scan import scan
from shrinkconda.targets.gpu import licences

MIT = """\
/*
* Copyright 2020-2022 OpenAI
*
* Permission is hereby granted, free of charge, to any person obtaining
* a copy of this software and associated documentation files
* (the "Software"), to deal in the Software without restriction.
*
* THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.
*/
"""
BSD = """\
Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:
* Neither the name of the copyright holder nor the names of its contributors
  may be used to endorse or promote products derived from this software.
"""
APACHE = """\
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/
   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION
   ...
   APPENDIX: How to apply the Apache License to your work.
      Licensed under the Apache License, Version 2.0 (the "License");
      you may not use this file except in compliance with the License.
"""
#: The shape of NVIDIA's agreement: its own terms, then third-party notices quoting
#: open-source licences.
EULA = """\
LICENSE AGREEMENT FOR NVIDIA SOFTWARE DEVELOPMENT KITS
2.2 Except as expressly provided in this Agreement, you may not copy, sell, rent,
sublicense, transfer, distribute, modify, or create derivative works of any portion
of the SDK.
Attachment: third-party notices
""" + BSD


@pytest.mark.parametrize(("text", "expected"), [
    (MIT, "MIT"), (BSD, "BSD-3-Clause"), (APACHE, "Apache-2.0"), (EULA, None),
    (BSD + MIT, None), ("All rights reserved. Proprietary.", None), ("", None),
])
def test_a_licence_text_is_one_open_licence_or_not(text: str, expected: str | None) -> None:
    assert licences.open_licence(text) == expected


@pytest.mark.parametrize(("spdx", "expected"), [
    ("BSD-3-Clause", True), ("MIT AND Apache-2.0", True), ("(MIT OR BSD-2-Clause)", True),
    ("LicenseRef-NVIDIA-End-User-License-Agreement", False), ("MIT AND GPL-3.0", False),
    ("", False),
])
def test_spdx_expressions(spdx: str, expected: bool) -> None:
    assert licences.open_spdx(spdx) is expected


def _dist(site: Path, name: str, files: dict[str, str], licence: str | None) -> None:
    dist_info = site / f"{name}-1.0.dist-info"
    (dist_info / "licenses").mkdir(parents=True)
    meta = f"Metadata-Version: 2.4\nName: {name.replace('_', '-')}\nVersion: 1.0\n"
    if licence is not None:
        (dist_info / "licenses" / "License.txt").write_text(licence)
        meta += "License-File: License.txt\n"
    (dist_info / "METADATA").write_text(meta)
    (dist_info / "RECORD").write_text("".join(f"{p},,\n" for p in files))
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(data)


def test_verdicts_by_distribution_and_record(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    site = prefix / "lib/python3.11/site-packages"
    (prefix / "conda-meta").mkdir(parents=True)
    _dist(site, "nvidia_nccl_cu13", {"nvidia/nccl/lib/libnccl.so.2": "x"}, BSD)
    _dist(site, "nvidia_cublas", {"nvidia/cu13/lib/libcublas.so.13": "x"}, EULA)
    _dist(site, "nvidia_nolicence", {"nvidia/other/lib/libother.so": "x"}, None)
    (prefix / "lib/libnccl.so.2").write_text("x")
    (prefix / "lib/libcublas.so.13").write_text("x")
    for name, spdx, path in (("nccl", "BSD-3-Clause", "lib/libnccl.so.2"),
                             ("libcublas", "LicenseRef-NVIDIA-End-User-License-Agreement",
                              "lib/libcublas.so.13")):
        (prefix / "conda-meta" / f"{name}-1.0-h0_0.json").write_text(json.dumps(
            {"name": name, "version": "1.0", "build": "h0_0", "license": spdx,
             "files": [path], "paths_data": {"paths": [{"_path": path}]}}))
    the_scan = scan(prefix)
    found = {the_scan.paths[i].replace("lib/python3.11/site-packages/", ""): i
             for i in range(len(the_scan))}
    reading = licences.Licences(the_scan)
    nccl = reading.verdict(found["nvidia/nccl/lib/libnccl.so.2"])
    assert nccl.rewrite and "BSD-3-Clause" in nccl.reason and not nccl.nvidia
    for path in ("nvidia/cu13/lib/libcublas.so.13", "nvidia/other/lib/libother.so",
                 "lib/libcublas.so.13"):
        assert reading.verdict(found[path]) == licences.Verdict(
            False, licences.NVIDIA_REASON, nvidia=True), path
    assert reading.verdict(found["lib/libnccl.so.2"]).rewrite
    libraries = [i for p, i in found.items() if ".so" in p]
    assert reading.forbidden(libraries) == {
        found["nvidia/cu13/lib/libcublas.so.13"], found["nvidia/other/lib/libother.so"],
        found["lib/libcublas.so.13"]}
