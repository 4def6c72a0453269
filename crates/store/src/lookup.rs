//! Caller lookup over the cache: the number normalized, one index scan, the rules applied.

use callsync_core::lookup::{rank, LookupResult, LookupRules};
use callsync_core::phone::{Normalizer, PhoneError};

use crate::cache::{Cache, CacheError};

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    Number(#[from] PhoneError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Normalizes `raw`, reads the index and applies the rules.
pub fn lookup(
    cache: &Cache,
    normalizer: &Normalizer,
    rules: &LookupRules,
    raw: &str,
) -> Result<LookupResult, LookupError> {
    let n = normalizer.normalize(raw)?;
    let hits = cache.hits(&n.key)?;
    let mut ranked = rank(hits, rules).into_iter();
    Ok(LookupResult {
        input: raw.to_owned(),
        key: n.key,
        extension: n.extension,
        best: ranked.next(),
        others: ranked.collect(),
    })
}
