//! Per-user values from SQL (PostgreSQL, MySQL/MariaDB, SQLite): a query
//! with one parameter, the address, bound as a parameter, never spliced
//! into the text. Columns are taken by name: `login_name`, `display_name`,
//! `imap_host`, `pop3_host`, `smtp_host`; missing or NULL ones stay unset.
//! PostgreSQL writes the parameter `$1`, MySQL and SQLite `?`.

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use sqlx::{Column as _, Connection as _, Row as _};
use tokio::sync::Mutex;

use super::{Directory, UserValues};
use crate::address::EmailAddress;

pub(super) struct Sql {
    url: String,
    password_file: Option<PathBuf>,
    query: String,
    /// One connection, reused; opened again after an error.
    conn: Mutex<Option<sqlx::AnyConnection>>,
}

impl Sql {
    pub(super) fn new(url: String, password_file: Option<PathBuf>, query: String) -> Sql {
        Sql {
            url,
            password_file,
            query,
            conn: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<sqlx::AnyConnection, String> {
        sqlx::any::install_default_drivers();
        let url = crate::sources::sql_url(&self.url, self.password_file.as_deref()).await?;
        sqlx::AnyConnection::connect(&url).await.map_err(|e| {
            format!(
                "connecting to {}: {e}",
                crate::config::sources::redact_url(&url)
            )
        })
    }

    async fn query_once(&self, address: &str) -> Result<Option<UserValues>, String> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = Some(self.connect().await?);
        }
        let conn = slot.as_mut().expect("connected above");
        let row = sqlx::query(&self.query)
            .bind(address.to_owned())
            .fetch_optional(conn)
            .await;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                *slot = None; // a broken connection is not reused
                return Err(format!("running the query: {e}"));
            }
        };
        let Some(row) = row else { return Ok(None) };
        let column = |name: &str| -> Option<String> {
            row.columns()
                .iter()
                .any(|c| c.name() == name)
                .then(|| row.try_get::<Option<String>, _>(name).ok().flatten())
                .flatten()
        };
        let values = UserValues {
            login_name: column("login_name"),
            display_name: column("display_name"),
            imap_host: column("imap_host"),
            pop3_host: column("pop3_host"),
            smtp_host: column("smtp_host"),
        };
        let (values, dropped) = values.sanitized();
        if !dropped.is_empty() {
            tracing::debug!(dropped = ?dropped, "directory values not usable, defaults used for them");
        }
        Ok(Some(values))
    }
}

impl Directory for Sql {
    fn lookup<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<UserValues>, String>> {
        Box::pin(async move { self.query_once(&address.to_string()).await })
    }
}
