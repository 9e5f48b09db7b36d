"""A host app's tests get the package's fixtures through its ``pytest11`` entry point.

The suite itself loads the plugin through ``pytest_plugins`` (for coverage);
here a separate pytest process in an empty directory, as a host app's would be,
must find every fixture with no set-up of its own.
"""

from __future__ import annotations

import pytest

HOST_APP_TESTS = """
import asyncio

import pytest

from demeter_storage import ConfigurationError, Secret
from demeter_storage.adapters.s3.store import S3ImageStore


def test_the_in_memory_and_local_stores_are_ready(memory_image_store, local_image_store):
    async def round_trip(store):
        await store.put("s/a.jpg", b"jpeg bytes", content_type="image/jpeg")
        return await store.get("s/a.jpg")

    for store in (memory_image_store, local_image_store):
        assert asyncio.run(round_trip(store)) == b"jpeg bytes"


def test_the_in_memory_service_is_ready(memory_image_service):
    assert memory_image_service.originals.name == "demeter-photos-original"


def test_the_seaweedfs_server_checks_signatures(seaweedfs_server):
    async def round_trip():
        store = S3ImageStore("host-app", config=seaweedfs_server.s3_config())
        try:
            await store.ensure_bucket()
            await store.put("s/a.jpg", b"jpeg bytes", content_type="image/jpeg")
            return await store.get("s/a.jpg")
        finally:
            await store.aclose()

    assert asyncio.run(round_trip()) == b"jpeg bytes"

    async def forged():
        config = seaweedfs_server.s3_config(secret_access_key=Secret("not-the-secret"))
        store = S3ImageStore("host-app", config=config)
        try:
            await store.get("s/a.jpg")
        finally:
            await store.aclose()

    with pytest.raises(ConfigurationError, match="SignatureDoesNotMatch"):
        asyncio.run(forged())
"""


def test_a_host_apps_tests_find_every_fixture_through_the_entry_point(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_host_app=HOST_APP_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_without_the_plugin_the_fixtures_are_missing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_host_app=HOST_APP_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:demeter_storage")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*fixture 'memory_image_store' not found*"])
