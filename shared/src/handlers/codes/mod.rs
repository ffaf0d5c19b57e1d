//! Mailed codes (a reset code, an email verification code): asking for one, and checking one.
//!
//! Asking ([`answer_code_request`]) answers the same 202 whether or not the address has an
//! account (or, for verification, awaits one), whether or not the mail could be sent, and after
//! at least `FORGOT_MIN_RESPONSE_MS` either way (FP-01); the mail itself goes out after the
//! answer (`outbox`). It is throttled per address, whether or not it has an account, and per
//! client address (FP-05), with 429 and `Retry-After`.
//!
//! Checking ([`check_code`]) a code presented with its address has one answer for every failure (400 `invalid_code`), and the same reads and writes
//! whether or not the address has an account or a code: its id, a user item (a decoy when there
//! is none), and one try counted against the code, or against the address when there is none.
//! Every try is counted before the comparison, and per client address: five wrong tries end a
//! code for that client only, so no one else can spend the tries of the owner (who has the
//! mail); each address also gets a bounded number of wrong codes in all (`PROBE_CLIENT_LIMIT`).

use lambda_http::Request;
use lambda_http::http::StatusCode;
use secrecy::SecretString;
use serde_json::json;

use crate::domain::{Email, Identifier, StoredCode, UserId, UserRecord};
use crate::error::ApiError;
use crate::functions::{Holds, KeysNeeded, Start, endpoint};
use crate::handlers::{Deps, client_ip};
use crate::http::{self, Fields, RequestBody, Response};
use crate::mail::Mail;
use crate::mailed_codes::{self, MailedCodes};
use crate::store::{Codes, Limits, StoreError, Users, keys};
use crate::throttle::{Quota, Window};

pub mod forgot_password;
pub mod resend_verification;
pub mod reset_password;
pub mod verify_email;

/// The functions of this feature and how each starts (see [`crate::functions`]).
pub const FUNCTIONS: &[(&str, Start)] = &[
    (
        "forgot-password",
        endpoint(KeysNeeded::None, true, Holds::Hash),
    ),
    (
        "reset-password",
        endpoint(KeysNeeded::None, true, Holds::Hash),
    ),
    (
        "verify-email",
        endpoint(KeysNeeded::None, false, Holds::Hash),
    ),
    (
        "resend-verification",
        endpoint(KeysNeeded::None, true, Holds::Hash),
    ),
];

/// The kinds of mailed code: where each is kept and how it is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeKind {
    Reset,
    EmailVerification,
    /// The code the notice that two-step sign-in was turned on mails to the account's address:
    /// it turns TOTP off again (MF-07). Never asked for; issued only with that notice.
    TwoStepUndo,
}

/// How long the code that undoes two-step sign-in works, in days.
pub(crate) const TWO_STEP_UNDO_DAYS: u64 = 7;

impl CodeKind {
    /// The one answer to a request for a code, whatever happened.
    pub(crate) const fn accepted_message(self) -> &'static str {
        match self {
            Self::Reset => {
                "If an account exists for this address, a reset code has been sent to it."
            }
            Self::EmailVerification | Self::TwoStepUndo => {
                "If this address awaits verification, a code has been sent to it."
            }
        }
    }

    /// The names of its throttles: per client, per address and hour, and the cooldown.
    fn throttles(self) -> [&'static str; 3] {
        match self {
            Self::Reset => ["forgot-client", "forgot-address", "forgot"],
            Self::EmailVerification => ["verify-client", "verify-address", "verify"],
            Self::TwoStepUndo => ["undo-client", "undo-address", "undo"],
        }
    }

    /// The event logged when one is asked for.
    fn requested(self) -> &'static str {
        match self {
            Self::Reset => "reset_requested",
            Self::EmailVerification => "verification_requested",
            Self::TwoStepUndo => "two_step_undo_issued",
        }
    }

    fn stored(self, user: &UserRecord) -> Option<&StoredCode> {
        match self {
            Self::Reset => user.reset_code.as_ref(),
            Self::EmailVerification => user.verify_code.as_ref(),
            Self::TwoStepUndo => (user.totp.as_ref())
                .filter(|totp| totp.enabled)
                .and_then(|totp| totp.undo.as_ref()),
        }
    }

    /// A new code for `user`, mailed to `email`: the code to mail, and its stored form, which
    /// expires after this kind's lifetime.
    pub(crate) fn issue<S>(
        self,
        deps: &Deps<S>,
        user: UserId,
        email: &Email,
    ) -> (SecretString, StoredCode) {
        let code = self.codes(deps).generate();
        let ttl = match self {
            Self::Reset => deps.config.codes.reset_ttl,
            Self::EmailVerification => deps.config.codes.email_ttl,
            Self::TwoStepUndo => std::time::Duration::from_secs(TWO_STEP_UNDO_DAYS * 86_400),
        };
        let stored = StoredCode {
            hash: self.hash(deps, user, email, mailed_codes::expose(&code)),
            expires_at: deps.now() + ttl.as_secs(),
        };
        (code, stored)
    }

    fn codes<S>(self, deps: &Deps<S>) -> &MailedCodes {
        match self {
            Self::Reset => &deps.reset_codes,
            Self::EmailVerification | Self::TwoStepUndo => &deps.email_codes,
        }
    }

    /// The stored form of `code`, mailed to `email` for `user`. A verification code is bound
    /// to its address, so the code of a pending change never verifies the current address, nor
    /// the reverse.
    fn hash<S>(self, deps: &Deps<S>, user: UserId, email: &Email, code: &str) -> String {
        match self {
            Self::Reset => deps.reset_codes.hash(user, code),
            Self::EmailVerification => deps.email_codes.hash_for(user, email.as_str(), code),
            Self::TwoStepUndo => deps.email_codes.hash_for(user, &undo_context(email), code),
        }
    }

    fn matches<S>(
        self,
        deps: &Deps<S>,
        user: UserId,
        email: &Email,
        code: &str,
        stored: &str,
    ) -> bool {
        match self {
            Self::Reset => deps.reset_codes.matches(user, code, stored),
            Self::EmailVerification => {
                deps.email_codes
                    .matches_for(user, email.as_str(), code, stored)
            }
            Self::TwoStepUndo => {
                (deps.email_codes).matches_for(user, &undo_context(email), code, stored)
            }
        }
    }

    /// The log event of a refused code.
    fn rejected(self) -> &'static str {
        match self {
            Self::Reset => "reset_code_rejected",
            Self::EmailVerification => "email_code_rejected",
            Self::TwoStepUndo => "two_step_undo_rejected",
        }
    }

    /// What the tries are counted against when the address has no such code.
    fn without_code(self, email: &Email) -> String {
        match self {
            Self::Reset => email.as_str().to_owned(),
            Self::EmailVerification => format!("verify:{}", email.as_str()),
            Self::TwoStepUndo => format!("undo:{}", email.as_str()),
        }
    }
}

/// What an undo code is bound to besides the user: its purpose and the address it was mailed
/// to, so that no verification code undoes two-step sign-in, nor the reverse.
fn undo_context(email: &Email) -> String {
    format!("two-step-undo:{}", email.as_str())
}

/// What a body that presents a mailed code takes: the address it went to, and the code.
pub(crate) struct MailedCode {
    pub email: Email,
    pub code: String,
}

impl RequestBody for MailedCode {
    fn read(body: &mut Fields) -> Option<Self> {
        let email = body.required("email", Email::parse);
        let code = body.required_text("code");
        Some(Self {
            email: email?,
            code: code?,
        })
    }
}

/// A code that matched: its user, its stored form (which the caller's conditional write
/// spends), and the unit of the client's wrong-code budget taken for it (the caller gives it
/// back once the code has done its work).
pub(crate) struct MatchedCode {
    pub user: UserRecord,
    pub stored: StoredCode,
    pub probe: Quota,
}

pub(crate) async fn check_code<S: Users + Codes + Limits>(
    deps: &Deps<S>,
    kind: CodeKind,
    email: &Email,
    code: &str,
    source_ip: &str,
) -> Result<MatchedCode, ApiError> {
    if !MailedCodes::is_well_formed(code) {
        return Err(ApiError::InvalidCode);
    }
    let now = deps.now();
    // Wrong codes are limited per client address (AB-03), taken before the comparison.
    let probe = deps.take_probe("wrong-code", source_ip).await?;
    // The codes that could be meant: the account's own, and (verification) that of the account
    // whose email change waits for this address. The same reads whichever exist: a user item
    // per candidate, a decoy for each that does not.
    let (registered, pending) = owners(deps, kind, email).await?;
    let read = |owner: Option<UserId>| async move {
        // No owner: a decoy read of a fresh id, which no user has.
        let user = deps.store.get_user(owner.unwrap_or_default()).await;
        user.map(|user| user.filter(|_| owner.is_some()))
    };
    let candidates: Vec<(UserRecord, StoredCode)> = match kind {
        CodeKind::Reset | CodeKind::TwoStepUndo => vec![read(registered).await?],
        CodeKind::EmailVerification => {
            let (own, changing) = tokio::try_join!(read(registered), read(pending))?;
            let changing = changing.filter(|u| u.pending_email.as_ref() == Some(email));
            vec![own, changing]
        }
    }
    .into_iter()
    .flatten()
    .filter_map(|user| kind.stored(&user).cloned().map(|code| (user, code)))
    .collect();
    // Tries are counted against the codes (a new code, new tries), or the address if none.
    let named = if candidates.is_empty() {
        kind.without_code(email)
    } else {
        candidates
            .iter()
            .map(|(_, code)| code.hash.as_str())
            .collect::<Vec<_>>()
            .join(":")
    };
    // Per client address (FP-02), and from all addresses together (FP-09): a code dies after
    // a bounded number of tries whatever their origin. Both counted in one write.
    let resets_at = (candidates.iter().map(|(_, code)| code.expires_at).max())
        .map_or(now + 1, |at| at.max(now + 1));
    let tries = code_tries(deps, &named, source_ip, resets_at);
    let out_of_tries = deps.store.consume(&tries, now).await?;
    let owner = registered.or(pending).map(|id| id.to_string());
    if candidates.is_empty() || out_of_tries.is_some() {
        tracing::warn!(event = kind.rejected(), user_id = ?owner, reason = "no code or no tries left", source_ip = %source_ip);
        return Err(ApiError::InvalidCode);
    }
    // Expiry is checked here, not left to DynamoDB's TTL, which deletes late (FP-03).
    let matched = candidates.into_iter().find(|(user, stored)| {
        stored.expires_at > now && kind.matches(deps, user.id, email, code, &stored.hash)
    });
    let Some((user, stored)) = matched else {
        tracing::warn!(event = kind.rejected(), user_id = ?owner, source_ip = %source_ip);
        return Err(ApiError::InvalidCode);
    };
    Ok(MatchedCode {
        user,
        stored,
        probe,
    })
}

/// The tries of the code(s) `named` names, from `source_ip` (FP-02) and from every client
/// together (FP-09), until `resets_at`.
fn code_tries<S>(deps: &Deps<S>, named: &str, source_ip: &str, resets_at: u64) -> [Quota; 2] {
    let named = deps.key_part(named);
    [
        Quota::Counter {
            key: keys::code_tries(&named, &deps.client_part(source_ip)),
            limit: deps.config.codes.reset_max_attempts,
            resets_at,
        },
        Quota::Counter {
            key: keys::code_tries(&named, "all"),
            limit: deps.config.codes.max_attempts_total,
            resets_at,
        },
    ]
}

/// `POST` with `email`: throttles, then stores and mails a new code of `kind` if the address
/// has an account (for verification, one not verified yet), and answers the one 202 after the
/// floor.
pub(crate) async fn answer_code_request<S: Users + Codes + Limits>(
    deps: &Deps<S>,
    req: &Request,
    kind: CodeKind,
) -> Result<Response, ApiError> {
    let email = http::read_with(req, |body| body.required("email", Email::parse))?;

    let source_ip = client_ip(req);
    let started = tokio::time::Instant::now();
    match request_code(deps, kind, &email, &source_ip).await {
        Ok(()) => {}
        Err(err @ ApiError::TooManyAttempts { .. }) => return Err(err),
        // An outage must not answer differently either (FP-01): a 503 only for addresses with an
        // account would tell which have one. No code was sent; the client may ask again.
        Err(err) => tracing::error!(event = "code_unavailable", kind = ?kind, code = err.code()),
    }
    tokio::time::sleep_until(started + deps.config.limits.forgot_min_response).await;
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"message": kind.accepted_message()}),
    ))
}

/// Throttles, then stores and mails a code if there is one to send. A mail that cannot be sent
/// is logged, not returned (SES-02).
async fn request_code<S: Users + Codes + Limits>(
    deps: &Deps<S>,
    kind: CodeKind,
    email: &Email,
    source_ip: &str,
) -> Result<(), ApiError> {
    let now = deps.now();
    if let Some(retry_after_secs) = deps
        .store
        .consume(&request_quotas(deps, kind, email, source_ip, now), now)
        .await?
    {
        tracing::warn!(event = "code_request_throttled", kind = ?kind, source_ip = %source_ip);
        return Err(ApiError::TooManyAttempts { retry_after_secs });
    }
    let Some((user_id, pending)) = code_owner(deps, kind, email).await? else {
        tracing::info!(event = kind.requested(), user_id = "", source_ip = %source_ip);
        return Ok(());
    };
    let (code, stored) = kind.issue(deps, user_id, email);
    let (written, mail) = match kind {
        CodeKind::Reset => (
            deps.store.store_reset_code(user_id, &stored).await,
            Mail::reset_code(
                email.as_str(),
                mailed_codes::expose(&code),
                deps.config.codes.reset_ttl.as_secs() / 60,
                deps.config.mail.reset_url_template.as_deref(),
            ),
        ),
        CodeKind::EmailVerification if pending => {
            let key = pending_key(deps, email);
            (
                deps.store
                    .request_email_change(user_id, email, &stored, &key)
                    .await,
                verification_mail(deps, email, &code),
            )
        }
        CodeKind::EmailVerification => (
            deps.store.store_verify_code(user_id, &stored).await,
            verification_mail(deps, email, &code),
        ),
        // Never asked for: it comes only with the notice that turned two-step sign-in on.
        CodeKind::TwoStepUndo => return Ok(()),
    };
    match written {
        Ok(()) => {}
        // Deleted meanwhile, or (verification) already verified: nothing to send.
        Err(StoreError::Conflict) => return Ok(()),
        Err(err) => return Err(err.into()),
    }
    deps.send_quietly(&mail, kind.requested()).await;
    tracing::info!(event = kind.requested(), user_id = %user_id, source_ip = %source_ip);
    Ok(())
}

/// Whose code a request for `email` is about: the account the address belongs to, or (for
/// verification) the account whose email change waits for it, `true` then.
async fn code_owner<S: Users + Codes>(
    deps: &Deps<S>,
    kind: CodeKind,
    email: &Email,
) -> Result<Option<(UserId, bool)>, ApiError> {
    let (registered, pending) = owners(deps, kind, email).await?;
    if let Some(id) = registered {
        return Ok(Some((id, false)));
    }
    let Some(id) = pending else {
        return Ok(None);
    };
    // The record names whoever asked last; the change must still be that user's.
    let user = deps.store.get_user(id).await?;
    let waiting = user.is_some_and(|u| u.pending_email.as_ref() == Some(email));
    Ok(waiting.then_some((id, true)))
}

/// The account `email` belongs to, and (for verification) the one whose email change last
/// asked for it. Both are read, whichever it is, so an address of either kind or of none costs
/// the same reads.
async fn owners<S: Users + Codes>(
    deps: &Deps<S>,
    kind: CodeKind,
    email: &Email,
) -> Result<(Option<UserId>, Option<UserId>), ApiError> {
    let identifier = Identifier::Email(email.clone());
    let registered = deps.store.find_user_id(&identifier);
    if kind != CodeKind::EmailVerification {
        return Ok((registered.await?, None));
    }
    let key = pending_key(deps, email);
    let pending = deps.store.find_pending_owner(&key);
    Ok(tokio::try_join!(registered, pending)?)
}

/// The mail that carries an email verification code.
pub(crate) fn verification_mail<S>(deps: &Deps<S>, email: &Email, code: &SecretString) -> Mail {
    let hours = deps.config.codes.email_ttl.as_secs().div_ceil(3600);
    Mail::verification_code(email.as_str(), mailed_codes::expose(code), hours)
}

/// Per client address (a fixed window), and per email address: one mail per interval and a
/// few per hour. Keys name the addresses only through a keyed hash.
pub(crate) fn request_quotas<S>(
    deps: &Deps<S>,
    kind: CodeKind,
    email: &Email,
    source_ip: &str,
    now: u64,
) -> Vec<Quota> {
    let limits = &deps.config.limits;
    let [client_name, address_name, cooldown_name] = kind.throttles();
    let client = Window::at(now, limits.client_window.as_secs());
    let hour = Window::at(now, 3600);
    let address = deps.key_part(email.as_str());
    let mut quotas = vec![
        Quota::Counter {
            key: keys::rate(client_name, &deps.client_part(source_ip), client.index),
            limit: limits.forgot_client_limit,
            resets_at: client.end,
        },
        Quota::Counter {
            key: keys::rate(address_name, &address, hour.index),
            limit: limits.forgot_address_hourly_limit,
            resets_at: hour.end,
        },
    ];
    let interval = limits.forgot_address_interval.as_secs();
    if interval > 0 {
        quotas.push(Quota::Cooldown {
            key: keys::cooldown(cooldown_name, &address),
            until: now + interval,
        });
    }
    quotas
}

/// The name of the record that says who waits to confirm `email` (a keyed hash of it).
pub(crate) fn pending_key<S>(deps: &Deps<S>, email: &Email) -> String {
    deps.key_part(email.as_str())
}

/// What the tests of mailed codes share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use crate::handlers::Deps;
    use crate::testing::{ManualClock, MemoryMailer, MemoryStore, access_keys, config_with};

    /// Deps with a mailer that keeps its mail, a clock the test moves, no answer floor, and
    /// `vars` on top.
    pub fn mail_deps(
        vars: &[(&str, &str)],
    ) -> (Deps<MemoryStore>, Arc<MemoryMailer>, Arc<ManualClock>) {
        let mailer = Arc::new(MemoryMailer::default());
        let clock = Arc::new(ManualClock::new());
        let mut all = vec![("FORGOT_MIN_RESPONSE_MS", "0")];
        all.extend_from_slice(vars);
        let deps = Deps::new(config_with(&all), MemoryStore::new(), access_keys())
            .with_mailer(mailer.clone())
            .with_clock(clock.clone());
        (deps, mailer, clock)
    }
}
