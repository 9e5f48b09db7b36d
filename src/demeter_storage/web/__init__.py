"""The small web app that serves and accepts the local store's signed URLs."""
