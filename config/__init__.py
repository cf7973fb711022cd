"""Settings: a TOML file, overridden by REFUNDBRIDGE_* environment variables."""
