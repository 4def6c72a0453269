//! Caller lookup over the cache: the number normalized, one index scan, the rules applied.

use callsync_core::lookup::{prefer, rank, LookupResult, LookupRules};
use callsync_core::phone::{Normalizer, PhoneError};

use crate::cache::{Cache, CacheError};

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    Number(#[from] PhoneError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Normalizes `raw`, reads the index and applies the rules, then the agent's remembered
/// choice for the number (forgotten here once it is stale).
pub fn lookup(
    cache: &Cache,
    normalizer: &Normalizer,
    rules: &LookupRules,
    raw: &str,
) -> Result<LookupResult, LookupError> {
    let n = normalizer.normalize(raw)?;
    let hits = cache.hits(&n.key)?;
    let choice = cache.choice(&n.key)?;
    let now = chrono::Utc::now().timestamp_millis();
    let (ranked, chosen) = prefer(rank(hits, rules), choice.as_ref(), rules, now);
    if let Err(why) = chosen {
        tracing::debug!(
            ?why,
            "an agent's choice for a number no longer applies; forgotten"
        );
        cache.forget_choice(&n.key)?;
    }
    let mut ranked = ranked.into_iter();
    Ok(LookupResult {
        input: raw.to_owned(),
        key: n.key,
        extension: n.extension,
        best: ranked.next(),
        others: ranked.collect(),
        chosen_at: chosen.ok().flatten(),
    })
}
