//! The audit log's public routes: the latest signed checkpoint of the
//! Merkle tree over the log, and RFC 9162 inclusion and consistency proofs
//! against any size of it. They show only hashes, so they need no key: a
//! learner proves their assertion is in the log, an auditor who kept an
//! old checkpoint proves the log only grew since.
//!
//! Served by the process that keeps the audit log (`ibl serve`, the
//! projections process); elsewhere they answer 404.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ibl_edge::request::Params;
use ibl_edge::route;
use ibl_edge::routes::{Route, AUDIT};
use ibl_edge::{ApiError, ReadState};
use ibl_projections::audit_log::AuditLog;
use serde_json::json;

pub fn table() -> Vec<Route> {
    vec![
        route!(GET "/api/audit/checkpoint", "audit_checkpoint_retrieve", AUDIT, Public, "The latest signed checkpoint of the log's Merkle tree (origin, size, root, signed note, public key)", checkpoint),
        route!(GET "/api/audit/proof/inclusion", "audit_proof_inclusion_retrieve", AUDIT, Public, "RFC 9162 inclusion proof of leaf_index in the tree of tree_size leaves", inclusion),
        route!(GET "/api/audit/proof/consistency", "audit_proof_consistency_retrieve", AUDIT, Public, "RFC 9162 consistency proof from the tree of `from` leaves to that of `to`", consistency),
    ]
}

fn log_of(read: &ReadState) -> Result<Arc<AuditLog>, ApiError> {
    read.audit.clone().ok_or_else(|| {
        ApiError::NotFound(
            "This service keeps no audit log: ask the projections process (or `ibl serve`).".into(),
        )
    })
}

/// A required parameter, a whole number.
fn number(params: &Params, name: &str) -> Result<u64, ApiError> {
    let text = params
        .get(name)
        .ok_or_else(|| ApiError::field(name, "This field is required."))?;
    text.parse()
        .map_err(|_| ApiError::field(name, "A whole number of 0 or more is required."))
}

fn hashes(proof: &[ibl_audit::Hash]) -> Vec<String> {
    proof.iter().map(|h| STANDARD.encode(h)).collect()
}

/// The latest signed checkpoint; the first is signed here when the log has
/// events but none was signed yet.
pub async fn checkpoint(read: web::Data<ReadState>) -> Result<HttpResponse, ApiError> {
    let log = log_of(&read)?;
    if log.latest().is_none() {
        // (None also when the periodic signer got there first.)
        let signing = log.clone();
        web::block(move || signing.sign())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::Internal)?;
    }
    let c = log.latest().ok_or_else(|| {
        ApiError::NotFound("The log is empty: there is no checkpoint yet.".into())
    })?;
    Ok(HttpResponse::Ok().json(json!({
        "origin": log.origin(),
        "size": c.size,
        "root": STANDARD.encode(c.root),
        "note": c.note,
        "public_key": STANDARD.encode(log.public_key()),
        "vkey": log.vkey(),
    })))
}

pub async fn inclusion(
    req: HttpRequest,
    read: web::Data<ReadState>,
) -> Result<HttpResponse, ApiError> {
    let log = log_of(&read)?;
    let params = Params::of(&req)?;
    let (index, size) = (
        number(&params, "leaf_index")?,
        number(&params, "tree_size")?,
    );
    let proof = log
        .inclusion(index, size)
        .map_err(|e| ApiError::BadRequest(format!("{e} (the tree has {} leaves)", log.size())))?;
    Ok(HttpResponse::Ok().json(json!({
        "leaf_index": index,
        "tree_size": size,
        "hashes": hashes(&proof),
    })))
}

pub async fn consistency(
    req: HttpRequest,
    read: web::Data<ReadState>,
) -> Result<HttpResponse, ApiError> {
    let log = log_of(&read)?;
    let params = Params::of(&req)?;
    let (from, to) = (number(&params, "from")?, number(&params, "to")?);
    let proof = log
        .consistency(from, to)
        .map_err(|e| ApiError::BadRequest(format!("{e} (the tree has {} leaves)", log.size())))?;
    Ok(HttpResponse::Ok().json(json!({
        "from": from,
        "to": to,
        "hashes": hashes(&proof),
    })))
}
