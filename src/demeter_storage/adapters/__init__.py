"""Adapters: the only modules that talk to file systems, S3 or databases."""
