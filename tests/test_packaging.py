"""The installed names (issue 11): the wheel holds one top-level package, ``perfmodel``;
``cli.py`` and ``hardware/`` keep their place in the repository and install as
``perfmodel.cli`` and ``perfmodel.hardware`` (the links ``perfmodel/cli.py`` and
``perfmodel/hardware``). No module imports the top-level ``cli`` or ``hardware``: that
would load the same file twice under two names."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO


def test_wheel_installs_only_the_perfmodel_package(tmp_path):
    # a copy without build outputs: setuptools reuses an existing build/ folder
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", ".git", "__pycache__", ".pytest_cache", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("perfmodel-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"perfmodel", info}
    assert {"perfmodel/cli.py", "perfmodel/hardware/catalog.py", "perfmodel/hardware/data/gpu-specs.csv"} <= set(names)
    assert "perfmodel = perfmodel.cli:main" in entry_points


def test_no_module_imports_the_top_level_names():
    offenders = []
    for path in sorted(REPO.rglob("*.py")):
        relative = path.relative_to(REPO)
        if relative.parts[0] in {"build", ".git"} or relative.parts[:2] in {("perfmodel", "hardware")}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{relative}:{node.lineno} {n}" for n in names if n.split(".")[0] in {"cli", "hardware"}]
    assert offenders == []
