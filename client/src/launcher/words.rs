//! What went wrong, in words a person can act on. Addresses, OS error
//! numbers and TLS details stay in the log; the page says what happened
//! and what to do.

use nephele_api::client::DirClientError;

/// A directory call that failed, for the page.
pub fn directory_problem(e: &DirClientError) -> String {
    match e {
        DirClientError::Url(_) => {
            "That address does not look right. It starts with https://, as in https://desktops.example.com".into()
        }
        DirClientError::Unreachable { reason, .. } if is_trust(reason) => {
            "This computer does not trust the service's certificate, so Nephele did not send your password. Ask your administrator for the service's CA certificate and add it to the settings (`ca`).".into()
        }
        DirClientError::Unreachable { .. } => {
            "Nephele cannot reach the service. Check the address and your network connection, then try again.".into()
        }
        DirClientError::Refused { status: 401, .. } => {
            "The user name or password is not right. Check them and try again.".into()
        }
        DirClientError::Refused {
            status: 429,
            message,
        } => match seconds_in(message) {
            Some(s) => format!(
                "Too many failed sign-ins for this account. Wait {s} seconds, then try again."
            ),
            None => "Too many failed sign-ins for this account. Wait a minute, then try again."
                .into(),
        },
        DirClientError::Refused {
            status: 503,
            message,
        } if message.contains("are in use") => {
            "Every session your administrator allows for this desktop is in use. Try again later.".into()
        }
        DirClientError::Refused {
            status: 403,
            message,
        } if message.contains("disabled") => {
            "Your account is disabled. Ask your administrator.".into()
        }
        DirClientError::Refused { status: 503, .. } => {
            "The service is busy. Try again in a few seconds.".into()
        }
        DirClientError::Refused { status: 403, .. } => {
            "Your account may not open this. Ask your administrator.".into()
        }
        DirClientError::Refused { .. } => {
            "The service could not sign you in just now. Try again; if it keeps happening, tell your administrator.".into()
        }
        DirClientError::BadAnswer { .. } => {
            "Something answers at this address, but it is not a Nephele service. Check the address.".into()
        }
    }
}

/// A lost session or a failed connection (the session's own message,
/// which may name addresses), for the page.
pub fn session_problem(why: &str) -> String {
    let w = why.to_ascii_lowercase();
    if w.contains("sessions of") && w.contains("are in use") {
        "Every session your administrator allows for this desktop is in use. Nephele will try again.".into()
    } else if ended_by_service(&w) {
        "Your administrator ended this session. You can open the desktop again from the catalog."
            .into()
    } else if w.contains("account is disabled") {
        "Your account is disabled. Ask your administrator.".into()
    } else if w.contains("was opened on another device") {
        "Your desktop was opened on another device, so it left this one. Reconnect brings it back here.".into()
    } else if w.contains("another device") || w.contains("in use") {
        "This desktop is open on another device. Close it there, then reconnect.".into()
    } else if w.contains("wrong user name or password") {
        "The service no longer accepts your password. Go back and sign in again.".into()
    } else if w.contains("signing in") || w.contains("directory") {
        "Nephele cannot reach the service just now. It will try again.".into()
    } else if w.contains("no pop") || w.contains("probe") {
        "None of the service's access points answered. Check your network connection; Nephele will try again.".into()
    } else {
        "The connection to your desktop was lost. Nephele will try again.".into()
    }
}

/// Whether a session's end (its message) was the service ending it: its
/// administrator did, so reconnecting would open a new session.
pub fn ended_by_service(why: &str) -> bool {
    why.contains("administrator ended this session")
}

/// A directory call that failed because this computer does not trust the
/// service's certificate (not because of the network).
pub fn is_untrusted(e: &DirClientError) -> bool {
    matches!(e, DirClientError::Unreachable { reason, .. } if is_trust(reason))
}

/// A TLS failure of trust (not of the network).
fn is_trust(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    [
        "unknownissuer",
        "unknown issuer",
        "certificate",
        "badsignature",
    ]
    .iter()
    .any(|k| r.contains(k))
}

/// The number of seconds in "try again in N s".
fn seconds_in(message: &str) -> Option<u64> {
    let rest = message.split("try again in ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, message: &str) -> DirClientError {
        DirClientError::Refused {
            status,
            message: message.into(),
        }
    }

    #[test]
    fn failures_are_told_without_addresses_and_say_what_to_do() {
        let unreachable = DirClientError::Unreachable {
            url: "https://10.0.0.7:8443".into(),
            reason: "io: Connection refused (os error 111)".into(),
        };
        let untrusted = DirClientError::Unreachable {
            url: "https://10.0.0.7:8443".into(),
            reason: "invalid peer certificate: UnknownIssuer".into(),
        };
        let cases = [
            (unreachable, "cannot reach the service"),
            (untrusted, "does not trust the service's certificate"),
            (refused(401, "wrong user name or password"), "not right"),
            (
                refused(429, "too many failed sign-ins; try again in 42 s"),
                "Wait 42 seconds",
            ),
            (refused(429, "slow down"), "Wait a minute"),
            (refused(503, "busy"), "busy"),
            (
                refused(503, "all 2 sessions of “CAD” are in use; try again later"),
                "Every session your administrator allows",
            ),
            (
                refused(403, "this account is disabled; ask your administrator"),
                "Your account is disabled",
            ),
            (refused(403, "you may not open `cad`"), "may not open this"),
        ];
        for (e, want) in cases {
            let said = directory_problem(&e);
            assert!(said.contains(want), "{e}: {said}");
            assert!(
                !said.contains("10.0.0.7") && !said.contains("os error"),
                "{said}"
            );
        }
        let lost = session_problem("cannot connect to the gateway at 127.0.0.1:57442: timed out");
        assert!(
            lost.contains("will try again") && !lost.contains("127.0.0.1"),
            "{lost}"
        );
        assert!(
            session_problem("the session ended: the desktop is open on another device")
                .contains("another device")
        );
        assert!(
            session_problem("all 3 sessions of “CAD” are in use; try again later")
                .contains("Every session your administrator allows")
        );
        assert!(
            session_problem("this account is disabled; ask your administrator")
                .contains("Your account is disabled")
        );
        assert!(
            session_problem("the session ended: your administrator ended this session")
                .contains("Your administrator ended this session")
        );
    }
}
