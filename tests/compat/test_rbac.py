"""RBAC roles, groups, policies and mentor access driven by the official
`iblai` client (4.202.2): its typed `CoreApi` operations send the bodies,
and every 2xx answer is parsed with the client's own models
(`RbacRole`, `RbacGroup`, `RbacPolicy`, `MentorPolicy`, `Paginated*List`).

The typed create models mark read-only fields (`id`, `platform`, `owner`,
`users`, `is_internal`, ...) as required, so the tests fill them with
placeholders; the client leaves them out of the body it sends.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import iblai
import pytest
from iblai import (
    MentorPolicy,
    PaginatedRbacGroupList,
    PaginatedRbacPolicyList,
    PaginatedRbacRoleList,
    PatchedRbacGroup,
    PatchedRbacPolicy,
    PatchedRbacRole,
    RbacBaseRole,
    RbacGroup,
    RbacPlatform,
    RbacPolicy,
    RbacRole,
    RbacUser,
)


def uid() -> str:
    return uuid.uuid4().hex[:10]


def expect(resp, status: int) -> Any:
    body = resp.data
    assert resp.status == status, f"expected {status}, got {resp.status}: {body[:2000]!r}"
    return json.loads(body) if body else None


def parse(model, resp, status: int = 200):
    expect(resp, status)
    parsed = model.from_json(resp.data)
    assert parsed is not None
    return parsed


PLACEHOLDER_PLATFORM = RbacPlatform(id=0, key="placeholder")
PLACEHOLDER_USER = RbacUser(id=0)


def role_model(platform_key: str, name: str, actions: list[str] | None = None) -> RbacRole:
    return RbacRole(
        id=0,
        name=name,
        platform=PLACEHOLDER_PLATFORM,
        platform_key=platform_key,
        actions=actions or [],
        data_actions=[],
        is_internal=False,
    )


def group_model(platform_key: str, name: str, users_to_add: list[int] | None = None) -> RbacGroup:
    return RbacGroup(
        id=0,
        unique_id=f"g-{uid()}",
        platform=PLACEHOLDER_PLATFORM,
        platform_key=platform_key,
        name=name,
        description="made by the compat suite",
        owner=PLACEHOLDER_USER,
        users=[],
        users_to_add=users_to_add or [],
        is_internal=False,
    )


def policy_model(platform_key: str, role_id: int, resources: list[str], **members) -> RbacPolicy:
    return RbacPolicy(
        id=0,
        name=f"p-{uid()}",
        role=RbacBaseRole(id=role_id, name="placeholder", platform_key=platform_key),
        platform=PLACEHOLDER_PLATFORM,
        resources=resources,
        users=[],
        groups=[],
        role_id=role_id,
        platform_key=platform_key,
        is_internal=False,
        **members,
    )


def mentor_model(platform_key: str, mentor_id: int, role: str, **changes) -> MentorPolicy:
    return MentorPolicy(
        id=0,
        name="placeholder",
        platform_key=platform_key,
        mentor_id=mentor_id,
        role=role,
        resources=None,
        users=[],
        groups=[],
        **changes,
    )


@pytest.fixture(scope="module")
def acme(server):
    return server.acme


@pytest.fixture(scope="module")
def other_core(other_client):
    return iblai.CoreApi(other_client)


def test_role_create_retrieve_list_update_destroy(core, acme):
    name = f"Reviewer {uid()}"
    made = parse(
        RbacRole,
        core.core_rbac_roles_create(rbac_role=role_model(acme.key, name, ["Ibl.Mentor/Mentors/read"])),
        201,
    )
    assert made.name == name
    assert made.platform_key == acme.key
    assert made.platform.key == acme.key and made.platform.id == acme.platform_id
    assert made.actions == ["Ibl.Mentor/Mentors/read"]
    assert made.is_internal is False

    assert parse(RbacRole, core.core_rbac_roles_retrieve(id=made.id)) == made
    page = parse(PaginatedRbacRoleList, core.core_rbac_roles_list(platform_key=acme.key, name=name))
    assert page.count == 1 and page.results[0] == made
    assert page.next is None and page.previous is None
    everything = parse(
        PaginatedRbacRoleList,
        core.core_rbac_roles_list(platform_key=acme.key, page_size=1, include_global_roles=True),
    )
    assert everything.count > 1 and everything.next and everything.next.startswith("http")

    patched = parse(
        RbacRole,
        core.core_rbac_roles_partial_update(
            id=made.id,
            patched_rbac_role=PatchedRbacRole(platform_key=acme.key, data_actions=["Ibl.Mentor/Settings/*/read"]),
        ),
    )
    assert patched.name == name and patched.data_actions == ["Ibl.Mentor/Settings/*/read"]
    renamed = parse(
        RbacRole,
        core.core_rbac_roles_update(id=made.id, rbac_role=role_model(acme.key, name + " 2", ["Ibl.Mentor/*"])),
    )
    assert renamed.name == name + " 2" and renamed.actions == ["Ibl.Mentor/*"]

    assert core.core_rbac_roles_destroy(id=made.id, platform_key=acme.key).status == 204
    assert core.core_rbac_roles_retrieve(id=made.id).status == 404


def test_built_in_roles_are_listed_and_protected(core, acme):
    page = parse(PaginatedRbacRoleList, core.core_rbac_roles_list(platform_key=acme.key, name="Mentor Editor"))
    editor = next(r for r in page.results if r.name == "Mentor Editor")
    resp = core.core_rbac_roles_partial_update(
        id=editor.id, patched_rbac_role=PatchedRbacRole(platform_key=acme.key, name="Mine now")
    )
    assert resp.status == 403
    assert core.core_rbac_roles_destroy(id=editor.id, platform_key=acme.key).status == 403


def test_group_create_members_filters_and_destroy(core, acme):
    name = f"Editors {uid()}"
    made = parse(RbacGroup, core.core_rbac_groups_create(rbac_group=group_model(acme.key, name, [acme.admin_id])), 201)
    assert made.platform_key == acme.key
    assert made.owner.id == acme.admin_id and made.owner.username == acme.admin_username
    assert [u.id for u in made.users] == [acme.admin_id]
    assert made.is_internal is False

    assert parse(RbacGroup, core.core_rbac_groups_retrieve(id=made.id)) == made
    page = parse(PaginatedRbacGroupList, core.core_rbac_groups_list(platform_key=acme.key, name=name))
    assert [g.id for g in page.results] == [made.id]
    by_user = parse(
        PaginatedRbacGroupList,
        core.core_rbac_groups_list(platform_key=acme.key, username=acme.admin_username.upper(), include_users=False),
    )
    assert made.id in [g.id for g in by_user.results]
    assert all(g.users == [] for g in by_user.results)

    emptied = parse(
        RbacGroup,
        core.core_rbac_groups_partial_update(
            id=made.id,
            patched_rbac_group=PatchedRbacGroup(platform_key=acme.key, users_to_remove=[acme.admin_id]),
        ),
    )
    assert emptied.users == [] and emptied.name == name

    dup = core.core_rbac_groups_create(
        rbac_group=group_model(acme.key, "dup").model_copy(update={"unique_id": made.unique_id})
    )
    assert dup.status == 409
    bad = core.core_rbac_groups_create(rbac_group=group_model(acme.key, "bad", [987654321]))
    assert bad.status == 400 and "users_to_add" in json.loads(bad.data)

    assert core.core_rbac_groups_destroy(id=made.id, platform_key=acme.key).status == 204
    assert core.core_rbac_groups_retrieve(id=made.id).status == 404


def test_policy_create_filters_update_and_destroy(core, acme):
    role = parse(RbacRole, core.core_rbac_roles_create(rbac_role=role_model(acme.key, f"Chat {uid()}", ["Ibl.Mentor/Chat/action"])), 201)
    group = parse(RbacGroup, core.core_rbac_groups_create(rbac_group=group_model(acme.key, f"Night {uid()}", [acme.admin_id])), 201)
    resource = f"/platforms/{acme.platform_id}/mentors/5/"
    made = parse(
        RbacPolicy,
        core.core_rbac_policies_create(
            rbac_policy=policy_model(acme.key, role.id, [resource], users_to_add=[acme.admin_id], groups_to_add=[group.id])
        ),
        201,
    )
    assert made.role_id == role.id and made.role.id == role.id and made.role.name == role.name
    assert made.platform_key == acme.key and made.platform.key == acme.key
    assert made.resources == [resource]
    assert [u.id for u in made.users] == [acme.admin_id]
    assert [g.id for g in made.groups] == [group.id]
    assert made.is_internal is False

    assert parse(RbacPolicy, core.core_rbac_policies_retrieve(id=made.id)) == made
    for filters in (
        {"role_id": role.id},
        {"name": made.name.upper()},
        {"group": group.name.lower()},
        {"username": acme.admin_username},
        {"email": acme.admin_email},
    ):
        page = parse(PaginatedRbacPolicyList, core.core_rbac_policies_list(platform_key=acme.key, **filters))
        assert made.id in [p.id for p in page.results], filters
    lean = parse(
        PaginatedRbacPolicyList,
        core.core_rbac_policies_list(platform_key=acme.key, role_id=role.id, include_users=False, include_groups=False),
    )
    assert lean.results[0].users == [] and lean.results[0].groups == []

    changed = parse(
        RbacPolicy,
        core.core_rbac_policies_partial_update(
            id=made.id,
            patched_rbac_policy=PatchedRbacPolicy(platform_key=acme.key, users_to_remove=[acme.admin_id], groups_to_remove=[group.id]),
        ),
    )
    assert changed.users == [] and changed.groups == []
    bad = core.core_rbac_policies_create(rbac_policy=policy_model(acme.key, 987654321, [resource]))
    assert bad.status == 400 and "role_id" in json.loads(bad.data)

    assert core.core_rbac_policies_destroy(id=made.id, platform_key=acme.key).status == 204
    assert core.core_rbac_policies_retrieve(id=made.id).status == 404


def test_mentor_access_creates_then_updates_and_lists(core, acme):
    mentor_id = 4242
    made = parse(
        MentorPolicy,
        core.core_rbac_mentor_access_create(
            mentor_policy=mentor_model(acme.key, mentor_id, "viewer", users_to_add=[acme.admin_id])
        ),
        201,
    )
    assert made.platform_key == acme.key and made.mentor_id == mentor_id and made.role == "viewer"
    assert made.resources == [f"/platforms/{acme.platform_id}/mentors/{mentor_id}/"]
    assert [u.id for u in made.users] == [acme.admin_id]

    updated = parse(
        MentorPolicy,
        core.core_rbac_mentor_access_create(
            mentor_policy=mentor_model(acme.key, mentor_id, "viewer", users_to_remove=[acme.admin_id])
        ),
        200,
    )
    assert updated.id == made.id and updated.users == []
    parse(
        MentorPolicy,
        core.core_rbac_mentor_access_create(
            mentor_policy=mentor_model(acme.key, mentor_id, "editor", emails_to_add=[acme.admin_email])
        ),
        201,
    )
    resp = core.core_rbac_mentor_access_list(mentor_id=mentor_id, platform_key=acme.key)
    listed = [MentorPolicy.from_dict(p) for p in expect(resp, 200)]
    assert [p.role for p in listed] == ["viewer", "editor"]

    bad = core.core_rbac_mentor_access_create(mentor_policy=mentor_model(acme.key, mentor_id, "owner"))
    assert bad.status == 400


def test_other_platform_is_isolated(core, other_core, acme, server):
    role = parse(RbacRole, core.core_rbac_roles_create(rbac_role=role_model(acme.key, f"Secret {uid()}")), 201)
    # Our key on their platform: 403.
    assert core.core_rbac_roles_list(platform_key=server.other.key).status == 403
    # Their key on our ids: 404, and our role is never listed to them.
    assert other_core.core_rbac_roles_retrieve(id=role.id).status == 404
    assert other_core.core_rbac_roles_destroy(id=role.id, platform_key=server.other.key).status == 404
    theirs = parse(PaginatedRbacRoleList, other_core.core_rbac_roles_list(platform_key=server.other.key, name=role.name))
    assert theirs.count == 0
    bad = other_core.core_rbac_policies_create(rbac_policy=policy_model(server.other.key, role.id, []))
    assert bad.status == 400 and "role_id" in json.loads(bad.data)
    assert parse(RbacRole, core.core_rbac_roles_retrieve(id=role.id)).name == role.name
