"""Search spaces declared as data: one TOML file per named space (see study/spaces.py for the format)."""
