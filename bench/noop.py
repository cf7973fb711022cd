"""The baseline job: does nothing, so a run measures RQ's own cost per job."""


def noop() -> None:
    return None
