//! `DELETE /auth/mfa/totp`: with the current password and a code (TOTP or recovery), TOTP is
//! removed, and sign-in needs the password only again (204).
//!
//! The code is counted like a sign-in's second step (wrong codes toward the lock and the
//! client's budget) and spent by the very write that removes TOTP.

use lambda_http::Request;

use crate::domain::PasswordAttempt;
use crate::error::ApiError;
use crate::handlers::mfa::TwoStepStore;
use crate::handlers::mfa::second_factor::{check_code, code_accepted, count_code, parse_code};
use crate::handlers::{Deps, Reply, authenticate_live, client_ip, reauthenticate};
use crate::http;
use crate::mail::Mail;
use crate::store::StoreError;

endpoint!(mfa_totp_disable, [DELETE], TwoStepStore);

async fn mfa_totp_disable<S: TwoStepStore>(deps: &Deps<S>, req: &Request) -> Reply {
    let caller = authenticate_live(deps, req).await?;
    let (current, code) = http::read_with(req, |body| {
        let current = body.required("current_password", PasswordAttempt::parse);
        let code = body.required("code", parse_code);
        Some((current?, code?))
    })?;
    deps.mfa_keys()?;
    reauthenticate(deps, &caller, &current).await?;
    let user = &caller.user;
    let source_ip = client_ip(req);
    if !user.mfa_enabled() {
        // Nothing to disable: no code can be right.
        return Err(ApiError::InvalidCode);
    }
    let counted = count_code(deps, user, &source_ip).await?;
    let Some(factor) = check_code(deps, user, &code)? else {
        let _ = counted.failed();
        tracing::warn!(event = "mfa_code_rejected", user_id = %user.id, source_ip = %source_ip);
        return Err(ApiError::InvalidCode);
    };
    match deps.store.disable_totp(user.id, &factor).await {
        Err(StoreError::Conflict) => return Err(ApiError::InvalidCode),
        other => other?,
    }
    code_accepted(deps, user, counted).await;
    deps.send_quietly(&Mail::two_step_off(user.email.as_str()), "two_step_changed")
        .await;
    tracing::info!(event = "totp_disabled", user_id = %user.id, source_ip = %source_ip);
    Ok(http::no_content())
}

#[cfg(test)]
mod tests {
    use crate::handlers::mfa::test_support::*;

    #[tokio::test]
    async fn disabling_needs_the_password_and_a_code_and_a_reset_keeps_totp() {
        let (_, deps) = clocked();
        let mailer = Arc::new(crate::testing::MemoryMailer::default());
        let deps = deps.with_mailer(mailer.clone());
        let (tokens, recovery) = alice_with_totp(&deps).await;
        let id = user_id(&tokens);

        // A reset (through the mailbox) keeps TOTP: the recovery codes are the way back. A
        // sign-in waiting for its second step from before the reset is over.
        let before_reset = first_step(&deps).await;
        let user = deps.store.get_user(id).await.ok().flatten().expect("alice");
        let (code_text, stored) =
            crate::handlers::codes::CodeKind::Reset.issue(&deps, id, &user.email);
        deps.store
            .store_reset_code(id, &stored)
            .await
            .expect("stored");
        let reset = json!({"email": "alice@example.com", "code": secrecy::ExposeSecret::expose_secret(&code_text), "new_password": "another long passphrase"});
        let (status, body) = call(
            reset_password::handle,
            &deps,
            post("/auth/password/reset", &reset),
        )
        .await;
        assert!(status == 200 || status == 204, "{status} {body}");
        let (status, _) = verify(&deps, &before_reset, &recovery[2]).await;
        assert_eq!(status, 401, "the revocation point ended the challenge");
        let login = json!({"identifier": "alice", "password": "another long passphrase"});
        let (status, body) = call(login::handle, &deps, post("/auth/login", &login)).await;
        assert_eq!((status, body["mfa_required"].as_bool()), (200, Some(true)));
        let (status, tokens) = verify(
            &deps,
            body["mfa_token"].as_str().unwrap_or_default(),
            &recovery[0],
        )
        .await;
        assert_eq!(status, 200);

        let delete = |body: Value| authed("DELETE", "/auth/mfa/totp", &tokens, Some(&body));
        let (status, _) = call(
            mfa_totp_disable::handle,
            &deps,
            delete(json!({"current_password": "wrong password", "code": recovery[1]})),
        )
        .await;
        assert_eq!(status, 401);
        let (status, body) = call(
            mfa_totp_disable::handle,
            &deps,
            delete(json!({"current_password": "another long passphrase", "code": recovery[0]})),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_code")),
            "spent"
        );
        let (status, _) = call(
            mfa_totp_disable::handle,
            &deps,
            delete(json!({"current_password": "another long passphrase", "code": code(&deps, &tokens, 1).await})),
        )
        .await;
        assert_eq!(status, 204);
        let (status, body) = call(login::handle, &deps, post("/auth/login", &login)).await;
        assert_eq!(status, 200);
        let access = token_claims(body["access_token"].as_str().unwrap_or_default());
        assert_eq!(access["amr"], json!(["pwd"]));
        assert_eq!(body["user"]["mfa_enabled"], false);
        let stored = deps.store.get_user(id).await.ok().flatten().expect("alice");
        assert!(stored.totp.is_none());
        // The owner hears of both changes.
        let notices: Vec<(String, String)> = mailer
            .sent()
            .into_iter()
            .filter(|mail| mail.subject.starts_with("Two-step"))
            .map(|mail| (mail.to, mail.subject))
            .collect();
        assert_eq!(
            notices,
            [
                (
                    "alice@example.com".to_owned(),
                    "Two-step sign-in is on".to_owned()
                ),
                (
                    "alice@example.com".to_owned(),
                    "Two-step sign-in is off".to_owned()
                ),
            ]
        );
    }
}
