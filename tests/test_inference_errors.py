"""Every inference error the platform defines, through the real gateway and real replicas."""
from __future__ import annotations

import json

import pytest
import requests
from conftest import ROW, deploy_reference, query
from model_fixtures import Picky, PriceAndCount, save


@pytest.fixture(scope="module")
def houses(server, house_model) -> str:
    return deploy_reference(server, house_model, "errors", "Error cases", replicas=1)["rid"]


@pytest.fixture(scope="module")
def picky(server, tmp_path_factory) -> str:
    c = server.client
    path = save(Picky(), tmp_path_factory.mktemp("picky") / "picky.pkl")
    c.create_objective("picky")
    c.submit("picky", path, name="p")
    c.release("picky", "p", "1", tag="production")
    return c.wait(c.deploy("picky", name="Picky", replicas=1)["rid"], timeout=120)["rid"]


def envelope(resp: requests.Response, status: int, name: str) -> dict:
    assert resp.status_code == status, resp.text
    doc = resp.json()
    assert set(doc) == {"errorCode", "errorName", "errorInstanceId", "parameters"}
    assert doc["errorName"] == name
    assert len(doc["errorInstanceId"]) == 36
    return doc["parameters"]


def post(server, rid: str, data: bytes | str, v2: bool = False, **headers: str) -> requests.Response:
    return requests.post(server.infer_url(rid, v2), data=data,
                         headers={**server.headers(), **headers}, timeout=30)


def test_malformed_json_is_422(server, houses):
    envelope(post(server, houses, b'{"requestData": [ {'), 422, "MalformedRequestBody")


@pytest.mark.parametrize("rows, kind, column", [
    ([{"house-location": "Austin", "bedrooms": 2}], "requiredValueMissing", "bathrooms"),
    ([{"house-location": "Austin", "bedrooms": None, "bathrooms": 1.0}],
     "requiredValueMissing", "bedrooms"),
    ([{"house-location": "Austin", "bedrooms": "two", "bathrooms": 1.0}], "typeMismatch", "bedrooms"),
    ([{"house-location": 7, "bedrooms": 2, "bathrooms": 1.0}], "typeMismatch", "house-location"),
])
def test_rows_not_matching_the_api_name_the_column(server, houses, rows, kind, column):
    params = envelope(query(server, houses, rows), 400, "InferenceInvalidInput")
    assert params["errorType"]["type"] == kind
    assert params["errorType"]["column"] == column
    assert column in params["message"]


def test_invalid_tabular_format_and_unknown_inputs(server, houses):
    params = envelope(post(server, houses, '{"requestData": {"a": 1}, "requestParams": {}}'), 400,
                      "InferenceInvalidInput")
    assert params["errorType"]["type"] == "invalidTabularFormat"
    body = json.dumps({"requestData": [ROW], "requestParams": {"k": 1}})
    params = envelope(post(server, houses, body), 400, "InferenceInvalidInput")
    assert params["errorType"] == {"type": "unknownInputName", "input": "k"}
    params = envelope(post(server, houses, '{"houses": []}', v2=True), 400, "InferenceInvalidInput")
    assert params["errorType"] == {"type": "unknownInputName", "input": "houses"}
    params = envelope(post(server, houses, "{}", v2=True), 400, "InferenceInvalidInput")
    assert params["errorType"] == {"type": "requiredValueMissing", "input": "input_df"}


def test_model_raising_is_inference_failure(server, picky):
    ok = query(server, picky, [{"x": 1.5}])
    assert ok.status_code == 200 and ok.json()["responseData"] == [{"x": 1.5, "y": 3.0}]
    params = envelope(query(server, picky, [{"x": -1.0}]), 400, "InferenceFailure")
    assert "x must not be negative" in params["message"]
    assert params["exceptionType"] == "ValueError"
    # the replica survives its model's failure
    assert query(server, picky, [{"x": 2}]).status_code == 200


def test_authentication(server, houses):
    body = {"requestData": [ROW], "requestParams": {}}
    resp = requests.post(server.infer_url(houses), json=body, timeout=30)
    envelope(resp, 401, "Unauthorized")
    resp = requests.post(server.infer_url(houses), json=body, timeout=30,
                         headers={"Authorization": "Bearer lml_not-a-token"})
    envelope(resp, 401, "Unauthorized")
    for path in ("liveml/api/deployments", "liveml/api/objectives", "liveml/api/profiles",
                 "liveml/api/openapi.json", "liveml/api/nowhere"):
        envelope(requests.get(server.url + path, timeout=30), 401, "Unauthorized")


def test_unknown_rid_is_404(server):
    rid = "ri.foundry-ml-live.main.live-deployment.00000000-0000-0000-0000-000000000000"
    envelope(query(server, rid), 404, "LiveDeploymentNotFound")
    envelope(post(server, rid, "{}", v2=True), 404, "LiveDeploymentNotFound")


def test_body_over_the_limit_is_413(server, houses):
    big = b'{"requestData": [' + b" " * (50 * 1024 * 1024 + 10) + b"]}"
    params = envelope(post(server, houses, big), 413, "RequestEntityTooLarge")
    assert params["maxBytes"] == 50 * 1024 * 1024
    assert query(server, houses).status_code == 200  # nothing broke


def test_namespace_scoped_tokens(server, houses):
    """Another namespace's token gets the answer of an unknown RID: its RIDs don't leak."""
    c = server.client
    other = c.create_token(namespace="team-b", scope="query")["token"]
    body = {"requestData": [ROW], "requestParams": {}}
    unknown = houses.rsplit(".", 1)[0] + ".00000000-0000-0000-0000-000000000000"
    answers = []
    for rid in (houses, unknown):
        resp = requests.post(server.infer_url(rid), json=body, timeout=30,
                             headers={"Authorization": f"Bearer {other}"})
        params = envelope(resp, 404, "LiveDeploymentNotFound")
        answers.append((resp.json()["errorCode"], params["message"].replace(rid, "RID"),
                        params["deploymentRid"] == rid, sorted(params)))
    assert answers[0] == answers[1]
    mine = c.create_token(namespace="default", scope="query")["token"]
    resp = requests.post(server.infer_url(houses), json=body, timeout=30,
                         headers={"Authorization": f"Bearer {mine}"})
    assert resp.status_code == 200


def test_multi_io_adapter_through_v2(server, tmp_path):
    c = server.client
    path = save(PriceAndCount(), tmp_path / "multi.pkl")
    c.create_objective("multi")
    sub = c.submit("multi", path, name="m")
    assert [i["name"] for i in sub["api"]["inputs"]] == ["houses", "discount"]
    assert [o["name"] for o in sub["api"]["outputs"]] == ["priced", "count"]
    c.release("multi", "m", "1", tag="production")
    rid = c.wait(c.deploy("multi", name="Multi", replicas=1)["rid"], timeout=120)["rid"]
    rows = [{"price": 100.0, "city": "Austin"}, {"price": 50, "city": "Chicago"}]
    resp = post(server, rid, json.dumps({"houses": rows, "discount": 0.1}), v2=True)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["count"] == 2
    assert [r["final"] for r in out["priced"]] == [90.0, 45.0]
    # the default of a parameter applies when it is left out
    resp = post(server, rid, json.dumps({"houses": rows}), v2=True)
    assert [r["final"] for r in resp.json()["priced"]] == [100.0, 50.0]
    params = envelope(post(server, rid, json.dumps({"houses": rows, "discount": "lots"}), v2=True),
                      400, "InferenceInvalidInput")
    assert params["errorType"]["type"] == "typeMismatch" and params["errorType"]["input"] == "discount"
    # an explicit null is refused, not silently the default: leave the parameter out for that
    params = envelope(post(server, rid, json.dumps({"houses": rows, "discount": None}), v2=True),
                      400, "InferenceInvalidInput")
    assert params["errorType"] == {"type": "typeMismatch", "input": "discount",
                                   "expected": "double", "actual": "null"}
    assert "leave it out" in params["message"]
    # v1 does not fit a multi-output model, and says to use v2
    params = envelope(query(server, rid, rows), 400, "InferenceInvalidInput")
    assert "/v2" in params["message"]


def test_empty_rows_are_refused_saying_so(server, houses):
    for body, v2 in (('{"requestData": [], "requestParams": {}}', False), ('{"input_df": []}', True)):
        params = envelope(post(server, houses, body, v2=v2), 400, "InferenceInvalidInput")
        assert params["errorType"] == {"type": "emptyRows", "input": "input_df"}
        assert "no rows" in params["message"]


def test_an_overflowing_value_is_named_not_a_null_prediction(server, houses):
    params = envelope(query(server, houses, [ROW, {**ROW, "bedrooms": 1e308}]), 400,
                      "InferenceFailure")
    assert params["errorType"] == {"type": "nonFiniteOutput", "column": "prediction", "row": 1}
    assert "1e308" in params["message"]
    # a number JSON's doubles cannot hold is refused by the parser
    envelope(post(server, houses, '{"requestData": [{"house-location": "Austin", '
                  '"bedrooms": 1e309, "bathrooms": 1}]}'), 422, "MalformedRequestBody")
    assert query(server, houses).status_code == 200


def test_duplicate_keys_are_refused_naming_the_key(server, houses, picky):
    row = '"house-location": "Austin", "bathrooms": 1'
    for body in ('{"requestData": [{ROW, "bedrooms": 2, "bedrooms": 3}]}',
                 '{"requestData": [{ROW, "bedrooms": 2}], "requestData": []}',
                 '{"requestData": [{ROW, "bedrooms": 2}], "requestParams": {"a": 1, "a": 2}}'):
        body = body.replace("ROW", row)
        params = envelope(post(server, houses, body), 400, "InferenceInvalidInput")
        assert params["errorType"]["type"] == "duplicateKey", body
        assert params["errorType"]["key"] in ("bedrooms", "requestData", "a")
        assert repr(params["errorType"]["key"]) in params["message"]
    # in a nested pass-through value too; colons inside strings are no duplicates
    nested = '{"requestData": [{"x": 1, "extra": {"k": 1, "k": 2}}]}'
    params = envelope(post(server, picky, nested), 400, "InferenceInvalidInput")
    assert params["errorType"] == {"type": "duplicateKey", "key": "k"}
    ok = post(server, picky, '{"requestData": [{"x": 1, "at": "12:00:00", "m": {"a:b": 1}}]}')
    assert ok.status_code == 200, ok.text
    assert ok.json()["responseData"] == [{"x": 1.0, "at": "12:00:00", "m": {"a:b": 1}, "y": 2.0}]


def test_nesting_past_the_limit_is_a_400_and_within_it_echoes(server, picky):
    def body(depth: int) -> str:
        return '{"requestData": [{"x": 1, "deep": ' + "[" * depth + "]" * depth + "}]}"

    params = envelope(post(server, picky, body(300)), 400, "InferenceInvalidInput")
    assert params["errorType"] == {"type": "tooDeep", "maxDepth": 254}
    ok = post(server, picky, body(200))
    assert ok.status_code == 200, ok.text
    assert json.dumps(ok.json()["responseData"][0]["deep"]).count("[") == 200


@pytest.mark.parametrize("content_type, status", [
    ("text/plain", 415), ("application/x-www-form-urlencoded", 415),
    ("application/json", 200), ("application/json; charset=utf-8", 200), (None, 200)])
def test_content_type_must_be_json(server, houses, content_type, status):
    headers = {"Content-Type": content_type} if content_type else {}
    resp = post(server, houses, json.dumps({"requestData": [ROW]}), **headers)
    if status == 200:
        assert resp.status_code == 200, resp.text
        return
    params = envelope(resp, 415, "UnsupportedMediaType")
    assert params["contentType"] == content_type
    assert "Content-Type: application/json" in params["message"]


def test_a_replica_refusing_a_caller_fills_the_envelope(server, houses):
    urls = [r["url"] for r in server.client.deployment(houses)["status"]["replicas"]]
    assert urls and all(urls)
    for url in urls:
        resp = requests.get(f"{url}/api", timeout=30)
        envelope(resp, 401, "Unauthorized")
