"""`python -m atlas_selector` runs the selector service (same as `atlas serve selector`)."""

from atlas_selector.server import main

main()
