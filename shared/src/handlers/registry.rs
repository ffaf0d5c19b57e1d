//! Every function of the service and how it starts: each feature folder lists its own
//! (`FUNCTIONS` in its `mod.rs`, beside the handlers), and this gathers them. The functions
//! start from it ([`crate::handlers::Deps::for_function`]) and the template is checked against
//! it (`.ci/check_template.py` reads it through `cargo run --example function-env`); what each
//! way of starting reads is [`crate::functions`].

use crate::functions::{Start, TUNING};
use crate::handlers::{account, codes, keys, mfa, sessions, sign_in};

/// Every function, by its package name (`functions/<name>`, the template's `Binary`).
pub fn all() -> impl Iterator<Item = (&'static str, Start)> {
    [
        account::FUNCTIONS,
        sign_in::FUNCTIONS,
        sessions::FUNCTIONS,
        codes::FUNCTIONS,
        mfa::FUNCTIONS,
        keys::FUNCTIONS,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// How the function `name` starts, when it is one of [`all`].
pub fn start_of(name: &str) -> Option<Start> {
    all()
        .find(|(function, _)| *function == name)
        .map(|(_, start)| start)
}

/// The whole list as JSON, for the template check: `{"functions": {name: {"variables": [..],
/// "secrets": [..]}}, "tuning": [..]}`.
pub fn as_json() -> serde_json::Value {
    let functions: serde_json::Map<String, serde_json::Value> = all()
        .map(|(name, start)| {
            let entry = serde_json::json!({
                "variables": start.variables(),
                "secrets": start.secret_variables(),
            });
            (name.to_owned(), entry)
        })
        .collect();
    serde_json::json!({ "functions": functions, "tuning": TUNING })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::{Config, KeyRotationSettings, PublicKeySettings};
    use crate::functions::{SECRET_VALUES, var};

    /// Every name configuration reads, found by running it: a lookup that records each name and
    /// answers a valid value for the ones it cannot start without.
    fn names_config_reads() -> BTreeSet<String> {
        let asked = RefCell::new(BTreeSet::new());
        Config::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_owned());
            match name {
                "HASH_KEY" => Some("0123456789abcdefghijklmnopqrstuvwxyzABCDEF".into()),
                "USERS_TABLE" | "TOKENS_TABLE" | "SESSIONS_TABLE" => Some("t".into()),
                _ => None,
            }
        })
        .expect("configuration with only its required names");
        asked.into_inner()
    }

    /// Every name the settings of discovery, JWKS and the key rotation read.
    fn names_key_settings_read() -> BTreeSet<String> {
        let asked = RefCell::new(BTreeSet::new());
        let lookup = |name: &str| {
            asked.borrow_mut().insert(name.to_owned());
            matches!(name, "USERS_TABLE" | "JWT_ISSUER").then(|| "x".to_owned())
        };
        PublicKeySettings::from_lookup(lookup).expect("public key settings");
        KeyRotationSettings::from_lookup(lookup).expect("rotation settings");
        asked.into_inner()
    }

    #[test]
    fn every_name_the_key_functions_read_is_listed_for_them_or_a_tuning() {
        let mut known: BTreeSet<&str> = TUNING.iter().copied().collect();
        known.extend(Start::WellKnown.variables());
        known.extend(Start::KeyRotation.variables());
        let unknown: Vec<String> = names_key_settings_read()
            .into_iter()
            .filter(|name| !known.contains(name.as_str()))
            .collect();
        assert!(unknown.is_empty(), "unlisted: {unknown:?}");
    }

    #[test]
    fn every_name_configuration_reads_is_a_deployment_variable_a_tuning_or_a_secret() {
        let mut known: BTreeSet<&str> = TUNING.iter().chain(SECRET_VALUES).copied().collect();
        for (_, start) in all() {
            known.extend(start.variables());
        }
        let unknown: Vec<String> = names_config_reads()
            .into_iter()
            .filter(|name| !known.contains(name.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "configuration reads {unknown:?}: list each in functions.rs, as a deployment variable or a tuning"
        );
    }

    #[test]
    fn the_list_names_exactly_the_function_packages() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
        let packages: BTreeSet<String> = std::fs::read_dir(dir)
            .expect("the functions folder")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .collect();
        let listed: BTreeSet<String> = all().map(|(n, _)| n.to_owned()).collect();
        assert_eq!(listed, packages);
    }

    #[test]
    fn issuers_read_the_signing_keys_and_two_step_functions_the_mfa_key() {
        let login = start_of("login").expect("login").variables();
        assert!(login.contains(&var::SIGNING_KEYS_SECRET_ID));
        assert!(!login.contains(&var::MFA_KEY_SECRET_ID));
        let me = start_of("me").expect("me").secret_variables();
        assert_eq!(me, [var::HASH_KEY_SECRET_ID], "no refresh-token key");
        let verify = start_of("mfa-verify")
            .expect("mfa-verify")
            .secret_variables();
        assert_eq!(
            verify,
            [
                var::HASH_KEY_SECRET_ID,
                var::JWT_SECRET_ID,
                var::SIGNING_KEYS_SECRET_ID,
                var::MFA_KEY_SECRET_ID
            ]
        );
        let forgot = start_of("forgot-password").expect("forgot").variables();
        assert!(forgot.contains(&var::MAIL_FROM));
        assert!(
            start_of("jwks")
                .expect("jwks")
                .secret_variables()
                .is_empty()
        );
        assert_eq!(start_of("nothing"), None);
    }

    #[test]
    fn only_the_functions_that_issue_or_spend_refresh_tokens_hold_their_key() {
        let holders: BTreeSet<&str> = all()
            .filter(|(_, start)| start.secret_variables().contains(&var::JWT_SECRET_ID))
            .map(|(name, _)| name)
            .collect();
        let expected = [
            "register",
            "login",
            "refresh",
            "logout",
            "change-password",
            "mfa-verify",
        ];
        assert_eq!(holders, expected.into_iter().collect());
        for (name, start) in all() {
            if let Start::Endpoint(_) = start {
                assert!(
                    start.secret_variables().contains(&var::HASH_KEY_SECRET_ID),
                    "{name} hashes codes and client addresses"
                );
            }
        }
    }

    #[test]
    fn no_name_is_both_a_deployment_variable_and_a_tuning() {
        for (name, start) in all() {
            for variable in start.variables() {
                assert!(!TUNING.contains(&variable), "{name}: {variable}");
            }
        }
    }
}
