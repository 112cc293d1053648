//! RBAC aggregates: roles, groups and policies, one stream each
//! (`role-{id}`, `group-{id}`, `policy-{id}`), and the built-in entities every
//! platform starts with.
//!
//! Shared rules:
//! - Ids come in the `Create` command (the caller allocates them, below
//!   2^53: [`ibl_events::rbac::next_id`]); `Create` on an existing stream,
//!   even a deleted one, is `Conflict`.
//! - `Update` and `Delete` name the caller's platform: a missing or deleted
//!   entity, or one of another platform, is `NotFound` (never revealed).
//! - Internal entities (`is_internal`) are hidden from tenants and every
//!   tenant command on them is `Forbidden`. Built-in entities (`is_builtin`)
//!   are visible; changing their own fields or deleting them is `Forbidden`,
//!   while an update that changes nothing is accepted with no event, and the
//!   membership of a built-in group may change (that is how tenant admins
//!   and students are managed).
//! - On an existing entity the checks run: existence (`NotFound`), internal
//!   (`Forbidden`), fields (`Invalid`), built-in (`Forbidden`), state.
//! - Membership lists (`users_to_add`, ...) are deduplicated, keeping the
//!   first occurrence; adding a member already there or removing one who is
//!   not appends nothing; naming the same id to add and to remove is
//!   `Invalid`. Whether the ids name existing users and groups of the
//!   platform (and whether a policy's role exists there) is for the caller to
//!   check against the read models before building the command.

pub mod builtins;
pub mod escalation;
pub mod group;
pub mod policy;
pub mod role;

use std::collections::{BTreeSet, HashSet};

use ibl_events::rbac::{ActionPattern, ResourcePath, MAX_ID};

use super::validate::FieldError;

/// Most patterns in a role's `actions` or `data_actions`.
pub const MAX_ACTIONS: usize = 500;
/// Most resources of one policy.
pub const MAX_POLICY_RESOURCES: usize = 100;

fn too_many(max: usize) -> String {
    format!("Ensure this field has no more than {max} elements.")
}

/// Validates an id given by the caller: 1 to 2^53 - 1.
pub fn validate_id(field: &'static str, id: u64) -> Result<u64, FieldError> {
    if id == 0 || id > MAX_ID {
        Err(FieldError::new(
            field,
            format!("Ensure this value is between 1 and {MAX_ID}."),
        ))
    } else {
        Ok(id)
    }
}

/// Parses every action pattern (trimmed) and drops exact duplicates, keeping
/// the first occurrence; returns the patterns as written.
pub fn validate_actions(
    field: &'static str,
    actions: Vec<String>,
) -> Result<Vec<String>, FieldError> {
    if actions.len() > MAX_ACTIONS {
        return Err(FieldError::new(field, too_many(MAX_ACTIONS)));
    }
    let mut seen = HashSet::with_capacity(actions.len());
    let mut out = Vec::with_capacity(actions.len());
    for action in actions {
        let action = action.trim();
        let pattern = ActionPattern::parse(action)
            .map_err(|e| FieldError::new(field, format!("Invalid action {action:?}: {e}")))?;
        if seen.insert(pattern.as_str().to_owned()) {
            out.push(pattern.as_str().to_owned());
        }
    }
    Ok(out)
}

/// Parses every resource path (trimmed; a missing trailing `/` is added),
/// requires each under `/platforms/{platform_pk}/`, drops duplicates keeping
/// the first occurrence.
pub fn validate_resources(
    field: &'static str,
    resources: Vec<String>,
    platform_pk: u64,
) -> Result<Vec<String>, FieldError> {
    if resources.len() > MAX_POLICY_RESOURCES {
        return Err(FieldError::new(field, too_many(MAX_POLICY_RESOURCES)));
    }
    let root = ResourcePath::platform_root(platform_pk);
    let mut seen = HashSet::with_capacity(resources.len());
    let mut out = Vec::with_capacity(resources.len());
    for resource in resources {
        let resource = resource.trim();
        let path = ResourcePath::parse_lenient(resource)
            .map_err(|e| FieldError::new(field, format!("Invalid resource {resource:?}: {e}")))?;
        if !path.is_within(&root) {
            return Err(FieldError::new(
                field,
                format!("Resource {resource:?} is not under {root}."),
            ));
        }
        if seen.insert(path.as_str().to_owned()) {
            out.push(path.as_str().to_owned());
        }
    }
    Ok(out)
}

/// The ids in order, without repeats.
pub fn dedup_ids(ids: &[u64]) -> Vec<u64> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// The changes of a membership set: (ids to add that are not members, ids to
/// remove that are), each in the order given without repeats. An id in both
/// lists is `Invalid` on `remove_field`.
pub fn membership_changes(
    members: &BTreeSet<u64>,
    to_add: &[u64],
    to_remove: &[u64],
    remove_field: &'static str,
) -> Result<(Vec<u64>, Vec<u64>), FieldError> {
    if let Some(both) = to_remove.iter().find(|id| to_add.contains(id)) {
        return Err(FieldError::new(
            remove_field,
            format!("{both} cannot be both added and removed."),
        ));
    }
    let added = dedup_ids(to_add)
        .into_iter()
        .filter(|id| !members.contains(id))
        .collect();
    let removed = dedup_ids(to_remove)
        .into_iter()
        .filter(|id| members.contains(id))
        .collect();
    Ok((added, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_between_1_and_2_pow_53_minus_1() {
        assert!(validate_id("id", 1).is_ok());
        assert!(validate_id("id", MAX_ID).is_ok());
        assert!(validate_id("id", 0).is_err());
        assert!(validate_id("id", MAX_ID + 1).is_err());
    }

    #[test]
    fn actions_are_trimmed_parsed_and_deduplicated() {
        assert_eq!(
            validate_actions(
                "actions",
                vec![" Ibl.* ".into(), "Ibl.Mentor/*".into(), "Ibl.*".into()]
            )
            .unwrap(),
            ["Ibl.*", "Ibl.Mentor/*"]
        );
        let e = validate_actions("data_actions", vec!["Ibl.Men*".into()]).unwrap_err();
        assert_eq!(e.field, "data_actions");
        assert!(e.message.contains("Ibl.Men*"), "{}", e.message);
        assert!(validate_actions("actions", vec!["".into()]).is_err());
        assert!(validate_actions("actions", vec!["Ibl.*".into(); MAX_ACTIONS]).is_ok());
        assert!(validate_actions("actions", vec!["Ibl.*".into(); MAX_ACTIONS + 1]).is_err());
    }

    #[test]
    fn resources_are_normalized_and_stay_in_the_platform() {
        assert_eq!(
            validate_resources(
                "resources",
                vec![
                    " /platforms/1/mentors ".into(),
                    "/platforms/1/".into(),
                    "/platforms/1/mentors/".into()
                ],
                1
            )
            .unwrap(),
            ["/platforms/1/mentors/", "/platforms/1/"]
        );
        for bad in [
            "/platforms/2/",
            "/platforms/10/",
            "/platforms/",
            "/mentors/",
            "platforms/1/",
            "/platforms/1/../2/",
            "/platforms/1//",
        ] {
            let e = validate_resources("resources", vec![bad.into()], 1).unwrap_err();
            assert_eq!(e.field, "resources", "{bad}");
        }
        assert!(validate_resources("resources", vec![], 1)
            .unwrap()
            .is_empty());
        let many = vec!["/platforms/1/".to_owned(); MAX_POLICY_RESOURCES + 1];
        assert!(validate_resources("resources", many, 1).is_err());
    }

    #[test]
    fn membership_changes_skip_what_is_already_so() {
        let members: BTreeSet<u64> = [1, 2].into();
        assert_eq!(
            membership_changes(&members, &[3, 1, 3, 4], &[2, 5, 2], "users_to_remove").unwrap(),
            (vec![3, 4], vec![2])
        );
        let e = membership_changes(&members, &[3], &[3], "users_to_remove").unwrap_err();
        assert_eq!(e.field, "users_to_remove");
    }
}
