"""The Overdue filter's partial index names exactly the states the filter leaves out: were
they to drift apart, PostgreSQL would silently stop using the index."""

from __future__ import annotations

import re

from refundbridge.store import tables as t
from refundbridge.store.console_reads import SETTLED_STATES


def test_the_partial_index_excludes_the_settled_states() -> None:
    index = next(i for i in t.cases.indexes if i.name == "ix_cases_open_due")
    predicate = str(index.dialect_options["postgresql"]["where"])
    listed = set(re.findall(r"'([a-z_]+)'", predicate))
    assert listed == {s.value for s in SETTLED_STATES}
    assert "due_on IS NOT NULL" in predicate
