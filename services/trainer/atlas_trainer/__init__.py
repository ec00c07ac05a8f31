"""ATLaS trainer service."""
