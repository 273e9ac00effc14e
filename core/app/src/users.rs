//! People who sign in to the console with a name and a password. Each has
//! a role (the same roles as tokens); only an Argon2id hash of the password
//! is kept (in the store's `users` definitions), in the PHC string format
//! that carries its own salt and parameters.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use store::{Expect, Store};

use crate::tokens::Role;

const SPACE: &str = "users";

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

#[derive(Serialize, Deserialize)]
struct Stored {
    role: Role,
    /// Argon2id, PHC string.
    hash: String,
}

/// A user as listed: never the password's hash.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    /// When the user (or the password) was last saved, in UTC seconds.
    pub saved: i64,
}

pub struct Users {
    store: Arc<dyn Store>,
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || "._-@".contains(c))
    {
        bail!("a user name is 1 to 64 letters, digits, '.', '_', '-' or '@' (not '{name}')");
    }
    Ok(())
}

fn hash(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD {
        bail!("a password has at least {MIN_PASSWORD} characters");
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// A password of 16 letters and digits, for a user made without one.
pub fn random_password() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

impl Users {
    pub fn new(store: Arc<dyn Store>) -> Users {
        Users { store }
    }

    /// Adds a user, or with `replace` sets an existing one's role and
    /// password; `actor` goes to the audit log.
    pub fn save(
        &self,
        name: &str,
        role: Role,
        password: &str,
        replace: bool,
        actor: &str,
    ) -> Result<()> {
        check_name(name)?;
        let body = serde_json::to_string(&Stored {
            role,
            hash: hash(password)?,
        })?;
        let before = self.store.definition(SPACE, name)?;
        if before.is_some() && !replace {
            bail!("there is a user '{name}' already");
        }
        let expect = match &before {
            Some(rev) => Expect::Revision(rev.revision.into()),
            None => Expect::New,
        };
        let saved = self.store.save_definition(SPACE, name, &body, expect)?;
        let role_of = |rev: &store::Revision| {
            serde_json::from_str::<Stored>(&rev.body)
                .ok()
                .map(|s| serde_json::json!({"name": name, "role": s.role}))
        };
        self.store.audit(store::AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: actor.into(),
            action: if before.is_some() { "update" } else { "create" }.into(),
            kind: "user".into(),
            id: name.to_owned(),
            revision: Some(saved.revision.into()),
            before: before.as_ref().and_then(role_of),
            after: Some(serde_json::json!({"name": name, "role": role})),
        })?;
        Ok(())
    }

    /// The role of `name` when `password` is theirs. Takes tens of
    /// milliseconds (Argon2 is slow on purpose).
    pub fn verify(&self, name: &str, password: &str) -> Result<Option<Role>> {
        let Some(rev) = self.store.definition(SPACE, name)? else {
            // As slow as a wrong password, so that a guess does not learn
            // which names exist.
            let _ = hash(&"x".repeat(MIN_PASSWORD));
            return Ok(None);
        };
        let stored: Stored = serde_json::from_str(&rev.body)
            .with_context(|| format!("the stored user '{name}' is unreadable"))?;
        let parsed = PasswordHash::new(&stored.hash)
            .map_err(|e| anyhow::anyhow!("the stored hash of '{name}': {e}"))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            .then_some(stored.role))
    }

    /// The role of `name`, if the user exists.
    pub fn role_of(&self, name: &str) -> Result<Option<Role>> {
        self.store
            .definition(SPACE, name)?
            .map(|rev| Ok(serde_json::from_str::<Stored>(&rev.body)?.role))
            .transpose()
    }

    pub fn list(&self) -> Result<Vec<UserInfo>> {
        self.store
            .definitions(SPACE)?
            .into_iter()
            .map(|rev| {
                let s: Stored = serde_json::from_str(&rev.body)?;
                Ok(UserInfo {
                    name: rev.name,
                    role: s.role,
                    saved: rev.saved_at,
                })
            })
            .collect()
    }

    /// Removes a user; false when there is none by that name.
    pub fn remove(&self, name: &str, actor: &str) -> Result<bool> {
        let Some(rev) = self.store.definition(SPACE, name)? else {
            return Ok(false);
        };
        let s: Stored = serde_json::from_str(&rev.body)?;
        self.store.delete_definition(SPACE, name, Expect::Any)?;
        self.store.audit(store::AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: actor.into(),
            action: "delete".into(),
            kind: "user".into(),
            id: name.to_owned(),
            revision: None,
            before: Some(serde_json::json!({"name": name, "role": s.role})),
            after: None,
        })?;
        Ok(true)
    }
}
