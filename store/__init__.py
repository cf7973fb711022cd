"""Storage adapters: SQLAlchemy tables, the case repository and the unit of work."""
