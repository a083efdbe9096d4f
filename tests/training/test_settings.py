"""Every environment variable in one place: the code reads only the variables of the table in
training/settings.py, the training package reads them only there, and docs/ENVIRONMENT.md lists
the same table."""

from __future__ import annotations

import re
from pathlib import Path

from training.settings import ENVIRONMENT

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [*REPO_ROOT.glob("training/**/*.py"), *REPO_ROOT.glob("plugins/**/*.py"), *REPO_ROOT.glob("dags/*.py"),
           *REPO_ROOT.glob("devstack/*.py"), *REPO_ROOT.glob("scripts/*.py"), REPO_ROOT / "docker-compose.yml",
           REPO_ROOT / "Dockerfile", REPO_ROOT / ".env.example", REPO_ROOT / "Makefile"]
NAME = re.compile(r"\bSWEEP_[A-Z][A-Z_]*[A-Z]\b")


def test_the_code_reads_only_the_variables_of_the_table():
    named = {name: path for path in PRODUCT for name in NAME.findall(path.read_text())}
    table = {variable.name for variable in ENVIRONMENT}
    assert set(named) <= table, {name: str(named[name]) for name in set(named) - table}
    assert table <= set(named), table - set(named)  # and the table lists nothing the code has dropped


def test_the_training_package_reads_its_variables_only_in_settings():
    readers = re.compile(r"environ(\.get\(|\[)\s*[\"']SWEEP_|getenv\(\s*[\"']SWEEP_")
    for path in REPO_ROOT.glob("training/**/*.py"):
        if path.name != "settings.py":
            assert not readers.search(path.read_text()), path


def test_the_docs_list_the_same_table():
    rows = re.findall(r"^\| `(SWEEP_[A-Z_]+)` \| (.*?) \| (.*?) \| (.*?) \|$",
                      (REPO_ROOT / "docs" / "ENVIRONMENT.md").read_text(), re.MULTILINE)
    assert rows == [(v.name, v.meaning, v.default, v.read_by) for v in ENVIRONMENT]
