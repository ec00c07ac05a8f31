"""ATLaS selector service."""
