"""`python -m atlas_trainer` runs the trainer service (same as `atlas serve trainer`)."""

from atlas_trainer.server import main

main()
