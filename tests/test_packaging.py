"""The package as napari and a shell see it: one valid manifest, every command registered."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from npe2 import PluginManifest

from napari_nanowire.cli.main import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_manifest_is_valid_and_one_file():
    top = ROOT / "napari.yaml"
    packaged = ROOT / "src" / "napari_nanowire" / "napari.yaml"
    assert top.resolve() == packaged.resolve()  # a link, never a second copy
    manifest = PluginManifest.from_file(packaged)
    assert manifest.name == "napari-nanowire"
    ids = {c.id for c in manifest.contributions.commands}
    used = [w.command for w in manifest.contributions.widgets or []]
    used += [r.command for r in manifest.contributions.readers or []]
    used += [s.command for s in manifest.contributions.sample_data or []]
    assert set(used) <= ids
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert hasattr(__import__(module, fromlist=[attr]), attr), command.python_name


def test_napari_finds_the_manifest_through_the_entry_point():
    (entry,) = [e for e in entry_points(group="napari.manifest") if e.name == "napari-nanowire"]
    assert entry.value == "napari_nanowire:napari.yaml"


def test_every_command_is_registered_and_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
    assert all(p.format_help() for p in sub.choices.values())
    result = subprocess.run(
        [sys.executable, "-m", "napari_nanowire.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name in COMMANDS:
        assert name in result.stdout


def test_readme_layout_lists_exactly_the_core_subpackages_and_modules():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    listed = set()
    for line in layout.splitlines():
        if line.startswith("    ") and not line.startswith("     "):  # core/'s entries
            listed.add(line.split()[0])
    core = ROOT / "src" / "napari_nanowire" / "core"
    present = {f"{p.name}/" for p in core.iterdir() if (p / "__init__.py").exists()}
    present |= {p.name for p in core.glob("*.py") if p.name != "__init__.py"}
    assert listed == present
