"""A region, an endpoint and a profile as botocore reads them: checked before any client.

Settings call these, so that a value botocore would refuse (or silently
misread) is one line of the settings' ``ConfigurationError``.
"""

from __future__ import annotations

import re
from typing import Final

from demeter_storage.domain.urls import http_url_problem

_REGION: Final = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
"""botocore's rule for region names."""


def region_problem(region: str) -> str | None:
    """Why botocore refuses ``region`` as a region name, or None."""
    if _REGION.fullmatch(region):
        return None
    return "not a region name (us-east-1, eu-west-3...)"


def endpoint_problem(url: str) -> str | None:
    """Why ``url`` cannot be an S3 endpoint (``http(s)://host[:port]``), or None."""
    # botocore refuses '_' in an endpoint's host (a ValueError quoting the URL).
    return http_url_problem(url, underscores=False)


def profile_problem(profile: str) -> str | None:
    """Why ``profile`` is not a profile of the shared AWS config files, or None."""
    import botocore.session  # noqa: PLC0415 - reads the AWS config files only when asked

    try:
        known = botocore.session.Session().available_profiles
    except Exception as exc:  # an unreadable or malformed shared config file
        return f"the AWS config files cannot be read ({exc})"
    if profile not in known:
        return f"no AWS config file has it (known: {', '.join(sorted(known)) or 'none'})"
    return None
