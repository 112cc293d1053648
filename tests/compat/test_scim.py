"""SCIM 2.0 Users driven by the official `iblai` client's `ScimApi` (4.202.2).

Every Users operation of the client is called, each `*2` twin (the same
path with a trailing slash) too. The operations return the raw HTTP
response; every 2xx body is parsed with the client's own models
(`SCIMUserResponse`, `SCIMUserListResponse`), which reject missing or null
required fields and wrong JSON types. What the typed calls cannot send (a
`filter`, `startIndex`/`count`, a SCIM `PatchOp` body) goes through the same
client with a raw request.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import iblai
import pytest
from iblai import (
    PatchedSCIMUserResponse,
    SCIMEmail,
    SCIMName,
    SCIMUserCreateRequest,
    SCIMUserListResponse,
    SCIMUserResponse,
)

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
# X-Position is an opaque token; clients pass it back as X-Min-Position unread.
POSITION_TOKEN = re.compile(r"p1\.[0-9a-f]{24}")

# ---------------------------------------------------------------------------
# helpers


def uid() -> str:
    return uuid.uuid4().hex[:10]


def body_of(resp, status: int) -> Any:
    data = resp.data
    assert resp.status == status, f"expected {status}, got {resp.status}: {data[:2000]!r}"
    if not data:
        return None
    ctype = resp.headers.get("content-type", "")
    assert "json" in ctype, f"expected a JSON body, got {ctype!r}: {data[:500]!r}"
    return json.loads(data)


def user_of(resp, status: int = 200) -> SCIMUserResponse:
    body_of(resp, status)
    user = SCIMUserResponse.from_json(resp.data)
    assert user is not None
    return user


def list_of(resp) -> tuple[SCIMUserListResponse, list[SCIMUserResponse]]:
    body = body_of(resp, 200)
    page = SCIMUserListResponse.from_json(resp.data)
    assert page is not None
    assert page.schemas == [LIST_SCHEMA]
    assert type(body["startIndex"]) is int and type(body["itemsPerPage"]) is int
    users = [SCIMUserResponse.from_dict(r) for r in page.resources]
    assert body["itemsPerPage"] == len(users)
    return page, users


def scim_error(resp, status: int, scim_type: str | None = None) -> dict:
    err = body_of(resp, status)
    assert err["schemas"] == [ERROR_SCHEMA], err
    assert err["status"] == str(status), err
    assert isinstance(err["detail"], str) and err["detail"], err
    assert err.get("scimType") == scim_type, err
    return err


def raw(client: iblai.ApiClient, method: str, path: str, body: Any = None,
        query: list[tuple[str, str]] | None = None):
    """A request through the client's own transport and auth, as
    `application/scim+json`."""
    header_params = {"Accept": "application/scim+json"}
    if body is not None:
        header_params["Content-Type"] = "application/scim+json"
    params = client.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params=header_params,
        body=body,
        auth_settings=["PlatformApiKeyAuthentication"],
    )
    return client.call_api(*params).response


def new_user(username: str, given: str = "Ada", family: str = "Lovelace",
             email: str | None = None, active: bool = True) -> SCIMUserCreateRequest:
    return SCIMUserCreateRequest(
        schemas=[USER_SCHEMA],
        user_name=username,
        name=SCIMName(given_name=given, family_name=family),
        emails=[SCIMEmail(value=email or f"{username}@example.com")],
        active=active,
    )


@pytest.fixture(scope="session")
def scim(acme_client):
    return iblai.ScimApi(acme_client)


@pytest.fixture(scope="session")
def other_scim(other_client):
    return iblai.ScimApi(other_client)


@pytest.fixture(params=["", "2"], ids=["no-slash", "slash"])
def twin(request, scim):
    """Calls the `.../Users/{id}` operation or its trailing-slash `*2` twin."""
    return lambda name: getattr(scim, name + request.param)


USERS = "/api/orgs/{platform_key}/scim/v2/Users"


def create(scim, username: str, **kw) -> SCIMUserResponse:
    return user_of(scim.create_user(platform_key="acme", scim_user_create_request=new_user(username, **kw)), 201)


# ---------------------------------------------------------------------------
# create, get, list


def test_create_answers_201_and_a_user_the_model_reads(server, scim):
    name = f"ada-{uid()}"
    resp = scim.create_user(platform_key="acme", scim_user_create_request=new_user(name))
    user = user_of(resp, 201)
    assert user.schemas == [USER_SCHEMA]
    assert user.id.isdigit()
    assert user.user_name == name
    assert (user.name.given_name, user.name.family_name, user.name.formatted) == ("Ada", "Lovelace", "Ada Lovelace")
    assert [(e.value, e.primary, e.type) for e in user.emails] == [(f"{name}@example.com", True, "work")]
    assert user.active is True
    assert user.urn_ietf_params_scim_schemas_extension_enterprise_2_0_user is not None
    assert user.meta.resource_type == "User"
    assert user.meta.location == f"{server.base}/api/orgs/acme/scim/v2/Users/{user.id}"
    assert user.meta.created.endswith("Z") and user.meta.last_modified.endswith("Z")
    assert resp.headers["Location"] == user.meta.location
    assert POSITION_TOKEN.fullmatch(resp.headers["X-Position"])
    assert resp.headers["content-type"].startswith("application/scim+json")


def test_retrieve_answers_the_created_user(scim, twin):
    made = create(scim, f"get-{uid()}")
    got = user_of(twin("retrieve_user")(id=made.id, platform_key="acme"))
    assert got == made


def test_list_answers_every_user_of_the_platform(server, scim):
    made = create(scim, f"list-{uid()}")
    page, users = list_of(scim.list_users(platform_key="acme"))
    assert page.total_results == len(users) >= 2
    by_id = {u.id: u for u in users}
    assert by_id[made.id] == made
    assert by_id[str(server.acme.admin_id)].user_name == server.acme.admin_username
    assert by_id[str(server.acme.admin_id)].emails[0].value == server.acme.admin_email


def test_list_filters_on_user_name_and_email(scim, acme_client):
    name = f"Filter-{uid()}"
    made = create(scim, name)
    for expr in (
        f'userName eq "{name}"',
        f'username eq "{name.lower()}"',
        f'emails.value eq "{name}@example.com"',
        f'emails eq "{name.upper()}@EXAMPLE.COM"',
    ):
        page, users = list_of(raw(acme_client, "GET", "/api/orgs/acme/scim/v2/Users", query=[("filter", expr)]))
        assert page.total_results == 1, expr
        assert users == [made], expr
    page, users = list_of(raw(acme_client, "GET", "/api/orgs/acme/scim/v2/Users",
                              query=[("filter", 'userName eq "nobody-at-all"')]))
    assert (page.total_results, users) == (0, [])
    for bad in ('userName sw "x"', "userName eq x", 'title eq "x"', 'userName eq "a" and active eq true'):
        scim_error(raw(acme_client, "GET", "/api/orgs/acme/scim/v2/Users", query=[("filter", bad)]),
                   400, "invalidFilter")


def test_list_pages_with_start_index_and_count(scim, acme_client):
    for _ in range(3):
        create(scim, f"page-{uid()}")
    _, everyone = list_of(scim.list_users(platform_key="acme"))
    total = len(everyone)
    assert total >= 4
    resp = raw(acme_client, "GET", "/api/orgs/acme/scim/v2/Users", query=[("startIndex", "2"), ("count", "2")])
    page, users = list_of(resp)
    assert page.total_results == total
    assert json.loads(resp.data)["startIndex"] == 2
    assert users == everyone[1:3]
    page, users = list_of(raw(acme_client, "GET", "/api/orgs/acme/scim/v2/Users",
                              query=[("startIndex", str(total + 1))]))
    assert (page.total_results, users) == (total, [])
    scim_error(raw(acme_client, "GET", "/api/orgs/acme/scim/v2/Users", query=[("count", "many")]),
               400, "invalidValue")


# ---------------------------------------------------------------------------
# replace, patch, delete


def test_update_replaces_the_user(scim, twin):
    made = create(scim, f"put-{uid()}")
    new_name = f"put-new-{uid()}"
    replaced = user_of(twin("update_user")(
        id=made.id, platform_key="acme",
        scim_user_create_request=new_user(new_name, given="Grace", family="Hopper",
                                          email=f"{new_name}@navy.test", active=False),
    ))
    assert replaced.id == made.id
    assert replaced.user_name == new_name
    assert replaced.name.formatted == "Grace Hopper"
    assert replaced.emails[0].value == f"{new_name}@navy.test"
    assert replaced.active is False
    assert replaced.meta.created == made.meta.created
    assert user_of(scim.retrieve_user(id=made.id, platform_key="acme")) == replaced


def test_partial_update_sends_a_partial_user(scim, twin):
    made = create(scim, f"patch-{uid()}")
    patched = user_of(twin("partial_update_user")(
        id=made.id, platform_key="acme",
        patched_scim_user_response=PatchedSCIMUserResponse(active=False),
    ))
    assert patched.active is False
    assert (patched.user_name, patched.name, patched.emails) == (made.user_name, made.name, made.emails)
    patched = user_of(twin("partial_update_user")(
        id=made.id, platform_key="acme",
        patched_scim_user_response=PatchedSCIMUserResponse(active=True, name=SCIMName(given_name="Augusta")),
    ))
    assert patched.active is True
    assert (patched.name.given_name, patched.name.family_name) == ("Augusta", "Lovelace")


def test_patch_op_replaces_active_with_and_without_a_path(scim, acme_client):
    made = create(scim, f"op-{uid()}")
    path = f"/api/orgs/acme/scim/v2/Users/{made.id}"
    ops = [
        ([{"op": "replace", "path": "active", "value": False}], False),
        ([{"op": "replace", "value": {"active": True}}], True),
        ([{"op": "Replace", "value": {"active": False}}], False),
    ]
    for operations, active in ops:
        resp = raw(acme_client, "PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": operations})
        assert user_of(resp).active is active, operations
    renamed = f"op-new-{uid()}"
    user = user_of(raw(acme_client, "PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "replace", "path": "userName", "value": renamed},
        {"op": "replace", "path": "name.familyName", "value": "Byron"},
    ]}))
    assert (user.user_name, user.name.family_name) == (renamed, "Byron")
    scim_error(raw(acme_client, "PATCH", path, {"Operations": [{"op": "replace", "path": "bogus", "value": 1}]}),
               400, "invalidPath")


def test_delete_deactivates_and_the_user_stays(scim, twin):
    made = create(scim, f"del-{uid()}")
    resp = twin("delete_user")(id=made.id, platform_key="acme")
    assert resp.status == 204, resp.data
    assert POSITION_TOKEN.fullmatch(resp.headers["X-Position"])
    got = user_of(scim.retrieve_user(id=made.id, platform_key="acme"))
    assert got.active is False
    assert got.user_name == made.user_name
    _, users = list_of(scim.list_users(platform_key="acme"))
    assert made.id in {u.id for u in users}


# ---------------------------------------------------------------------------
# errors


def test_a_taken_user_name_is_a_409_uniqueness(scim):
    made = create(scim, f"dup-{uid()}")
    resp = scim.create_user(platform_key="acme", scim_user_create_request=new_user(made.user_name))
    scim_error(resp, 409, "uniqueness")


def test_invalid_values_are_400_invalid_value(scim):
    resp = scim.create_user(platform_key="acme", scim_user_create_request=new_user("has space"))
    err = scim_error(resp, 400, "invalidValue")
    assert "userName" in err["detail"]
    resp = scim.create_user(platform_key="acme",
                            scim_user_create_request=new_user(f"bad-{uid()}", email="not-an-email"))
    scim_error(resp, 400, "invalidValue")


def test_unknown_users_are_404(scim, twin):
    scim_error(twin("retrieve_user")(id="999999999", platform_key="acme"), 404)
    scim_error(twin("retrieve_user")(id="not-a-number", platform_key="acme"), 404)
    scim_error(twin("delete_user")(id="999999999", platform_key="acme"), 404)


def test_another_platforms_key_is_403_and_its_users_404(scim, other_scim, client_for, server):
    made = create(scim, f"tenant-{uid()}")
    scim_error(other_scim.list_users(platform_key="acme"), 403)
    scim_error(other_scim.retrieve_user(id=made.id, platform_key="acme"), 403)
    scim_error(other_scim.create_user(platform_key="acme", scim_user_create_request=new_user(f"x-{uid()}")), 403)
    scim_error(other_scim.partial_update_user(id=made.id, platform_key="acme",
                                              patched_scim_user_response=PatchedSCIMUserResponse(active=False)), 403)
    scim_error(other_scim.delete_user(id=made.id, platform_key="acme"), 403)
    # acme's user id on the other platform's own paths
    scim_error(other_scim.retrieve_user(id=made.id, platform_key="other"), 404)
    scim_error(other_scim.delete_user(id=made.id, platform_key="other"), 404)
    _, theirs = list_of(other_scim.list_users(platform_key="other"))
    assert made.id not in {u.id for u in theirs}
    assert user_of(scim.retrieve_user(id=made.id, platform_key="acme")).active is True
    # no key
    anon = iblai.ScimApi(client_for(None))
    scim_error(anon.list_users(platform_key="acme"), 401)
