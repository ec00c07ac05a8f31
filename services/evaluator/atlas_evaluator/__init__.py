"""ATLaS evaluator service."""
