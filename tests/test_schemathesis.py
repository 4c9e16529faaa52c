"""Schemathesis over every operation of the served OpenAPI document, with an admin token, against a
real ``liveml server`` holding an objective and a deployment: no server error, every error in the
envelope, every answer in its documented status codes, media type and schema.

Bounded for CI (``MAX_EXAMPLES`` per operation, derandomized: the same cases each run)."""
from __future__ import annotations

import pytest
import requests
import schemathesis
from conftest import REPO, deploy_reference, start_server
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 40
ENVELOPE = {"errorCode", "errorName", "errorInstanceId", "parameters"}
DOCUMENT = REPO / "liveml_ext" / "openapi.json"  # the served one (checked below)
SCHEMA = schemathesis.openapi.from_path(str(DOCUMENT))
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture(scope="module")
def world(tmp_path_factory, house_model):
    srv = start_server(tmp_path_factory.mktemp("fuzz"))
    deploy_reference(srv, house_model, "fuzz-houses", "Fuzz houses", replicas=1)
    yield srv
    srv.stop()


def envelope_on_errors(ctx, response, case) -> bool:
    """Every 4xx/5xx answer is the error envelope."""
    if response.status_code >= 400:
        doc = response.json()
        assert isinstance(doc, dict) and set(doc) == ENVELOPE, response.text[:300]
        assert doc["errorInstanceId"], doc
    return True


def test_the_fuzzed_document_is_the_served_one(world):
    served = requests.get(f"{world.url}liveml/api/openapi.json", headers=world.headers(),
                          timeout=30)
    assert served.json() == SCHEMA.raw_schema
    assert len(OPERATIONS) == sum(len(v) for v in SCHEMA.raw_schema["paths"].values())


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_every_operation_conforms(operation, world):
    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        case.call_and_validate(
            base_url=world.url.rstrip("/"), headers=world.headers(), timeout=60,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                    response_schema_conformance, envelope_on_errors])

    fuzz()
