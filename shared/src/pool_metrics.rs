//! Connection-pool use of a service's database, as gauges: sampled by each service's database
//! health probe (every probe interval), so no task of its own is needed.

/// Gauge of the pool's open connections, labelled `state`: `in_use` or `idle`.
pub const POOL_CONNECTIONS: &str = "db_pool_connections";
/// Gauge of the most connections the pool opens.
pub const POOL_MAX_CONNECTIONS: &str = "db_pool_max_connections";

/// Records how many of `pool`'s connections are in use and idle, and its maximum.
pub fn record_pool_use<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) {
    let open = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(open).min(open);
    ::metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use").set(f64::from(open - idle));
    ::metrics::gauge!(POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    ::metrics::gauge!(POOL_MAX_CONNECTIONS).set(f64::from(pool.options().get_max_connections()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_connections_in_use_and_idle() {
        let pool = sqlx::pool::PoolOptions::<sqlx::Sqlite>::new()
            .max_connections(3)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let held = pool.acquire().await.unwrap();
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || record_pool_use(&pool));
        let text = handle.render();
        for line in [
            r#"db_pool_connections{state="in_use"} 1"#,
            "db_pool_max_connections 3",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        drop(held);
    }
}
