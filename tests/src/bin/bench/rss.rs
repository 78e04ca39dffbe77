//! The `rss` suite: the loaded identity server's RSS at each dataset size, and the bytes per
//! user between sizes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::Cli;
use crate::dataset::seeded;
use crate::identity_child::Server;
use crate::report::{Output, backend_name, round};

pub(crate) async fn suite(cli: &Cli, out: &Output) -> anyhow::Result<()> {
    let mut points: BTreeMap<usize, f64> = BTreeMap::new();
    for &n in &cli.sizes {
        let (backend, data) = seeded(cli, out, n).await?;
        let server = Server::spawn(&backend, &data).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss, hwm) = server.rss_mb();
        out.check(rss > 0.0, "identity RSS could not be read");
        out.target(
            "identity_rss_mb",
            rss,
            "MB",
            "<= 150 at 100k users",
            n < 100_000 || rss <= 150.0,
            &json!({
                "users": n, "backend": backend.name(), "phase": "loaded", "vm_hwm_mb": round(hwm),
                "startup_s": round(server.startup_secs),
            }),
        );
        points.insert(n, rss);
    }
    let v: Vec<(usize, f64)> = points.into_iter().collect();
    for w in v.windows(2) {
        let ((n0, r0), (n1, r1)) = (w[0], w[1]);
        let per_user = (r1 - r0) * 1024.0 * 1024.0 / (n1 - n0) as f64;
        out.target(
            "identity_rss_bytes_per_user",
            per_user,
            "bytes",
            "<= 1024",
            per_user <= 1024.0,
            &json!({ "from_users": n0, "to_users": n1, "backend": backend_name(cli) }),
        );
    }
    Ok(())
}
