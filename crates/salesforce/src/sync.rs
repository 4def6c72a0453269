//! The sync engine: fills the cache from Salesforce and keeps it current with as few API calls
//! as possible.
//!
//! - **Full load** per object: one paged SOQL query (2,000 records per call), streamed into the
//!   cache's bulk path. Each page is written with the cursor to the next one, so a sync killed
//!   at any point resumes where it stopped; records the load did not see are removed at the end.
//! - **Incremental**: one `/composite` call carrying a `queryAll` per object for rows whose
//!   `SystemModstamp` moved since the watermark (minus an overlap for long transactions).
//!   `queryAll` returns deleted rows too, so updates and deletes arrive together and an idle
//!   cycle costs exactly one API call.
//! - A full resync replaces an incremental one when the watermark is older than the recycle
//!   bin's 15 days (deleted rows would be missed) or the cache was repaired.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::Client;
use callsync_core::lookup::LookupRules;
use callsync_core::phone::Normalizer;
use callsync_core::record::{
    format_sf_datetime, from_sobject, parse_sf_datetime, ObjectKind, RecordId,
};
use callsync_core::wire::SfError;
use callsync_store::cache::{Cache, CacheError, Change};

/// Deleted rows stay in the recycle bin (and in `queryAll`) this long.
const DELETED_WINDOW_DAYS: i64 = 15;

#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// Contacts, Accounts and Leads (the second seed's "retrieving contact information").
    pub contact_retrieval: bool,
    /// Re-read this much before the watermark (long transactions commit with older stamps).
    pub overlap: Duration,
    /// First loads larger than this use Bulk API 2.0 (50,000 records per call instead of
    /// 2,000); 0 never does.
    pub bulk_threshold: u64,
    /// Records per Bulk results request (10,000: 5× fewer calls than REST pages, and memory
    /// stays flat; 50,000 measured 863 MiB peak RSS).
    pub bulk_page: usize,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            contact_retrieval: true,
            overlap: Duration::from_secs(120),
            bulk_threshold: 20_000,
            bulk_page: 10_000,
        }
    }
}

/// Per-object sync state, stored in the cache atomically with the records it describes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectState {
    /// Highest `SystemModstamp` loaded (Salesforce's clock).
    pub watermark: Option<String>,
    /// A full load in progress: the next page to fetch.
    pub resume_url: Option<String>,
    /// The full load in progress started at this org time (becomes the watermark).
    pub load_started: Option<String>,
    pub last_full: Option<String>,
    pub last_sync: Option<String>,
    /// The org has person accounts (Account only).
    #[serde(default)]
    pub person_accounts: bool,
    /// A full load in progress: the last Id of the last stored page (pages come in Id order,
    /// so cached Ids up to here that the load did not return are gone from Salesforce).
    #[serde(default)]
    pub swept_to: Option<String>,
    /// A Bulk API first load in progress: its job and the next results locator.
    #[serde(default)]
    pub bulk_job: Option<String>,
    #[serde(default)]
    pub bulk_locator: Option<String>,
}

impl ObjectState {
    pub fn load_in_progress(&self) -> bool {
        self.resume_url.is_some() || self.bulk_job.is_some()
    }
}

fn state_key(kind: ObjectKind) -> String {
    format!("sync:{}", kind.api_name())
}

pub fn load_state(cache: &Cache, kind: ObjectKind) -> Result<ObjectState, CacheError> {
    Ok(cache
        .state(&state_key(kind))?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// What a sync did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    pub full: Vec<String>,
    pub upserted: usize,
    pub deleted: usize,
    pub api_calls: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Salesforce(#[from] SfError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What a failed sync means and what fixes it (for `status`, the tray and the error log), or
/// `None` where the agent shows a state of its own (offline; sign-in needed).
pub fn explain(e: &SyncError) -> Option<(String, String)> {
    let e = match e {
        SyncError::Cache(c) => {
            return Some((
                format!("the local cache failed: {c}"),
                "Check the data folder's free space and permissions (`callsync doctor` checks both); lookups answer from what is cached meanwhile.".into(),
            ))
        }
        SyncError::Salesforce(e) => e,
    };
    match e {
        SfError::Network(_)
        | SfError::ProxyUnreachable { .. }
        | SfError::SignInNeeded { .. }
        | SfError::NotConnected => None,
        e if e.is_rate_limited() => Some((
            "the org's daily API limit is used up".into(),
            "Syncing resumes by itself when the org's usage falls. For a large fleet, raise sync.interval_secs (IT: lock it in the managed file).".into(),
        )),
        SfError::Api { code, message, .. } if code == "INVALID_FIELD" => Some((
            format!("Salesforce refused a field of the sync query: {message}"),
            "If the field is one of lookup.fields, correct its API name or give the user read access to it (field-level security); otherwise send `callsync support-bundle` to support. `callsync doctor` checks the fields.".into(),
        )),
        SfError::Api { code, message, .. }
            if matches!(code.as_str(), "INVALID_TYPE" | "INSUFFICIENT_ACCESS_OR_READONLY" | "INSUFFICIENT_ACCESS") =>
        {
            Some((
                format!("the user cannot read an object callsync caches: {message}"),
                "Give the user Read on Contact, Account, Lead and User (profile or permission set), or turn off sync.contact_retrieval. `callsync doctor` lists what is missing.".into(),
            ))
        }
        SfError::Api { code, .. } if code == "API_DISABLED_FOR_ORG" => Some((
            "the user may not use the API".into(),
            "Give the user the \"API Enabled\" permission (the org's edition must include API access).".into(),
        )),
        e if e.is_retryable() => Some((
            format!("Salesforce is failing for now: {e}"),
            "Nothing to do: callsync retries with backoff and lookups answer from the cache meanwhile.".into(),
        )),
        e => Some((
            format!("Salesforce refused the sync: {e}"),
            "Run `callsync doctor`; if it finds nothing, send `callsync support-bundle` to support.".into(),
        )),
    }
}

/// A `queryAll` row of a deleted record.
fn is_deleted(v: &Value) -> bool {
    v["IsDeleted"] == Value::Bool(true)
}

/// Whether the object has a recycle bin (an `IsDeleted` field, rows `queryAll` returns after a
/// delete). Users have none: they are deactivated, never deleted, and a query naming
/// `IsDeleted` on User is refused (`INVALID_FIELD: No such column 'IsDeleted' on entity 'User'`).
pub(crate) fn has_recycle_bin(kind: ObjectKind) -> bool {
    kind != ObjectKind::User
}

/// Whether a row belongs in the cache: what a full load's filter keeps (open leads, active
/// users). An incremental cycle sees converted leads and deactivated users as updates; they
/// leave the cache, so that it holds what a full sync of the same org would.
pub fn kept(kind: ObjectKind, v: &Value) -> bool {
    !is_deleted(v)
        && match kind {
            ObjectKind::Lead => v["IsConverted"] != Value::Bool(true),
            ObjectKind::User => v["IsActive"] != Value::Bool(false),
            ObjectKind::Contact | ObjectKind::Account => true,
        }
}

/// A page of records and the cursor to the next (a REST `nextRecordsUrl` or a Bulk locator).
struct Page {
    records: Vec<Value>,
    next: Option<String>,
}

/// The prefetched next page, if one was being fetched.
async fn joined<T>(
    h: Option<tokio::task::JoinHandle<Result<T, SfError>>>,
) -> Result<Option<T>, SfError> {
    match h {
        None => Ok(None),
        Some(h) => h
            .await
            .map_err(|e| SfError::Protocol(format!("page fetch stopped: {e}")))?
            .map(Some),
    }
}

/// Progress for a progress bar: (object, records loaded, records expected).
pub type Progress<'a> = &'a mut (dyn FnMut(ObjectKind, u64, u64) + Send);

pub struct SyncEngine<'a> {
    pub client: &'a Client,
    pub cache: &'a Cache,
    pub normalizer: &'a Normalizer,
    pub rules: &'a LookupRules,
    pub settings: SyncSettings,
}

impl SyncEngine<'_> {
    fn objects(&self) -> Vec<ObjectKind> {
        let mut v = Vec::new();
        if self.settings.contact_retrieval {
            v.extend([ObjectKind::Contact, ObjectKind::Account, ObjectKind::Lead]);
        }
        v.push(ObjectKind::User);
        v
    }

    /// Fields to select: the standard ones each lookup/Task needs and every configured field.
    fn fields(&self, kind: ObjectKind, person_accounts: bool) -> Vec<String> {
        let mut f: Vec<String> = ["Id", "Name", "LastModifiedDate", "SystemModstamp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let extra: &[&str] = match kind {
            ObjectKind::Contact => &["AccountId", "Account.Name"],
            ObjectKind::Account => &[],
            ObjectKind::Lead => &["Company", "IsConverted"],
            ObjectKind::User => &["Username", "IsActive"],
        };
        f.extend(extra.iter().map(|s| s.to_string()));
        for p in kind.standard_phone_fields() {
            let person_only = p.starts_with("Person");
            if !person_only || person_accounts {
                f.push(p.to_string());
            }
        }
        if person_accounts && matches!(kind, ObjectKind::Contact | ObjectKind::Account) {
            f.push("IsPersonAccount".into());
            if kind == ObjectKind::Account {
                f.push("PersonContactId".into());
            }
        }
        for c in self.rules.fields(kind) {
            if !f.contains(c) {
                f.push(c.clone());
            }
        }
        f
    }

    fn base_filter(kind: ObjectKind) -> Option<&'static str> {
        match kind {
            ObjectKind::Lead => Some("IsConverted = false"),
            ObjectKind::User => Some("IsActive = true"),
            _ => None,
        }
    }

    /// Runs one sync: full loads where needed (or everywhere with `force_full`), else one
    /// incremental cycle.
    pub async fn run(
        &self,
        force_full: bool,
        progress: Progress<'_>,
    ) -> Result<SyncReport, SyncError> {
        let calls_before = self.client.calls();
        let mut report = SyncReport::default();
        // The cache is this org's (another org's records go; a sign-in switch claims at once,
        // this catches a switch made while the cache was held elsewhere).
        if let callsync_store::cache::Claim::Switched { from } =
            self.cache.claim(&self.client.auth().org_id)?
        {
            tracing::info!(from = %from, "the cache held another org's records; loading this org's");
        }
        let repaired = self.cache.needs_full_sync()?;
        let mut incremental = Vec::new();
        let now = Utc::now();
        // Whether the org has person accounts: one describe per sync, only if a load needs it.
        let mut person_accounts: Option<bool> = None;
        for kind in self.objects() {
            let st = load_state(self.cache, kind)?;
            let stale = st
                .watermark
                .as_deref()
                .and_then(parse_sf_datetime)
                .is_none_or(|w| now - w > chrono::Duration::days(DELETED_WINDOW_DAYS));
            if force_full || repaired || stale || st.load_in_progress() {
                let pa = match (kind, person_accounts) {
                    (ObjectKind::Contact | ObjectKind::Account, None) => {
                        let pa = self.describe_person_accounts().await?;
                        person_accounts = Some(pa);
                        pa
                    }
                    (ObjectKind::Contact | ObjectKind::Account, Some(pa)) => pa,
                    _ => false,
                };
                let n = self.full_load(kind, st, pa, force_full, progress).await?;
                report.full.push(kind.api_name().into());
                report.upserted += n.0;
                report.deleted += n.1;
            } else {
                incremental.push((kind, st));
            }
        }
        if !report.full.is_empty() {
            // One ordered index build for every object loaded in bulk mode (a no-op when the
            // loads went through the normal path).
            self.cache.finish_bulk_if_pending()?;
        }
        if repaired {
            self.cache.set_needs_full_sync(false)?;
        }
        if !incremental.is_empty() {
            let (u, d) = self.incremental(incremental).await?;
            report.upserted += u;
            report.deleted += d;
        }
        if report.upserted + report.deleted > 0 || !report.full.is_empty() || repaired {
            self.cache.flush()?;
        }
        // A cycle that changed nothing only moved its watermarks: they reach the disk with the
        // next flush (or on close), and a crash before that re-reads a few minutes of changes
        // (the overlap does that anyway). The idle agent's cycles thus cost no fsync.
        report.api_calls = self.client.calls() - calls_before;
        Ok(report)
    }

    async fn describe_person_accounts(&self) -> Result<bool, SfError> {
        let d = self
            .client
            .get(&self.client.data_path("/sobjects/Account/describe"))
            .await?;
        Ok(d["fields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["name"] == "IsPersonAccount")))
    }

    /// Loads every record of `kind`; returns (upserted, deleted).
    async fn full_load(
        &self,
        kind: ObjectKind,
        mut st: ObjectState,
        person_accounts: bool,
        restart: bool,
        progress: Progress<'_>,
    ) -> Result<(usize, usize), SyncError> {
        let empty = self.cache.count(kind)? == 0;
        if st.bulk_job.is_some() && !restart {
            return self
                .bulk_load(kind, st, person_accounts, empty, true, progress)
                .await;
        }
        st.bulk_job = None;
        st.bulk_locator = None;
        let resuming = st.resume_url.is_some() && !restart;
        if !resuming {
            st.swept_to = None;
        }
        let mut page = match st.resume_url.clone().filter(|_| resuming) {
            Some(url) => match self.client.next_page(&url).await {
                Ok(p) => p,
                // The cursor expired (2 days) or is unknown: start this object again.
                Err(SfError::Api { code, .. }) if code == "INVALID_QUERY_LOCATOR" => {
                    st.load_started = None;
                    st.swept_to = None;
                    self.first_page(kind, person_accounts).await?
                }
                Err(e) => return Err(e.into()),
            },
            None => {
                st.load_started = None;
                self.first_page(kind, person_accounts).await?
            }
        };
        let big =
            self.settings.bulk_threshold > 0 && page.total_size > self.settings.bulk_threshold;
        if empty && !resuming && big {
            return self
                .bulk_load(kind, st, person_accounts, empty, false, progress)
                .await;
        }
        let started = self.load_start(&mut st);
        st.person_accounts = person_accounts;
        let total = page.total_size;
        let first = Page {
            records: std::mem::take(&mut page.records),
            next: page.next_records_url.take(),
        };
        let client = self.client.clone();
        let fetch = move |url: String| {
            let client = client.clone();
            async move {
                client.next_page(&url).await.map(|p| Page {
                    records: p.records,
                    next: p.next_records_url,
                })
            }
        };
        let mut deleted = 0usize;
        let sweep = !empty || resuming;
        let (upserted, max_stamp) = self
            .load_pages(
                kind,
                &mut st,
                first,
                fetch,
                resuming,
                empty,
                Some(total),
                progress,
                |me, page, st, changes| {
                    st.resume_url = page.next.clone();
                    // This page's Id range, swept of cached records Salesforce no longer
                    // returns (a first load into an empty cache has none; its range is still
                    // recorded, for a resume).
                    let upto = page
                        .next
                        .as_ref()
                        .and_then(|_| page.records.last()?["Id"].as_str().map(str::to_owned));
                    if sweep {
                        let seen: HashSet<&str> = page
                            .records
                            .iter()
                            .filter_map(|v| v["Id"].as_str())
                            .collect();
                        for id in
                            me.cache
                                .ids_between(kind, st.swept_to.as_deref(), upto.as_deref())?
                        {
                            if !seen.contains(id.as_str()) {
                                changes.push(Change::Delete(id));
                                deleted += 1;
                            }
                        }
                    }
                    if upto.is_some() {
                        st.swept_to = upto;
                    }
                    Ok(())
                },
            )
            .await?;
        self.finish_full(kind, st, max_stamp, started)?;
        tracing::info!(object = %kind, upserted, deleted, "full load done");
        Ok((upserted, deleted))
    }

    /// The page loop of a load, whichever API serves the pages: the next page is fetched while
    /// this one is converted and stored with the object's state (`on_page` moves the cursor
    /// and may add deletions), made durable about once a second. Returns (records upserted,
    /// newest `SystemModstamp`).
    #[allow(clippy::too_many_arguments)]
    async fn load_pages<F, Fut>(
        &self,
        kind: ObjectKind,
        st: &mut ObjectState,
        mut page: Page,
        fetch: F,
        resuming: bool,
        empty: bool,
        total: Option<u64>,
        progress: Progress<'_>,
        mut on_page: impl FnMut(
            &Self,
            &Page,
            &mut ObjectState,
            &mut Vec<Change>,
        ) -> Result<(), CacheError>,
    ) -> Result<(usize, Option<String>), SyncError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Page, SfError>> + Send + 'static,
    {
        let key = state_key(kind);
        let mut max_stamp: Option<String> = st.watermark.clone().filter(|_| resuming);
        let mut flushed = std::time::Instant::now();
        let (mut loaded, mut upserted) = (0u64, 0usize);
        loop {
            let prefetch = page.next.clone().map(|next| tokio::spawn(fetch(next)));
            let mut changes = self.convert(kind, &page.records, &mut max_stamp);
            loaded += page.records.len() as u64;
            upserted += changes.len();
            on_page(self, &page, st, &mut changes)?;
            st.watermark = max_stamp.clone();
            self.store_page(&key, st, &changes, empty)?;
            // Durable about once a second: a kill mid-load resumes near where it stopped (sled's
            // own periodic flush is off: it would wake the idle agent).
            if flushed.elapsed() >= Duration::from_secs(1) {
                self.cache.flush()?;
                flushed = std::time::Instant::now();
            }
            progress(kind, loaded, total.unwrap_or(loaded));
            match joined(prefetch).await? {
                Some(next) => page = next,
                None => break,
            }
        }
        Ok((upserted, max_stamp))
    }

    /// Writes a page's changes with the object's sync state, in one atomic batch.
    fn store_page(
        &self,
        key: &str,
        st: &ObjectState,
        changes: &[Change],
        empty: bool,
    ) -> Result<(), CacheError> {
        let state = serde_json::to_vec(st).unwrap_or_default();
        if empty {
            self.cache.apply_bulk(changes, &[(key, state)])?;
        } else {
            self.cache.apply(changes, &[(key, state)])?;
        }
        Ok(())
    }

    /// Converts a page of records (in parallel: normalization is the CPU cost), leaving out
    /// deleted rows, and moves `max_stamp` to the newest `SystemModstamp` among them all.
    fn convert(
        &self,
        kind: ObjectKind,
        records: &[Value],
        max_stamp: &mut Option<String>,
    ) -> Vec<Change> {
        use rayon::prelude::*;
        let newest = records
            .iter()
            .filter_map(|v| v["SystemModstamp"].as_str())
            .max()
            .map(str::to_owned);
        if newest > *max_stamp {
            *max_stamp = newest;
        }
        records
            .par_iter()
            .filter(|v| !is_deleted(v))
            .filter_map(|v| match from_sobject(v, Some(kind), self.normalizer, self.rules) {
                Ok(r) => Some(Change::Upsert(r)),
                Err(e) => {
                    tracing::warn!(object = %kind, error = %e, "skipping a record Salesforce returned");
                    None
                }
            })
            .collect()
    }

    /// When this load started (minus the overlap), kept across a resume: the watermark after it.
    fn load_start(&self, st: &mut ObjectState) -> String {
        let started = st.load_started.clone().unwrap_or_else(|| {
            format_sf_datetime(
                Utc::now() - chrono::Duration::from_std(self.settings.overlap).unwrap_or_default(),
            )
        });
        st.load_started = Some(started.clone());
        started
    }

    fn finish_full(
        &self,
        kind: ObjectKind,
        mut st: ObjectState,
        max_stamp: Option<String>,
        started: String,
    ) -> Result<(), CacheError> {
        let now = format_sf_datetime(Utc::now());
        st.resume_url = None;
        st.load_started = None;
        st.swept_to = None;
        st.bulk_job = None;
        st.bulk_locator = None;
        st.last_full = Some(now.clone());
        st.last_sync = Some(now);
        // The watermark: the later of the newest stamp seen and the load's start.
        st.watermark = [max_stamp, Some(started)].into_iter().flatten().max();
        let state = serde_json::to_vec(&st).unwrap_or_default();
        // A bulk-written object's index is built once for the whole sync, in `run`.
        self.cache
            .apply(&[], &[(&state_key(kind), state)])
            .map(|_| ())
    }

    /// A first load through Bulk API 2.0: one job, results in pages of 10,000 (the next one
    /// fetched while the current one is stored), the job and locator saved with every page.
    /// Only for objects the cache did not hold when the load began, so nothing needs sweeping.
    async fn bulk_load(
        &self,
        kind: ObjectKind,
        mut st: ObjectState,
        person_accounts: bool,
        empty: bool,
        resuming: bool,
        progress: Progress<'_>,
    ) -> Result<(usize, usize), SyncError> {
        let page_size = self.settings.bulk_page.max(1);
        let started = self.load_start(&mut st);
        st.person_accounts = person_accounts;
        st.resume_url = None;
        st.swept_to = None;
        let job = match st.bulk_job.clone().filter(|_| resuming) {
            Some(j) => j,
            None => {
                let j = self
                    .client
                    .bulk_query_start(&self.soql(kind, person_accounts, false))
                    .await?;
                st.bulk_locator = None;
                j
            }
        };
        self.client.bulk_wait(&job).await?;
        st.bulk_job = Some(job.clone());
        let object = kind.api_name();
        let first = self
            .client
            .bulk_results(&job, object, st.bulk_locator.as_deref(), page_size)
            .await?;
        let first = Page {
            records: first.records,
            next: first.next_locator,
        };
        let client = self.client.clone();
        let fetch = move |locator: String| {
            let (client, job) = (client.clone(), job.clone());
            async move {
                client
                    .bulk_results(&job, object, Some(&locator), page_size)
                    .await
                    .map(|p| Page {
                        records: p.records,
                        next: p.next_locator,
                    })
            }
        };
        // Nothing to sweep: the object was not cached when the load began.
        let (upserted, max_stamp) = self
            .load_pages(
                kind,
                &mut st,
                first,
                fetch,
                resuming,
                empty,
                None,
                progress,
                |_, page, st, _| {
                    st.bulk_locator = page.next.clone();
                    Ok(())
                },
            )
            .await?;
        self.finish_full(kind, st, max_stamp, started)?;
        tracing::info!(object = %kind, upserted, "bulk first load done");
        Ok((upserted, 0))
    }

    fn soql(&self, kind: ObjectKind, person_accounts: bool, ordered: bool) -> String {
        let fields = self.fields(kind, person_accounts).join(", ");
        let filter = Self::base_filter(kind)
            .map(|f| format!(" WHERE {f}"))
            .unwrap_or_default();
        // Bulk queries go unordered (ORDER BY disables PK chunking).
        let order = if ordered { " ORDER BY Id" } else { "" };
        format!("SELECT {fields} FROM {}{filter}{order}", kind.api_name())
    }

    /// The incremental query of one object: rows whose `SystemModstamp` moved since `since`,
    /// with `IsDeleted` where the object has it (converted leads and deactivated users come as
    /// updates: `fields` selects IsConverted/IsActive).
    pub(crate) fn incremental_soql(
        &self,
        kind: ObjectKind,
        person_accounts: bool,
        since: DateTime<Utc>,
    ) -> String {
        let mut fields = self.fields(kind, person_accounts);
        if has_recycle_bin(kind) {
            fields.push("IsDeleted".into());
        }
        format!(
            "SELECT {} FROM {} WHERE SystemModstamp >= {} ORDER BY SystemModstamp, Id",
            fields.join(", "),
            kind.api_name(),
            callsync_core::wire::soql_datetime(since)
        )
    }

    async fn first_page(
        &self,
        kind: ObjectKind,
        person_accounts: bool,
    ) -> Result<callsync_core::wire::QueryPage, SfError> {
        self.client
            .query(&self.soql(kind, person_accounts, true), false)
            .await
    }

    /// One cycle for all objects in a single `/composite` call; returns (upserted, deleted).
    async fn incremental(
        &self,
        objects: Vec<(ObjectKind, ObjectState)>,
    ) -> Result<(usize, usize), SyncError> {
        let overlap = chrono::Duration::from_std(self.settings.overlap).unwrap_or_default();
        let mut subs = Vec::new();
        for (kind, st) in &objects {
            let since = st
                .watermark
                .as_deref()
                .and_then(parse_sf_datetime)
                .map(|w| w - overlap)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let soql = self.incremental_soql(*kind, st.person_accounts, since);
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("q", &soql)
                .finish();
            // Deleted rows come too (`queryAll`) where the object has a recycle bin.
            let resource = if has_recycle_bin(*kind) {
                "queryAll"
            } else {
                "query"
            };
            subs.push(json!({
                "method": "GET",
                "url": self.client.data_path(&format!("/{resource}?{q}")),
                "referenceId": kind.api_name(),
            }));
        }
        let body = json!({"allOrNone": false, "compositeRequest": subs});
        let (_, resp) = self
            .client
            .send(
                reqwest::Method::POST,
                &self.client.data_path("/composite"),
                Some(&body),
            )
            .await?;
        let resp = resp.unwrap_or(Value::Null);
        let results = resp["compositeResponse"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (mut upserted, mut deleted) = (0, 0);
        for (kind, mut st) in objects {
            let Some(r) = results.iter().find(|r| r["referenceId"] == kind.api_name()) else {
                return Err(SfError::Protocol(format!("composite answer lacks {kind}")).into());
            };
            let status = r["httpStatusCode"].as_u64().unwrap_or(0) as u16;
            if status != 200 {
                return Err(callsync_core::wire::api_error(status, &r["body"].to_string()).into());
            }
            let mut page = callsync_core::wire::QueryPage::from_value(r["body"].clone())?;
            loop {
                // Deleted rows, converted leads and deactivated users leave the cache.
                let (kept_rows, gone): (Vec<Value>, Vec<Value>) =
                    page.records.iter().cloned().partition(|v| kept(kind, v));
                let mut changes: Vec<Change> = gone
                    .iter()
                    .filter_map(|v| v["Id"].as_str().and_then(RecordId::parse))
                    .map(Change::Delete)
                    .collect();
                deleted += changes.len();
                let newest = page
                    .records
                    .iter()
                    .filter_map(|v| v["SystemModstamp"].as_str())
                    .max()
                    .map(str::to_owned);
                if newest > st.watermark {
                    st.watermark = newest;
                }
                let live = self.convert(kind, &kept_rows, &mut st.watermark);
                upserted += live.len();
                changes.extend(live);
                let next = page.next_records_url.clone();
                if next.is_none() {
                    st.last_sync = Some(format_sf_datetime(Utc::now()));
                }
                let state = serde_json::to_vec(&st).unwrap_or_default();
                self.cache.apply(&changes, &[(&state_key(kind), state)])?;
                match next {
                    Some(url) => page = self.client.next_page(&url).await?,
                    None => break,
                }
            }
        }
        Ok((upserted, deleted))
    }
}
