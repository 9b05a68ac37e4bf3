"""The built-in human corpora, read from their Debian packages."""

import pyarrow.compute as pc
import pytest

from tailguard.datasets import builtin, fortunes, wordnet
from tailguard.errors import InputError


def test_fortunes_has_long_tailed_categories(fortunes_records):
    counts = pc.value_counts(fortunes_records["label"]).to_pylist()
    counts = {r["values"]: r["counts"] for r in counts}
    assert len(counts) == 43 and 15_000 < fortunes_records.num_rows < 15_500
    assert counts["people"] > 20 * counts["magic"]  # the demo's tails
    assert not any("\b" in t for t in fortunes_records["content"].to_pylist()[:2000])


def test_wordnet_glosses_in_45_lexical_categories():
    table = wordnet()
    assert table.num_rows == 117_659
    labels = set(table["label"].to_pylist())
    assert len(labels) == 45 and {"noun.animal", "verb.weather", "adj.ppl"} <= labels
    first = table.filter(pc.equal(table["label"], "noun.Tops"))["content"].to_pylist()
    entity = "that which is perceived or known or inferred to have its own distinct existence"
    assert f"{entity} (living or nonliving)" in first


def test_missing_corpus_and_unknown_name_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="apt-get install fortunes"):
        fortunes(tmp_path / "absent")
    with pytest.raises(InputError, match="wordnet-base"):
        wordnet(tmp_path)
    with pytest.raises(InputError, match="fortunes"):
        builtin("shakespeare")
