"""The credentials API driven by the official `iblai` client (4.202.2).

Every operation the client has for our routes is called in both of its
forms: the `users/{user_id}` twin (an integer) and the `users/{username}`
twin (a string). The client's operations return the raw HTTP response; each
2xx body is parsed with the client's own models (`from_json`/`from_dict`),
which reject missing or null required fields and wrong JSON types.

Where the client cannot send what the API needs (a recipient, bulk
recipients, an issuer's name) the request is made through the same client
with a raw JSON body (`ApiClient.param_serialize` + `call_api`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import iblai
import pytest
from iblai import (
    Assertion,
    BulkCreateAssertion,
    Credential,
    Issuer,
    PaginatedAssertionsResponse,
    PlatformApiKey,
)

# ---------------------------------------------------------------------------
# helpers


def uid() -> str:
    return uuid.uuid4().hex[:12]


def expect(resp, status: int) -> Any:
    """Asserts the status; answers the JSON body (None when empty)."""
    body = resp.data
    assert resp.status == status, f"expected {status}, got {resp.status}: {body[:2000]!r}"
    if not body:
        return None
    ctype = resp.headers.get("content-type", "")
    assert "json" in ctype, f"expected a JSON body, got content-type {ctype!r}: {body[:500]!r}"
    return json.loads(body)


def parse(model, resp, status: int = 200):
    """Asserts the status and parses the raw body with the model's from_json."""
    expect(resp, status)
    parsed = model.from_json(resp.data)
    assert parsed is not None
    return parsed


def expect_error(resp, status: int) -> dict:
    err = expect(resp, status)
    assert isinstance(err, dict) and isinstance(err.get("detail"), str) and err["detail"], err
    return err


def raw(client: iblai.ApiClient, method: str, path: str, body: Any = None,
        query: list[tuple[str, str]] | None = None):
    """A request through the client's own transport (and its auth settings)
    with a raw JSON body."""
    header_params = {"Accept": "application/json"}
    if body is not None:
        header_params["Content-Type"] = "application/json"
    params = client.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params=header_params,
        body=body,
        auth_settings=["PlatformApiKeyAuthentication"],
    )
    return client.call_api(*params).response


def raw_url(client: iblai.ApiClient, url: str):
    """GET of an absolute URL the server handed out (a `next` link)."""
    headers = {"Accept": "application/json"}
    client.update_params_for_auth(headers, [], ["PlatformApiKeyAuthentication"], url, "GET", None)
    return client.call_api("GET", url, header_params=headers).response


def new_credential_model(name: str, **extra) -> Credential:
    # credential_id and credential_url are required by the model but
    # read-only for the server: it ignores them.
    return Credential(credential_id="", credential_url="", name=name, revoked=False, **extra)


def assertion_model(**extra) -> Assertion:
    """What the typed assertions_create/update send: the model's read-only
    fields (credentialDetails, recipient, course, program) are not sent."""
    fields = dict(
        entity_id="",
        issued_on="",
        credential_details={},
        recipient={},
        course={},
        program={},
        revocation_reason="",
        expires="",
    )
    fields.update(extra)
    return Assertion(**fields)


def check_envelope(body: dict, description: str = "Ok") -> dict:
    assert body["status"] == {"success": True, "description": description}, body["status"]
    return body["result"]


def check_page(page: dict) -> None:
    """The seed's page fields; next/previous are strings, "" at the ends."""
    for field in ("next", "previous"):
        assert isinstance(page[field], str), (field, page[field])
    for field in ("count", "num_pages", "page_number", "max_page_size"):
        assert type(page[field]) is int, (field, page[field])
    assert isinstance(page["data"], list)


# ---------------------------------------------------------------------------
# the twins: the same operation as `users/{user_id}` and `users/{username}`

OPS = {
    "user_id": dict(
        create="credentials_orgs_users_create",
        list="credentials_orgs_users_retrieve",
        get="credentials_orgs_users_retrieve2",
        update="credentials_orgs_users_update",
        destroy="credentials_orgs_users_destroy",
        issuer_create="credentials_orgs_users_issuers_create",
        issuer_list="credentials_orgs_users_issuers_retrieve",
        issuer_get="credentials_orgs_users_issuers_retrieve2",
        issuer_update="credentials_orgs_users_issuers_update",
        issuer_destroy="credentials_orgs_users_issuers_destroy",
        assertion_create="credentials_orgs_users_assertions_create",
        bulk_create="credentials_orgs_users_assertions_bulk_create",
        platform_assertions="credentials_orgs_users_assertions_retrieve",
        assertion_get="credentials_orgs_users_assertions_retrieve2",
        credential_assertions="credentials_orgs_users_assertions_retrieve3",
        assertion_update="credentials_orgs_users_assertions_update",
    ),
    "username": dict(
        create="credentials_orgs_users_create2",
        list="credentials_orgs_users_retrieve3",
        get="credentials_orgs_users_retrieve4",
        update="credentials_orgs_users_update2",
        destroy="credentials_orgs_users_destroy2",
        issuer_create="credentials_orgs_users_issuers_create2",
        issuer_list="credentials_orgs_users_issuers_retrieve3",
        issuer_get="credentials_orgs_users_issuers_retrieve4",
        issuer_update="credentials_orgs_users_issuers_update2",
        issuer_destroy="credentials_orgs_users_issuers_destroy2",
        assertion_create="credentials_orgs_users_assertions_create2",
        bulk_create="credentials_orgs_users_assertions_bulk_create2",
        platform_assertions="credentials_orgs_users_assertions_retrieve4",
        assertion_get="credentials_orgs_users_assertions_retrieve5",
        credential_assertions="credentials_orgs_users_assertions_retrieve6",
        assertion_update="credentials_orgs_users_assertions_update2",
    ),
}


@dataclass
class Twin:
    """One form of the credentials operations, bound to acme's admin."""

    kind: str
    api: iblai.CredentialsApi
    client: iblai.ApiClient
    org: str
    user: int | str  # the path's user: admin id or admin username
    email: str
    username: str

    def op(self, name: str) -> Callable:
        fn = getattr(self.api, OPS[self.kind][name])

        def call(**kwargs):
            return fn(platform_key=self.org, **{self.kind: self.user}, **kwargs)

        return call

    @property
    def prefix(self) -> str:
        return f"/api/credentials/orgs/{self.org}/users/{self.user}"

    # raw JSON helpers on the same paths
    def post(self, path: str, body: Any):
        return raw(self.client, "POST", f"{self.prefix}{path}", body)

    def get(self, path: str, query=None):
        return raw(self.client, "GET", f"{self.prefix}{path}", query=query)

    # setup shortcuts
    def credential(self, name: str | None = None, **fields) -> dict:
        body = {"name": name or f"Cred {uid()}", **fields}
        return check_envelope(expect(self.post("/", body), 200), "Created")

    def issuer(self, name: str | None = None, **fields) -> dict:
        body = {"name": name or f"Issuer {uid()}", **fields}
        return expect(self.post("/issuers/", body), 200)


@pytest.fixture(params=["user_id", "username"])
def twin(request, server, creds, acme_client) -> Twin:
    acme = server.acme
    user = acme.admin_id if request.param == "user_id" else acme.admin_username
    return Twin(request.param, creds, acme_client, acme.key, user, acme.admin_email, acme.admin_username)


# ---------------------------------------------------------------------------
# authentication and tenancy


def test_client_sends_exactly_api_token_header(server, creds, acme_client, monkeypatch):
    sent = []
    pool = acme_client.rest_client.pool_manager
    real = pool.request

    def spy(method, url, *args, **kwargs):
        sent.append(dict(kwargs.get("headers") or {}))
        return real(method, url, *args, **kwargs)

    monkeypatch.setattr(pool, "request", spy)
    resp = creds.credentials_orgs_users_retrieve(platform_key="acme", user_id=server.acme.admin_id)
    expect(resp, 200)
    assert len(sent) == 1
    assert sent[0]["Authorization"] == f"Api-Token {server.acme.api_key}"
    assert sent[0]["Accept"] == "application/json"


def test_no_key_is_401(server, anon_client):
    api = iblai.CredentialsApi(anon_client)
    expect_error(api.credentials_orgs_users_retrieve3(platform_key="acme", username="alice"), 401)
    expect_error(api.credentials_orgs_users_retrieve(platform_key="acme", user_id=server.acme.admin_id), 401)


def test_unknown_key_is_401(server, client_for):
    api = iblai.CredentialsApi(client_for( "ibl_" + "0" * 64))
    expect_error(api.credentials_orgs_users_retrieve3(platform_key="acme", username="alice"), 401)


def test_other_platforms_key_is_403_on_acme_paths(server, twin, other_client):
    cred = twin.credential()
    issuer = twin.issuer()
    assertion = expect(twin.op("assertion_create")(entity_id=cred["credential_id"], assertion=assertion_model()), 200)
    intruder = Twin(twin.kind, iblai.CredentialsApi(other_client), other_client, twin.org,
                    twin.user, twin.email, twin.username)
    cid, iid, aid = cred["credential_id"], issuer["entityId"], assertion["entityId"]
    calls = [
        lambda: intruder.op("list")(),
        lambda: intruder.op("get")(entity_id=cid),
        lambda: intruder.op("create")(credential=new_credential_model("intruder")),
        lambda: intruder.op("update")(entity_id=cid, credential=new_credential_model("hijacked")),
        lambda: intruder.op("destroy")(entity_id=cid),
        lambda: intruder.op("issuer_list")(q="Issuer"),
        lambda: intruder.op("issuer_get")(entity_id=iid),
        lambda: intruder.op("issuer_create")(q="Issuer", issuer=Issuer(
            name="x", org="acme", entity_id="", signatories={}, url="", icon_image="https://img.example.com/x.png")),
        lambda: intruder.op("issuer_update")(entity_id=iid, issuer=Issuer(
            name="x", org="acme", entity_id=iid, signatories={}, url="", icon_image="https://img.example.com/x.png")),
        lambda: intruder.op("issuer_destroy")(entity_id=iid),
        lambda: intruder.op("assertion_create")(entity_id=cid, assertion=assertion_model()),
        lambda: intruder.op("bulk_create")(entity_id=cid, bulk_create_assertion=BulkCreateAssertion(skipped=[], issued=[])),
        lambda: intruder.op("platform_assertions")(),
        lambda: intruder.op("assertion_get")(entity_id=aid),
        lambda: intruder.op("credential_assertions")(entity_id=cid),
        lambda: intruder.op("assertion_update")(entity_id=aid, assertion=assertion_model(revoked=True, revocation_reason="x")),
    ]
    for call in calls:
        err = expect_error(call(), 403)
        assert cred["name"] not in json.dumps(err), err  # never the data
    # nothing was changed by the intruder
    assert parse(Credential, twin.op("get")(entity_id=cid)).name == cred["name"]
    assert parse(Issuer, twin.op("issuer_get")(entity_id=iid)).entity_id == iid
    assert parse(Assertion, twin.op("assertion_get")(entity_id=aid)).revoked is False


# ---------------------------------------------------------------------------
# credentials


def test_credential_create_retrieve_update_destroy(twin):
    name = f"Typed {uid()}"
    body = expect(twin.op("create")(credential=new_credential_model(name, credential_type="badge")), 200)
    result = check_envelope(body, "Created")
    made = Credential.from_dict(result)
    assert made.name == name
    assert made.credential_type == "badge"
    assert made.revoked is False
    assert made.credential_id and made.credential_url
    cid = made.credential_id

    one = parse(Credential, twin.op("get")(entity_id=cid))
    assert (one.credential_id, one.name, one.revoked) == (cid, name, False)

    renamed = f"Renamed {uid()}"
    body = expect(twin.op("update")(entity_id=cid, credential=new_credential_model(renamed)), 200)
    updated = Credential.from_dict(check_envelope(body, "Updated"))
    assert updated.credential_id == cid and updated.name == renamed
    assert parse(Credential, twin.op("get")(entity_id=cid)).name == renamed

    listed = check_envelope(expect(twin.op("list")(), 200))
    check_page(listed)
    items = [Credential.from_dict(item) for item in listed["data"]]
    assert items, "the list is empty"

    resp = twin.op("destroy")(entity_id=cid)
    assert resp.status == 204, resp.data
    expect_error(twin.op("get")(entity_id=cid), 404)
    expect_error(twin.op("destroy")(entity_id=cid), 404)
    expect_error(twin.op("update")(entity_id=cid, credential=new_credential_model("gone")), 404)


def test_both_twins_address_the_same_data(server, creds):
    """Made through `users/{user_id}`, seen and changed through `users/{username}`."""
    acme = server.acme
    by_id = dict(platform_key=acme.key, user_id=acme.admin_id)
    by_name = dict(platform_key=acme.key, username=acme.admin_username)
    made = Credential.from_dict(check_envelope(
        expect(creds.credentials_orgs_users_create(credential=new_credential_model(f"Twin {uid()}"), **by_id), 200),
        "Created"))
    cid = made.credential_id
    assert parse(Credential, creds.credentials_orgs_users_retrieve4(entity_id=cid, **by_name)) == made
    a = parse(Assertion, creds.credentials_orgs_users_assertions_create2(entity_id=cid, assertion=assertion_model(), **by_name))
    assert parse(Assertion, creds.credentials_orgs_users_assertions_retrieve2(entity_id=a.entity_id, **by_id)).entity_id == a.entity_id
    page = parse(PaginatedAssertionsResponse, creds.credentials_orgs_users_assertions_retrieve3(entity_id=cid, **by_id))
    assert [x.entity_id for x in page.data] == [a.entity_id]
    assert creds.credentials_orgs_users_destroy2(entity_id=cid, **by_name).status == 204
    expect_error(creds.credentials_orgs_users_retrieve2(entity_id=cid, **by_id), 404)


def test_credential_list_envelope_and_items_parse(twin):
    cred = twin.credential(description="listed", criteria_text="do things")
    body = expect(twin.op("list")(), 200)
    page = check_envelope(body)
    check_page(page)
    assert page["page_number"] == 1
    assert page["max_page_size"] == 100
    ids = []
    for item in page["data"]:
        ids.append(Credential.from_dict(item).credential_id)
    assert page["count"] >= 1
    # newest first is not promised: find it with a search
    found = check_envelope(expect(twin.get("/", [("search", cred["name"])]), 200))
    assert [Credential.from_dict(i).credential_id for i in found["data"]] == [cred["credential_id"]]


def test_credential_writable_fields_round_trip(twin):
    issuer = twin.issuer()
    fields = dict(
        description="A description",
        issuer=issuer["entityId"],
        credential_type="badge",
        html_template="<p>{{name}}</p>",
        css_template="p{}",
        icon_image="https://img.example.com/i.png",
        background_image="https://img.example.com/b.png",
        thumbnail_image="https://img.example.com/t.png",
        criteria_url="https://example.com/criteria",
        criteria_text="Finish the course",
        issuing_signal="course_completed",
        course="course-v1:acme+C1+2024",
        program="program-v1:acme+P1",
    )
    result = twin.credential(**fields)
    Credential.from_dict(result)
    got = json.loads(twin.op("get")(entity_id=result["credential_id"]).data)
    Credential.from_dict(got)
    for k, v in fields.items():
        assert got[k] == v, (k, got[k], v)


def test_credential_with_unknown_issuer_is_400_naming_the_field(twin):
    resp = twin.op("create")(credential=new_credential_model("bad", issuer="no-such-issuer"))
    err = expect(resp, 400)
    assert "issuer" in err, err


def test_credential_without_name_is_400(twin):
    err = expect(twin.post("/", {"description": "no name"}), 400)
    assert "name" in err, err


def test_retired_credential_shows_revoked_and_cannot_be_issued(twin):
    cred = twin.credential()
    cid = cred["credential_id"]
    model = Credential(credential_id=cid, credential_url="", name=cred["name"], revoked=True)
    updated = Credential.from_dict(check_envelope(expect(twin.op("update")(entity_id=cid, credential=model), 200), "Updated"))
    assert updated.revoked is True
    assert parse(Credential, twin.op("get")(entity_id=cid)).revoked is True
    resp = twin.op("assertion_create")(entity_id=cid, assertion=assertion_model())
    assert resp.status in (409, 410), (resp.status, resp.data)
    expect_error(resp, resp.status)


def test_unknown_credential_is_404(twin):
    expect_error(twin.op("get")(entity_id=str(uuid.uuid4())), 404)
    expect_error(twin.op("assertion_create")(entity_id=str(uuid.uuid4()), assertion=assertion_model()), 404)
    expect_error(twin.op("credential_assertions")(entity_id=str(uuid.uuid4())), 404)


def test_detail_paths_with_and_without_trailing_slash(twin):
    cred = twin.credential()
    a = expect(twin.get(f"/{cred['credential_id']}"), 200)
    b = expect(twin.get(f"/{cred['credential_id']}/"), 200)
    assert Credential.from_dict(a) == Credential.from_dict(b)
    expect(twin.get(""), 200)  # the list without its slash


# ---------------------------------------------------------------------------
# pagination and search


def test_pagination_page_size_two_over_five(twin):
    tag = uid()
    made = [twin.credential(f"Pager {tag} {n}") for n in range(5)]
    seen = []

    def page(n):
        resp = twin.get("/", [("page", str(n)), ("page_size", "2"), ("search", tag)])
        p = check_envelope(expect(resp, 200))
        check_page(p)
        assert (p["count"], p["num_pages"], p["page_number"]) == (5, 3, n), p
        assert p["max_page_size"] == 100
        seen.extend(Credential.from_dict(i).credential_id for i in p["data"])
        return p

    p1 = page(1)
    assert len(p1["data"]) == 2
    assert p1["previous"] == "" and p1["next"].startswith("http")
    q = parse_qs(urlsplit(p1["next"]).query)
    assert q["page"] == ["2"] and q["page_size"] == ["2"] and q["search"] == [tag]

    # follow the server's own next link
    p2 = check_envelope(expect(raw_url(twin.client, p1["next"]), 200))
    assert p2["page_number"] == 2 and p2["next"] and p2["previous"]
    p2 = page(2)
    p3 = page(3)
    assert len(p3["data"]) == 1
    assert p3["next"] == "" and p3["previous"].startswith("http")
    assert sorted(seen) == sorted(c["credential_id"] for c in made)

    expect_error(twin.get("/", [("page", "4"), ("page_size", "2"), ("search", tag)]), 404)


def test_bad_page_parameters_are_400(twin):
    expect(twin.get("/", [("page", "0")]), 400)
    expect(twin.get("/", [("page", "x")]), 400)
    expect(twin.get("/", [("page_size", "0")]), 400)


def test_page_size_is_capped_at_100(twin):
    p = check_envelope(expect(twin.get("/", [("page_size", "1000")]), 200))
    assert p["max_page_size"] == 100
    assert len(p["data"]) <= 100


def test_search_is_case_insensitive_on_name_and_description(twin):
    tag = uid()
    by_name = twin.credential(f"ZebraName{tag}")
    by_desc = twin.credential(f"Plain {uid()}", description=f"about QUARTZ{tag} things")
    twin.credential(f"Unrelated {uid()}")

    def search(term):
        p = check_envelope(expect(twin.get("/", [("search", term)]), 200))
        return {Credential.from_dict(i).credential_id for i in p["data"]}

    assert search(f"zebraname{tag}".upper()) == {by_name["credential_id"]}
    assert search(f"zEbRaNaMe{tag}") == {by_name["credential_id"]}
    assert search(f"quartz{tag}") == {by_desc["credential_id"]}
    assert search(tag.upper()) == {by_name["credential_id"], by_desc["credential_id"]}
    assert search(f"nothing-{uid()}") == set()


# ---------------------------------------------------------------------------
# issuers




def test_issuer_typed_create(twin):
    """The typed call sends only what the model does not mark read-only:
    `entityId` and `iconImage` (name, org, signatories and url are dropped)."""
    model = Issuer(name="Typed Issuer", org=twin.org, entity_id="", signatories={}, url="",
                   icon_image="https://img.example.com/typed.png")
    resp = twin.op("issuer_create")(q="Typed Issuer", issuer=model)
    made = parse(Issuer, resp, 200)
    assert made.entity_id
    assert made.icon_image == "https://img.example.com/typed.png"
    assert made.org == twin.org


def test_issuer_create_list_retrieve_update_destroy(twin):
    name = f"Acme Academy {uid()}"
    made = Issuer.from_dict(twin.issuer(
        name,
        url="https://academy.example.com",
        iconImage="https://img.example.com/a.png",
        signatories={"dean": "Dr. Dean"},
        description="An issuer",
    ))
    assert made.name == name and made.org == twin.org
    assert made.signatories == {"dean": "Dr. Dean"}
    assert made.url == "https://academy.example.com"
    iid = made.entity_id

    # list, with the client's required `q` as a search term
    resp = twin.op("issuer_list")(q=name.lower())
    page = check_envelope(expect(resp, 200))
    check_page(page)
    items = [Issuer.from_dict(i) for i in page["data"]]
    assert [i.entity_id for i in items] == [iid]
    # the client's `q` must be non-empty: list them all without the client
    everything = check_envelope(expect(twin.get("/issuers/", [("page_size", "100")]), 200))
    for i in everything["data"]:
        Issuer.from_dict(i)
    assert iid in {i["entityId"] for i in everything["data"]}

    got = twin.op("issuer_get")(entity_id=iid)
    one = parse(Issuer, got, 200)
    assert one == made

    # typed update: the model sends entityId and iconImage
    model = Issuer(name=name, org=twin.org, entity_id=iid, signatories={}, url="",
                   icon_image="https://img.example.com/new.png")
    resp = twin.op("issuer_update")(entity_id=iid, issuer=model)
    updated = parse(Issuer, resp, 200)
    assert updated.icon_image == "https://img.example.com/new.png"
    assert updated.name == name and updated.signatories == {"dean": "Dr. Dean"}

    # raw update of the fields the typed model cannot send
    resp = raw(twin.client, "PUT", f"{twin.prefix}/issuers/{iid}", {"name": name + " II", "signatories": {"dean": "Dr. New"}})
    updated = Issuer.from_dict(expect(resp, 200))
    assert updated.name == name + " II" and updated.signatories == {"dean": "Dr. New"}

    resp = twin.op("issuer_destroy")(entity_id=iid)
    assert resp.status == 204, resp.data
    expect_error(twin.op("issuer_get")(entity_id=iid), 404)
    expect_error(twin.op("issuer_destroy")(entity_id=iid), 404)


def test_issuer_without_name_is_400(twin):
    err = expect(twin.post("/issuers/", {"url": "https://x.example.com"}), 400)
    assert "name" in err, err


# ---------------------------------------------------------------------------
# assertions


def test_assertion_typed_create_defaults_recipient_to_path_user(twin):
    cred = twin.credential(course="course-v1:acme+T+1")
    resp = twin.op("assertion_create")(
        entity_id=cred["credential_id"],
        assertion=assertion_model(narrative="Well done", metadata={"score": 97}),
    )
    a = parse(Assertion, resp, 200)
    assert a.entity_id
    assert a.recipient["username"] == twin.username
    assert a.recipient["email"] == twin.email
    assert a.narrative == "Well done"
    assert a.metadata == {"score": 97}
    assert a.revoked is False and a.revocation_reason == "" and a.expires == ""
    assert a.credential_details.get("entityId") == cred["credential_id"] or \
        cred["credential_id"] in a.credential_details.values()
    assert a.issued_on.endswith("Z")

    got = twin.op("assertion_get")(entity_id=a.entity_id)
    assert parse(Assertion, got, 200).entity_id == a.entity_id


def test_assertion_raw_create_with_recipient(twin):
    cred = twin.credential()
    recipient = {"email": f"r{uid()}@example.com", "username": f"r{uid()}", "name": "Rita Recipient"}
    resp = twin.post(f"/{cred['credential_id']}/assertions/", {
        "recipient": recipient,
        "narrative": "For excellence",
        "expires": "2099-01-01T00:00:00Z",
        "issuedOn": "2024-05-01T12:00:00Z",
        "evidence": [{"url": "https://example.com/work", "narrative": "the work"}],
    })
    a = Assertion.from_dict(expect(resp, 200))
    assert a.recipient == recipient
    assert a.expires == "2099-01-01T00:00:00Z"
    assert a.issued_on == "2024-05-01T12:00:00Z"


def test_assertion_raw_create_validation(twin):
    cred = twin.credential()
    path = f"/{cred['credential_id']}/assertions/"
    err = expect(twin.post(path, {"recipient": {"email": "r@example.com"}, "expires": "tomorrow"}), 400)
    assert "expires" in err, err
    expect(twin.post(path, {"recipient": {"name": "no email, no username"}}), 400)


def test_assertions_of_one_credential(twin):
    cred = twin.credential()
    cid = cred["credential_id"]
    ids = set()
    for n in range(3):
        body = {"recipient": {"email": f"c{n}-{uid()}@example.com"}}
        ids.add(Assertion.from_dict(expect(twin.post(f"/{cid}/assertions/", body), 200)).entity_id)
    resp = twin.op("credential_assertions")(entity_id=cid)
    page = parse(PaginatedAssertionsResponse, resp, 200)
    assert page.count == 3 and {a.entity_id for a in page.data} == ids
    assert page.next == "" and page.previous == ""
    assert page.page_number == 1 and page.num_pages == 1

    first = PaginatedAssertionsResponse.from_dict(expect(twin.get(f"/{cid}/assertions/", [("page_size", "2")]), 200))
    assert len(first.data) == 2 and first.next.startswith("http") and first.previous == ""
    last = PaginatedAssertionsResponse.from_dict(expect(twin.get(f"/{cid}/assertions/", [("page", "2"), ("page_size", "2")]), 200))
    assert len(last.data) == 1 and last.next == "" and last.previous.startswith("http")


def test_platform_assertions_filters(twin):
    course = f"course-v1:acme+F{uid()}+2024"
    cred = twin.credential(course=course)
    cid = cred["credential_id"]

    def issue(**body):
        body.setdefault("recipient", {"email": f"f{uid()}@example.com"})
        return Assertion.from_dict(expect(twin.post(f"/{cid}/assertions/", body), 200))

    valid = issue()
    revoked = issue()
    expired = issue(issuedOn="2020-01-01T00:00:00Z", expires="2021-01-01T00:00:00Z")
    expect(twin.op("assertion_update")(entity_id=revoked.entity_id,
                                       assertion=assertion_model(revoked=True, revocation_reason="cheating")), 200)

    def listed(**filters) -> set[str]:
        resp = twin.op("platform_assertions")(course=course, **filters)
        page = parse(PaginatedAssertionsResponse, resp, 200)
        assert page.count == len(page.data)
        return {a.entity_id for a in page.data}

    assert listed() == {valid.entity_id}
    assert listed(include_revoked=True) == {valid.entity_id, revoked.entity_id}
    assert listed(include_expired=True) == {valid.entity_id, expired.entity_id}
    assert listed(include_revoked=True, include_expired=True, exclude_main_tenant_assertions=True) == \
        {valid.entity_id, revoked.entity_id, expired.entity_id}
    assert listed(include_revoked=False, include_expired=False) == {valid.entity_id}

    resp = twin.op("platform_assertions")(course=course, include_revoked=True, include_expired=True, page=2, page_size=2)
    p2 = parse(PaginatedAssertionsResponse, resp, 200)
    assert (p2.count, p2.num_pages, p2.page_number, len(p2.data)) == (3, 2, 2, 1)
    assert p2.next == "" and p2.previous.startswith("http")
    resp = twin.op("platform_assertions")(course=course, page=1, page_size=1)
    p1 = parse(PaginatedAssertionsResponse, resp, 200)
    assert p1.next == "" and p1.previous == ""
    expect_error(twin.op("platform_assertions")(course=course, page=3, page_size=2), 404)

    # without a course filter every platform assertion parses
    resp = twin.op("platform_assertions")(include_revoked=True, include_expired=True, page_size=100)
    everything = parse(PaginatedAssertionsResponse, resp, 200)
    assert everything.count >= 3

    # another course sees none of them
    resp = twin.op("platform_assertions")(course=f"course-v1:none+{uid()}+1")
    assert parse(PaginatedAssertionsResponse, resp, 200).count == 0


def test_revoke_then_revoke_again_is_409(twin):
    cred = twin.credential()
    a = Assertion.from_dict(expect(twin.post(f"/{cred['credential_id']}/assertions/", {"recipient": {"email": f"v{uid()}@example.com"}}), 200))
    # a revocation needs a reason
    err = expect(twin.op("assertion_update")(entity_id=a.entity_id, assertion=assertion_model(revoked=True)), 400)
    assert "revocationReason" in err, err

    resp = twin.op("assertion_update")(entity_id=a.entity_id,
                                       assertion=assertion_model(revoked=True, revocation_reason="Issued by mistake"))
    done = parse(Assertion, resp, 200)
    assert done.revoked is True and done.revocation_reason == "Issued by mistake"
    got = parse(Assertion, twin.op("assertion_get")(entity_id=a.entity_id))
    assert got.revoked is True and got.revocation_reason == "Issued by mistake"

    again = twin.op("assertion_update")(entity_id=a.entity_id,
                                        assertion=assertion_model(revoked=True, revocation_reason="twice"))
    expect_error(again, 409)
    expect_error(twin.op("assertion_update")(entity_id=str(uuid.uuid4()),
                                             assertion=assertion_model(revoked=True, revocation_reason="x")), 404)
    expect_error(twin.op("assertion_get")(entity_id=str(uuid.uuid4())), 404)


def test_public_verification(twin, anon_client):
    public = iblai.CredentialsApi(anon_client)
    cred = twin.credential()
    a = Assertion.from_dict(expect(twin.post(f"/{cred['credential_id']}/assertions/", {"recipient": {"email": f"p{uid()}@example.com"}}), 200))

    resp = public.credentials_public_assertions_retrieve(entity_id=a.entity_id)
    verified = parse(Assertion, resp, 200)
    assert verified.entity_id == a.entity_id and verified.revoked is False

    expect(twin.op("assertion_update")(entity_id=a.entity_id,
                                       assertion=assertion_model(revoked=True, revocation_reason="Plagiarism")), 200)
    resp = public.credentials_public_assertions_retrieve(entity_id=a.entity_id)
    body = expect_error(resp, 404)
    assert body["revoked"] is True and body["status"] == "revoked", body
    assert "Plagiarism" not in json.dumps(body), "the internal reason stays private"

    expect_error(public.credentials_public_assertions_retrieve(entity_id=str(uuid.uuid4())), 404)




def test_bulk_create_typed(twin):
    cred = twin.credential()
    email = f"t{uid()}@example.com"
    model = BulkCreateAssertion(skipped=[], issued=[{"email": email, "username": "", "name": "Typed"}])
    resp = twin.op("bulk_create")(entity_id=cred["credential_id"], bulk_create_assertion=model)
    result = parse(BulkCreateAssertion, resp, 200)
    for item in result.issued:
        Assertion.from_dict(item)


def test_bulk_create(twin):
    cred = twin.credential()
    cid = cred["credential_id"]

    holder = {"email": f"h{uid()}@example.com", "username": "", "name": "Holder"}
    expect(twin.post(f"/{cid}/assertions/", {"recipient": holder}), 200)
    fresh = [{"email": f"b{n}-{uid()}@example.com", "username": "", "name": f"B {n}"} for n in range(3)]
    resp = twin.post(f"/{cid}/assertions/bulk/", {"recipients": fresh + [holder], "narrative": "bulk"})
    result = BulkCreateAssertion.from_dict(expect(resp, 200))
    issued = [Assertion.from_dict(i) for i in result.issued]
    assert sorted(a.recipient["email"] for a in issued) == sorted(r["email"] for r in fresh)
    assert all(a.narrative == "bulk" for a in issued)
    assert len(result.skipped) == 1
    assert result.skipped[0]["reason"] == "duplicate"
    assert result.skipped[0]["recipient"]["email"] == holder["email"]

    resp = twin.post(f"/{cid}/assertions/bulk/", {"recipients": [holder], "duplicates": "allow"})
    allowed = BulkCreateAssertion.from_dict(expect(resp, 200))
    assert len(allowed.issued) == 1 and allowed.skipped == []

    page = parse(PaginatedAssertionsResponse, twin.op("credential_assertions")(entity_id=cid))
    assert page.count == 1 + 3 + 1


# ---------------------------------------------------------------------------
# API keys (CoreApi): the client sends no Authorization on these, so it is
# added by hand.


def test_api_tokens_create_list_use_destroy(server, core, client_for):
    acme = server.acme
    auth = {"Authorization": f"Api-Token {acme.api_key}"}
    name = f"ci-{uid()}"
    model = PlatformApiKey(username="", name=name, key="", platform_key=acme.key,
                           expires="2099-01-01T00:00:00Z", created="2000-01-01T00:00:00Z")

    # without the header added by hand the client sends no key: 401
    expect_error(core.core_platform_api_tokens_create(platform_api_key=model), 401)
    expect_error(core.core_platform_api_tokens_list(platform_key=acme.key), 401)

    resp = core.core_platform_api_tokens_create(platform_api_key=model, _headers=dict(auth))
    made = parse(PlatformApiKey, resp, 201)
    assert made.name == name and made.platform_key == acme.key
    assert made.username == acme.admin_username
    secret = made.key
    assert len(secret) >= 20

    resp = core.core_platform_api_tokens_list(platform_key=acme.key, _headers=dict(auth))
    raw_list = expect(resp, 200)
    assert isinstance(raw_list, list)
    keys = [PlatformApiKey.from_dict(k) for k in raw_list]
    mine = [k for k in keys if k.name == name]
    assert len(mine) == 1
    assert mine[0].key != secret
    assert secret not in resp.data.decode()
    assert acme.api_key not in resp.data.decode()

    # the new key works like any other
    api = iblai.CredentialsApi(client_for(secret))
    expect(api.credentials_orgs_users_retrieve3(platform_key=acme.key, username=acme.admin_username), 200)

    resp = core.core_platform_api_tokens_destroy(name=name, platform_key=acme.key, _headers=dict(auth))
    assert resp.status == 204, resp.data
    expect_error(api.credentials_orgs_users_retrieve3(platform_key=acme.key, username=acme.admin_username), 401)
    after = [PlatformApiKey.from_dict(k) for k in
             expect(core.core_platform_api_tokens_list(platform_key=acme.key, _headers=dict(auth)), 200)]
    assert name not in {k.name for k in after}


def test_api_tokens_of_another_platform_are_403(server, core):
    other_auth = {"Authorization": f"Api-Token {server.other.api_key}"}
    expect_error(core.core_platform_api_tokens_list(platform_key=server.acme.key, _headers=other_auth), 403)
    model = PlatformApiKey(username="", name=f"x-{uid()}", key="", platform_key=server.acme.key,
                           expires="2099-01-01T00:00:00Z", created="2000-01-01T00:00:00Z")
    expect_error(core.core_platform_api_tokens_create(platform_api_key=model, _headers=dict(other_auth)), 403)
    expect_error(core.core_platform_api_tokens_destroy(name="anything", platform_key=server.acme.key,
                                                       _headers=dict(other_auth)), 403)
