"""RQ workers: jobs take ids, each runs one step of one case, and every job is idempotent."""
