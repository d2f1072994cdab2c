"""The configuration docs list exactly the Settings fields: a new setting without docs fails here.

Regenerate both files with `python -m forecaster.cli.config_table`."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from forecaster.cli import config_table
from forecaster.cli.config_table import (
    TABLE_END,
    TABLE_START,
    documented_names,
    readme_table,
    render_env_example,
    render_table,
    settings_docs,
    update_readme,
)
from forecaster.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
FIELDS = [name.upper() for name in Settings.model_fields]
REGENERATE = "out of date: run `python -m forecaster.cli.config_table`"


def test_the_readme_table_lists_exactly_the_settings_with_their_defaults():
    table = readme_table((ROOT / "README.md").read_text(encoding="utf-8"))
    assert documented_names(table) == FIELDS, f"README.md's configuration table is {REGENERATE}"
    expected = {line.split(" | ")[0]: line.split(" | ")[1] for line in render_table(settings_docs()).splitlines()[2:]}
    written = {line.split(" | ")[0]: line.split(" | ")[1] for line in table.strip().splitlines()[2:]}
    assert written == expected, f"README.md's defaults are {REGENERATE}"


def test_env_example_lists_every_setting_with_its_default_and_secrets_blank():
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert documented_names(text) == FIELDS, f".env.example is {REGENERATE}"
    def assignments(env_text: str) -> list[str]:
        return [line for line in env_text.splitlines() if documented_names(line)]

    assert assignments(text) == assignments(render_env_example(settings_docs())), f"defaults are {REGENERATE}"
    assert all(line.startswith("# ") for line in assignments(text))  # copying the file sets nothing yet
    secrets = [doc.env for doc in settings_docs() if doc.secret]
    assert {"SLACK_BOT_TOKEN", "FINNHUB_API_KEY", "SLACK_SIGNING_SECRET"} <= set(secrets)
    assert all(f"# {name}=" in assignments(text) for name in secrets)


class Example(BaseSettings):
    plain: int = Field(default=3, description="A number | with a pipe.")
    token: SecretStr | None = Field(default=None, description="A secret.")
    path_list: list[str] = Field(default_factory=lambda: ["a", "b"], description="Several.")
    flag: bool = Field(default=True, description="On or off.")
    pick: str = Field(default="x", description="Pick one.")


def test_rendering_defaults_secrets_and_pipes():
    docs = settings_docs(Example)
    assert [(d.env, d.secret) for d in docs] == [("PLAIN", False), ("TOKEN", True), ("PATH_LIST", False),
                                                 ("FLAG", False), ("PICK", False)]
    table = render_table(docs).splitlines()
    assert table[2] == "| `PLAIN` | `3` | A number \\| with a pipe. |  |"
    assert table[3] == "| `TOKEN` | unset | A secret. |  |"
    assert table[4] == "| `PATH_LIST` | `a,b` | Several. |  |"
    assert table[5] == "| `FLAG` | `true` | On or off. |  |"
    env = render_env_example(docs)
    assert "# A secret.\n# TOKEN=\n" in env and "# FLAG=true\n" in env and "# PATH_LIST=a,b\n" in env


def test_a_setting_without_a_description_is_refused():
    class Undocumented(BaseSettings):
        quiet: int = 1

    with pytest.raises(ValueError, match="Settings.quiet has no description"):
        settings_docs(Undocumented)


def test_the_readme_update_touches_only_the_table():
    readme = ("# Title\n\nIntro.\n\n## Configuration\n\nSome words.\n\n| variable | default | meaning |\n"
              "|---|---|---|\n| `OLD` | 1 | gone |\n\nAfter the table.\n\n## Next\n\nMore.\n")
    once = update_readme(readme, "| variable | default | meaning |\n|---|---|---|\n| `NEW` | `2` | new |")
    assert once == ("# Title\n\nIntro.\n\n## Configuration\n\nSome words.\n\n" + TABLE_START + "\n"
                    "| variable | default | meaning |\n|---|---|---|\n| `NEW` | `2` | new |\n" + TABLE_END + "\n\n"
                    "After the table.\n\n## Next\n\nMore.\n")
    twice = update_readme(once, "| variable | default | meaning |\n|---|---|---|\n| `NEWER` | `3` | newer |")
    assert twice == once.replace("| `NEW` | `2` | new |", "| `NEWER` | `3` | newer |")
    with pytest.raises(ValueError, match="no '## Configuration' section"):
        update_readme("# Nothing here\n", "table")


def test_check_mode_reports_stale_files(monkeypatch, tmp_path, capsys):
    (tmp_path / "README.md").write_text("# T\n\n## Configuration\n\n| variable | default | meaning |\n|---|---|---|\n")
    monkeypatch.setattr(config_table, "ROOT", tmp_path)
    assert config_table.main(["--check"]) == 1
    assert "README.md is out of date" in capsys.readouterr().err
    assert config_table.main([]) == 0
    assert config_table.main(["--check"]) == 0
    assert documented_names((tmp_path / ".env.example").read_text()) == FIELDS
