//! Tokens as gateways and the directory receive them: arbitrary bytes, and
//! arbitrary claims properly signed (so the claims' parsing is reached past
//! the signature check). Verification must refuse or accept, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nephele_service::token::{Signer, Verifier};

fn keys() -> &'static (Signer, Verifier) {
    static KEYS: OnceLock<(Signer, Verifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (_, signer) = Signer::generate().expect("a key");
        let verifier = signer.verifier();
        (signer, verifier)
    })
}

fuzz_target!(|data: &[u8]| {
    let (signer, verifier) = keys();
    let _ = verifier.session(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = verifier.resume(text);
        let _ = verifier.user(text);
        // The same text as claims, signed: what a confused or hostile
        // directory could issue.
        if let Ok(claims) = serde_json::from_str::<serde_json::Value>(text)
            && let Ok(token) = signer.sign(&claims)
        {
            let _ = verifier.session(token.as_bytes());
            let _ = verifier.resume(&token);
            let _ = verifier.user(&token);
        }
    }
});
