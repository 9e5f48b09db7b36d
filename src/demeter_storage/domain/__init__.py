"""The domain: value objects, key rules and errors. It imports no adapter."""
