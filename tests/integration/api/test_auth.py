"""Discovery and the UAA-style token endpoint."""

from __future__ import annotations

import jwt

from tests.integration.api.conftest import ADMIN_PASSWORD, BASE, Api


async def test_global_root_points_at_this_server(api: Api) -> None:
    response = await api.http.get("/")
    assert response.status_code == 200
    links = response.json()["links"]
    assert links["cloud_controller_v3"]["href"] == f"{BASE}/v3"
    assert links["login"]["href"] == BASE and links["uaa"]["href"] == BASE
    assert all(value is not None for value in links.values())


async def test_v3_root_and_openapi(api: Api) -> None:
    v3 = (await api.http.get("/v3")).json()["links"]
    assert v3["apps"]["href"] == f"{BASE}/v3/apps"
    spec = (await api.http.get("/openapi.json")).json()
    assert "/v3/apps" in spec["paths"] and "/oauth/token" in spec["paths"]


async def test_password_grant_gives_uaa_shaped_tokens(api: Api) -> None:
    body = await api.token("admin", ADMIN_PASSWORD)
    assert body["token_type"] == "bearer" and body["expires_in"] == 600
    assert body["refresh_token"] and body["jti"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["user_name"] == "admin" and claims["client_id"] == "cf"
    assert "cloud_controller.admin" in claims["scope"] and claims["grant_type"] == "password"


async def test_wrong_password_and_unknown_user_look_alike(api: Api) -> None:
    for username, password in (("admin", "nope"), ("ghost", "nope")):
        response = await api.http.post(
            "/oauth/token",
            auth=("cf", ""),
            data={"grant_type": "password", "username": username, "password": password},
        )
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized", "error_description": "Bad credentials"}
        assert "nope" not in response.text


async def test_token_endpoint_refuses_bad_requests(api: Api) -> None:
    form = {"username": "admin", "password": ADMIN_PASSWORD}
    missing = await api.http.post("/oauth/token", auth=("cf", ""), data=form)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    odd = await api.http.post(
        "/oauth/token", auth=("cf", ""), data={**form, "grant_type": "implicit"}
    )
    assert odd.status_code == 400 and odd.json()["error"] == "unsupported_grant_type"
    as_json = await api.http.post(
        "/oauth/token", auth=("cf", ""), json={**form, "grant_type": "password"}
    )
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    bad_basic = await api.http.post(
        "/oauth/token",
        headers={"Authorization": "Basic !!!"},
        data={**form, "grant_type": "password"},
    )
    assert bad_basic.status_code == 401 and bad_basic.json()["error"] == "invalid_client"
    public_client_credentials = await api.http.post(
        "/oauth/token", auth=("cf", ""), data={"grant_type": "client_credentials"}
    )
    assert public_client_credentials.status_code == 401


async def test_refresh_tokens_do_not_rotate(api: Api) -> None:
    first = await api.token("admin", ADMIN_PASSWORD)
    for _ in range(2):
        response = await api.http.post(
            "/oauth/token",
            auth=("cf", ""),
            data={
                "grant_type": "refresh_token",
                "refresh_token": first["refresh_token"],
                "scope": "",
            },
        )
        assert response.status_code == 200
        body = response.json()
        assert body["refresh_token"] == first["refresh_token"]
        headers = {"Authorization": f"bearer {body['access_token']}"}
        assert (await api.http.get("/v3/organizations", headers=headers)).status_code == 200


async def test_refresh_token_is_not_an_access_token(api: Api) -> None:
    token = await api.token("admin", ADMIN_PASSWORD)
    response = await api.http.get(
        "/v3/organizations", headers={"Authorization": f"bearer {token['refresh_token']}"}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["title"] == "CF-InvalidAuthToken"


async def test_missing_and_bad_tokens(api: Api) -> None:
    missing = await api.http.get("/v3/apps")
    assert missing.status_code == 401
    assert missing.json()["errors"] == [
        {"code": 10002, "title": "CF-NotAuthenticated", "detail": "Authentication error"}
    ]
    for header in ("bearer garbage", "Basic abc", "bearer ", "bearer a.b.c"):
        response = await api.http.get("/v3/apps", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["errors"][0]["code"] == 1000
    forged = jwt.encode(
        {"sub": "x", "exp": 9999999999, "iat": 1, "token_use": "access"},
        "not-our-key-but-long-enough-for-hs256!!",
        algorithm="HS256",
        headers={"kid": "key-nope"},
    )
    response = await api.http.get("/v3/apps", headers={"Authorization": f"bearer {forged}"})
    assert response.json()["errors"][0]["title"] == "CF-InvalidAuthToken"


async def test_expired_access_token_is_invalid_but_refreshable(api: Api) -> None:
    token = await api.token("admin", ADMIN_PASSWORD)
    api.clock.advance(601)
    response = await api.http.get(
        "/v3/organizations", headers={"Authorization": f"bearer {token['access_token']}"}
    )
    assert response.status_code == 401
    error = response.json()["errors"][0]
    assert (error["code"], error["title"]) == (1000, "CF-InvalidAuthToken")
    refreshed = await api.http.post(
        "/oauth/token",
        auth=("cf", ""),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
    )
    assert refreshed.status_code == 200


async def test_deleted_user_loses_access_at_once(api: Api) -> None:
    guid, headers = await api.user("temp")
    assert (await api.http.get("/v3/organizations", headers=headers)).status_code == 200
    deleted = await api.http.delete(f"/v3/users/{guid}", headers=api.admin)
    await api.wait_job(deleted.headers["location"])
    response = await api.http.get("/v3/organizations", headers=headers)
    assert response.status_code == 401


async def test_client_credentials_grant(api: Api) -> None:
    created = await api.http.post(
        "/v3/x/clients",
        headers=api.admin,
        json={
            "client_id": "ci-bot",
            "client_secret": "a-long-enough-secret",
            "authorities": ["cloud_controller.admin"],
        },
    )
    assert created.status_code == 201 and "secret" not in created.text
    token = await api.http.post(
        "/oauth/token",
        auth=("ci-bot", "a-long-enough-secret"),
        data={"grant_type": "client_credentials"},
    )
    assert token.status_code == 200 and "refresh_token" not in token.json()
    headers = {"Authorization": f"bearer {token.json()['access_token']}"}
    org = await api.http.post("/v3/organizations", headers=headers, json={"name": "by-bot"})
    assert org.status_code == 201
    wrong = await api.http.post(
        "/oauth/token",
        auth=("ci-bot", "wrong-secret-xxxxxxx"),
        data={"grant_type": "client_credentials"},
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    password = await api.http.post(
        "/oauth/token",
        auth=("ci-bot", "a-long-enough-secret"),
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
    )
    assert password.status_code == 401
