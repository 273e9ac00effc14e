//! `crm user`, `crm token` and `crm audit`: who may sign in or call the
//! API, and what was changed by whom.

use super::*;

#[derive(Subcommand)]
pub(super) enum UserCommand {
    /// Add a user who signs in to the console with a name and a password
    Create {
        #[command(flatten)]
        db: Db,
        /// The name to sign in with
        name: String,
        /// admin, integrator, analyst, agent or viewer (as for tokens)
        #[arg(long)]
        role: String,
        /// Read the password from the first line of standard input; without
        /// it a random password is made and printed once
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (and role, when given)
    Password {
        #[command(flatten)]
        db: Db,
        name: String,
        #[arg(long)]
        role: Option<String>,
        /// Read the password from the first line of standard input; without
        /// it a random password is made and printed once
        #[arg(long)]
        password_stdin: bool,
    },
    /// The users and their roles
    List {
        #[command(flatten)]
        db: Db,
    },
    /// Remove a user (the sessions they have end within a minute)
    Remove {
        #[command(flatten)]
        db: Db,
        name: String,
    },
}

#[derive(Subcommand)]
pub(super) enum TokenCommand {
    /// Make a token with a role; it is printed once and stored only as a hash
    Create {
        #[command(flatten)]
        db: Db,
        /// admin, integrator (plugins), analyst (segments, analyses),
        /// agent (customers, interactions) or viewer (reads)
        #[arg(long)]
        role: String,
        /// Who or what uses it
        #[arg(long)]
        name: String,
    },
    /// The tokens: name, role, id (never the token)
    List {
        #[command(flatten)]
        db: Db,
    },
    /// Revoke the tokens with this name or id
    Revoke {
        #[command(flatten)]
        db: Db,
        which: String,
    },
}

pub(super) fn audit_command(
    db: &Db,
    kind: Option<String>,
    id: Option<String>,
    limit: usize,
    format: Format,
) -> Result<()> {
    let store = open_store(&db.db, false)?;
    let entries = store.audit_log(&store::AuditQuery {
        before: None,
        kind,
        id,
        limit,
    })?;
    if format == Format::Json {
        outln!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    for e in entries {
        let at = model::Timestamp::from_seconds(e.at_ms.div_euclid(1000));
        let what = match e.revision {
            Some(r) => format!("{} {} (revision {r})", e.kind, e.id),
            None => format!("{} {}", e.kind, e.id),
        };
        outln!("{:>8}  {at}  {:<28} {:<8} {what}", e.seq, e.actor, e.action);
        for (label, value) in [("before", &e.before), ("after ", &e.after)] {
            if let Some(v) = value {
                let text: String = v.to_string().chars().take(160).collect();
                outln!("          {label} {text}");
            }
        }
    }
    Ok(())
}

/// Saves user `name` with the password given on standard input, or a new
/// random one, printed once.
pub(super) fn save_user(
    users: &app::users::Users,
    name: &str,
    role: app::tokens::Role,
    password_stdin: bool,
    replace: bool,
) -> Result<()> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        app::users::random_password()?
    };
    users.save(name, role, &password, replace, "cli")?;
    eprintln!("user {name} ({}) saved", role.as_str());
    if !password_stdin {
        eprintln!("password (not shown again):");
        outln!("{password}");
    }
    Ok(())
}

pub(super) fn user_command(command: UserCommand) -> Result<()> {
    use app::tokens::Role;
    use app::users::Users;
    match command {
        UserCommand::Create {
            db,
            name,
            role,
            password_stdin,
        } => {
            let role = Role::parse(&role)?;
            let users = Users::new(open_store(&db.db, false)?);
            save_user(&users, &name, role, password_stdin, false)?;
        }
        UserCommand::Password {
            db,
            name,
            role,
            password_stdin,
        } => {
            let users = Users::new(open_store(&db.db, false)?);
            let role = match role {
                Some(r) => Role::parse(&r)?,
                None => users
                    .role_of(&name)?
                    .with_context(|| format!("no user '{name}' (crm user create adds one)"))?,
            };
            save_user(&users, &name, role, password_stdin, true)?;
        }
        UserCommand::List { db } => {
            let users = Users::new(open_store(&db.db, false)?);
            for u in users.list()? {
                outln!(
                    "{:<24} {:<10} saved {}",
                    u.name,
                    u.role.as_str(),
                    model::Timestamp::from_seconds(u.saved)
                );
            }
        }
        UserCommand::Remove { db, name } => {
            let users = Users::new(open_store(&db.db, false)?);
            if !users.remove(&name, "cli")? {
                bail!("no user '{name}'");
            }
            outln!("removed user {name}");
        }
    }
    Ok(())
}

pub(super) fn token_command(command: TokenCommand) -> Result<()> {
    use app::tokens::{Role, Tokens};
    match command {
        TokenCommand::Create { db, role, name } => {
            let role = Role::parse(&role)?;
            let tokens = Tokens::new(open_store(&db.db, false)?);
            let token = tokens.create(&name, role)?;
            eprintln!(
                "token for {name} ({}); it is not shown again:",
                role.as_str()
            );
            outln!("{token}");
        }
        TokenCommand::List { db } => {
            let tokens = Tokens::new(open_store(&db.db, false)?);
            for t in tokens.list()? {
                outln!(
                    "{}  {:<10} {}  created {}",
                    t.id,
                    t.role.as_str(),
                    t.name,
                    model::Timestamp::from_seconds(t.created)
                );
            }
        }
        TokenCommand::Revoke { db, which } => {
            let tokens = Tokens::new(open_store(&db.db, false)?);
            match tokens.revoke(&which)? {
                0 => bail!("no token named '{which}' or with id '{which}'"),
                n => outln!("revoked {n} token{}", if n == 1 { "" } else { "s" }),
            }
        }
    }
    Ok(())
}
