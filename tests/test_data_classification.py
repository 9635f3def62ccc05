"""The one reader of classification rows' text fields (training and evaluation both use it)."""

from __future__ import annotations

import pytest

from lorikit.data.classification import detect_text_fields, row_text
from lorikit.errors import LorikitError


def test_fields_are_detected_in_order_and_explicit_fields_are_checked():
    assert detect_text_fields({"sentence1": "a", "sentence2": "b", "label": 0}, "f:1") == ("sentence1", "sentence2")
    assert detect_text_fields({"question": "q", "passage": "p"}, "f:1") == ("question", "passage")
    assert detect_text_fields({"sentence1": "a", "sentence2": None}, "f:1") == ("sentence1",)
    assert detect_text_fields({"text": "t"}, "f:1") == ("text",)
    assert detect_text_fields({"a": "x", "b": "y"}, "f:1", ["b", "a"]) == ("b", "a")
    with pytest.raises(LorikitError, match=r"f:1: --text-fields c not in the row"):
        detect_text_fields({"a": "x"}, "f:1", ["c"])
    with pytest.raises(LorikitError, match=r"f:2: classification rows need text fields .*the row has \['label'\]"):
        detect_text_fields({"label": 1}, "f:2")


def test_row_text_reads_pairs_and_names_a_missing_field():
    assert row_text({"text": "hello"}, "f:1") == ("hello", None)
    assert row_text({"premise": "p", "hypothesis": 3}, "f:1") == ("p", "3")
    fields = ("sentence1", "sentence2")
    with pytest.raises(LorikitError, match=r"f:7: missing field 'sentence2' \(the data's text fields are"):
        row_text({"sentence1": "a"}, "f:7", fields)
    with pytest.raises(LorikitError, match=r"f:3: row is list"):
        row_text([1, 2], "f:3")
