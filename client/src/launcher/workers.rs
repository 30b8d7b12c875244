//! The launcher's work off the window's thread: checking a service (and
//! fetching the certificate it presents when this computer does not trust
//! it) and signing in, each on a thread of its own whose answer comes back
//! as an [`Outcome`].

use nephele_api::client::DirClientError;
use nephele_api::{DirectoryClient, inspect};

use super::{Launcher, Outcome, Untrusted, kept, words};

impl Launcher {
    /// Asks the service something harmless over a trusted connection, on a
    /// thread of its own; when this computer does not trust its
    /// certificate, fetches the chain it presents for the Trust page.
    pub(super) fn check(&mut self) {
        let roots = self.roots_for(&self.url);
        let was = self.pinned_fingerprint();
        let dir = match DirectoryClient::new(&self.url, &roots) {
            Ok(d) => d,
            Err(e) => return self.say(words::directory_problem(&e)),
        };
        self.attempt += 1;
        self.busy = true;
        self.problem = None;
        let (attempt, url, user) = (self.attempt, self.url.clone(), self.user.clone());
        let notify = self.notify.clone();
        let spawned = std::thread::Builder::new()
            .name("nephele-check".into())
            .spawn(move || {
                notify(match check_service(&dir, &url, attempt, was) {
                    Outcome::Trusted { attempt, .. } => Outcome::Trusted {
                        attempt,
                        kept: kept::read(&url, &user),
                    },
                    other => other,
                });
            });
        if let Err(e) = spawned {
            self.busy = false;
            tracing::error!(error = %e, "cannot start the check thread");
            self.say("Nephele could not start. Close it and try again.".into());
        }
    }

    /// Signs in on a thread of its own; the answer comes as an [`Outcome`].
    pub(super) fn sign_in(&mut self) {
        if self.busy {
            return;
        }
        self.user = self.user.trim().to_string();
        if self.user.is_empty() || self.password.is_empty() {
            let which = if self.user.is_empty() {
                "your user name"
            } else {
                "your password"
            };
            self.say(format!("Type {which}, then press Enter."));
            return;
        }
        let dir = match DirectoryClient::new(&self.url, &self.roots_for(&self.url)) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "the directory's address");
                self.say(words::directory_problem(&e));
                return;
            }
        };
        self.attempt += 1;
        self.busy = true;
        self.problem = None;
        self.dir = Some(dir.clone());
        let (attempt, user, password) = (self.attempt, self.user.clone(), self.password.clone());
        let (url, was) = (self.url.clone(), self.pinned_fingerprint());
        let (keep, kept_already) = (self.keep, self.from_keychain);
        let notify = self.notify.clone();
        let spawned = std::thread::Builder::new()
            .name("nephele-signin".into())
            .spawn(move || {
                let known = kept::device(&url, &user);
                if let Some(d) = known.clone() {
                    tracing::info!(%user, "signing in as a device known to the account");
                    dir.set_device(&user, d);
                }
                let signed = dir.sign_in(&user, &password);
                if let Some(d) = dir.device(&user).filter(|d| Some(d) != known.as_ref()) {
                    kept::keep_device(&url, &user, &d);
                }
                let outcome = match signed.and_then(|s| dir.catalog(&s.token)) {
                    Ok(c) => Outcome::SignedIn {
                        attempt,
                        catalog: c.desktops,
                        notices: c.notices,
                        note: if kept_already {
                            None
                        } else if keep {
                            kept::keep(&url, &user, &password)
                        } else {
                            kept::forget(&url, &user);
                            None
                        },
                    },
                    // The certificate changed since the page opened.
                    Err(e) if words::is_untrusted(&e) => check_service(&dir, &url, attempt, was),
                    Err(e) => {
                        tracing::warn!(url = %dir.url(), error = %e, "sign-in");
                        if matches!(e, DirClientError::Refused { status: 401, .. }) {
                            // A kept password that no longer works goes.
                            kept::forget(&url, &user);
                        }
                        Outcome::Refused {
                            attempt,
                            problem: words::directory_problem(&e),
                        }
                    }
                };
                notify(outcome);
            });
        if let Err(e) = spawned {
            self.busy = false;
            tracing::error!(error = %e, "cannot start the sign-in thread");
            self.say("Nephele could not start signing in. Close it and try again.".into());
        }
    }
}

/// The worker's check of a service: trusted, untrusted (with what it
/// presents), or unreachable in words.
fn check_service(dir: &DirectoryClient, url: &str, attempt: u64, was: Option<String>) -> Outcome {
    let refused = |problem| Outcome::Refused { attempt, problem };
    match dir.public_key() {
        Ok(_) => Outcome::Trusted {
            attempt,
            kept: None,
        },
        Err(e @ DirClientError::Unreachable { .. }) if words::is_untrusted(&e) => {
            tracing::info!(%url, error = %e, "not trusted; fetching the certificate it presents");
            match inspect::presented_chain(url, std::time::Duration::from_secs(5)) {
                // The authority at the top of the chain: what signs the
                // directory's and the gateways' certificates alike.
                Ok(chain) if !chain.is_empty() => {
                    let ca = chain[chain.len() - 1].clone();
                    let fingerprint = inspect::fingerprint(&ca);
                    let was = was.filter(|w| *w != fingerprint);
                    Outcome::Untrusted {
                        attempt,
                        cert: Untrusted {
                            ca,
                            fingerprint,
                            was,
                        },
                    }
                }
                inspected => {
                    tracing::warn!(%url, outcome = ?inspected.map(|c| c.len()), "inspecting the certificate");
                    refused(words::directory_problem(&e))
                }
            }
        }
        Err(e) => {
            tracing::warn!(%url, error = %e, "checking the service");
            refused(words::directory_problem(&e))
        }
    }
}
