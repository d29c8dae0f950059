"""The Dockerfile, checked without a Docker daemon: what it copies exists and is not ignored,
its torch pins are the project's, the settings it passes are read by the code, and the image's
file layout (only what it copies) runs the CLI and finds the shipped checkpoints."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.waiting import SLOW

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def copied_paths() -> list[str]:
    paths = []
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            paths += sources
    return paths


def test_copied_paths_exist_and_are_not_dockerignored():
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith("#")]
    paths = copied_paths()
    assert {"tgd_core", "app", "checkpoints", "requirements.txt", "pyproject.toml"} <= set(paths)
    for path in paths:
        assert (ROOT / path).exists(), path
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), path


def test_torch_pins_come_from_requirements():
    requirements = (ROOT / "requirements.txt").read_text()
    for package in ("torch", "torchvision"):
        assert f"s/^{package}==//p" in DOCKERFILE
        assert re.search(rf"^{package}==\d+\.\d+\.\d+$", requirements, re.M), package


def test_settings_the_image_passes_are_read_by_the_code():
    code = "\n".join(p.read_text() for p in [*ROOT.glob("tgd_core/**/*.py"),
                                             *ROOT.glob("app/**/*.py")])
    settings = re.findall(r"^\s+(TGD_\w+|GRADIO_ANALYTICS_ENABLED)=", DOCKERFILE, re.M)
    assert {"TGD_DATA_DIR", "TGD_STATE_DIR", "TGD_APP_HOST", "TGD_APP_PORT"} <= set(settings)
    for name in settings:
        assert f'"{name}"' in code, name
    assert 'CMD ["python", "-m", "app"]' in DOCKERFILE


def test_the_image_layout_runs_and_finds_the_shipped_models(tmp_path):
    for path in copied_paths():
        src = ROOT / path
        if src.is_dir():
            shutil.copytree(src, tmp_path / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "TGD_STATE_DIR": str(tmp_path / "state"),
           "TGD_DATA_DIR": str(tmp_path / "no-data"), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("TGD_CHECKPOINT_DIR", None)
    probe = ("from tgd_core.nets import model_zoo; import tgd_core, app; "
             "print(tgd_core.__file__); print(app.__file__); "
             "print(sorted(e.name for e in model_zoo.discover(official='/nonexistent')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=SLOW)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(line.startswith(str(tmp_path)) for line in lines[:2])
    shipped = {p.stem for p in (ROOT / "checkpoints").glob("*.pt")}
    assert shipped and all(name in lines[2] for name in shipped)
    cli = subprocess.run([sys.executable, "-m", "tgd_core", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=SLOW)
    assert cli.returncode == 0 and "export" in cli.stdout, cli.stderr
