"""Where boto3 would find credentials, for ``demeter-storage doctor``."""

from __future__ import annotations

import boto3


def find_credentials(profile: str | None) -> str | None:
    """The method by which boto3's chain finds credentials, or None if it finds none.

    Raises:
        Exception: whatever boto3 raises for a broken profile or config file.
    """
    found = boto3.Session(profile_name=profile).get_credentials()
    return None if found is None else str(found.method)
