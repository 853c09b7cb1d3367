"""`python -m archiver` runs the CLI (the same as the `archiver` console script)."""

from .cli import main

main()
