"""The import contracts in pyproject.toml hold on the tree, and they would catch a wall walked
through: a copy of the tree with one upward import added (channels → bot) breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "channels", "storage", "dialogs", "locales")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-c",
        "from importlinter.cli import lint_imports_command; lint_imports_command()",
    ]
    return subprocess.run(
        command,
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_tree(target: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("*.mo", "__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_tree_keeps_its_contracts(tmp_path: Path) -> None:
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_channel_importing_the_application_breaks_the_layers(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    sms = tree / "channels" / "sms.py"
    sms.write_text(sms.read_text() + "\nfrom bot.settings import Settings  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "channels.sms -> bot.settings" in result.stdout


def test_a_wing_importing_one_above_it_breaks_the_wings(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    vouchers = tree / "bot" / "rewards" / "vouchers.py"
    vouchers.write_text(vouchers.read_text() + "\nimport bot.cases.invitations  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "bot.rewards.vouchers -> bot.cases.invitations" in result.stdout
