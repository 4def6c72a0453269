//! `callsync proxy password`: the proxy password, into the OS credential store.

use std::io::IsTerminal;

use crate::cli::{exit, Ctx};

pub fn password(ctx: &Ctx) -> anyhow::Result<u8> {
    let (layered, data) = (ctx.layered, ctx.data);
    let p = &layered.config.proxy;
    if p.user.is_empty() || p.url.is_empty() {
        eprintln!("callsync: set proxy.url and proxy.user first (see `callsync config example`)");
        return Ok(exit::USAGE);
    }
    let pw = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {} at {}: ", p.user, p.url))?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    let where_ = callsync_salesforce::auth::secret_set(
        data.root(),
        &callsync_salesforce::auth::proxy_secret_name(&p.user, &p.url),
        &pw,
    )?;
    outln!("proxy password stored in {where_}");
    Ok(exit::OK)
}
