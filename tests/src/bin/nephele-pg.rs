//! Starts a PostgreSQL server for `cargo xtask bench service` (as the
//! tests start theirs): `nephele-pg DIR` makes a cluster in DIR, prints
//! the address directories take (`--database`) and keeps the server until
//! its standard input closes.

use std::io::Read as _;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .context("usage: nephele-pg DIR")?;
    let pg = nephele_e2e::postgres::Postgres::start(std::path::Path::new(&dir))?;
    println!("{}", pg.url());
    // Until whoever started it is done (or gone).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(pg);
    Ok(())
}
