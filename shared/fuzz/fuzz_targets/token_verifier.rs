//! The token verifier on arbitrary strings and on genuine tokens altered by arbitrary edits:
//! nothing panics, and nothing verifies but a genuine token, byte for byte, for its own use.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shared::domain::{Email, UserRecord, Username};
use shared::jwt::{Signed, TokenKeys, TokenUse};
use shared::testing::config;

const NOW: u64 = 1_800_000_000;

struct Genuine {
    keys: TokenKeys,
    access: Signed,
    refresh: Signed,
}

fn genuine() -> &'static Genuine {
    static GENUINE: OnceLock<Genuine> = OnceLock::new();
    GENUINE.get_or_init(|| {
        let keys = TokenKeys::new(&config(), shared::testing::access_keys());
        let created = time::OffsetDateTime::from_unix_timestamp(NOW as i64).expect("a time");
        let user = UserRecord::new(
            Username::parse("fuzz").expect("valid"),
            Email::parse("fuzz@example.com").expect("valid"),
            None,
            String::new(),
            created,
        );
        let access = keys
            .sign(keys.access_claims(&user, "sid", NOW))
            .expect("signs");
        let refresh = keys
            .sign(keys.refresh_claims(&user, "sid", NOW, NOW))
            .expect("signs");
        Genuine {
            keys,
            access,
            refresh,
        }
    })
}

fn check(token: &str) {
    let g = genuine();
    for (token_use, own) in [
        (TokenUse::Access, &g.access),
        (TokenUse::Refresh, &g.refresh),
    ] {
        if let Ok(claims) = g.keys.verify(token, token_use, NOW + 1) {
            assert_eq!(token, own.token, "only the genuine token verifies");
            assert_eq!(claims, own.claims);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check(&String::from_utf8_lossy(rest));
        return;
    }
    // Edits of a genuine token: (position, byte) pairs.
    let g = genuine();
    let mut token = if mode & 2 == 0 {
        g.access.token.clone()
    } else {
        g.refresh.token.clone()
    }
    .into_bytes();
    for edit in rest.chunks_exact(3) {
        let position = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % (token.len() + 1);
        match edit[2] {
            0 if position < token.len() => {
                token.remove(position);
            }
            1 => token.insert(position, b'A'),
            byte if position < token.len() => token[position] = byte,
            _ => {}
        }
    }
    check(&String::from_utf8_lossy(&token));
});
