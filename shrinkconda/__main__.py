"""Allow ``python -m shrinkconda``."""

from shrinkconda.cli import main

main()
