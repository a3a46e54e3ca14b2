//! Order leases: one row per (domain, issuer) with an owner and an expiry,
//! so that one node orders a domain's certificate at a time cluster-wide,
//! and a dead node's lease lapses after `lease_secs`. The order a holder
//! placed is recorded on its lease, for the node that takes over.

use sqlx::PgPool;

/// Takes the lease when it is free, expired, or already `node`'s (a
/// renewal, or this node restarted under the same name). Whether `node`
/// holds it now.
pub async fn take(
    pool: PgPool,
    domain: String,
    issuer: String,
    node: String,
    secs: f64,
) -> Result<bool, sqlx::Error> {
    let owner: Option<String> = sqlx::query_scalar(
        "INSERT INTO mailconfd_leases (domain, issuer, owner, expires_at)
         VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
         ON CONFLICT (domain, issuer) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
         WHERE mailconfd_leases.expires_at < clock_timestamp() OR mailconfd_leases.owner = EXCLUDED.owner
         RETURNING owner",
    )
    .bind(domain)
    .bind(issuer)
    .bind(node)
    .bind(secs)
    .fetch_optional(&pool)
    .await?;
    Ok(owner.is_some())
}

/// Gives the lease back, if `node` holds it.
pub async fn release(
    pool: PgPool,
    domain: String,
    issuer: String,
    node: String,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM mailconfd_leases WHERE domain = $1 AND issuer = $2 AND owner = $3")
        .bind(domain)
        .bind(issuer)
        .bind(node)
        .execute(&pool)
        .await?;
    Ok(())
}

/// Records on `node`'s lease the order it placed (names space-separated).
pub async fn set_order(
    pool: PgPool,
    domain: String,
    issuer: String,
    node: String,
    order_url: String,
    names: String,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mailconfd_leases SET order_url = $4, order_names = $5
         WHERE domain = $1 AND issuer = $2 AND owner = $3",
    )
    .bind(domain)
    .bind(issuer)
    .bind(node)
    .bind(order_url)
    .bind(names)
    .execute(&pool)
    .await?;
    Ok(())
}

/// The order recorded on the lease, whoever holds it: URL and names.
pub async fn order(
    pool: PgPool,
    domain: String,
    issuer: String,
) -> Result<Option<(String, Vec<String>)>, sqlx::Error> {
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT order_url, order_names FROM mailconfd_leases WHERE domain = $1 AND issuer = $2",
    )
    .bind(domain)
    .bind(issuer)
    .fetch_optional(&pool)
    .await?;
    Ok(match row {
        Some((Some(url), Some(names))) => Some((
            url,
            names
                .split(' ')
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        _ => None,
    })
}
