"""Small models and tokenizers built locally, for tests and the demo (no model hub is reachable).

Import the submodules directly (``atlas.models.tiny``): they need the ``transformers`` extra, which
services without a model do not install.
"""
