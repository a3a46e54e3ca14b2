//! Challenge answers published for every node: the node that receives the
//! CA's validation may not be the one that ordered.

use sqlx::PgPool;

use crate::store::{ChallengeAnswer, ChallengeKind};

/// A challenge answer nobody withdrew (its node died) is gone after this.
const CHALLENGE_TTL_SECS: f64 = 900.0;

/// Publishes `answer` (replacing an older one), and drops expired answers.
pub async fn put(pool: PgPool, answer: ChallengeAnswer) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM mailconfd_challenges WHERE expires_at < clock_timestamp()")
        .execute(tx.as_mut())
        .await?;
    sqlx::query(
        "INSERT INTO mailconfd_challenges (kind, name, token, value, expires_at)
         VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5))
         ON CONFLICT (kind, name, token) DO UPDATE SET value = $4, expires_at = EXCLUDED.expires_at",
    )
    .bind(answer.kind.as_str())
    .bind(&answer.name)
    .bind(&answer.token)
    .bind(&answer.value)
    .bind(CHALLENGE_TTL_SECS)
    .execute(tx.as_mut())
    .await?;
    tx.commit().await
}

/// A published, unexpired answer (`token` empty for TLS-ALPN-01).
pub async fn get(
    pool: PgPool,
    kind: ChallengeKind,
    name: String,
    token: String,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT value FROM mailconfd_challenges
         WHERE kind = $1 AND name = $2 AND token = $3 AND expires_at > clock_timestamp()",
    )
    .bind(kind.as_str())
    .bind(name)
    .bind(token)
    .fetch_optional(&pool)
    .await
}

/// Withdraws a published answer once its order ended.
pub async fn clear(pool: PgPool, answer: ChallengeAnswer) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM mailconfd_challenges WHERE kind = $1 AND name = $2 AND token = $3")
        .bind(answer.kind.as_str())
        .bind(&answer.name)
        .bind(&answer.token)
        .execute(&pool)
        .await?;
    Ok(())
}
