//! Environment variables in tests. They cannot be set safely inside a multi-threaded test
//! process, so a test that needs some runs itself again in a child process of the test binary,
//! with the variables set on that command only:
//!
//! ```no_run
//! # use shared::testkit::env::{in_child, run_in_child};
//! #[test]
//! fn the_environment_overrides_the_file() {
//!     if !in_child() {
//!         run_in_child(
//!             "config::tests::the_environment_overrides_the_file",
//!             &[("IDENTITY_LISTEN", "127.0.0.1:7002")],
//!         );
//!         return;
//!     }
//!     // In the child: load the settings and assert on them.
//! }
//! ```

use std::process::Command;

/// Set in the child process, so the test knows it is the child.
pub const CHILD_VAR: &str = "SHARED_TESTKIT_CHILD";

/// Whether this process is a child started by [`run_in_child`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD_VAR).is_some()
}

/// Runs the test `name` (its full path in the test binary, e.g. `config::tests::env_wins`)
/// alone in a child process of this test binary with `env` added, and asserts that it passed.
///
/// # Panics
/// When the child cannot be started or its test did not pass (its output is in the message).
pub fn run_in_child(name: &str, env: &[(&str, &str)]) {
    let exe =
        std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test binary: {e}"));
    let mut command = Command::new(exe);
    command
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run the child test {name}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::{in_child, run_in_child};

    #[test]
    fn the_child_sees_the_variables() {
        if !in_child() {
            run_in_child(
                "testkit::env::tests::the_child_sees_the_variables",
                &[("SHARED_TESTKIT_PROBE", "42")],
            );
            assert!(std::env::var_os("SHARED_TESTKIT_PROBE").is_none());
            return;
        }
        assert_eq!(std::env::var("SHARED_TESTKIT_PROBE").unwrap(), "42");
    }
}
