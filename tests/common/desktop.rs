//! A real, private, headless desktop session for the tray test and the agent benchmark: Xvfb on
//! a free display, a private D-Bus session bus, xfce4-panel as the StatusNotifier host (only its
//! systray plugin), and dunst as the notification server. Every process it starts is in its own
//! process group and is stopped when the `Desktop` is dropped.
//!
//! What a user does is done the way a user does it: the menu is opened by right-clicking the
//! icon the panel drew (xdotool), read on screen (ImageMagick + tesseract OCR) and on D-Bus (the
//! dbusmenu layout and the StatusNotifierItem properties, with gdbus).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Tools the session needs, with the Debian packages that have them (`.ci/run` installs them).
pub const SESSION_TOOLS: &[(&str, &str)] = &[
    ("Xvfb", "xvfb"),
    ("xfce4-panel", "xfce4-panel"),
    ("dunst", "dunst"),
    ("dbus-daemon", "dbus-daemon"),
    ("dbus-send", "dbus-bin"),
    ("gdbus", "libglib2.0-bin"),
    ("setsid", "util-linux"),
];

/// Tools [`Desktop::look`] needs besides: it clicks, screenshots and reads the screen.
pub const LOOK_TOOLS: &[(&str, &str)] = &[
    ("xwininfo", "x11-utils"),
    ("xprop", "x11-utils"),
    ("xdotool", "xdotool"),
    ("import", "imagemagick"),
    ("convert", "imagemagick"),
    ("tesseract", "tesseract-ocr"),
];

pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// The tools in `needed` that are not installed, with their packages.
pub fn missing(needed: &[&[(&str, &str)]]) -> Vec<String> {
    needed
        .iter()
        .flat_map(|list| list.iter())
        .filter(|(t, _)| !have(t))
        .map(|(t, package)| format!("{t} ({package})"))
        .collect()
}

pub struct Desktop {
    /// DISPLAY, HOME, XDG_*, DBUS_SESSION_BUS_ADDRESS of the session: give them to the app.
    pub env: Vec<(String, String)>,
    /// Process groups started here, stopped in reverse order.
    groups: Vec<Child>,
    bus_pid: Option<u32>,
    dir: tempfile::TempDir,
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for c in self.groups.iter_mut().rev() {
            stop_group(c);
        }
        if let Some(pid) = self.bus_pid {
            // dbus-daemon --fork calls setsid(): its group also holds every service it
            // activated (xfconfd, …).
            let _ = Command::new("kill")
                .args(["-s", "TERM", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// SIGTERM to the child's process group, SIGKILL if it outlives 3 s.
pub fn stop_group(c: &mut Child) {
    // procps' kill signals nothing with `-TERM -PGID` (and says nothing): `-s SIG -- -PGID`.
    let group = format!("-{}", c.id());
    let signal = |sig: &str| {
        Command::new("kill")
            .args(["-s", sig, "--", &group])
            .stderr(Stdio::null())
            .status()
    };
    let _ = signal("TERM");
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end && matches!(c.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if matches!(c.try_wait(), Ok(None)) {
        let _ = signal("KILL");
    }
    let _ = c.wait();
}

fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const PANEL_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array"><value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="32"/>
      <property name="icon-size" type="uint" value="24"/>
      <property name="plugin-ids" type="array"><value type="int" value="1"/><value type="int" value="2"/></property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="separator"><property name="expand" type="bool" value="true"/></property>
    <property name="plugin-2" type="string" value="systray">
      <property name="square-icons" type="bool" value="true"/>
      <property name="hide-new-items" type="bool" value="false"/>
    </property>
  </property>
</channel>
"#;

/// Notifications bottom-right, white on blue, up for `timeout` seconds.
fn dunstrc(timeout: u32) -> String {
    format!(
        "[global]\n    origin = bottom-right\n    offset = 10x10\n    width = 360\n    font = DejaVu Sans 10\n    frame_width = 2\n[urgency_low]\n    timeout = {timeout}\n[urgency_normal]\n    background = \"#285577\"\n    foreground = \"#ffffff\"\n    timeout = {timeout}\n[urgency_critical]\n    timeout = 0\n"
    )
}

/// One round of looking at the tray: what D-Bus says and what the screen shows.
pub struct Round {
    /// SNI properties + dbusmenu layout (`== item SERVICE PATH`, `== menu PATH` headers).
    pub dbus: String,
    /// OCR of the open menu (and the submenu, when one was opened).
    pub ocr: String,
}

impl Round {
    /// On D-Bus as a label (`'text'`) and, whitespace aside, on screen.
    pub fn shows(&self, text: &str) -> (bool, bool) {
        let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        (
            self.dbus.contains(&format!("'{text}'")),
            squeeze(&self.ocr).contains(&squeeze(text)),
        )
    }
}

impl Desktop {
    /// Starts the session, or says which tools are missing. `notify_secs`: how long dunst keeps
    /// a notification up.
    pub fn start(notify_secs: u32) -> Result<Desktop, String> {
        let missing = missing(&[SESSION_TOOLS]);
        if !missing.is_empty() {
            return Err(format!("missing {}", missing.join(", ")));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let t = dir.path();
        let mut groups = Vec::new();
        // A free display: the first without a lock file whose server then starts.
        let mut display = None;
        for n in 90..400 {
            if Path::new(&format!("/tmp/.X{n}-lock")).exists() {
                continue;
            }
            let mut xvfb = Command::new("setsid")
                .args(["Xvfb", &format!(":{n}"), "-screen", "0", "1024x768x24"])
                .args(["-nolisten", "tcp", "-noreset"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("Xvfb: {e}"))?;
            let up = wait_for(10, || {
                Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                    || !matches!(xvfb.try_wait(), Ok(None))
            });
            if up && matches!(xvfb.try_wait(), Ok(None)) {
                groups.push(xvfb);
                display = Some(n);
                break;
            }
            stop_group(&mut xvfb);
        }
        let n = display.ok_or("no free X display")?;
        let home = t.join("home");
        let cfg = home.join(".config");
        let runtime = t.join("runtime");
        for d in [
            cfg.join("xfce4/xfconf/xfce-perchannel-xml"),
            cfg.join("dunst"),
            home.join(".cache"),
            runtime.clone(),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        }
        std::fs::write(
            cfg.join("xfce4/xfconf/xfce-perchannel-xml/xfce4-panel.xml"),
            PANEL_XML,
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(cfg.join("dunst/dunstrc"), dunstrc(notify_secs))
            .map_err(|e| e.to_string())?;
        let s = |p: &Path| p.display().to_string();
        let mut env: Vec<(String, String)> = vec![
            ("DISPLAY".into(), format!(":{n}")),
            ("HOME".into(), s(&home)),
            ("XDG_CONFIG_HOME".into(), s(&cfg)),
            ("XDG_CACHE_HOME".into(), s(&home.join(".cache"))),
            ("XDG_DATA_HOME".into(), s(&home.join(".local/share"))),
            ("XDG_RUNTIME_DIR".into(), s(&runtime)),
            ("NO_AT_BRIDGE".into(), "1".into()),
        ];
        // The bus gets the session's DISPLAY and HOME: services it activates inherit them.
        let bus = Command::new("dbus-daemon")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .envs(env.iter().cloned())
            .args(["--session", "--fork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", t.join("bus").display()))
            .args(["--print-address=1", "--print-pid=1"])
            .output()
            .map_err(|e| format!("dbus-daemon: {e}"))?;
        let out = String::from_utf8_lossy(&bus.stdout).into_owned();
        let mut lines = out.lines();
        let address = lines.next().unwrap_or("").to_owned();
        let bus_pid = lines.next().and_then(|p| p.trim().parse().ok());
        if address.is_empty() {
            return Err(format!("dbus-daemon did not start: {bus:?}"));
        }
        env.push(("DBUS_SESSION_BUS_ADDRESS".into(), address));
        let mut desktop = Desktop {
            env,
            groups,
            bus_pid,
            dir,
        };
        let log = desktop.dir.path().join("panel.log");
        let panel = desktop.spawn(
            Command::new("xfce4-panel").args(["--disable-wm-check", "--sm-client-disable"]),
            &log,
        )?;
        desktop.groups.push(panel);
        if !wait_for(20, || desktop.has_owner("org.kde.StatusNotifierWatcher")) {
            return Err(format!(
                "no StatusNotifierWatcher: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        let log = desktop.dir.path().join("dunst.log");
        let rc = s(&cfg.join("dunst/dunstrc"));
        let dunst = desktop.spawn(Command::new("dunst").args(["-config", &rc]), &log)?;
        desktop.groups.push(dunst);
        if !wait_for(10, || desktop.has_owner("org.freedesktop.Notifications")) {
            return Err(format!(
                "dunst did not take org.freedesktop.Notifications: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        Ok(desktop)
    }

    /// Starts `cmd` in the session, in its own process group, output to `log`. The caller owns
    /// the child (stop it with [`stop_group`]).
    pub fn spawn(&self, cmd: &mut Command, log: &Path) -> Result<Child, String> {
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let program = cmd.get_program().to_owned();
        let mut c = Command::new("setsid");
        c.arg(&program)
            .args(cmd.get_args())
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("DISPLAY");
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{program:?}: {e}"))
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("DISPLAY")
            .envs(self.env.iter().cloned());
        c
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        self.cmd(program)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn has_owner(&self, name: &str) -> bool {
        self.run(
            "dbus-send",
            &[
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                &format!("string:{name}"),
            ],
        )
        .contains("boolean true")
    }

    /// The StatusNotifierItems registered with the host (`SERVICE/PATH`).
    pub fn items(&self) -> Vec<String> {
        let out = self.run(
            "gdbus",
            &[
                "call",
                "--session",
                "--dest",
                "org.kde.StatusNotifierWatcher",
                "--object-path",
                "/StatusNotifierWatcher",
                "--method",
                "org.freedesktop.DBus.Properties.Get",
                "org.kde.StatusNotifierWatcher",
                "RegisteredStatusNotifierItems",
            ],
        );
        out.split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    /// Waits until an item is registered (the icon is in the tray).
    pub fn wait_item(&self, secs: u64) -> bool {
        wait_for(secs, || !self.items().is_empty())
    }

    /// SNI properties and the dbusmenu layout of every registered item.
    pub fn dump(&self) -> String {
        let mut text = String::new();
        for it in self.items() {
            let (svc, obj) = match it.split_once('/') {
                Some((s, o)) => (s.to_owned(), format!("/{o}")),
                None => (it.clone(), "/StatusNotifierItem".to_owned()),
            };
            text.push_str(&format!("== item {svc} {obj}\n"));
            let props = self.run(
                "gdbus",
                &[
                    "call",
                    "--session",
                    "--dest",
                    &svc,
                    "--object-path",
                    &obj,
                    "--method",
                    "org.freedesktop.DBus.Properties.GetAll",
                    "org.kde.StatusNotifierItem",
                ],
            );
            // Icon pixmaps are long byte arrays that say nothing here.
            let mut rest = props.as_str();
            while let Some(at) = rest.find("[byte ") {
                text.push_str(&rest[..at]);
                text.push_str("[bytes]");
                rest = rest[at..].find(']').map_or("", |e| &rest[at + e + 1..]);
            }
            text.push_str(rest);
            let menu = self.run(
                "gdbus",
                &[
                    "call",
                    "--session",
                    "--dest",
                    &svc,
                    "--object-path",
                    &obj,
                    "--method",
                    "org.freedesktop.DBus.Properties.Get",
                    "org.kde.StatusNotifierItem",
                    "Menu",
                ],
            );
            if let Some(path) = menu.split('\'').nth(1).filter(|p| p.starts_with('/')) {
                text.push_str(&format!("== menu {path}\n"));
                text.push_str(&self.run(
                    "gdbus",
                    &[
                        "call",
                        "--session",
                        "--dest",
                        &svc,
                        "--object-path",
                        path,
                        "--method",
                        "com.canonical.dbusmenu.GetLayout",
                        "--",
                        "0",
                        "-1",
                        "[\"label\",\"enabled\",\"type\",\"children-display\",\"toggle-type\",\"toggle-state\"]",
                    ],
                ));
            }
        }
        text
    }

    /// Clicks the menu item labelled `label` through dbusmenu's `Event`, as the tray host does
    /// when the user clicks it.
    pub fn click(&self, label: &str) -> Result<(), String> {
        let dump = self.dump();
        let svc = dump
            .lines()
            .find_map(|l| l.strip_prefix("== item "))
            .and_then(|l| l.split_whitespace().next())
            .ok_or("no item registered")?
            .to_owned();
        let path = dump
            .lines()
            .find_map(|l| l.strip_prefix("== menu "))
            .ok_or("the item has no menu")?
            .trim()
            .to_owned();
        let at = dump
            .find(&format!("{{'label': <'{label}'>"))
            .ok_or_else(|| format!("no {label:?} in the menu:\n{dump}"))?;
        // Each item is `(ID, {'label': …}, [children])`.
        let id: String = dump[..at]
            .trim_end_matches(", ")
            .rsplit('(')
            .next()
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let out = self
            .cmd("gdbus")
            .args(["call", "--session", "--dest", &svc, "--object-path", &path])
            .args(["--method", "com.canonical.dbusmenu.Event"])
            .args([id.as_str(), "clicked", "<int32 0>", "0"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("click {label} (id {id}): {out:?}"))
        }
    }

    /// A screenshot of the whole screen.
    pub fn screenshot(&self, png: &Path) -> Result<(), String> {
        let ok = self
            .cmd("import")
            .args(["-window", "root"])
            .arg(png)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(())
        } else {
            Err(format!("cannot take {}", png.display()))
        }
    }

    fn toplevels(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .run("xwininfo", &["-root", "-children"])
            .lines()
            .filter(|l| l.starts_with("     0x"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        v.sort();
        v
    }

    /// A mapped window's (width, height, x, y) on screen.
    fn geometry(&self, id: &str) -> Option<Geometry> {
        let info = self.run("xwininfo", &["-id", id]);
        let field = |name: &str| {
            info.lines()
                .find(|l| l.trim_start().starts_with(name))
                .and_then(|l| l.split_whitespace().last())
                .map(str::to_owned)
        };
        if field("Map State:")? != "IsViewable" {
            return None;
        }
        let n = |name: &str| field(name).and_then(|v| v.parse::<i64>().ok());
        Some(Geometry {
            w: n("Width:")?,
            h: n("Height:")?,
            x: n("Absolute upper-left X:")?,
            y: n("Absolute upper-left Y:")?,
        })
    }

    /// Visible, on-screen, not-tiny top-level windows.
    fn visible(&self) -> Vec<String> {
        self.toplevels()
            .into_iter()
            .filter(|w| {
                self.geometry(w)
                    .is_some_and(|g| g.x >= 0 && g.y >= 0 && g.w >= 40 && g.h >= 20)
            })
            .collect()
    }

    /// The largest popup menu that appeared since `before` (GTK types menus
    /// `_NET_WM_WINDOW_TYPE_POPUP_MENU`, tooltips `…_TOOLTIP`).
    fn new_menu(&self, before: &[String]) -> Option<(String, Geometry)> {
        self.visible()
            .into_iter()
            .filter(|w| !before.contains(w))
            .filter(|w| {
                self.run("xprop", &["-id", w, "_NET_WM_WINDOW_TYPE"])
                    .contains("_MENU")
            })
            .filter_map(|w| self.geometry(&w).map(|g| (w, g)))
            .max_by_key(|(_, g)| g.w * g.h)
    }

    fn wait_menu(&self, before: &[String]) -> Option<(String, Geometry)> {
        let mut found = None;
        wait_for(4, || {
            found = self.new_menu(before);
            found.is_some()
        });
        found
    }

    /// Waits until the area shows more than four colours and stops changing (painted).
    fn wait_painted(&self, g: Geometry) {
        let mut prev = String::new();
        for _ in 0..40 {
            let cur = self
                .cmd("sh")
                .arg("-c")
                .arg(format!(
                    "import -window root png:- | convert - -crop {} +repage -format '%k %#' info:",
                    g.crop()
                ))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let colours: u64 = cur
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if colours > 4 && cur == prev {
                return;
            }
            prev = cur;
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// The centre of the rightmost icon in the panel's systray plugin.
    fn icon_xy(&self) -> Option<(i64, i64)> {
        let tree = self.run("xwininfo", &["-root", "-tree"]);
        let line = tree.lines().find(|l| {
            l.starts_with("        ") && l.contains("\"wrapper-2.0\": (\"wrapper-2.0\"")
        })?;
        let mut f = line.split_whitespace().rev();
        let abs = f.next()?; // +X+Y
        let size = f.next()?; // WxH+x+y
        let (w, rest) = size.split_once('x')?;
        let h = rest.split('+').next()?;
        let mut xy = abs.trim_start_matches('+').split('+');
        let (ax, ay): (i64, i64) = (xy.next()?.parse().ok()?, xy.next()?.parse().ok()?);
        let (w, h): (i64, i64) = (w.parse().ok()?, h.parse().ok()?);
        Some((ax + w - h / 2, ay + h / 2))
    }

    fn mouse(&self, args: &[&str]) {
        let _ = self.cmd("xdotool").args(args).status();
    }

    /// OCR of an area of a screenshot, two ways (grey, and black-and-white): menus read better
    /// one way or the other.
    pub fn ocr(&self, png: &Path, g: Geometry) -> String {
        let a = png.with_extension("ocr-a.png");
        let b = png.with_extension("ocr-b.png");
        let _ = self
            .cmd("convert")
            .arg(png)
            .args([
                "-crop",
                &g.crop(),
                "+repage",
                "-colorspace",
                "Gray",
                "-resize",
                "300%",
            ])
            .arg(&a)
            .status();
        let _ = self
            .cmd("convert")
            .arg(&a)
            .args(["-threshold", "80%"])
            .arg(&b)
            .status();
        [a, b]
            .iter()
            .map(|p| {
                self.cmd("tesseract")
                    .arg(p)
                    .args(["-", "--psm", "6"])
                    .stderr(Stdio::null())
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Moves the pointer onto `word` as OCR finds it in the area (opens a submenu).
    fn hover_word(&self, png: &Path, g: Geometry, word: &str) -> bool {
        let h = png.with_extension("ocr-h.png");
        let _ = self
            .cmd("convert")
            .arg(png)
            .args([
                "-crop",
                &g.crop(),
                "+repage",
                "-colorspace",
                "Gray",
                "-resize",
                "300%",
            ])
            .arg(&h)
            .status();
        let tsv = self.run(
            "tesseract",
            &[&h.display().to_string(), "-", "--psm", "6", "tsv"],
        );
        let hit = tsv.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 12 && f[11].contains(word)).then(|| {
                let n = |i: usize| f[i].parse::<i64>().unwrap_or(0);
                (n(6), n(7), n(8), n(9))
            })
        });
        match hit {
            Some((left, top, width, height)) => {
                let x = g.x + (left + width / 2) / 3;
                let y = g.y + (top + height / 2) / 3;
                self.mouse(&["mousemove", &x.to_string(), &y.to_string()]);
                true
            }
            None => false,
        }
    }

    /// Looks at the tray as a user would: a screenshot (`NAME-tray.png`), D-Bus
    /// (`NAME-dbus.txt`), then a right-click on the icon, the open menu (`NAME-menu.png`) and,
    /// with `hover`, the submenu under that word (`NAME-submenu.png`), read by OCR
    /// (`NAME-ocr.txt`). The menu is closed again.
    pub fn look(&self, out: &Path, name: &str, hover: Option<&str>) -> Result<Round, String> {
        let file = |suffix: &str| -> PathBuf { out.join(format!("{name}-{suffix}")) };
        let aside = ["mousemove", "1", "384"];
        self.mouse(&aside);
        std::thread::sleep(Duration::from_millis(300));
        self.screenshot(&file("tray.png"))?;
        let dbus = self.dump();
        std::fs::write(file("dbus.txt"), &dbus).map_err(|e| e.to_string())?;
        let (x, y) = self
            .icon_xy()
            .ok_or("the systray plugin's icon window is not there")?;
        let before = self.visible();
        self.mouse(&["mousemove", &x.to_string(), &y.to_string(), "click", "3"]);
        let (_, g) = self.wait_menu(&before).ok_or("the menu did not open")?;
        // The pointer off the menu (no highlight) and off the icon (no tooltip over the menu).
        self.mouse(&aside);
        self.wait_painted(g);
        let menu = file("menu.png");
        self.screenshot(&menu)?;
        let mut ocr = self.ocr(&menu, g);
        if let Some(word) = hover {
            let before = self.visible();
            if self.hover_word(&menu, g, word) {
                let sub = self.wait_menu(&before);
                if let Some((_, sg)) = sub {
                    self.wait_painted(sg);
                }
                let png = file("submenu.png");
                self.screenshot(&png)?;
                if let Some((_, sg)) = sub {
                    ocr.push('\n');
                    ocr.push_str(&self.ocr(&png, sg));
                }
            }
        }
        for _ in 0..2 {
            let _ = self.cmd("xdotool").args(["key", "Escape"]).status();
            std::thread::sleep(Duration::from_millis(150));
        }
        std::fs::write(file("ocr.txt"), &ocr).map_err(|e| e.to_string())?;
        Ok(Round { dbus, ocr })
    }
}

/// A screen area: size and top-left corner.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub w: i64,
    pub h: i64,
    pub x: i64,
    pub y: i64,
}

impl Geometry {
    fn crop(&self) -> String {
        format!("{}x{}+{}+{}", self.w, self.h, self.x, self.y)
    }
}
