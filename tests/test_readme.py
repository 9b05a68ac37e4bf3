"""The README's Python examples are part of the product: they must run as written, in
order, in one directory (as a reader would run them)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len(BLOCKS) >= 4
    for i, block in enumerate(BLOCKS):
        exec(compile(block, f"{README}:block{i}", "exec"), {"__name__": "readme"})  # noqa: S102


def test_readme_toml_example_is_a_valid_config(tmp_path):
    from tailguard.project import load_config

    toml = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)[0]
    (tmp_path / "tailguard.toml").write_text(toml)
    config = load_config(tmp_path / "tailguard.toml")
    assert config.policy.real_fraction == 0.2 and config.dial.enabled
