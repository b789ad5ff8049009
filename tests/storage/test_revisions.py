"""The newest revision read from the migrations' file names is Alembic's head, and a database at
it is not migrated again (the small commands skip loading Alembic on that: storage.db)."""

from __future__ import annotations

import re
from pathlib import Path

from alembic.script import ScriptDirectory

from storage.db import MIGRATIONS, alembic_config, newest_revision, upgrade_if_behind


def test_each_file_is_named_by_its_revision_and_the_newest_is_alembics_head(
    tmp_path: Path,
) -> None:
    scripts = ScriptDirectory.from_config(alembic_config(f"sqlite:///{tmp_path}/x.db"))
    for path in sorted((MIGRATIONS / "versions").glob("[!_]*.py")):
        declared = re.search(r'^revision: str = "([^"]+)"', path.read_text(), re.MULTILINE)
        assert declared and path.name.startswith(f"{declared.group(1)}_"), path.name
    assert newest_revision() == scripts.get_current_head()


def test_upgrade_if_behind_migrates_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    assert upgrade_if_behind(url) is True  # a new file: migrated
    assert upgrade_if_behind(url) is False  # at the head: one query, no Alembic
