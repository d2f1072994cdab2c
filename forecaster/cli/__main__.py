"""`python -m forecaster.cli …`: how `forecaster up` starts its children with the same interpreter it runs on."""

from forecaster.cli import main

main()
