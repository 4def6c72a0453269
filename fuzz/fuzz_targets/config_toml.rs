//! A user configuration file of any content: no panic; an error names what is wrong.
#![no_main]
use libfuzzer_sys::fuzz_target;

thread_local! {
    static DIR: tempfile::TempDir = tempfile::tempdir().expect("a temporary folder");
}

fuzz_target!(|data: &[u8]| {
    DIR.with(|d| {
        let path = d.path().join("user.toml");
        std::fs::write(&path, data).expect("write");
        let opts = callsync_config::LoadOptions {
            managed_file: None,
            user_file: Some(path),
            user_file_required: true,
            policy: Default::default(),
            settings_file: None,
            settings_values: None,
            env: Vec::new(),
            cli: Vec::new(),
        };
        if let Err(e) = callsync_config::load(&opts) {
            assert!(!e.to_string().is_empty());
        }
    });
});
