//! Tests of the configuration layering: defaults, file, environment (in a child process), flags.

use shared::testkit::env::{in_child, run_in_child};

use super::*;

fn args(list: &[&str]) -> Args {
    Args::try_parse_from(std::iter::once("identity-svc").chain(list.iter().copied())).unwrap()
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn defaults_without_file_env_or_flags() {
    let s = Settings::default();
    assert_eq!(s.listen, "127.0.0.1:50051".parse().unwrap());
    assert_eq!(s.data_dir, PathBuf::from("./data/identity"));
    assert_eq!(
        s.database(),
        Database::Sqlite(PathBuf::from("./data/identity/identity.db"))
    );
    assert_eq!(s.mailbox(), PathBuf::from("./data/identity/mailbox"));
    assert!(s.operator_token.is_none());
    assert_eq!(s.log_format, LogFormat::Pretty);
    assert_eq!(s.metrics_listen, None);
    assert_eq!(s.grpc, GrpcSettings::default());
    assert!(s.smtp.is_none());
    // An empty file is a complete configuration.
    let file = toml_file("");
    let path = file.path().to_str().unwrap();
    let loaded = Settings::from_args(&args(&["--config", path])).unwrap();
    assert_eq!(format!("{loaded:?}"), format!("{s:?}"));
}

#[test]
fn flags_override_the_file() {
    let file = toml_file(
        r#"
        listen = "127.0.0.1:7000"
        data_dir = "/srv/file"
        log_format = "json"
        operator_token = "odc_op_from_file"
        metrics_listen = "127.0.0.1:9000"
        [grpc]
        concurrency_limit = 8
        [smtp]
        host = "relay.local"
        from = "ODC <no-reply@example.com>"
        "#,
    );
    let path = file.path().to_str().unwrap();
    let s = Settings::from_args(&args(&["--config", path])).unwrap();
    assert_eq!(s.listen, "127.0.0.1:7000".parse().unwrap());
    assert_eq!(s.data_dir, PathBuf::from("/srv/file"));
    assert_eq!(s.mailbox(), PathBuf::from("/srv/file/mailbox"));
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.grpc.concurrency_limit, 8);
    assert_eq!(s.grpc.request_timeout_secs, 30);
    assert_eq!(
        s.operator_token.as_ref().map(Secret::expose),
        Some("odc_op_from_file")
    );
    let smtp = s.smtp.unwrap();
    assert_eq!((smtp.host.as_str(), smtp.port), ("relay.local", 25));

    let s = Settings::from_args(&args(&[
        "--config",
        path,
        "--listen",
        "127.0.0.1:7001",
        "--data-dir",
        "/srv/flag",
        "--log-format",
        "pretty",
        "--metrics-listen",
        "127.0.0.1:9999",
        "--database-url",
        "postgres://postgres@127.0.0.1:5432/identity",
    ]))
    .unwrap();
    assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
    assert_eq!(s.data_dir, PathBuf::from("/srv/flag"));
    assert_eq!(s.log_format, LogFormat::Pretty);
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9999".parse().unwrap()));
    assert!(matches!(s.database(), Database::Postgres(_)));
    assert_eq!(
        s.grpc.concurrency_limit, 8,
        "file values without a flag stay"
    );
}

#[test]
fn environment_overrides_the_file_and_flags_override_the_environment() {
    if !in_child() {
        run_in_child(
            "config::tests::environment_overrides_the_file_and_flags_override_the_environment",
            &[
                ("IDENTITY_DATA_DIR", "/srv/env"),
                ("IDENTITY_LISTEN", "127.0.0.1:7002"),
                ("IDENTITY_GRPC__REQUEST_TIMEOUT_SECS", "5"),
                ("IDENTITY_HEALTH__PROBE_INTERVAL_MS", "250"),
                ("IDENTITY_SMTP__PORT", "2525"),
                ("IDENTITY_OPERATOR_TOKEN", "odc_op_from_env"),
                // A variable with the prefix that is no setting is ignored, not an error.
                ("IDENTITY_NOT_A_SETTING", "1"),
            ],
        );
        return;
    }
    let file = toml_file(
        r#"
        data_dir = "/srv/file"
        [grpc]
        concurrency_limit = 8
        request_timeout_secs = 60
        [health]
        probe_interval_ms = 500
        probe_timeout_ms = 700
        [smtp]
        host = "relay.local"
        from = "no-reply@example.com"
        "#,
    );
    let path = file.path().to_str().unwrap();
    let s = Settings::from_args(&args(&["--config", path, "--listen", "127.0.0.1:7001"])).unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/srv/env"));
    assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
    assert_eq!(s.grpc.request_timeout_secs, 5);
    assert_eq!(s.grpc.concurrency_limit, 8);
    assert_eq!(
        (s.health.probe_interval_ms, s.health.probe_timeout_ms),
        (250, 700)
    );
    assert_eq!(s.smtp.map(|m| m.port), Some(2525));
    assert_eq!(
        s.operator_token.as_ref().map(Secret::expose),
        Some("odc_op_from_env")
    );
    let s = Settings::from_args(&args(&["--config", path])).unwrap();
    assert_eq!(s.listen, "127.0.0.1:7002".parse().unwrap());
    // The environment alone cannot make a half SMTP section complete.
    assert!(Settings::from_args(&args(&[])).is_err());
}

#[test]
fn rejects_a_missing_config_file_and_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    assert!(Settings::from_args(&args(&["--config", missing.to_str().unwrap()])).is_err());
    let file = toml_file("listen = \"not an address\"");
    let err = Settings::from_args(&args(&["--config", file.path().to_str().unwrap()])).unwrap_err();
    assert!(err.to_string().contains("listen"), "{err}");
    let file = toml_file("log_format = \"yaml\"");
    assert!(Settings::from_args(&args(&["--config", file.path().to_str().unwrap()])).is_err());
    assert!(Args::try_parse_from(["identity-svc", "--log-format", "yaml"]).is_err());
    assert!(Args::try_parse_from(["identity-svc", "--listen", "nowhere"]).is_err());
}

#[test]
fn debug_hides_the_operator_token_and_database_password() {
    let s = Settings {
        operator_token: Some(Secret::new("odc_op_supersecret")),
        database_url: Some("postgres://app:hunter2@db:5432/identity".into()),
        ..Settings::default()
    };
    let text = format!("{s:?} {:?} {}", s.database(), s.database());
    assert!(!text.contains("supersecret"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("postgres://app:***@db:5432/identity"),
        "{text}"
    );
}

fn secret_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn secrets_come_from_files_trimmed() {
    let url = secret_file("postgres://app:from-file@db:5432/identity\n");
    let token = secret_file("  odc_op_from_file\n");
    let password = secret_file("smtp-pass-from-file\n");
    let config = toml_file(&format!(
        r#"
        operator_token_file = "{}"
        [smtp]
        host = "relay.example"
        from = "no-reply@example.com"
        tls = "starttls"
        username = "identity"
        password_file = "{}"
        "#,
        token.path().display(),
        password.path().display()
    ));
    let s = Settings::from_args(&args(&[
        "--config",
        config.path().to_str().unwrap(),
        "--database-url-file",
        url.path().to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(
        s.database_url.as_deref(),
        Some("postgres://app:from-file@db:5432/identity")
    );
    assert!(matches!(s.database(), Database::Postgres(_)));
    assert_eq!(
        s.operator_token.as_ref().map(Secret::expose),
        Some("odc_op_from_file")
    );
    let smtp = s.smtp.as_ref().unwrap();
    assert_eq!(smtp.tls, SmtpTls::Starttls);
    assert_eq!(smtp.username.as_deref(), Some("identity"));
    assert_eq!(
        smtp.password.as_ref().map(Secret::expose),
        Some("smtp-pass-from-file")
    );
    // The log shows the files, not what is in them.
    let text = format!("{s:?}");
    assert!(text.contains(&token.path().display().to_string()), "{text}");
    for secret in ["from-file@", "odc_op_from_file", "smtp-pass-from-file"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn a_secret_set_inline_and_as_a_file_is_an_error_naming_it() {
    let token = secret_file("odc_op_from_file\n");
    let config = toml_file(&format!(
        "operator_token = \"odc_op_inline\"\noperator_token_file = \"{}\"\n",
        token.path().display()
    ));
    let err = Settings::from_args(&args(&["--config", config.path().to_str().unwrap()]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("operator_token and operator_token_file are both set"),
        "{err}"
    );
    assert!(!err.contains("odc_op_"), "{err}");

    let password = secret_file("pw\n");
    let config = toml_file(&format!(
        "[smtp]\nhost = \"h\"\nfrom = \"a@b.example\"\npassword = \"pw\"\npassword_file = \"{}\"\n",
        password.path().display()
    ));
    let err = Settings::from_args(&args(&["--config", config.path().to_str().unwrap()]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("smtp.password and smtp.password_file"),
        "{err}"
    );

    // The flag and the inline flag exclude each other on the command line already.
    assert!(
        Args::try_parse_from([
            "identity-svc",
            "--database-url",
            "postgres://h/db",
            "--database-url-file",
            "/run/secrets/db"
        ])
        .is_err()
    );
    let empty = secret_file("\n");
    let err = Settings::from_args(&args(&[
        "--database-url-file",
        empty.path().to_str().unwrap(),
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("database_url_file") && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn secret_files_from_the_environment() {
    if !in_child() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        let password = dir.path().join("password");
        std::fs::write(&token, "odc_op_env_file\n").unwrap();
        std::fs::write(&password, "env-file-pass\n").unwrap();
        run_in_child(
            "config::tests::secret_files_from_the_environment",
            &[
                ("IDENTITY_OPERATOR_TOKEN_FILE", token.to_str().unwrap()),
                ("IDENTITY_SMTP__HOST", "relay.example"),
                ("IDENTITY_SMTP__FROM", "no-reply@example.com"),
                ("IDENTITY_SMTP__TLS", "implicit"),
                ("IDENTITY_SMTP__USERNAME", "identity"),
                ("IDENTITY_SMTP__PASSWORD_FILE", password.to_str().unwrap()),
            ],
        );
        return;
    }
    let s = Settings::from_args(&args(&[])).unwrap();
    assert_eq!(
        s.operator_token.as_ref().map(Secret::expose),
        Some("odc_op_env_file")
    );
    let smtp = s.smtp.unwrap();
    assert_eq!(smtp.tls, SmtpTls::Implicit);
    assert_eq!(
        smtp.password.as_ref().map(Secret::expose),
        Some("env-file-pass")
    );
}

#[test]
fn tls_settings_from_the_file_the_environment_and_flags() {
    if !in_child() {
        run_in_child(
            "config::tests::tls_settings_from_the_file_the_environment_and_flags",
            &[
                ("IDENTITY_TLS__CERT_FILE", "/etc/identity/env-cert.pem"),
                ("IDENTITY_TLS__KEY_FILE", "/etc/identity/env-key.pem"),
            ],
        );
        return;
    }
    let file = toml_file(
        r#"
        [tls]
        cert_file = "/etc/identity/file-cert.pem"
        client_ca_file = "/etc/identity/clients.pem"
        reload_interval_ms = 0
        "#,
    );
    let path = file.path().to_str().unwrap();
    let s = Settings::from_args(&args(&["--config", path])).unwrap();
    assert_eq!(
        s.tls.cert_file,
        Some(PathBuf::from("/etc/identity/env-cert.pem"))
    );
    assert_eq!(
        s.tls.key_file,
        Some(PathBuf::from("/etc/identity/env-key.pem"))
    );
    assert_eq!(
        s.tls.client_ca_file,
        Some(PathBuf::from("/etc/identity/clients.pem"))
    );
    assert_eq!(s.tls.reload_interval(), None);
    assert_eq!(
        s.tls.transport().unwrap(),
        shared::tls::Transport::MutualTls
    );
    let s = Settings::from_args(&args(&[
        "--config",
        path,
        "--tls-cert-file",
        "/etc/identity/flag-cert.pem",
    ]))
    .unwrap();
    assert_eq!(
        s.tls.cert_file,
        Some(PathBuf::from("/etc/identity/flag-cert.pem"))
    );
    assert_eq!(
        s.tls.key_file,
        Some(PathBuf::from("/etc/identity/env-key.pem"))
    );
}

#[test]
fn login_limits_come_from_the_file_and_the_environment() {
    if !in_child() {
        run_in_child(
            "config::tests::login_limits_come_from_the_file_and_the_environment",
            &[
                ("IDENTITY_LOGIN__HASH_WORKERS", "3"),
                ("IDENTITY_LOGIN__TRUSTED_PROXIES", "[\"10.0.0.1\"]"),
            ],
        );
        return;
    }
    assert_eq!(Settings::default().login, LoginSettings::default());
    assert_eq!(
        crate::core::lockout::LockoutPolicy::from(&LoginSettings::default()),
        crate::core::lockout::LockoutPolicy::default()
    );
    let file = toml_file(
        r"
        [login]
        hash_workers = 1
        hash_queue = 4
        address_rate_per_minute = 30
        address_burst = 5
        lockout_threshold = 3
        lockout_base_wait_secs = 10
        lockout_max_wait_secs = 600
        lockout_reset_secs = 3600
        familiar_address_days = 7
        familiar_addresses_max = 50
        ",
    );
    let s = Settings::from_args(&args(&["--config", file.path().to_str().unwrap()])).unwrap();
    assert_eq!(s.login.hash_workers, 3, "the environment wins");
    assert_eq!(
        s.login.trusted_proxies,
        vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        (
            s.login.hash_queue,
            crate::core::hashing::HashPool::from_settings(&s.login).workers()
        ),
        (4, 3)
    );
    assert_eq!(
        (s.login.address_rate_per_minute, s.login.address_burst),
        (30, 5)
    );
    let p = crate::core::lockout::LockoutPolicy::from(&s.login);
    assert_eq!(p.threshold, 3);
    assert_eq!(p.wait(3), 10_000_000);
    assert_eq!(p.max_wait, 600_000_000);
    assert_eq!(p.reset_after, 3_600_000_000);
    assert_eq!(p.familiar_for, 7 * 86_400_000_000);
    assert_eq!(p.familiar_max, 50);
}

#[test]
fn mail_outbox_settings_come_from_the_file_and_the_environment() {
    if !in_child() {
        run_in_child(
            "config::tests::mail_outbox_settings_come_from_the_file_and_the_environment",
            &[("IDENTITY_MAIL__RETRY_MAX_MS", "60000")],
        );
        return;
    }
    let d = Settings::default().mail;
    assert_eq!(
        (
            d.poll_interval_ms,
            d.retry_base_ms,
            d.retry_max_ms,
            d.lease_ms
        ),
        (1000, 5000, 900_000, 120_000)
    );
    let file = toml_file(
        r"
        [mail]
        poll_interval_ms = 250
        retry_base_ms = 1000
        retry_max_ms = 30000
        lease_ms = 90000
        ",
    );
    let s = Settings::from_args(&args(&["--config", file.path().to_str().unwrap()])).unwrap();
    assert_eq!(
        (
            s.mail.poll_interval_ms,
            s.mail.retry_base_ms,
            s.mail.retry_max_ms,
            s.mail.lease_ms
        ),
        (250, 1000, 60_000, 90_000),
        "the file's, the environment's retry_max_ms"
    );
}
