"""The HTTP API: webhook ingest, the operator API and the ops dashboard."""
