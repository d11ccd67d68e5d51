"""docs/results.md quotes the experiments' results: every table on it is written by experiments/tables.py from
experiments/results/*.json, and the numbers its sentences quote are checked the same way (tables.CLAIMS)."""
import json

import pytest
import tables  # experiments/, on the tests' path (pyproject.toml)


def test_every_table_on_the_results_page_is_what_the_results_say():
    text = tables.PAGE.read_text()
    names = [m.group(2) for m in tables.MARKER.finditer(text)]
    assert set(names) == set(tables.TABLES), "each table the script writes is on the page once, and no other"
    assert len(names) == len(set(names))
    assert tables.render(text) == text, "a table differs from its JSON: run `python experiments/tables.py`"


def test_every_number_quoted_in_a_sentence_is_what_the_results_say():
    assert tables.missing_claims(tables.PAGE.read_text()) == []


def test_a_changed_result_is_caught(monkeypatch):
    """The check can fail: change one cell of a results file and the page no longer matches."""
    real = tables.cells

    def edited(name):
        out = real(name)
        if name == "improving_vaes_table1":
            out = {**out, "VAE CNN z=200": {**out["VAE CNN z=200"], "ours": -200.0, "iw50": -200.0}}
        return out

    monkeypatch.setattr(tables, "cells", edited)
    text = tables.PAGE.read_text()
    assert tables.render(text) != text
    assert any("lose from z = 20 to 200" in claim for claim in tables.missing_claims(text))


def test_a_table_the_script_does_not_know_is_refused():
    with pytest.raises(KeyError, match="nope"):
        tables.render("<!-- table: nope -->\n| a |\n<!-- /table -->")


def test_a_new_model_field_at_its_default_keeps_a_tables_cells():
    """Adding a ModelConfig field must not void every table whose settings name the network; changing one must."""
    import common
    from core.models import ModelConfig
    network = ModelConfig(hidden=(500, 500)).to_dict()
    written = {"steps": 1000, "network": {k: v for k, v in network.items() if k not in ("latent_below", "hidden_above")}}
    now = json.loads(json.dumps({"steps": 1000, "network": network}))
    assert common.same_settings(json.loads(json.dumps(written)), now)
    assert not common.same_settings(json.loads(json.dumps(written)), {**now, "network": {**now["network"], "latent_below": 4}})
    assert not common.same_settings(json.loads(json.dumps(written)), {**now, "steps": 999})
