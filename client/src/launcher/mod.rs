//! The launcher: from the service's address to a desktop, in the window.
//!
//! The pages ([`Page`]): add a service, trust its certificate (when this
//! computer does not), sign in, the catalog of desktops,
//! connecting (the stages as they happen), the session itself, and a lost
//! connection. This module is the launcher's state and what each action
//! does, without a window: the window draws it ([`view`]) and tells it
//! what the session does; signing in runs on a thread of its own and comes
//! back as an [`Outcome`] through the `notify` callback, so nothing here
//! waits on the network. So does checking a new service's certificate.

mod kept;
mod services;
pub mod settings;
pub mod view;
mod widgets;
mod words;
mod workers;

use std::path::PathBuf;
use std::sync::Arc;

use nephele_api::directory::{CatalogEntry, Notice};
use nephele_api::{DirectoryClient, inspect};
use rustls::pki_types::CertificateDer;

pub use services::{Service, Services, default_path, normalise};

use crate::login::Login;

/// What the launcher shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The service's address.
    AddService,
    /// The service's certificate is not trusted here: trust it or not.
    Trust,
    /// User and password.
    SignIn,
    /// The desktops the user may open.
    Catalog,
    /// Signing in, probing, connecting: until the session is up.
    Connecting,
    /// The remote desktop fills the window.
    Session,
    /// The session was lost; the window tries again after a countdown.
    Lost,
    /// Picture, sound and input settings.
    Settings,
}

/// What a person did on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add a service: go on with the typed address.
    Continue,
    /// Trust the certificate shown and go on.
    Trust,
    /// Back to the service's address.
    Back,
    /// Sign in with the typed user and password.
    SignIn,
    /// Back to the service's address (another service).
    OtherService,
    /// Open the catalog's entry at this index.
    Open(usize),
    /// Stop connecting, back to the catalog.
    Cancel,
    /// Lost connection: try again now.
    Reconnect,
    /// Lost connection: leave the session, back to the catalog.
    BackToCatalog,
    /// Sign out: back to the sign-in page, the password forgotten.
    SignOut,
    /// The settings page.
    OpenSettings,
    /// Write the settings page's changes and go back.
    SaveSettings,
    /// Leave the settings page unchanged.
    CloseSettings,
}

/// A certificate the person is asked about.
#[derive(Debug, Clone)]
pub struct Untrusted {
    /// The authority at the top of the chain the service presented.
    pub ca: rustls::pki_types::CertificateDer<'static>,
    /// Its SHA-256 fingerprint.
    pub fingerprint: String,
    /// The fingerprint trusted before, when the service's certificate
    /// changed since.
    pub was: Option<String>,
}

/// What a check or a sign-in on the worker thread came to.
#[derive(Debug)]
pub enum Outcome {
    /// The service answered over a connection this computer trusts.
    Trusted {
        /// The attempt it answers.
        attempt: u64,
        /// The password kept in the keychain for the user, if any.
        kept: Option<String>,
    },
    /// The service presented a certificate this computer does not trust.
    Untrusted {
        /// The attempt it answers.
        attempt: u64,
        /// What it presented.
        cert: Untrusted,
    },
    /// Signed in; the catalog.
    SignedIn {
        /// The sign-in attempt it answers.
        attempt: u64,
        /// What the user may open.
        catalog: Vec<CatalogEntry>,
        /// The administrators' messages to the user.
        notices: Vec<Notice>,
        /// Something to tell on the catalog (the keychain refused).
        note: Option<String>,
    },
    /// Not signed in: why, in words.
    Refused {
        /// The sign-in attempt it answers.
        attempt: u64,
        /// What to show.
        problem: String,
    },
}

/// What the window does next for an action.
pub enum Command {
    /// Nothing beyond redrawing.
    None,
    /// Connect to a desktop as this login (the window makes the connector
    /// and starts it).
    Connect(Box<Login>),
    /// Stop the session or the attempt.
    Disconnect,
    /// Try the same desktop again now.
    Retry,
}

/// The launcher's state.
pub struct Launcher {
    /// The page shown.
    pub page: Page,
    /// The address field.
    pub address: String,
    /// The user field.
    pub user: String,
    /// The password field; in memory, and in the system keychain when
    /// `keep` is chosen.
    pub password: String,
    /// "Keep me signed in".
    pub keep: bool,
    /// The password is the keychain's (nothing new to keep).
    from_keychain: bool,
    /// A problem to show on the page, in words.
    pub problem: Option<String>,
    /// A sign-in is under way.
    pub busy: bool,
    /// The catalog, once signed in.
    pub catalog: Vec<CatalogEntry>,
    /// The administrators' messages shown above it.
    pub notices: Vec<Notice>,
    /// The catalog entry with the keyboard's focus.
    pub selected: usize,
    /// The connection's stages so far.
    pub stages: Vec<String>,
    /// The page changed: the view puts the focus on its first field.
    pub focus_first: bool,
    /// The Lost page is for a session the service ended (not a lost link).
    pub ended_by_service: bool,
    /// The certificate the Trust page asks about.
    pub untrusted: Option<Untrusted>,
    /// The settings in force, and the settings page's copy.
    pub settings: crate::config::Settings,
    pub draft: crate::config::Settings,
    /// The sound devices, read when the settings page opens.
    pub devices: settings::Devices,
    /// The settings file, and the page the settings page goes back to.
    settings_file: Option<PathBuf>,
    settings_from: Page,
    /// The directory signed in to (normalised address).
    url: String,
    /// The client that signed in there: its device token makes the
    /// session's own sign-in a known device's.
    dir: Option<DirectoryClient>,
    services: Services,
    services_file: Option<PathBuf>,
    roots: Vec<CertificateDer<'static>>,
    attempt: u64,
    notify: Arc<dyn Fn(Outcome) + Send + Sync>,
}

impl Launcher {
    /// A launcher on the service used last (its user filled in, its
    /// certificate checked again at once), else on adding a service.
    /// `roots` are the CAs the settings trust beside the system's;
    /// `notify` carries the workers' outcomes back to the window's thread,
    /// which hands them to [`Launcher::outcome`].
    pub fn new(
        services_file: Option<PathBuf>,
        roots: Vec<CertificateDer<'static>>,
        notify: Arc<dyn Fn(Outcome) + Send + Sync>,
    ) -> Self {
        let services = services_file
            .as_deref()
            .map(Services::load)
            .unwrap_or_default();
        let last = services.last().cloned();
        let mut l = Self {
            page: Page::AddService,
            address: String::new(),
            user: String::new(),
            password: String::new(),
            keep: false,
            from_keychain: false,
            problem: None,
            busy: false,
            catalog: Vec::new(),
            notices: Vec::new(),
            selected: 0,
            stages: Vec::new(),
            focus_first: true,
            ended_by_service: false,
            untrusted: None,
            settings: crate::config::Settings::default(),
            draft: crate::config::Settings::default(),
            devices: settings::Devices::default(),
            settings_file: None,
            settings_from: Page::AddService,
            url: String::new(),
            dir: None,
            services,
            services_file,
            roots,
            attempt: 0,
            notify,
        };
        if let Some(s) = last {
            l.address.clone_from(&s.url);
            l.url = s.url;
            l.user = s.user;
            l.page = Page::SignIn;
        }
        tracing::info!(page = ?l.page, "launcher opens");
        if l.page == Page::SignIn {
            l.check();
        }
        l
    }

    /// The settings in force and the file they are saved to.
    pub fn with_settings(
        mut self,
        settings: crate::config::Settings,
        file: Option<PathBuf>,
    ) -> Self {
        self.settings = settings;
        self.settings_file = file;
        self
    }

    /// The directory's address being signed in to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The services kept.
    pub fn services(&self) -> &Services {
        &self.services
    }

    fn go(&mut self, page: Page) {
        if self.page != page {
            tracing::info!(from = ?self.page, to = ?page, "launcher");
            self.page = page;
            self.focus_first = true;
        }
    }

    /// Shows `problem` on the page, and writes it to the log; the focus
    /// goes back to the page's first field to fix.
    fn say(&mut self, problem: String) {
        tracing::warn!(page = ?self.page, %problem, "launcher");
        self.problem = Some(problem);
        self.focus_first = true;
    }

    /// Does what a person asked for.
    pub fn act(&mut self, action: Action) -> Command {
        match action {
            Action::Continue => match normalise(&self.address) {
                Ok(url) => {
                    self.problem = None;
                    if url != self.url {
                        self.user = self
                            .services
                            .get(&url)
                            .map(|s| s.user.clone())
                            .unwrap_or_default();
                        self.password.clear();
                    }
                    self.address.clone_from(&url);
                    self.url = url;
                    self.check();
                }
                Err(why) => self.say(why),
            },
            Action::Trust => {
                if let Some(u) = self.untrusted.take() {
                    tracing::info!(url = %self.url, fingerprint = %u.fingerprint, "certificate trusted by the person");
                    self.services.trust(&self.url, &u.ca);
                    self.keep_services();
                    self.problem = None;
                    self.go(Page::SignIn);
                }
            }
            Action::Back => {
                self.untrusted = None;
                self.problem = None;
                self.go(Page::AddService);
            }
            Action::SignIn => {
                self.from_keychain = false;
                self.sign_in();
            }
            Action::OtherService => {
                self.untrusted = None;
                self.problem = None;
                self.busy = false;
                self.attempt += 1;
                self.go(Page::AddService);
            }
            Action::Open(i) => {
                let Some(entry) = self.catalog.get(i) else {
                    return Command::None;
                };
                self.selected = i;
                let desktop = entry.id.clone();
                let roots = self.roots_for(&self.url);
                let signed_in = self.dir.clone().filter(|d| d.url() == self.url);
                match signed_in.map_or_else(|| DirectoryClient::new(&self.url, &roots), Ok) {
                    Ok(dir) => {
                        self.problem = None;
                        self.stages.clear();
                        self.go(Page::Connecting);
                        return Command::Connect(Box::new(Login {
                            dir,
                            roots,
                            user: self.user.clone(),
                            password: self.password.clone(),
                            desktop: Some(desktop),
                            pop: None,
                            reconnect: true,
                        }));
                    }
                    Err(e) => self.say(words::directory_problem(&e)),
                }
            }
            Action::OpenSettings => {
                self.draft = self.settings.clone();
                let (outputs, inputs) = nephele_platform::audio::device_names();
                self.devices = settings::Devices { outputs, inputs };
                self.settings_from = self.page;
                self.problem = None;
                self.go(Page::Settings);
            }
            Action::SaveSettings => {
                let saved = match &self.settings_file {
                    Some(path) => crate::settings_file::save(path, &self.draft).map_err(|e| {
                        tracing::warn!(error = %e, "saving the settings");
                        "Nephele could not write the settings file. The details are in the log."
                            .to_string()
                    }),
                    None => Err("This system has no place for a settings file.".into()),
                };
                match saved {
                    Ok(()) => {
                        tracing::info!("settings saved");
                        self.settings = self.draft.clone();
                        self.go(self.settings_from);
                    }
                    Err(why) => self.say(why),
                }
            }
            Action::CloseSettings => {
                self.problem = None;
                self.go(self.settings_from);
            }
            Action::Cancel | Action::BackToCatalog => {
                // From a lost connection the session is likely still open
                // at the service: the catalog is asked again, so its tile
                // says so. A Disconnect logs the session off: its tile no
                // longer says it is open.
                let refresh = self.page == Page::Lost;
                if self.page == Page::Session
                    && let Some(e) = self.catalog.get_mut(self.selected)
                {
                    e.open = None;
                }
                self.go(Page::Catalog);
                if refresh {
                    self.sign_in();
                }
                return Command::Disconnect;
            }
            Action::Reconnect => {
                self.stages.clear();
                self.go(Page::Connecting);
                return Command::Retry;
            }
            Action::SignOut => {
                kept::forget(&self.url, &self.user);
                self.password.clear();
                self.catalog.clear();
                self.problem = None;
                self.go(Page::SignIn);
                return Command::Disconnect;
            }
        }
        Command::None
    }

    /// What a connection to `url` trusts: the settings' CAs, and the CA
    /// the person trusted for it.
    fn roots_for(&self, url: &str) -> Vec<CertificateDer<'static>> {
        let mut roots = self.roots.clone();
        roots.extend(self.services.get(url).and_then(Service::pin));
        roots
    }

    /// The fingerprint of the CA pinned for this service, if any.
    fn pinned_fingerprint(&self) -> Option<String> {
        let pin = self.services.get(&self.url).and_then(Service::pin)?;
        Some(inspect::fingerprint(&pin))
    }

    fn keep_services(&self) {
        if let Some(path) = &self.services_file
            && let Err(e) = self.services.save(path)
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot keep the services");
        }
    }

    /// A check's or a sign-in's answer arrived.
    pub fn outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Trusted { attempt, kept } if attempt == self.attempt => {
                self.busy = false;
                self.go(Page::SignIn);
                if let Some(p) = kept
                    && self.password.is_empty()
                {
                    tracing::info!(user = %self.user, "signing in with the kept password");
                    self.password = p;
                    self.keep = true;
                    self.from_keychain = true;
                    self.sign_in();
                }
            }
            Outcome::Untrusted { attempt, cert } if attempt == self.attempt => {
                self.busy = false;
                tracing::warn!(url = %self.url, fingerprint = %cert.fingerprint, was = ?cert.was, "the service's certificate is not trusted here");
                self.untrusted = Some(cert);
                self.go(Page::Trust);
            }
            Outcome::SignedIn {
                attempt,
                catalog,
                notices,
                note,
            } if attempt == self.attempt => {
                self.busy = false;
                self.services.used(&self.url, &self.user);
                self.keep_services();
                let open = catalog.iter().filter(|e| e.open.is_some()).count();
                tracing::info!(entries = catalog.len(), open, "signed in; the catalog");
                self.selected = self.selected.min(catalog.len().saturating_sub(1));
                self.catalog = catalog;
                self.notices = notices;
                self.problem = note;
                if self.catalog.is_empty() {
                    self.say("You are signed in, but no desktop is offered to you yet. Ask your administrator to give you one.".into());
                }
                self.go(Page::Catalog);
            }
            Outcome::Refused { attempt, problem } if attempt == self.attempt => {
                self.busy = false;
                // The fields stay as typed; the focus goes back to the
                // first to fix (the password, once a user is given).
                self.say(problem);
            }
            // An answer to an attempt given up (another service chosen).
            Outcome::Trusted { .. }
            | Outcome::Untrusted { .. }
            | Outcome::SignedIn { .. }
            | Outcome::Refused { .. } => {}
        }
    }

    /// A connection stage began.
    pub fn stage(&mut self, stage: &str) {
        // Counters ("probing 3 PoPs: 2 answered…") replace their line.
        let head = |s: &str| {
            let h = s.split(':').next().unwrap_or(s);
            h.trim_end_matches('…').to_string()
        };
        if let Some(last) = self.stages.last_mut()
            && head(last) == head(stage)
        {
            *last = stage.to_string();
        } else {
            self.stages.push(stage.to_string());
        }
    }

    /// The Lost page's countdown ran out: connecting again.
    pub fn retrying(&mut self) {
        self.stages.clear();
        self.go(Page::Connecting);
    }

    /// The session is up.
    pub fn connected(&mut self) {
        self.problem = None;
        self.go(Page::Session);
    }

    /// Connecting failed or the session was lost: `why` in words; the
    /// window counts down to the next attempt (unless the service ended
    /// the session: then the page says so and offers the catalog first).
    pub fn lost(&mut self, why: &str) {
        self.problem = Some(words::session_problem(why));
        self.ended_by_service = words::ended_by_service(why);
        self.go(Page::Lost);
    }

    /// The session ended as asked (the desktop logged off): the catalog.
    pub fn ended(&mut self) {
        self.problem = None;
        self.go(Page::Catalog);
    }

    /// The catalog's selection moved by `by` (arrow keys), kept in range.
    pub fn select_by(&mut self, by: isize) {
        let n = self.catalog.len();
        if n > 0 {
            self.selected = self.selected.saturating_add_signed(by).min(n - 1);
        }
    }
}

#[cfg(test)]
mod tests;
