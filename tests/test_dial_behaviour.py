"""The dial over seeds, measured: it spends human data on collapse, not on a capacity gap.

The README's ``tailguard.toml`` loop (the trigram model on fortunes, anchored 20 % with
the dial; the default preset, so no sentence model is needed) is behind human data from
round 0 on and its tails hold: the dial must rarely raise the share and must lower it.
A loop made to collapse (a small reservoir, more synthetic data, the model sampling at
a low temperature) must see its share raised within two rounds of the drift crossing
the clean model's band, in every seed.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tailguard.config import ProjectConfig
from tailguard.lab.dialcheck import dial_behaviour

README = Path(__file__).resolve().parents[1] / "README.md"
SEEDS = 10


def readme_config(**changes: dict) -> ProjectConfig:
    """The README's loop config, with the default preset (hashing embedder)."""
    raw = tomllib.loads(re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)[0])
    raw["monitor"] = {"preset": "default"}
    for section, values in changes.items():
        raw.setdefault(section, {}).update(values)
    return ProjectConfig.model_validate(raw)


def collapsing_config(folder: Path) -> ProjectConfig:
    """1,200 fortunes as the human data (a small reservoir), 2,000 candidates a round,
    sampled at temperature 0.6: synthetic data soon outweighs the reservoir."""
    from tailguard.datasets import fortunes

    people = fortunes().select(["content", "label"]).to_pandas().drop_duplicates("content")
    people = people.sample(n=1200, random_state=0)
    path = folder / "people.jsonl"
    rows = zip(people["content"], people["label"], strict=True)
    path.write_text("\n".join(json.dumps({"text": t, "topic": y}) for t, y in rows))
    config = readme_config(
        data={"builtin": None, "files": [{"path": str(path), "label_field": "topic"}]},
        model={"params": {"temperature": 0.6}},
        loop={"n_generate": 2000, "n_sample": 1000},
    )
    return config


@pytest.mark.slow
def test_with_steady_tails_the_dial_pushes_synthetic_higher():
    behaviour = dial_behaviour(readme_config(), seeds=SEEDS, rounds=5)
    summary = behaviour.summary()
    assert summary["decisions"] == SEEDS * 5
    assert summary["raised"] < 0.10, behaviour.decisions
    assert summary["lowered_seeds"] >= 1
    # the share the dial asked is the one each round planned with: realised is the
    # audit's (the whole reservoir re-injected keeps it above the ask here)
    d = behaviour.decisions
    assert (d["realised"] >= d["asked"] - 1 / 64).all()


@pytest.mark.slow
def test_a_collapsing_loop_raises_the_share_within_two_rounds(tmp_path):
    behaviour = dial_behaviour(collapsing_config(tmp_path), seeds=SEEDS, rounds=6)
    reaction = behaviour.reaction()
    assert reaction["crossed"].notna().all(), behaviour.decisions  # it does collapse
    assert (reaction["raised_after"] <= 2).all(), reaction
