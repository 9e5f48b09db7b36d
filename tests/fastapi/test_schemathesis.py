"""A fuzzer nobody here wrote: schemathesis against the router's own OpenAPI.

Every operation gets ``DEMETER_SCHEMATHESIS_EXAMPLES`` generated cases (25
here; ``nox -s schemathesis`` runs 250), valid and invalid ones, on the
in-memory service and on local files + SQLite, through a real uvicorn. Half
the valid cases aim at a real image and session (seeded again when a case deleted
it), so the routes' successful paths are fuzzed too, not only their refusals.
Every answer must be no 5xx, one of the operation's documented statuses and
content types, with a body and headers that match its declared schema; an
invalid request must be refused (4xx). Each run prints its case counts.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import pytest

from demeter_storage import StorageSettings
from tests.fastapi.support import PHOTO

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
requests = pytest.importorskip("requests", reason="requests is not installed")

import jsonschema_rs  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fastapi.live import LiveApp, app_for  # noqa: E402

EXAMPLES = int(os.environ.get("DEMETER_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
SESSION = "field-7"
OPERATIONS = [
    "upload_original",
    "upload_visualization",
    "list_session_images",
    "get_image",
    "download_image",
    "delete_image",
    "create_presigned_url",
    "begin_direct_upload",
    "complete_direct_upload",
]


def _settings(stack: str, root: Path) -> StorageSettings:
    if stack == "memory":
        return StorageSettings(backend="memory", thumbnails=False)
    return StorageSettings(backend="local", storage_root=root, thumbnails=False)


@pytest.fixture(scope="module", params=["memory", "local-sqlite"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("schemathesis")
    with LiveApp(app_for(_settings(str(request.param), root))) as server:
        yield server


@pytest.fixture(scope="module")
def schema(live: Any) -> Any:
    return schemathesis.openapi.from_dict(live.app.openapi())


class Seed:
    """A ready original in the seeded session; uploaded again whenever a case deleted it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.image: dict[str, Any] | None = None

    def ready(self) -> dict[str, Any]:
        if self.image is not None:
            got = self.http.get(f"{self.url}/photos/images/{self.image['image_id']}", timeout=30)
            if got.status_code == 200:
                return self.image
        for attempt in range(100):
            made = self.http.post(
                f"{self.url}/photos/sessions/{SESSION}/originals",
                files={"file": (f"seed-{attempt}.jpg", PHOTO, "image/jpeg")},
                timeout=30,
            )
            if made.status_code == 201:
                self.image = made.json()
                return self.image
        raise AssertionError(f"could not seed an image: {made.status_code} {made.text}")


def _aim(case: Any, image: dict[str, Any]) -> None:
    """Point the case at the seeded image and session (its other fields stay generated)."""
    parameters = case.path_parameters or {}
    if "image_id" in parameters:
        parameters["image_id"] = image["image_id"]
    if "session_id" in parameters:
        parameters["session_id"] = SESSION
    if isinstance(case.body, dict):
        for field, value in (("s3_key", image["s3_key"]), ("parent_id", image["image_id"])):
            if field in case.body:
                case.body[field] = value


MULTIPART = "multipart/form-data"


def _sent_fields(response: Any) -> dict[str, str]:
    """The text fields of the multipart body as it went over the wire (the file left out)."""
    request = response.request
    content = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    header = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(header + content)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        payload = part.get_payload(decode=True)
        if name != "file" and isinstance(payload, bytes):
            fields[name] = payload.decode(errors="replace")
    return fields


def _accepted_forms_were_valid(operation: Any, case: Any, response: Any) -> None:
    """A refusal check for multipart bodies, which schemathesis cannot judge with a file in them.

    An invalid case the server accepted must have become valid on the wire (an
    empty list sends no part at all, say): its text fields, read as a server
    reads them, must satisfy the documented form schema.
    """
    if response.status_code >= 300 or case.meta.generation.mode is GenerationMode.POSITIVE:
        return
    body = operation.definition.raw["requestBody"]["content"][MULTIPART]["schema"]
    properties = {k: v for k, v in body["properties"].items() if k != "file"}
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    sent: dict[str, Any] = {}
    for name, text in _sent_fields(response).items():
        numeric = properties.get(name, {}).get("type") == "integer" and text.isascii()
        sent[name] = int(text) if numeric and text.isdigit() else text
    assert jsonschema_rs.validator_for(schema).is_valid(sent), (
        f"an invalid form was accepted ({response.status_code}): {sent!r}"
    )


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_the_openapi_holds_against_generated_requests(
    schema: Any, live: Any, operation_id: str, request: pytest.FixtureRequest
) -> None:
    operation = schema.find_operation_by_id(operation_id)
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    seed = Seed(live.url)
    seen: list[int] = []
    multipart = operation_id.startswith("upload_")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=bool(os.environ.get("CI")),
    )
    @given(case=strategy, aimed=st.booleans())
    def run(case: Any, aimed: bool) -> None:
        if aimed and case.meta.generation.mode is GenerationMode.POSITIVE:
            _aim(case, seed.ready())  # an invalid case stays as generated: it must be refused
        response = case.call(base_url=live.url, session=seed.http, timeout=60)
        seen.append(response.status_code)
        if multipart:
            case.validate_response(response, checks=CHECKS[:-1])
            _accepted_forms_were_valid(operation, case, response)
        else:
            case.validate_response(response, checks=CHECKS)

    run()
    stack = request.node.callspec.id.split("-" + operation_id)[0]
    statuses = dict(sorted(Counter(seen).items()))
    print(f"\n{operation_id} on {stack}: {len(seen)} cases, statuses {statuses}")
    assert not [status for status in seen if status >= 500]
    assert len(seen) >= EXAMPLES
