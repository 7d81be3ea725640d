"""The README stays true: its configuration table is the loader's own key table,
and the commands it promises exist."""
import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_readme_config_table_is_the_loaders():
    ref = subprocess.run([str(REPO / "agent" / "stickyd"), "--config-reference"],
                         check=True, capture_output=True, text=True).stdout
    readme = (REPO / "README.md").read_text()
    rows = [line for line in ref.splitlines() if line.startswith("| `")]
    assert len(rows) > 30
    missing = [r for r in rows if r not in readme]
    assert not missing, "README.md is missing or has stale config rows:\n" + "\n".join(missing)


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
