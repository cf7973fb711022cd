"""A long-running process takes what it built at start out of the collector's view."""

from __future__ import annotations

import gc
import weakref

from refundbridge.process import freeze_startup_objects


def test_startup_objects_are_frozen_and_still_freed_by_reference_counting() -> None:
    class Held:
        pass

    held = Held()
    before = gc.get_freeze_count()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > before
        assert not any(o is held for o in gc.get_objects())  # out of the collector's view
        gone = weakref.ref(held)
        del held
        assert gone() is None  # no leak: the last reference dropped frees it
    finally:
        gc.unfreeze()
