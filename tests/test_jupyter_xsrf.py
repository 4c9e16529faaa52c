"""Issue 13 point 3: inside Jupyter, a browser's login cookie rides along on cross-site requests;
liveml skips the XSRF and Origin checks only when a token (liveml's or Jupyter's) authenticates,
never because some Authorization header is present."""
from __future__ import annotations

import requests
from test_jupyter_extension import JUPYTER_TOKEN, jupyter  # noqa: F401 - the fixture

EVIL = "http://evil.example"


def logged_in(jupyter) -> tuple[requests.Session, str]:  # noqa: F811
    """A browser-like session holding Jupyter's login cookie, and its _xsrf value."""
    base = f"http://127.0.0.1:{jupyter['port']}/jl/"
    s = requests.Session()
    s.get(base + "login", timeout=30)
    xsrf = s.cookies["_xsrf"]
    resp = s.post(base + "login", data={"password": JUPYTER_TOKEN, "_xsrf": xsrf},
                  allow_redirects=False, timeout=30)
    assert resp.status_code in (302, 303), resp.text
    assert any(c.name.startswith("username-") for c in s.cookies)
    return s, xsrf


def refused(resp: requests.Response) -> None:
    assert resp.status_code == 403, resp.text
    doc = resp.json()
    assert doc["errorName"] == "CrossSiteRequestRefused", doc
    assert doc["errorCode"] == "PERMISSION_DENIED"


def test_cross_site_cookie_post_with_basic_auth_cannot_create_a_token(jupyter):  # noqa: F811
    s, _ = logged_in(jupyter)
    url = jupyter["url"] + "liveml/api/tokens"
    body = {"scope": "manage"}
    for headers in ({"Authorization": "Basic dXNlcjpwYXNz", "Origin": EVIL},
                    {"Authorization": "Basic dXNlcjpwYXNz"},  # no XSRF token either
                    {"Authorization": "Bearer not-a-token", "Origin": EVIL}):
        refused(s.post(url, json=body, headers=headers, timeout=30))


def test_a_bad_origin_with_the_cookie_is_refused_even_with_the_xsrf_token(jupyter):  # noqa: F811
    s, xsrf = logged_in(jupyter)
    api = jupyter["url"] + "liveml/api/"
    refused(s.post(api + "tokens", json={"scope": "query"}, timeout=30,
                   headers={"Origin": EVIL, "X-XSRFToken": xsrf}))
    refused(s.get(api + "whoami", headers={"Origin": EVIL}, timeout=30))


def test_same_origin_lab_calls_and_token_calls_still_work(jupyter):  # noqa: F811
    s, xsrf = logged_in(jupyter)
    api = jupyter["url"] + "liveml/api/"
    origin = jupyter["url"].rstrip("/").rsplit("/", 1)[0]  # http://127.0.0.1:PORT
    same = {"Origin": origin, "X-XSRFToken": xsrf}
    assert s.get(api + "whoami", headers={"Origin": origin}, timeout=30).json()["scope"] == "admin"
    resp = s.post(api + "tokens", json={"scope": "query"}, headers=same, timeout=30)
    assert resp.status_code == 201, resp.text
    # a token authenticates on its own: no XSRF token needed, even with the cookie along
    for tok in (jupyter["token"], JUPYTER_TOKEN):
        resp = s.post(api + "tokens", json={"scope": "query"}, timeout=30,
                      headers={"Authorization": f"Bearer {tok}", "Origin": EVIL})
        assert resp.status_code == 201, resp.text
