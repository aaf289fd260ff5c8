"""The core, the CLI and the Python API work without napari, Qt and dask.distributed.

``pip install napari-nanowire`` (no extras) is what a headless cluster worker or a script gets.
These tests run Python in a subprocess whose imports of the GUI and cluster stacks fail, as
they would where those packages are not installed, and check that the core imports, the CLI
predicts, and the commands that need an extra say which ``pip install`` brings it.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import napari_nanowire
from napari_nanowire.core.io import write_tiff
from napari_nanowire.core.model.random_models import save_random_model

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(napari_nanowire.__file__).resolve().parent.parent
BLOCKED = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")
BLOCKED += ("npe2", "vispy", "distributed")
BLOCKER = f'''
import sys

BLOCKED = {set(BLOCKED)!r}


class Blocker:
    """Fails every import of the blocked packages, as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
'''


def run_without_extras(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``python *args`` with napari, Qt and distributed imports blocked."""
    site = tmp_path / "blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SRC)])}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )


def test_the_blocker_blocks(tmp_path):
    result = run_without_extras(tmp_path, "-c", "import napari")
    assert result.returncode != 0 and "blocked" in result.stderr


@pytest.mark.slow  # about 20 s: the subprocess imports torch
def test_core_cli_and_api_import_without_napari_qt_or_distributed(tmp_path):
    modules = [
        m.name
        for package in ("core", "cli")
        for m in pkgutil.walk_packages(
            [str(SRC / "napari_nanowire" / package)], f"napari_nanowire.{package}."
        )
    ]
    assert "napari_nanowire.core.predict.cluster" in modules  # imports distributed lazily
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from napari_nanowire import load_model\n"
        f"leaked = sorted(m for m in sys.modules if m.partition('.')[0] in {set(BLOCKED)!r})\n"
        "print('leaked', leaked)\n"
    )
    result = run_without_extras(tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr
    assert "leaked []" in result.stdout


@pytest.mark.slow
def test_cli_predicts_without_napari_qt_or_distributed(tmp_path):
    model = save_random_model(tmp_path / "model.nwmodel", tile=32)
    image = np.random.default_rng(0).random((48, 48), dtype=np.float32)
    write_tiff(tmp_path / "image.tif", image, 2.0)
    cli = ("-m", "napari_nanowire.cli.main")
    assert run_without_extras(tmp_path, *cli, "predict", "--help").returncode == 0
    result = run_without_extras(
        tmp_path, *cli, "predict", str(model), "image.tif", "--out", "out", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "masks" / "image.tif").is_file()
    assert (tmp_path / "out" / "predictions.csv").read_text().count("\n") == 2  # header + row


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "extra"),
    [
        (("predict", "M", "image.tif", "--out", "o", "--scheduler", "tcp://x:1"), "cluster"),
        (("gui",), "napari"),
    ],
)
def test_commands_that_need_an_extra_say_how_to_install_it(tmp_path, command, extra):
    save_random_model(tmp_path / "M", tile=32)
    write_tiff(tmp_path / "image.tif", np.zeros((32, 32), np.float32), None)
    result = run_without_extras(tmp_path, "-m", "napari_nanowire.cli.main", *command)
    assert result.returncode == 2, result.stderr
    assert f'pip install "napari-nanowire[{extra}]"' in result.stderr
    assert "Traceback" not in result.stderr


def test_the_base_install_names_no_gui_or_cluster_package():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for name in ("napari", "qt", "magicgui", "superqt", "npe2", "distributed", "psygnal"):
        assert name not in base, name
    extras = project["optional-dependencies"]
    assert any(d.startswith("napari[pyqt6]") for d in extras["napari"])
    assert any(d.startswith("distributed") for d in extras["cluster"])
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert '".[napari,cluster,bioimageio,test]"' in setup
