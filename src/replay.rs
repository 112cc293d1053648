//! `ibl replay`'s set-up: the live read models, and fresh ones to rebuild
//! from the log beside them (see `ibl_projections::replay`).

use std::sync::Arc;

use ibl_edge::server::Settings;
use ibl_events::EventStore;
use ibl_projections::assertions::{digest_file, AssertionsModel};
use ibl_projections::credentials::CredentialsModel;
use ibl_projections::rbac::{RbacModel, RedisRbac};
use ibl_projections::redis_assertions::RedisAssertions;
use ibl_projections::redis_catalog::RedisCatalog;
use ibl_projections::redis_keys::RedisKeys;
use ibl_projections::replay::{replay, Compared, Digest, Live};

/// The live models against their replays: those of the read models'
/// folder rebuilt in memory and in a scratch folder, or, with REDIS_URL,
/// those in Redis rebuilt in the `target` database.
pub async fn replayed(
    settings: &Settings,
    platform: Option<&str>,
    target: Option<&str>,
) -> Result<Vec<Compared>, String> {
    let store = ibl_edge::server::open_event_store(settings)
        .await
        .map_err(|e| e.to_string())?;
    match (&settings.redis_url, target) {
        (Some(url), Some(target)) => in_redis(store.as_ref(), url, target, platform).await,
        (Some(_), None) => Err(
            "the live read models are in Redis (REDIS_URL): name an empty Redis database to rebuild them in with --target".into(),
        ),
        (None, Some(_)) => Err(
            "--target is a Redis database, for read models that live in Redis (REDIS_URL)".into(),
        ),
        (None, None) => in_folder(settings, store.as_ref(), platform).await,
    }
}

async fn in_folder(
    settings: &Settings,
    store: &dyn EventStore,
    platform: Option<&str>,
) -> Result<Vec<Compared>, String> {
    let dir = settings
        .read_models_dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join(crate::app::READ_MODELS_DIR));
    let mut live = vec![
        snapshotted(CredentialsModel::new(), &dir, store, platform).await?,
        snapshotted(RbacModel::new(), &dir, store, platform).await?,
    ];
    let (position, digest) = digest_file(&dir.join("assertions.db"), platform)?;
    live.push(Live {
        model: "assertions",
        position,
        digest,
    });
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (assertions, _) =
        AssertionsModel::open(&scratch.path().join("assertions.db"), store).await?;
    let fresh: [Arc<dyn Digest>; 3] = [
        Arc::new(CredentialsModel::new()),
        Arc::new(RbacModel::new()),
        Arc::new(assertions),
    ];
    replay(store, &live, &fresh, platform).await
}

/// A model as its snapshot in `dir` keeps it.
async fn snapshotted<M: ibl_projections::Snapshot + Digest>(
    model: M,
    dir: &std::path::Path,
    store: &dyn EventStore,
    platform: Option<&str>,
) -> Result<Live, String> {
    let position = ibl_projections::snapshot::load(dir, &model, store)
        .await
        .map_err(|why| format!("{}: {why}: no live model to compare", model.name()))?;
    Ok(Live {
        model: model.name(),
        position,
        digest: model.digest(platform)?,
    })
}

/// The models in Redis at `url`, opened to read (or, `writer`, to be
/// written from position 0).
async fn redis_models(url: &str, writer: bool) -> Result<Vec<Arc<dyn Digest>>, String> {
    let e = |what: &str| {
        let what = what.to_owned();
        move |e: ibl_projections::assertions::ReadError| format!("{what} in Redis at {url}: {e}")
    };
    let rbac = if writer {
        RedisRbac::open_writer(url, RedisRbac::source()).await
    } else {
        RedisRbac::open(url).await
    };
    Ok(vec![
        Arc::new(RedisAssertions::open(url).await.map_err(e("assertions"))?),
        Arc::new(RedisCatalog::open(url).await.map_err(e("catalog"))?),
        Arc::new(RedisKeys::open(url).await.map_err(e("keys"))?),
        Arc::new(rbac.map_err(e("RBAC"))?),
    ])
}

async fn in_redis(
    store: &dyn EventStore,
    url: &str,
    target: &str,
    platform: Option<&str>,
) -> Result<Vec<Compared>, String> {
    let models = redis_models(url, false).await?;
    let live = models
        .iter()
        .map(|m| {
            Ok(Live {
                model: m.name(),
                position: m.checkpoint(),
                digest: m.digest(platform)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    // The projector may have written meanwhile: the digests are then of
    // no one position.
    for (again, before) in redis_models(url, false).await?.iter().zip(&live) {
        if again.checkpoint() != before.position {
            return Err(format!(
                "the live {} moved from position {} to {} while it was read: replay it while no events arrive",
                before.model,
                before.position,
                again.checkpoint()
            ));
        }
    }
    let fresh = redis_models(target, true).await?;
    if let Some(used) = fresh.iter().find(|m| m.checkpoint() > 0) {
        return Err(format!(
            "{target} holds a {} model already (at position {}): give an empty database",
            used.name(),
            used.checkpoint()
        ));
    }
    replay(store, &live, &fresh, platform).await
}
