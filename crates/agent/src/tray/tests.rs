use super::*;
use callsync_core::state::Health;

/// A tray that remembers what it was shown.
#[derive(Default)]
struct Fake {
    shown: Vec<View>,
}

impl Shell for Fake {
    fn render(&mut self, view: &View) {
        self.shown.push(view.clone());
    }
}

fn view(paused: bool, signed_in: bool) -> View {
    let mut s = AgentState::default();
    if signed_in {
        s.user = Some("agent@example.com".into());
    }
    if paused {
        s.paused = Some("user".into());
    }
    state::view(&s, Lang::En, 0)
}

#[test]
fn clicks_ask_what_the_menu_says() {
    let cases: &[(&str, bool, bool, Option<Request>)] = &[
        ("sync", false, true, Some(Request::SyncNow)),
        ("pause", false, true, Some(Request::Pause)),
        ("pause", true, true, Some(Request::Resume)),
        ("sign", false, true, Some(Request::SignOut)),
        ("sign", false, false, Some(Request::SignIn)),
        ("logs", false, true, Some(Request::OpenLogs)),
        ("settings", false, true, Some(Request::OpenSettings)),
        ("quit", false, true, Some(Request::Quit)),
        ("error:3", false, true, Some(Request::Explain { index: 3 })),
        ("error:x", false, true, None),
        (
            "open:https://acme.my.salesforce.com/lightning/r/Contact/003000000000001AAA/view",
            false,
            true,
            Some(Request::OpenRecord {
                url: "https://acme.my.salesforce.com/lightning/r/Contact/003000000000001AAA/view"
                    .into(),
            }),
        ),
        ("status", false, true, None),
        ("pick:0", false, true, None),
    ];
    for (id, paused, signed_in, want) in cases {
        let got = request(&view(*paused, *signed_in), id);
        assert_eq!(
            format!("{got:?}"),
            format!("{want:?}"),
            "{id} paused={paused} signed_in={signed_in}"
        );
    }
}

#[test]
fn a_pick_in_the_current_call_menu_names_the_call_and_the_record() {
    let mut s = AgentState {
        user: Some("agent@example.com".into()),
        ..Default::default()
    };
    s.current_call = Some(callsync_core::state::CurrentCall {
        call_id: "c9".into(),
        number: "03-1234-5678".into(),
        matches: ["003000000000001AAA", "00Q000000000001AAA"]
            .iter()
            .map(|id| callsync_core::state::CallMatch {
                record_id: (*id).into(),
                label: "x".into(),
            })
            .collect(),
        chosen: None,
    });
    let v = state::view(&s, Lang::En, 0);
    assert_eq!(
        request(&v, "pick:1"),
        Some(Request::Pick {
            call_id: "c9".into(),
            record_id: "00Q000000000001AAA".into()
        })
    );
    assert_eq!(request(&v, "pick:2"), None);
    assert_eq!(request(&v, "pick:x"), None);
}

#[tokio::test]
async fn the_loop_renders_the_core_and_turns_clicks_into_requests() {
    let (state_tx, state_rx) = tokio::sync::watch::channel(AgentState {
        user: Some("agent@example.com".into()),
        ..Default::default()
    });
    let (click_tx, clicks) = tokio::sync::mpsc::unbounded_channel();
    let fired = std::sync::Mutex::new(Vec::new());
    let mut fake = Fake::default();
    let script = async {
        // The core pauses; then the user clicks the item that now reads "Resume sending".
        tokio::task::yield_now().await;
        state_tx.send_modify(|s| s.paused = Some("user".into()));
        tokio::task::yield_now().await;
        click_tx.send("pause".to_owned()).unwrap();
        click_tx.send("error:0".to_owned()).unwrap();
        for _ in 0..1000 {
            if fired.lock().unwrap().len() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        drop(state_tx); // the core stops: the loop ends
    };
    let run = drive(&mut fake, state_rx, clicks, Lang::En, |r| {
        fired.lock().unwrap().push(format!("{r:?}"))
    });
    tokio::join!(run, script);
    let labels: Vec<&str> = fake.shown.iter().map(|v| v.pause_label.as_str()).collect();
    assert_eq!(labels, ["Pause sending", "Resume sending"]);
    assert!(fake.shown[1].paused);
    assert_eq!(
        *fired.lock().unwrap(),
        [
            format!("{:?}", Request::Resume),
            format!("{:?}", Request::Explain { index: 0 })
        ]
    );
}

#[test]
fn embedded_icons_decode() {
    for h in [
        Health::Ok,
        Health::Working,
        Health::Attention,
        Health::Error,
    ] {
        let (rgba, w, hgt) = decode_png(icon_png(h)).unwrap();
        assert_eq!((w, hgt), (32, 32));
        assert_eq!(rgba.len(), 32 * 32 * 4);
        // The centre of the disc is drawn (not transparent).
        let c = ((16 * 32 + 16) * 4) as usize;
        assert!(rgba[c + 3] > 0, "{h:?}");
    }
}
