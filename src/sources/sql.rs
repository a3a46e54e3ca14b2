//! A domain list from SQL: PostgreSQL, MySQL/MariaDB or SQLite through sqlx's
//! `Any` driver. The query's first column holds the domains (Postfix Admin:
//! `SELECT domain FROM domain WHERE active = 1 AND domain <> 'ALL'`). The
//! password comes from `password_file` (or a systemd credential file), never
//! from the world-readable config.

use std::path::Path;

use futures_util::TryStreamExt as _;
use sqlx::{Connection as _, Row as _};

use crate::config::sources::MAX_SOURCE_DOMAINS;

pub(super) async fn query(
    url: &str,
    password_file: Option<&Path>,
    query: &str,
) -> Result<Vec<String>, String> {
    sqlx::any::install_default_drivers();
    let url = sql_url(url, password_file).await?;
    let redacted = crate::config::sources::redact_url(&url);
    let mut conn = sqlx::AnyConnection::connect(&url)
        .await
        .map_err(|e| format!("connecting to {redacted}: {e}"))?;
    let mut rows = sqlx::raw_sql(query).fetch(&mut conn);
    let mut out = Vec::new();
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| format!("running the query: {e}"))?
    {
        let value: String = row
            .try_get(0)
            .map_err(|e| format!("the query's first column is not text: {e}"))?;
        out.push(value);
        if out.len() > MAX_SOURCE_DOMAINS {
            break;
        }
    }
    drop(rows);
    let _ = conn.close().await;
    if out.len() > MAX_SOURCE_DOMAINS {
        out.truncate(MAX_SOURCE_DOMAINS);
    }
    Ok(out)
}

/// The connection URL with the password from `password_file` put in.
///
/// # Errors
/// The file cannot be read, or the URL has no user to attach it to.
pub async fn sql_url(url: &str, password_file: Option<&Path>) -> Result<String, String> {
    match password_file {
        Some(path) => with_password(url, &read_password(path).await?),
        None => Ok(url.to_owned()),
    }
}

async fn read_password(path: &Path) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("password_file {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// `scheme://user@host/db` + password -> `scheme://user:PASSWORD@host/db`,
/// the password percent-encoded.
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        "password_file needs a URL with a user (scheme://user@host/db)".to_owned()
    })?;
    let (userinfo, host) = rest.split_once('@').ok_or_else(|| {
        "password_file needs a URL with a user (scheme://user@host/db)".to_owned()
    })?;
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    let encoded: String =
        percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    Ok(format!("{scheme}://{user}:{encoded}@{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_goes_into_the_url_encoded() {
        assert_eq!(
            with_password("postgresql://mailconfd@127.0.0.1:5432/mail", "p@ss:w/rd").unwrap(),
            "postgresql://mailconfd:p%40ss%3Aw%2Frd@127.0.0.1:5432/mail"
        );
        assert!(with_password("sqlite:/tmp/x.db", "x").is_err());
    }
}
