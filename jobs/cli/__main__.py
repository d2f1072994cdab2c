"""`python -m jobs.cli …`: how `forecaster up` starts its children with the same interpreter it runs on."""

from jobs.cli import main

main()
