"""ATLaS fleet shared package: contracts, data model, formats, storage, server plumbing, CLI."""

__version__ = "0.1.0"
