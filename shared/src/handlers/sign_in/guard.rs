//! The one protocol around every check of a secret: a password at sign-in, a code at the
//! second step, a password at re-authentication (and, to come, a passkey or a mailed sign-in
//! code). The guard decides what a check costs; callers only say how the check went.
//!
//! Before the check, a failure is reserved against the lock the check answers to
//! ([`Guard::reserve`]): a conditional write, so of any number of racing checks at most the
//! threshold are made, and a locked target is refused (429) before anything is checked. A unit
//! of the client's budget (sign-in's per-address quota, or the wrong-code probe budget) has been
//! taken by the caller before that and is handed to the guard.
//!
//! | the check | the reserved failure | the account's failures | the client | the budget unit |
//! |---|---|---|---|---|
//! | refused: locked | none made | unchanged | unchanged | spent |
//! | wrong ([`Guard::failed`]) | kept: it counts | one more | unchanged | spent |
//! | right, a second step due ([`Guard::second_step_due`]) | given back | unchanged | not trusted | given back |
//! | right ([`Guard::passed`]) | cleared, with the account's | cleared | trusted | given back |
//!
//! Re-authentication answers to a lock of its own session, has no budget and trusts no client:
//! a right password clears that session's lock only. The second step answers to the account's
//! second-factor lock (MF-06, kept apart from the password's): a right code clears it, and, as
//! the end of a sign-in, the account's password failures too.

use crate::domain::{Lockout, UserRecord};
use crate::error::ApiError;
use crate::handlers::Deps;
use crate::store::{Attempt, Limits, LockTarget, StoreError};
use crate::throttle::{self, Quota};

/// One reserved check.
#[must_use = "a reserved check ends as failed, second_step_due or passed"]
pub(crate) struct Guard {
    target: LockTarget,
    /// The state after the reservation (locked when this check reached the threshold).
    lockout: Lockout,
    now_ms: u64,
    /// The unit of the client's budget this check took, if any.
    budget: Option<Quota>,
    /// The trust key of this client for the account (`keys::trusted_client`), if a right
    /// answer trusts it.
    trust_key: Option<String>,
}

/// A check refused before it was made: the target is locked.
pub(crate) struct Locked {
    pub retry_after_secs: u64,
}

impl From<Locked> for ApiError {
    fn from(locked: Locked) -> Self {
        ApiError::TooManyAttempts {
            retry_after_secs: locked.retry_after_secs,
        }
    }
}

impl Guard {
    /// Reserves one check against `target`, whose state was last read as `seen`. The caller
    /// names the client's budget unit it took (`budget`) and the client's trust key, if a
    /// right answer should trust the client.
    pub(crate) async fn reserve<S: Limits>(
        deps: &Deps<S>,
        target: LockTarget,
        seen: Lockout,
        budget: Option<Quota>,
        trust_key: Option<String>,
    ) -> Result<Result<Self, Locked>, StoreError> {
        let now_ms = deps.now_ms();
        let threshold = deps.config.limits.lockout_threshold;
        Ok(
            match deps
                .store
                .reserve_attempt(&target, seen, threshold, now_ms)
                .await?
            {
                Attempt::Admitted { lockout } => Ok(Self {
                    target,
                    lockout,
                    now_ms,
                    budget,
                    trust_key,
                }),
                Attempt::Locked { until_ms } => Err(Locked {
                    retry_after_secs: throttle::retry_after_secs(until_ms, now_ms),
                }),
            },
        )
    }

    /// The check was wrong: everything stays spent. Returns the state after it, and how long
    /// the lock it armed lasts (seconds; `None` when it armed none).
    pub(crate) fn failed(self) -> (Lockout, Option<u64>) {
        let locked = (self.lockout.locked_until_ms > self.now_ms)
            .then(|| throttle::retry_after_secs(self.lockout.locked_until_ms, self.now_ms));
        (self.lockout, locked)
    }

    /// The password was right, but a second step is due: the reservation and the budget unit
    /// come back, earlier failures stay, and the client is not trusted yet, so a password alone
    /// neither unlocks the account nor buys more codes to guess.
    pub(crate) async fn second_step_due<S: Limits>(self, deps: &Deps<S>) -> Result<(), StoreError> {
        if let Some(budget) = &self.budget {
            deps.store.refund(budget.key()).await?;
        }
        if let Err(err) = deps
            .store
            .release_attempt(&self.target, self.lockout, self.now_ms)
            .await
        {
            tracing::warn!(event = "release_failed", error = %err);
        }
        Ok(())
    }

    /// The check was right (`user`'s, as read before it): the account's failures are forgotten,
    /// the client is trusted (which forgets its own failures), the budget unit comes back; or,
    /// for a lock of its own (re-authentication), that lock is cleared.
    pub(crate) async fn passed<S: Limits>(
        self,
        deps: &Deps<S>,
        user: &UserRecord,
    ) -> Result<(), StoreError> {
        let account = LockTarget::User(user.id);
        let own_lock = matches!(self.target, LockTarget::Counter { .. });
        // A sign-in's success (it trusts its client: a password, or a second step) forgets the
        // account's password failures; re-authentication's clears its own lock only.
        let signs_in = self.trust_key.is_some();
        let clear_own = async {
            match own_lock {
                true => deps.store.clear_attempts(&self.target).await,
                false => Ok(()),
            }
        };
        let clear_account = async {
            let failures = self.target == account || user.lockout.failures > 0;
            match (!own_lock || signs_in) && failures {
                true => deps.store.clear_attempts(&account).await,
                false => Ok(()),
            }
        };
        let clear = async { tokio::try_join!(clear_own, clear_account).map(|_| ()) };
        let trust = async {
            match &self.trust_key {
                Some(key) => {
                    let until = deps.now() + throttle::TRUSTED_CLIENT_SECS;
                    deps.store.trust_client(key, until).await
                }
                None => Ok(()),
            }
        };
        let refund = async {
            match &self.budget {
                Some(budget) => deps.store.refund(budget.key()).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(clear, trust, refund).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;
    use crate::store::keys;
    use crate::store::{Counter, Users};
    use crate::testing::{MemoryStore, alice, deps, user_id};

    type TestDeps = Deps<MemoryStore>;

    /// The lock a check for `user` from the client `client` (its key part) answers to: the
    /// client's own, when the owner has used it (no one else's failures keep the owner out), else
    /// the account's. Returns the target, its state as read, and the client's trust key.
    async fn lock_for<S: Limits>(
        deps: &Deps<S>,
        user: &UserRecord,
        client: &str,
    ) -> Result<(LockTarget, Lockout, String), StoreError> {
        let trust_key = keys::trusted_client(user.id, client);
        let (_, trust) = deps
            .store
            .find_user_id_with_counters(None, std::slice::from_ref(&trust_key))
            .await?;
        Ok(match trust.first() {
            Some(trust) => (
                LockTarget::Trusted(trust_key.clone()),
                Lockout::from(trust),
                trust_key,
            ),
            None => (LockTarget::User(user.id), user.lockout, trust_key),
        })
    }

    async fn user(deps: &TestDeps, id: UserId) -> UserRecord {
        deps.store
            .get_user(id)
            .await
            .ok()
            .flatten()
            .expect("the user")
    }

    async fn counter(deps: &TestDeps, key: &str) -> Option<Counter> {
        let (_, counters) = deps
            .store
            .find_user_id_with_counters(None, &[key.to_owned()])
            .await
            .expect("counters");
        counters.into_iter().next()
    }

    /// A budget unit taken as sign-in takes it.
    async fn take_unit(deps: &TestDeps, key: &str) -> Quota {
        let quota = Quota::Counter {
            key: key.into(),
            limit: 10,
            resets_at: deps.now() + 300,
        };
        let exhausted = deps
            .store
            .consume(std::slice::from_ref(&quota), deps.now())
            .await
            .expect("consumed");
        assert_eq!(exhausted, None);
        quota
    }

    async fn units(deps: &TestDeps, key: &str) -> u64 {
        counter(deps, key).await.map_or(0, |c| c.count)
    }

    async fn reserve(deps: &TestDeps, id: UserId, budget: Option<Quota>) -> Guard {
        let me = user(deps, id).await;
        let (target, seen, trust_key) = lock_for(deps, &me, "client").await.expect("lock");
        Guard::reserve(deps, target, seen, budget, Some(trust_key))
            .await
            .expect("store")
            .ok()
            .expect("admitted")
    }

    /// Alice with one failure counted, and a check of hers reserved with a unit of "budget".
    async fn a_check_after_one_failure() -> (TestDeps, UserId, Guard) {
        let deps = deps();
        let id = user_id(&alice(&deps).await);
        let _ = reserve(&deps, id, None).await.failed();
        let unit = take_unit(&deps, "budget").await;
        let guard = reserve(&deps, id, Some(unit)).await;
        (deps, id, guard)
    }

    #[tokio::test]
    async fn locked_nothing_is_checked_and_the_unit_stays_spent() {
        let deps = deps();
        let id = user_id(&alice(&deps).await);
        for _ in 0..deps.config.limits.lockout_threshold {
            let _ = reserve(&deps, id, None).await.failed();
        }
        let unit = take_unit(&deps, "budget").await;
        let me = user(&deps, id).await;
        let (target, seen, _) = lock_for(&deps, &me, "client").await.expect("lock");
        let refused = Guard::reserve(&deps, target, seen, Some(unit), None)
            .await
            .expect("store");
        assert!(matches!(refused, Err(Locked { retry_after_secs }) if retry_after_secs >= 1));
        let after = user(&deps, id).await.lockout;
        assert_eq!(
            after.failures, me.lockout.failures,
            "a refusal counts nothing"
        );
        assert_eq!(units(&deps, "budget").await, 1);
    }

    #[tokio::test]
    async fn wrong_the_failure_counts_and_the_unit_stays_spent() {
        let deps = deps();
        let id = user_id(&alice(&deps).await);
        let unit = take_unit(&deps, "budget").await;
        let (lockout, locked) = reserve(&deps, id, Some(unit)).await.failed();
        assert_eq!((lockout.failures, locked), (1, None));
        assert_eq!(user(&deps, id).await.lockout.failures, 1);
        assert_eq!(units(&deps, "budget").await, 1);
        for _ in 1..deps.config.limits.lockout_threshold - 1 {
            let _ = reserve(&deps, id, None).await.failed();
        }
        let (_, locked) = reserve(&deps, id, None).await.failed();
        assert_eq!(
            locked,
            Some(1),
            "the failure that reaches the threshold locks"
        );
    }

    #[tokio::test]
    async fn right_with_a_second_step_due_gives_back_but_forgets_and_trusts_nothing() {
        let (deps, id, guard) = a_check_after_one_failure().await;
        guard.second_step_due(&deps).await.expect("given back");
        assert_eq!(
            user(&deps, id).await.lockout.failures,
            1,
            "the earlier failure stays"
        );
        assert_eq!(units(&deps, "budget").await, 0);
        let trust_key = keys::trusted_client(id, "client");
        assert!(counter(&deps, &trust_key).await.is_none(), "not trusted");
    }

    #[tokio::test]
    async fn right_clears_the_account_trusts_the_client_and_gives_the_unit_back() {
        let (deps, id, guard) = a_check_after_one_failure().await;
        let me = user(&deps, id).await;
        guard.passed(&deps, &me).await.expect("passed");
        assert_eq!(user(&deps, id).await.lockout, Lockout::default());
        assert_eq!(units(&deps, "budget").await, 0);
        let trust_key = keys::trusted_client(id, "client");
        assert!(counter(&deps, &trust_key).await.is_some(), "trusted");
        // From there, this client answers to a lock of its own.
        let (target, _, _) = lock_for(&deps, &me, "client").await.expect("lock");
        assert_eq!(target, LockTarget::Trusted(trust_key));
    }

    #[tokio::test]
    async fn a_lock_of_its_own_is_all_a_right_answer_clears() {
        let deps = deps();
        let id = user_id(&alice(&deps).await);
        let _ = reserve(&deps, id, None).await.failed();
        let own = LockTarget::Counter {
            key: keys::reauth_lock("session"),
            expires_at: deps.now() + 60,
        };
        let reserve_own = || async {
            Guard::reserve(&deps, own.clone(), Lockout::default(), None, None)
                .await
                .expect("store")
                .ok()
                .expect("admitted")
        };
        let _ = reserve_own().await.failed();
        let me = user(&deps, id).await;
        reserve_own()
            .await
            .passed(&deps, &me)
            .await
            .expect("passed");
        let own_key = keys::reauth_lock("session");
        assert!(
            counter(&deps, &own_key).await.is_none_or(|c| c.count == 0),
            "its own lock is cleared"
        );
        assert_eq!(
            user(&deps, id).await.lockout.failures,
            1,
            "the account's stays"
        );
        assert!(
            counter(&deps, &keys::trusted_client(id, "client"))
                .await
                .is_none()
        );
    }
}
