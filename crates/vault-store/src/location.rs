//! Where a vault lives: a local directory (the sled engine) or a PostgreSQL database shared by any
//! number of daemons (the PostgreSQL engine, feature `postgres`).

use std::{fmt, path::PathBuf};

use zeroize::Zeroize;

/// Where a vault's data lives.
#[derive(Clone, Debug)]
pub enum Location {
    /// A vault directory owned by one process (sled, with its write-ahead log).
    Dir(PathBuf),
    /// A PostgreSQL database (`postgres://user@host:port/db?sslmode=...`) shared by any number
    /// of processes.
    Database(DatabaseUrl),
}

impl Location {
    /// The directory, for a directory vault.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            Self::Dir(d) => Some(d),
            Self::Database(_) => None,
        }
    }
}

impl fmt::Display for Location {
    /// The directory, or the database URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::Database(u) => write!(f, "{u}"),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(d: PathBuf) -> Self {
        Self::Dir(d)
    }
}

impl From<&std::path::Path> for Location {
    fn from(d: &std::path::Path) -> Self {
        Self::Dir(d.to_path_buf())
    }
}

/// A PostgreSQL connection URL. It may carry a password, so it is a secret: `Debug` and
/// `Display` show it with the password replaced by `***`, and it is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps `url` (checked when the engine connects, not here).
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL as given, password included: for the connection only, never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***` (also a `password=` query parameter).
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let mut out = match url.find("://") {
            Some(scheme_end) => {
                let rest = &url[scheme_end + 3..];
                let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
                let authority = &rest[..authority_end];
                match authority.rfind('@') {
                    Some(at) => {
                        let userinfo = &authority[..at];
                        let user = userinfo.split(':').next().unwrap_or("");
                        let masked = if userinfo.contains(':') {
                            format!("{user}:***")
                        } else {
                            user.to_owned()
                        };
                        format!(
                            "{}://{}{}{}",
                            &url[..scheme_end],
                            masked,
                            &authority[at..],
                            &rest[authority_end..]
                        )
                    }
                    None => url.clone(),
                }
            }
            // A key=value connection string: no URL to parse; show nothing of it but its shape.
            None => "(connection string)".to_owned(),
        };
        if let Some(q) = out.find('?') {
            let (head, query) = out.split_at(q + 1);
            let masked: Vec<String> = query
                .split('&')
                .map(|kv| {
                    if kv.to_ascii_lowercase().starts_with("password=") {
                        "password=***".to_owned()
                    } else {
                        kv.to_owned()
                    }
                })
                .collect();
            out = format!("{head}{}", masked.join("&"));
        }
        out
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Drop for DatabaseUrl {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::DatabaseUrl;

    #[test]
    fn the_password_never_shows() {
        let u =
            DatabaseUrl::new("postgres://vault:s3cr3t-pw@db.example:5432/cv?sslmode=verify-full");
        for shown in [format!("{u}"), format!("{u:?}"), u.redacted()] {
            assert!(!shown.contains("s3cr3t-pw"), "{shown}");
            assert!(
                shown.contains("vault:***@db.example:5432/cv?sslmode=verify-full"),
                "{shown}"
            );
        }
        let q = DatabaseUrl::new("postgres://vault@db/cv?password=s3cr3t-pw&sslmode=require");
        assert!(!q.to_string().contains("s3cr3t-pw"));
        assert!(q.to_string().contains("password=***&sslmode=require"));
        let plain = DatabaseUrl::new("postgres://root@127.0.0.1:5432/cv");
        assert_eq!(plain.to_string(), "postgres://root@127.0.0.1:5432/cv");
        let kv = DatabaseUrl::new("host=db password=s3cr3t-pw");
        assert!(!kv.to_string().contains("s3cr3t-pw"));
    }
}
