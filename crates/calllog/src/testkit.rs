//! Softphones played in tests (feature `testkit`, and this crate's own tests): a `linphone.db`
//! written as liblinphone ≥ 5.2 writes it (`src/db/main-db.cpp`: the schema, a row and a start
//! event at call start, the status and an end event at the end). Written from liblinphone's
//! source: Linphone desktop 5.x does not run on this machine.

use std::path::Path;

use rusqlite::{params, Connection};

/// A new `linphone.db` with liblinphone ≥ 5.2's call-log tables, the agent's address (id 1) and
/// two remote ones: `0311110001` with a display name (id 2) and `0311110002` without (id 3).
pub fn main_db(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.execute_batch(
        "CREATE TABLE sip_address (id INTEGER PRIMARY KEY AUTOINCREMENT, value VARCHAR(255) UNIQUE NOT NULL, display_name VARCHAR(255));
         CREATE TABLE event (id INTEGER PRIMARY KEY AUTOINCREMENT, type TINYINT NOT NULL, creation_time DATE NOT NULL);
         CREATE TABLE conference_call (id INTEGER PRIMARY KEY AUTOINCREMENT, from_sip_address_id INTEGER NOT NULL, to_sip_address_id INTEGER NOT NULL, direction TINYINT NOT NULL, duration INT NOT NULL, start_time DATE NOT NULL, connected_time DATE NOT NULL, status TINYINT NOT NULL, video_enabled BOOLEAN NOT NULL, quality REAL NOT NULL, call_id VARCHAR(64), refkey VARCHAR(64), conference_info_id INTEGER);
         CREATE TABLE conference_call_event (event_id INTEGER PRIMARY KEY, conference_call_id INTEGER NOT NULL);
         INSERT INTO sip_address (value, display_name) VALUES ('sip:agent@pbx.example', 'Agent'), ('sip:0311110001@pbx.example', '山田 太郎'), ('sip:0311110002@pbx.example', NULL);",
    )?;
    Ok(c)
}

/// The `sip_address` id of `sip:<user>@pbx.example`, added if new.
pub fn address(c: &Connection, user: &str) -> rusqlite::Result<i64> {
    let value = format!("sip:{user}@pbx.example");
    c.execute(
        "INSERT OR IGNORE INTO sip_address (value) VALUES (?1)",
        [&value],
    )?;
    c.query_row(
        "SELECT id FROM sip_address WHERE value = ?1",
        [&value],
        |r| r.get(0),
    )
}

fn event(c: &Connection, kind: i64, at: &str, call: i64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO event (type, creation_time) VALUES (?1, ?2)",
        params![kind, at],
    )?;
    c.execute(
        "INSERT INTO conference_call_event (event_id, conference_call_id) VALUES (?1, ?2)",
        [c.last_insert_rowid(), call],
    )?;
    Ok(())
}

/// A call starts with the remote address `remote` (a `sip_address` id): its row (status
/// "aborted" until it ends, as liblinphone makes it) and its start event (type 3). `start` is
/// `YYYY-MM-DD HH:MM:SS`, UTC. The row's id.
pub fn start_call_with(
    c: &Connection,
    call_id: &str,
    incoming: bool,
    remote: i64,
    start: &str,
) -> rusqlite::Result<i64> {
    let (from, to) = if incoming { (remote, 1) } else { (1, remote) };
    c.execute(
        "INSERT INTO conference_call (from_sip_address_id, to_sip_address_id, direction, duration, start_time, connected_time, status, video_enabled, quality, call_id) VALUES (?1, ?2, ?3, 0, ?4, '1970-01-01 00:00:00', 1, 0, -1, ?5)",
        params![from, to, i64::from(incoming), start, call_id],
    )?;
    let id = c.last_insert_rowid();
    event(c, 3, start, id)?;
    Ok(id)
}

/// [`start_call_with`] from `0311110001` (incoming) or to `0311110002` (outgoing).
pub fn start_call(
    c: &Connection,
    call_id: &str,
    incoming: bool,
    start: &str,
) -> rusqlite::Result<i64> {
    start_call_with(c, call_id, incoming, if incoming { 2 } else { 3 }, start)
}

/// The call is answered: status "success" and its connect time, no event.
pub fn connect_call(c: &Connection, id: i64, at: &str) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE conference_call SET status = 0, connected_time = ?1 WHERE id = ?2",
        params![at, id],
    )?;
    Ok(())
}

/// The call ends with `status` (`LinphoneCallStatus`) and `duration`: the row updated and its
/// end event (type 4).
pub fn end_call(
    c: &Connection,
    id: i64,
    status: i64,
    connected: Option<&str>,
    duration: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE conference_call SET status = ?1, duration = ?2, connected_time = COALESCE(?3, connected_time) WHERE id = ?4",
        params![status, duration, connected, id],
    )?;
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    event(c, 4, &now, id)
}
