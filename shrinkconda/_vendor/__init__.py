"""Third-party code shipped inside shrinkconda, unmodified: tomli 2.2.1 (MIT, see
tomli/LICENSE), the TOML reader for Pythons without :mod:`tomllib` (3.9, 3.10)."""
