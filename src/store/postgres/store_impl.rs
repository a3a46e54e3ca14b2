//! The `Store` trait for PostgreSQL: records (accounts, certificates,
//! statuses, blobs) here, each also kept in the local copy; leases,
//! challenges and the new-order budget delegate to their modules.

use std::time::Duration;

use sqlx::Row as _;

use super::{
    PostgresStore, account_row, blob_row, cert_row, challenges, feed, keep_certs, leases,
    order_budget,
};
use crate::store::dump::{self, Dump};
use crate::store::{
    Bulk, CertRecord, ChallengeAnswer, ChallengeKind, DomainStatus, OrderToken, SledStore, Store,
    StoreError,
};

impl Store for PostgresStore {
    fn account(&self, directory_url: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let url = directory_url.to_owned();
        self.read_or_cached(
            || {
                let row = self.call(move |pool| async move {
                    sqlx::query("SELECT credentials, encrypted FROM mailconfd_accounts WHERE directory_url = $1")
                        .bind(url)
                        .fetch_optional(&pool)
                        .await
                })?;
                row.map(|r| {
                    self.unseal(
                        r.get("credentials"),
                        r.get("encrypted"),
                        &account_row(directory_url),
                    )
                })
                .transpose()
            },
            |cache, value| {
                if let Some(v) = value {
                    let _ = cache.put_account(directory_url, v);
                }
            },
            |cache| cache.account(directory_url),
        )
    }

    fn put_account(&self, directory_url: &str, credentials: &[u8]) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let (value, encrypted) = self.seal(credentials, &account_row(directory_url));
        let url = directory_url.to_owned();
        self.call(move |pool| async move {
            sqlx::query(
                "INSERT INTO mailconfd_accounts (directory_url, credentials, encrypted) VALUES ($1, $2, $3)
                 ON CONFLICT (directory_url) DO UPDATE SET credentials = $2, encrypted = $3, updated_at = clock_timestamp()",
            )
            .bind(url)
            .bind(value)
            .bind(encrypted)
            .execute(&pool)
            .await
        })?;
        let _ = self
            .cache
            .as_ref()
            .map(|c| c.put_account(directory_url, credentials));
        Ok(())
    }

    fn cert(&self, domain: &str, issuer: &str) -> Result<Option<CertRecord>, StoreError> {
        Ok(self
            .certs_for(domain)?
            .into_iter()
            .find(|r| r.source == issuer))
    }

    fn put_cert(&self, domain: &str, record: &CertRecord) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let (key, key_encrypted) =
            self.seal(record.key_pem.as_bytes(), &cert_row(domain, &record.source));
        let (d, r, node) = (domain.to_owned(), record.clone(), self.node.clone());
        self.call(move |pool| async move {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO mailconfd_certs
                   (domain, issuer, names, chain_pem, key, key_encrypted, not_before, not_after, issuer_name, node)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (domain, issuer) DO UPDATE SET
                   names = $3, chain_pem = $4, key = $5, key_encrypted = $6, not_before = $7,
                   not_after = $8, issuer_name = $9, node = $10, updated_at = clock_timestamp()",
            )
            .bind(&d)
            .bind(&r.source)
            .bind(r.names.join(" "))
            .bind(&r.chain_pem)
            .bind(key)
            .bind(key_encrypted)
            .bind(r.not_before)
            .bind(r.not_after)
            .bind(&r.issuer)
            .bind(&node)
            .execute(tx.as_mut())
            .await?;
            // Delivered at commit, to every node listening (feed.rs).
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(feed::CHANNEL)
                .bind(feed::payload(&d, &node))
                .execute(tx.as_mut())
                .await?;
            tx.commit().await
        })?;
        let _ = self.cache.as_ref().map(|c| c.put_cert(domain, record));
        Ok(())
    }

    fn certs_for(&self, domain: &str) -> Result<Vec<CertRecord>, StoreError> {
        self.read_or_cached(
            || {
                Ok(self
                    .select_certs(Some(domain))?
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect())
            },
            |cache, records: &Vec<CertRecord>| keep_certs(cache, domain, records),
            |cache| cache.certs_for(domain),
        )
    }

    fn status(&self, domain: &str, issuer: &str) -> Result<Option<DomainStatus>, StoreError> {
        let (d, i) = (domain.to_owned(), issuer.to_owned());
        self.read_or_cached(
            || {
                let text: Option<String> = self.call(move |pool| async move {
                    sqlx::query_scalar(
                        "SELECT status FROM mailconfd_status WHERE domain = $1 AND issuer = $2",
                    )
                    .bind(d)
                    .bind(i)
                    .fetch_optional(&pool)
                    .await
                })?;
                text.map(|t| {
                    serde_json::from_str(&t).map_err(|source| StoreError::Corrupt {
                        tree: "mailconfd_status",
                        key: format!("{domain}|{issuer}"),
                        source,
                    })
                })
                .transpose()
            },
            |_, _| {},
            |cache| cache.status(domain, issuer),
        )
    }

    fn put_status(
        &self,
        domain: &str,
        issuer: &str,
        status: &DomainStatus,
    ) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let text = serde_json::to_string(status)
            .expect("DomainStatus serializes: plain strings and integers");
        let (d, i) = (domain.to_owned(), issuer.to_owned());
        self.call(move |pool| async move {
            sqlx::query(
                "INSERT INTO mailconfd_status (domain, issuer, status) VALUES ($1, $2, $3)
                 ON CONFLICT (domain, issuer) DO UPDATE SET status = $3",
            )
            .bind(d)
            .bind(i)
            .bind(text)
            .execute(&pool)
            .await
        })?;
        let _ = self
            .cache
            .as_ref()
            .map(|c| c.put_status(domain, issuer, status));
        Ok(())
    }

    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let n = name.to_owned();
        self.read_or_cached(
            || {
                let row = self.call(move |pool| async move {
                    sqlx::query("SELECT value, encrypted FROM mailconfd_blobs WHERE name = $1")
                        .bind(n)
                        .fetch_optional(&pool)
                        .await
                })?;
                row.map(|r| self.unseal(r.get("value"), r.get("encrypted"), &blob_row(name)))
                    .transpose()
            },
            |cache, value| {
                if let Some(v) = value {
                    let _ = cache.put_blob(name, v);
                }
            },
            |cache| cache.blob(name),
        )
    }

    fn put_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let (sealed, encrypted) = self.seal(value, &blob_row(name));
        let n = name.to_owned();
        self.call(move |pool| async move {
            sqlx::query(
                "INSERT INTO mailconfd_blobs (name, value, encrypted) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET value = $2, encrypted = $3",
            )
            .bind(n)
            .bind(sealed)
            .bind(encrypted)
            .execute(&pool)
            .await
        })?;
        let _ = self.cache.as_ref().map(|c| c.put_blob(name, value));
        Ok(())
    }

    /// Every write is committed (hence durable) before it returns.
    fn flush(&self) -> Result<(), StoreError> {
        self.cache.as_ref().map_or(Ok(()), SledStore::flush)
    }

    fn recover(&self) -> Result<(), StoreError> {
        self.ensure_schema()?;
        self.call(|pool| async move { sqlx::query("SELECT 1").execute(&pool).await })?;
        Ok(())
    }

    fn dump(&self) -> Result<Dump, StoreError> {
        self.ensure_schema()?;
        let mut dump = Dump::new();
        let accounts = self.call(|pool| async move {
            sqlx::query("SELECT directory_url, credentials, encrypted FROM mailconfd_accounts ORDER BY directory_url")
                .fetch_all(&pool)
                .await
        })?;
        for r in &accounts {
            let url: String = r.get("directory_url");
            let plain =
                self.unseal(r.get("credentials"), r.get("encrypted"), &account_row(&url))?;
            dump.push_account(&url, &plain);
        }
        for (domain, record) in self.select_certs(None)? {
            dump.certs.push(dump::Cert { domain, record });
        }
        let statuses = self.call(|pool| async move {
            sqlx::query(
                "SELECT domain, issuer, status FROM mailconfd_status ORDER BY domain, issuer",
            )
            .fetch_all(&pool)
            .await
        })?;
        for r in &statuses {
            let (domain, issuer, text): (String, String, String) =
                (r.get("domain"), r.get("issuer"), r.get("status"));
            let status = serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
                tree: "mailconfd_status",
                key: format!("{domain}|{issuer}"),
                source,
            })?;
            dump.statuses.push(dump::Status {
                domain,
                issuer,
                status,
            });
        }
        let blobs = self.call(|pool| async move {
            sqlx::query("SELECT name, value, encrypted FROM mailconfd_blobs ORDER BY name")
                .fetch_all(&pool)
                .await
        })?;
        for r in &blobs {
            let name: String = r.get("name");
            let plain = self.unseal(r.get("value"), r.get("encrypted"), &blob_row(&name))?;
            dump.push_blob(&name, &plain);
        }
        Ok(dump)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn bulk(&self) -> Option<Result<Bulk, StoreError>> {
        let load = || -> Result<Bulk, StoreError> {
            self.ensure_schema()?;
            let mut bulk = Bulk::default();
            for (domain, record) in self.select_certs(None)? {
                bulk.certs.entry(domain).or_default().push(record);
            }
            let rows = self.call(|pool| async move {
                sqlx::query("SELECT domain, issuer, status FROM mailconfd_status")
                    .fetch_all(&pool)
                    .await
            })?;
            for r in &rows {
                let (domain, issuer, text): (String, String, String) =
                    (r.get("domain"), r.get("issuer"), r.get("status"));
                if let Ok(status) = serde_json::from_str(&text) {
                    bulk.statuses.insert((domain, issuer), status);
                }
            }
            Ok(bulk)
        };
        Some(load().inspect(|bulk| {
            if let Some(cache) = &self.cache {
                for (domain, records) in &bulk.certs {
                    keep_certs(cache, domain, records);
                }
            }
        }))
    }

    fn try_lease(&self, domain: &str, issuer: &str) -> Result<bool, StoreError> {
        self.ensure_schema()?;
        let (d, i, node) = (domain.to_owned(), issuer.to_owned(), self.node.clone());
        let secs = self.lease_secs as f64;
        self.call(move |pool| leases::take(pool, d, i, node, secs))
    }

    fn release_lease(&self, domain: &str, issuer: &str) -> Result<(), StoreError> {
        let (d, i, node) = (domain.to_owned(), issuer.to_owned(), self.node.clone());
        self.call(move |pool| leases::release(pool, d, i, node))
    }

    fn set_lease_order(
        &self,
        domain: &str,
        issuer: &str,
        order_url: &str,
        names: &[String],
    ) -> Result<(), StoreError> {
        let (d, i, node) = (domain.to_owned(), issuer.to_owned(), self.node.clone());
        let (url, names) = (order_url.to_owned(), names.join(" "));
        self.call(move |pool| leases::set_order(pool, d, i, node, url, names))
    }

    fn lease_order(
        &self,
        domain: &str,
        issuer: &str,
    ) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let (d, i) = (domain.to_owned(), issuer.to_owned());
        self.call(move |pool| leases::order(pool, d, i))
    }

    fn lease_renewal(&self) -> Option<Duration> {
        Some(Duration::from_secs((self.lease_secs / 3).max(1)))
    }

    fn put_challenge(&self, answer: &ChallengeAnswer) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let answer = answer.clone();
        self.call(move |pool| challenges::put(pool, answer))
    }

    fn challenge(
        &self,
        kind: ChallengeKind,
        name: &str,
        token: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let (n, t) = (name.to_owned(), token.unwrap_or("").to_owned());
        self.call(move |pool| challenges::get(pool, kind, n, t))
    }

    fn clear_challenge(&self, answer: &ChallengeAnswer) -> Result<(), StoreError> {
        let answer = answer.clone();
        self.call(move |pool| challenges::clear(pool, answer))
    }

    fn take_order_token(&self, name: &str, per_3h: u32) -> Option<Result<OrderToken, StoreError>> {
        let taken = self.ensure_schema().and_then(|()| {
            let name = name.to_owned();
            self.call(move |pool| order_budget::take(pool, name, per_3h))
        });
        Some(taken)
    }

    fn give_back_order_token(&self, name: &str, per_3h: u32) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let name = name.to_owned();
        self.call(move |pool| order_budget::give_back(pool, name, per_3h))
    }
}
