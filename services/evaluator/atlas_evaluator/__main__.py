"""`python -m atlas_evaluator` runs the evaluator service (same as `atlas serve evaluator`)."""

from atlas_evaluator.server import main

main()
