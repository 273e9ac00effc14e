//! API tokens: each has a role and a name; only a SHA-256 hash of it is
//! kept (in the store's `tokens` definitions), so a copy of the store does
//! not give anyone access. Tokens are 32 random bytes, so a fast hash is
//! enough (a slow one is for passwords people choose).

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::{Expect, Store};

const SPACE: &str = "tokens";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Manages plugins.
    Integrator,
    /// Manages segments and runs analyses.
    Analyst,
    /// Edits customers and logs interactions.
    Agent,
    /// Reads.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Integrator,
        Role::Analyst,
        Role::Agent,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Integrator => "integrator",
            Role::Analyst => "analyst",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .with_context(|| {
                format!("unknown role '{text}' (the roles are admin, integrator, analyst, agent, viewer)")
            })
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    role: Role,
}

/// A token as listed: never the token itself.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    /// The first 12 hex digits of its hash, to tell tokens apart.
    pub id: String,
    pub created: i64,
}

pub struct Tokens {
    store: Arc<dyn Store>,
    /// Tokens seen, by hash: the store is read once per token, not per
    /// request. Only tokens that exist are kept; a revoke clears it.
    known: std::sync::RwLock<Known>,
}

/// Tokens seen: a token's SHA-256, its name and role.
type Known = std::collections::HashMap<[u8; 32], (Arc<str>, Role)>;

/// The SHA-256 of `text` in hex: how tokens (and console sessions) are kept.
pub fn hash(text: &str) -> String {
    hex::encode(digest(text))
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// `bytes` random bytes in hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(b))
}

impl Tokens {
    pub fn new(store: Arc<dyn Store>) -> Tokens {
        Tokens {
            store,
            known: Default::default(),
        }
    }

    /// Makes a token; the only time it is seen.
    pub fn create(&self, name: &str, role: Role) -> Result<String> {
        self.create_by(name, role, "cli")
    }

    /// As `create`, recording `actor` in the audit log.
    pub fn create_by(&self, name: &str, role: Role, actor: &str) -> Result<String> {
        if name.trim().is_empty() {
            bail!("give the token a name (who or what uses it)");
        }
        let token = format!("crm_{}", random_hex(32)?);
        let body = serde_json::to_string(&Stored {
            name: name.to_owned(),
            role,
        })?;
        let saved = self
            .store
            .save_definition(SPACE, &hash(&token), &body, Expect::New)?;
        self.store.audit(store::AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: actor.into(),
            action: "create".into(),
            kind: "token".into(),
            id: name.to_owned(),
            revision: Some(saved.revision.into()),
            before: None,
            after: Some(serde_json::json!({"name": name, "role": role, "id": &saved.name[..12]})),
        })?;
        Ok(token)
    }

    /// The role of `token`, if it is one.
    pub fn role_of(&self, token: &str) -> Result<Option<Role>> {
        Ok(self.who(token)?.map(|(_, role)| role))
    }

    /// The name and role of `token`, if it is one.
    pub fn who(&self, token: &str) -> Result<Option<(Arc<str>, Role)>> {
        let key = digest(token);
        if let Some(hit) = self.known.read().expect("token cache").get(&key) {
            return Ok(Some(hit.clone()));
        }
        Ok(match self.store.definition(SPACE, &hex::encode(key))? {
            Some(rev) => {
                let s: Stored = serde_json::from_str(&rev.body)?;
                let who = (Arc::from(s.name), s.role);
                self.known
                    .write()
                    .expect("token cache")
                    .insert(key, who.clone());
                Some(who)
            }
            None => None,
        })
    }

    pub fn list(&self) -> Result<Vec<TokenInfo>> {
        self.store
            .definitions(SPACE)?
            .into_iter()
            .map(|rev| {
                let s: Stored = serde_json::from_str(&rev.body)?;
                Ok(TokenInfo {
                    name: s.name,
                    role: s.role,
                    id: rev.name[..12].to_owned(),
                    created: rev.saved_at,
                })
            })
            .collect()
    }

    /// Revokes the tokens whose id (a prefix of the hash) or name is `which`.
    pub fn revoke(&self, which: &str) -> Result<usize> {
        self.revoke_by(which, "cli")
    }

    /// As `revoke`, recording `actor` in the audit log.
    pub fn revoke_by(&self, which: &str, actor: &str) -> Result<usize> {
        self.known.write().expect("token cache").clear();
        let mut n = 0;
        for rev in self.store.definitions(SPACE)? {
            let s: Stored = serde_json::from_str(&rev.body)?;
            if s.name == which || (which.len() >= 6 && rev.name.starts_with(which)) {
                self.store
                    .delete_definition(SPACE, &rev.name, Expect::Any)?;
                self.store.audit(store::AuditEntry {
                    seq: 0,
                    at_ms: 0,
                    actor: actor.into(),
                    action: "revoke".into(),
                    kind: "token".into(),
                    id: s.name.clone(),
                    revision: None,
                    before: Some(
                        serde_json::json!({"name": s.name, "role": s.role, "id": &rev.name[..12]}),
                    ),
                    after: None,
                })?;
                n += 1;
            }
        }
        Ok(n)
    }
}
