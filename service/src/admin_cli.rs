//! `nephele-server admin`: the administrator's commands, each one request
//! to the directory's HTTPS API (`POST /v1/admin`) with the key from
//! `--key-file`. Nothing here opens the database.

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use nephele_api::DirectoryClient;
use nephele_api::admin::{AdminAnswer, AdminRequest, EntryKind, EntrySpec, MAX_ICON_BYTES};
use nephele_service::directory::{ADMIN_KEY_FILE, split_user};

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The directory's URL.
    #[arg(long, value_name = "URL", default_value = "https://127.0.0.1:7480")]
    directory: String,
    /// CA certificate (PEM) of the directory's HTTPS certificate
    /// (`STATE_DIR/ca.pem` for a generated one). Default: what the system
    /// trusts.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// The administrator's key: `STATE_DIR/admin.key`, which the directory
    /// writes on its first start.
    #[arg(long, value_name = "PATH")]
    key_file: PathBuf,
    /// Print the answer as JSON (for scripts).
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    what: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tenants: organisations whose users and catalogs are kept apart.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// User accounts (`NAME@TENANT`; a bare name is in tenant `default`).
    #[command(subcommand)]
    User(UserCmd),
    /// Catalog entries: desktops and applications users may open.
    #[command(subcommand)]
    Entry(EntryCmd),
    /// Let a user open a catalog entry.
    Grant {
        /// `NAME@TENANT`.
        user: String,
        /// Entry id.
        entry: String,
    },
    /// Take a catalog entry from a user.
    Revoke {
        /// `NAME@TENANT`.
        user: String,
        /// Entry id.
        entry: String,
    },
    /// Gateways registered with the directory.
    #[command(subcommand)]
    Gateway(GatewayCmd),
    /// Desktop hosts sessions go to.
    #[command(subcommand)]
    Host(HostCmd),
    /// Open sessions.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Messages users see in their client.
    #[command(subcommand)]
    Notice(NoticeCmd),
    /// The audit log: every change, who made it and from where, newest first.
    Audit {
        /// Most records shown.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Replace the administrator's key; the new one is written to --key-file.
    RotateKey,
}

#[derive(Debug, Subcommand)]
enum TenantCmd {
    /// Add a tenant.
    Add {
        /// Id (as in `user@ID`).
        id: String,
        /// What people see (default: the id).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Add a user; the password is asked for on the terminal.
    Add {
        /// `NAME@TENANT`.
        user: String,
        /// A catalog entry the user may open (repeat for several).
        #[arg(long = "grant", value_name = "ENTRY")]
        grants: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password.
    Password {
        /// `NAME@TENANT`.
        user: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: no sign-in, their sessions end.
    Disable {
        /// `NAME@TENANT`.
        user: String,
    },
    /// Enable a disabled user.
    Enable {
        /// `NAME@TENANT`.
        user: String,
    },
    /// Remove a user; their sessions end.
    Remove {
        /// `NAME@TENANT`.
        user: String,
    },
    /// List a tenant's users.
    List {
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum EntryCmd {
    /// Add or replace a catalog entry: a desktop, or with `-- COMMAND…` an
    /// application started for each session.
    Add {
        /// Id (letters, digits, `-`, `_`, `.`).
        id: String,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// What people see.
        #[arg(long)]
        name: String,
        /// A PNG icon (at most 64 KiB).
        #[arg(long, value_name = "PNG")]
        icon: Option<PathBuf>,
        /// Most sessions of this entry open at once in the tenant.
        #[arg(long, value_name = "N")]
        max_sessions: Option<u32>,
        /// For an application: the program and its arguments, after `--`.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Remove an entry, and every grant of it.
    Remove {
        /// Entry id.
        id: String,
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// List a tenant's catalog.
    List {
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum GatewayCmd {
    /// List gateways and whether they answer.
    List,
    /// Forget a gateway and the key it was issued.
    Remove {
        /// Gateway id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum HostCmd {
    /// List hosts, their sites and their sessions.
    List,
    /// Forget a host and the key it was issued (taken out of service).
    Remove {
        /// Host id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum SessionCmd {
    /// List open sessions.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// End a session: no token of it opens the desktop again.
    End {
        /// Session id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum NoticeCmd {
    /// Post a message to a tenant's users, or one user.
    Add {
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Only this user (name within the tenant).
        #[arg(long)]
        user: Option<String>,
        /// Shown for this many hours (default: until removed).
        #[arg(long, value_name = "HOURS")]
        hours: Option<u64>,
        /// The message.
        message: String,
    },
    /// List notices.
    List,
    /// Remove a notice.
    Remove {
        /// Notice id.
        id: String,
    },
}

/// `NAME@TENANT` → (tenant, name).
fn account(s: &str) -> (String, String) {
    let (u, t) = split_user(s);
    (t.to_string(), u.to_string())
}

/// The password: the first line of standard input, or asked twice on the
/// terminal.
fn password(from_stdin: bool, whose: &str) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            bail!("standard input held no password");
        }
        return Ok(p);
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt).context(
            "no terminal to ask for the password on: give it on standard input with --password-stdin",
        )
    };
    let first = ask(&format!("Password for {whose}: "))?;
    if ask("Again: ")? != first {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

fn request(what: Command) -> Result<AdminRequest> {
    Ok(match what {
        Command::Tenant(TenantCmd::Add { id, name }) => AdminRequest::TenantAdd {
            name: name.unwrap_or_else(|| id.clone()),
            tenant: id,
        },
        Command::Tenant(TenantCmd::List) => AdminRequest::TenantList,
        Command::User(UserCmd::Add {
            user,
            grants,
            password_stdin,
        }) => {
            let (tenant, user) = account(&user);
            let password = password(password_stdin, &format!("{user}@{tenant}"))?;
            AdminRequest::UserAdd {
                tenant,
                user,
                password,
                grants,
            }
        }
        Command::User(UserCmd::Password {
            user,
            password_stdin,
        }) => {
            let (tenant, user) = account(&user);
            let password = password(password_stdin, &format!("{user}@{tenant}"))?;
            AdminRequest::UserPassword {
                tenant,
                user,
                password,
            }
        }
        Command::User(UserCmd::Disable { user }) => {
            let (tenant, user) = account(&user);
            AdminRequest::UserDisable {
                tenant,
                user,
                disabled: true,
            }
        }
        Command::User(UserCmd::Enable { user }) => {
            let (tenant, user) = account(&user);
            AdminRequest::UserDisable {
                tenant,
                user,
                disabled: false,
            }
        }
        Command::User(UserCmd::Remove { user }) => {
            let (tenant, user) = account(&user);
            AdminRequest::UserRemove { tenant, user }
        }
        Command::User(UserCmd::List { tenant }) => AdminRequest::UserList { tenant },
        Command::Entry(EntryCmd::Add {
            id,
            tenant,
            name,
            icon,
            max_sessions,
            command,
        }) => {
            let icon_png = icon.map(|p| read_icon(&p)).transpose()?;
            AdminRequest::EntryPut {
                tenant,
                entry: EntrySpec {
                    id,
                    name,
                    kind: if command.is_empty() {
                        EntryKind::Desktop
                    } else {
                        EntryKind::App
                    },
                    icon_png,
                    command,
                    max_sessions,
                },
            }
        }
        Command::Entry(EntryCmd::Remove { id, tenant }) => AdminRequest::EntryRemove { tenant, id },
        Command::Entry(EntryCmd::List { tenant }) => AdminRequest::EntryList { tenant },
        Command::Grant { user, entry } => {
            let (tenant, user) = account(&user);
            AdminRequest::Grant {
                tenant,
                user,
                entry,
            }
        }
        Command::Revoke { user, entry } => {
            let (tenant, user) = account(&user);
            AdminRequest::Revoke {
                tenant,
                user,
                entry,
            }
        }
        Command::Gateway(GatewayCmd::List) => AdminRequest::GatewayList,
        Command::Gateway(GatewayCmd::Remove { id }) => AdminRequest::GatewayRemove { id },
        Command::Host(HostCmd::List) => AdminRequest::HostList,
        Command::Host(HostCmd::Remove { id }) => AdminRequest::HostRemove { id },
        Command::Session(SessionCmd::List { tenant }) => AdminRequest::SessionList { tenant },
        Command::Session(SessionCmd::End { id }) => AdminRequest::SessionEnd { id },
        Command::Notice(NoticeCmd::Add {
            tenant,
            user,
            hours,
            message,
        }) => AdminRequest::NoticeAdd {
            tenant,
            user,
            message,
            until_unix: hours.map(|h| nephele_service::token::unix_now() + h * 3600),
        },
        Command::Notice(NoticeCmd::List) => AdminRequest::NoticeList,
        Command::Notice(NoticeCmd::Remove { id }) => AdminRequest::NoticeRemove { id },
        Command::Audit { limit } => AdminRequest::Audit { limit },
        Command::RotateKey => AdminRequest::KeyRotate,
    })
}

fn read_icon(path: &std::path::Path) -> Result<String> {
    use base64::Engine as _;
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the icon {}", path.display()))?;
    if bytes.len() > MAX_ICON_BYTES {
        bail!(
            "the icon {} is {} KiB; at most {} KiB is kept",
            path.display(),
            bytes.len() / 1024,
            MAX_ICON_BYTES / 1024
        );
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub fn run(a: AdminArgs) -> Result<()> {
    let key = std::fs::read_to_string(&a.key_file).with_context(|| {
        format!(
            "reading the administrator's key {} (the directory writes it to STATE_DIR/{ADMIN_KEY_FILE} on its first start)",
            a.key_file.display()
        )
    })?;
    let roots = match &a.ca {
        Some(p) => nephele_api::trust::read_cert_pem(p)
            .with_context(|| format!("loading the directory CA {}", p.display()))?,
        None => Vec::new(),
    };
    let client = DirectoryClient::new(&a.directory, &roots)?;
    let rotate = matches!(a.what, Command::RotateKey);
    let req = request(a.what)?;
    let answer = client.admin(key.trim(), &req)?;
    if rotate {
        // The old key opens nothing now: keep the new one, or show it.
        if let Err(e) = nephele_platform::fs::write_private(&a.key_file, answer.message.as_bytes())
        {
            println!("{}", answer.message);
            bail!(
                "the key was replaced but {} could not be written ({e}); the new key is printed above",
                a.key_file.display()
            );
        }
        eprintln!(
            "the administrator's key is replaced; the new one is in {}",
            a.key_file.display()
        );
        return Ok(());
    }
    print(&answer, a.json)
}

fn print(answer: &AdminAnswer, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
        return Ok(());
    }
    if answer.columns.is_empty() {
        println!("{}", answer.message);
        return Ok(());
    }
    let widths: Vec<usize> = (0..answer.columns.len())
        .map(|i| {
            std::iter::once(&answer.columns[i])
                .chain(answer.rows.iter().filter_map(|r| r.get(i)))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.trim_end().to_string()
    };
    println!("{}", line(&answer.columns));
    for r in &answer.rows {
        println!("{}", line(r));
    }
    if answer.rows.is_empty() {
        println!("(none)");
    }
    Ok(())
}
