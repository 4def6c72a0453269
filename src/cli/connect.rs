//! `callsync connect` and `callsync disconnect`: signing in and out, by the one sign-in rule.

use callsync_agent::control::Request;
use callsync_config::Layered;
use callsync_store::cache::CacheError;

use callsync_app::App;

use crate::cli::{exit, from_agent};

pub async fn connect(app: &App, no_browser: bool, send_queue_here: bool) -> anyhow::Result<u8> {
    let sf = &app.config.salesforce;
    if !sf.jwt_username.is_empty() && !sf.jwt_key_file.is_empty() {
        outln!(
            "signing in as {} with the JWT bearer flow…",
            sf.jwt_username
        );
    }
    let open = |url: &str| {
        if no_browser || webbrowser::open(url).is_err() {
            outln!("Open this address in your browser to sign in to Salesforce:\n\n  {url}\n");
        } else {
            outln!("Your browser is open at the Salesforce sign-in page; waiting for you to allow access…");
        }
    };
    let result = app.sign_in(open, std::time::Duration::from_secs(300)).await;
    if let Err(callsync_salesforce::auth::SignInError::Settings(m)) = &result {
        eprintln!("callsync: {m}");
        return Ok(exit::USAGE);
    }
    let (token, method) = match result {
        Ok(t) => t,
        Err(e) => {
            eprintln!("callsync: {e}");
            return Ok(exit::SIGN_IN);
        }
    };
    let stored = app.complete_sign_in(&token, method).await?;
    outln!(
        "Connected to org {} as {} ({}) at {}",
        stored.org_id,
        if stored.username.is_empty() {
            &stored.user_id
        } else {
            &stored.username
        },
        stored.user_id,
        stored.instance_url
    );
    outln!(
        "The refresh token is kept in {}.",
        app.auth_store().describe()
    );
    match app.backup_note(&stored.org_id) {
        Ok(Some(callsync_app::app::BackupNote::OtherOrg { taken_at, org_id, username })) => eprintln!(
            "callsync: warning: the settings backup ({taken_at}) is from org {org_id} ({username}), not this org: restoring it here would apply another org's field names and users; `callsync settings restore` checks them"
        ),
        Ok(Some(callsync_app::app::BackupNote::Available { taken_at })) => outln!(
            "A settings backup from {taken_at} is available: `callsync settings restore` applies it."
        ),
        Ok(None) => {}
        Err(e) => eprintln!("callsync: warning: {e}"),
    }
    // The sign-in rule: the cache becomes this org's, the queue resumes for its own org and is
    // never handed to another one unasked. Applied here, or by the running agent that holds
    // the stores.
    let applied = match (
        app.open_cache(),
        callsync_store::outbox::Outbox::open(&app.data.outbox()),
    ) {
        (Ok((cache, _)), Ok(outbox)) => app
            .apply_sign_in(&stored.org_id, &cache, &outbox, send_queue_here)
            .map_err(anyhow::Error::msg)?,
        (Err(CacheError::Locked(_)), _)
        | (_, Err(callsync_store::outbox::OutboxError::Locked(_))) => {
            let busy = CacheError::Locked(app.data.cache());
            match from_agent(app, Request::SignedIn { send_queue_here }, busy) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("callsync: note: the cache and Task queue are in use ({e}); the agent applies the new sign-in when it next looks (within a minute)");
                    return Ok(exit::OK);
                }
            }
        }
        (Err(e), _) => return Err(e.into()),
        (_, Err(e)) => return Err(e.into()),
    };
    if let callsync_store::cache::Claim::Switched { from } = &applied.cache {
        eprintln!(
            "callsync: warning: this is a different org than before ({from} → {}); the cache is reloaded at the next sync",
            stored.org_id
        );
    }
    match applied.queue {
        callsync_store::outbox::Adoption::Held { why } => eprintln!("callsync: warning: {why}"),
        callsync_store::outbox::Adoption::Resumed { queued } if queued > 0 => {
            outln!("{queued} queued Task(s) will be sent to this org.")
        }
        callsync_store::outbox::Adoption::Resumed { .. } => {}
        callsync_store::outbox::Adoption::UserPaused { why } => {
            eprintln!("callsync: note: sending stays paused: {why}")
        }
    }
    Ok(exit::OK)
}

pub async fn disconnect(app: &App, layered: &Layered) -> anyhow::Result<u8> {
    // The backup first: whatever happens at Salesforce, the settings are kept.
    let who = app.auth_store().load().ok().flatten();
    if let Some(a) = &who {
        let path = app.data.settings_backup();
        let previous = callsync_config::settings::Backup::load(&path)
            .ok()
            .flatten();
        callsync_config::settings::Backup::of(layered, &a.org_id, &a.username).save(&path)?;
        let replaced = previous
            .map(|p| format!(" (replacing the backup of {})", p.taken_at))
            .unwrap_or_default();
        outln!(
            "settings backed up to {}{replaced}; `callsync settings restore` applies them after `callsync connect`",
            path.display()
        );
    }
    if !app.sign_out().await? {
        outln!("not signed in");
        return Ok(exit::OK);
    }
    let why = "signed out with `callsync disconnect`; the queue is kept and sent after `callsync connect`";
    match callsync_store::outbox::Outbox::open(&app.data.outbox()) {
        Ok(outbox) => {
            outbox.pause(callsync_store::outbox::PauseKind::SignedOut, why)?;
            let (p, k) = outbox.counts()?;
            outln!("signed out; the token is revoked and forgotten; the cache and {} queued Task(s) are kept", p + k);
        }
        Err(callsync_store::outbox::OutboxError::Locked(_)) => {
            // The running agent holds the queue: it stops sending when its token fails.
            let _ = callsync_agent::control::call(
                &app.data,
                &callsync_agent::control::Request::SignOut,
                std::time::Duration::from_secs(5),
            );
            outln!("signed out; the token is revoked and forgotten; the running agent keeps the cache and the Task queue")
        }
        Err(e) => return Err(e.into()),
    }
    Ok(exit::OK)
}
