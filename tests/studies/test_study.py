"""The shared pieces of the paper reproductions (``underfire.studies.claims``)."""

from __future__ import annotations

from underfire.studies.claims import evidence_tables


def test_evidence_tables_give_one_row_per_item_and_one_column_per_quantity() -> None:
    evidence = {
        "threshold": 0.1,
        "resnet": {
            "grad": {"l1": 0.2, "iou": 0.5, "holds": True},
            "cam": {"l1": 0.3, "iou": 0.4, "holds": False},
        },
        "densenet": {"grad": {"l1": 0.25, "iou": 0.45, "holds": True}},
        "ensemble": {"success": 1.0, "sizes": [1, 2], "missing": None},
    }
    tables = evidence_tables(evidence)
    assert tables[0] == [{"quantity": "threshold", "value": 0.1}]
    assert tables[1] == [
        {"item": "resnet / grad", "l1": 0.2, "iou": 0.5, "holds": True},
        {"item": "resnet / cam", "l1": 0.3, "iou": 0.4, "holds": False},
        {"item": "densenet / grad", "l1": 0.25, "iou": 0.45, "holds": True},
    ]
    # other quantities: a table of their own; lists joined, None shown as a dash
    assert tables[2] == [{"item": "ensemble", "success": 1.0, "sizes": "1, 2", "missing": "—"}]
    assert len(tables) == 3


def test_evidence_tables_of_flat_or_empty_evidence() -> None:
    assert evidence_tables({"a": 1, "b": "x"}) == [
        [{"quantity": "a", "value": 1}, {"quantity": "b", "value": "x"}]
    ]
    assert evidence_tables({}) == []
    # an empty dict is a plain value, not a record
    assert evidence_tables({"a": {}}) == [[{"quantity": "a", "value": {}}]]
