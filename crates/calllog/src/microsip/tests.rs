//! Fixtures are written here from MicroSIP's documented format (its source code: `Calls::
//! CallEncode`, `GetNextKey`, the profile API), not recorded: MicroSIP does not run on this
//! machine.

use super::*;
use callsync_core::event::EventKind;

/// An ini as MicroSIP writes it: UTF-16LE with BOM, CRLF lines.
fn utf16(text: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xFE];
    for u in text.replace('\n', "\r\n").encode_utf16() {
        b.extend_from_slice(&u.to_le_bytes());
    }
    b
}

fn ini(rows: &[(&str, &str)]) -> String {
    let mut s = String::from("[Settings]\ncallsLastKey=2\nlanguage=Japanese\n[Calls]\n");
    for (k, v) in rows {
        s.push_str(&format!("{k}={v}\n"));
    }
    s.push_str("[Dialed]\n0=0312345678\n");
    s
}

/// (call id, direction, outcome, duration) of every ended call.
fn ended(p: &Poll) -> Vec<(String, Direction, Outcome, Option<u64>)> {
    p.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Ended {
                outcome,
                duration_s,
                ..
            } => Some((
                e.call_id.clone(),
                e.info.as_ref().map_or(Direction::Inbound, |i| i.direction),
                *outcome,
                *duration_s,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn rows_by_type_duration_and_end_reason() {
    let t = 1_764_633_600; // 2025-12-02
    let table: &[(&str, Direction, Outcome)] = &[
        // type 0 outgoing: talked, or not (reason in English or Japanese, or unknown text).
        (
            "0312345678;;0;{t};65;Call Ended",
            Direction::Outbound,
            Outcome::Answered,
        ),
        (
            "0312345678;;0;{t};0;Declined",
            Direction::Outbound,
            Outcome::Rejected,
        ),
        (
            "0312345678;;0;{t};0;Busy Here",
            Direction::Outbound,
            Outcome::Busy,
        ),
        (
            "0312345678;;0;{t};0;拒否されました",
            Direction::Outbound,
            Outcome::Rejected,
        ),
        (
            "0312345678;;0;{t};0;Canceled",
            Direction::Outbound,
            Outcome::NoAnswer,
        ),
        (
            "0312345678;;0;{t};0;Zrušeno",
            Direction::Outbound,
            Outcome::NoAnswer,
        ),
        // 1 incoming answered, 2 missed, 3 answered elsewhere; the reason text never makes an
        // answered call missed.
        (
            "sip:0312345678@pbx;山田 太郎;1;{t};30;通話終了",
            Direction::Inbound,
            Outcome::Answered,
        ),
        (
            "0312345678;;1;{t};0;Missed Call",
            Direction::Inbound,
            Outcome::Answered,
        ),
        (
            "0312345678;;2;{t};0;不在着信",
            Direction::Inbound,
            Outcome::NoAnswer,
        ),
        (
            "0312345678;;3;{t};0;Answered Elsewhere",
            Direction::Inbound,
            Outcome::Answered,
        ),
    ];
    for (row, dir, outcome) in table {
        let r = Row::parse(&row.replace("{t}", &t.to_string())).unwrap();
        assert_eq!((r.direction(), r.outcome()), (*dir, *outcome), "{row}");
    }
    // A `;` in the name (MicroSIP does not escape): the number first, the last four fields.
    let r = Row::parse(&format!("0312345678;Acme; Tokyo;1;{t};5;Call Ended")).unwrap();
    assert_eq!((r.name.as_str(), r.duration), ("Acme; Tokyo", 5));
    for bad in [
        "0312345678;;9;1764633600;0;x",
        "0312345678;;1;12;0;x",
        "0312345678;;1;1764633600;-1;x",
        "0312345678;;1;1764633600;99999999999;x",
        "0312345678;1764633600",
    ] {
        assert!(Row::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_ring_read_by_time_in_progress_rows_wait_and_updates_in_place_come_once() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("microsip.ini");
    let mut src = MicrosipSource::new("microsip", &path);
    // The ring has wrapped: key 0 is the newest, key 2 the oldest; key 1 was deleted; key 3 is
    // still ringing (no end reason yet).
    let rows = [
        ("0", "0311110003;;1;1764633900;20;Call Ended"),
        ("1", "null"),
        ("2", "0311110001;;0;1764633600;10;Call Ended"),
        ("3", "0311110004;;2;1764634000;0;"),
    ];
    std::fs::write(&path, utf16(&ini(&rows))).unwrap();
    let p = src.poll(&Cursor::default());
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let e = ended(&p);
    assert_eq!(e.len(), 2, "{e:?}");
    // Oldest first, whatever the keys.
    let first_remote = p.events[0].info.as_ref().unwrap().remote.clone();
    assert_eq!(first_remote, "0311110001");
    assert_eq!(e[0].1, Direction::Outbound);
    assert_eq!((e[1].2, e[1].3), (Outcome::Answered, Some(20)));

    // The same file again: nothing. The ringing call is answered in place (missed → incoming),
    // then ends: it comes once, under one id.
    let p2 = src.poll(&p.next);
    assert!(p2.events.is_empty());
    let rows = [
        ("0", "0311110003;;1;1764633900;20;Call Ended"),
        ("1", "null"),
        ("2", "0311110001;;0;1764633600;10;Call Ended"),
        ("3", "0311110004;;1;1764634000;0;"),
    ];
    std::fs::write(&path, utf16(&ini(&rows))).unwrap();
    let p3 = src.poll(&p2.next);
    assert!(p3.events.is_empty(), "in progress: {:?}", p3.events);
    let rows = [
        ("0", "0311110003;;1;1764633900;20;Call Ended"),
        ("1", "null"),
        ("2", "0311110001;;0;1764633600;10;Call Ended"),
        ("3", "0311110004;;1;1764634000;42;通話終了"),
    ];
    std::fs::write(&path, utf16(&ini(&rows))).unwrap();
    let p4 = src.poll(&p3.next);
    let e4 = ended(&p4);
    assert_eq!(e4.len(), 1);
    assert_eq!((e4[0].2, e4[0].3), (Outcome::Answered, Some(42)));
    let id = e4[0].0.clone();
    assert!(id.starts_with("microsip-"));
    // The ring overwrites key 2 with a new call: only that call comes.
    let rows = [
        ("0", "0311110003;;1;1764633900;20;Call Ended"),
        ("2", "0311110005;;0;1764634100;0;Canceled"),
        ("3", "0311110004;;1;1764634000;42;通話終了"),
    ];
    std::fs::write(&path, utf16(&ini(&rows))).unwrap();
    let p5 = src.poll(&p4.next);
    let e5 = ended(&p5);
    assert_eq!(e5.len(), 1);
    assert_eq!(e5[0].2, Outcome::NoAnswer);
    // "Delete all" empties the section: nothing, no problem.
    std::fs::write(&path, utf16(&ini(&[]))).unwrap();
    let p6 = src.poll(&p5.next);
    assert!(p6.events.is_empty() && p6.problems.is_empty());
}

#[test]
fn half_written_files_are_read_again_and_not_reported() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("microsip.ini");
    let mut src = MicrosipSource::new("microsip", &path);
    let whole = utf16(&ini(&[("0", "0311110001;;1;1764633600;10;Call Ended")]));
    // An odd number of bytes; the text without its BOM (the rewrite's first write); a cut in
    // the middle of the row (its line is not complete).
    let cut_row = {
        let text = ini(&[("0", "0311110001;;1;1764633600;10;Call Ended")]);
        let i = text.find("Call Ended").unwrap() + 4;
        utf16(&text[..i])
    };
    for (what, bytes) in [
        ("odd", whole[..whole.len() - 1].to_vec()),
        ("no BOM", whole[2..].to_vec()),
        ("cut row", cut_row),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let p = src.poll(&Cursor::default());
        assert!(p.events.is_empty(), "{what}: {:?}", p.events);
        assert!(p.problems.is_empty(), "{what}: {:?}", p.problems);
    }
    std::fs::write(&path, &whole).unwrap();
    assert_eq!(ended(&src.poll(&Cursor::default())).len(), 1);
    // A hand-made UTF-8 file reads too.
    std::fs::write(
        &path,
        ini(&[("0", "0311110001;;1;1764633600;10;Call Ended")]),
    )
    .unwrap();
    assert_eq!(ended(&src.poll(&Cursor::default())).len(), 1);
}

#[test]
fn a_bad_row_is_said_once_and_the_rest_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("microsip.ini");
    let mut src = MicrosipSource::new("microsip", &path);
    let rows = [
        ("0", "0311110001;;1;1764633600;10;Call Ended"),
        ("1", "broken row"),
    ];
    std::fs::write(&path, utf16(&ini(&rows))).unwrap();
    let p = src.poll(&Cursor::default());
    assert_eq!(ended(&p).len(), 1);
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
    assert!(p.problems[0].reason.contains("1:"), "{:?}", p.problems);
    let again = src.poll(&p.next);
    assert!(again.problems.is_empty() && again.events.is_empty());
}

#[test]
fn calls_already_in_the_history_at_first_sight_are_not_imported() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("microsip.ini");
    let mut src = MicrosipSource::new("microsip", &path);
    let rows = [
        ("0", "0311110001;;1;1764633600;10;Call Ended"),
        ("1", "0311110002;;2;1764633700;0;"),
    ];
    std::fs::write(&path, utf16(&ini(&rows))).unwrap();
    let base = src.baseline();
    assert!(src.poll(&base).events.is_empty());
    // The call that was ringing at first sight ends: it comes.
    let rows = [
        ("0", "0311110001;;1;1764633600;10;Call Ended"),
        ("1", "0311110002;;2;1764633700;0;Missed Call"),
    ];
    std::fs::write(&path, utf16(&ini(&rows))).unwrap();
    let e = ended(&src.poll(&base));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].2, Outcome::NoAnswer);
    // `calls import` reads the whole history.
    assert_eq!(ended(&src.read_whole()).len(), 2);
}
