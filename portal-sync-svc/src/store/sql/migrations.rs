//! Tests: every migration file of both backends is in its backend's embedded list (the lists
//! are the backends' `MIGRATIONS`, run by the kit's `shared::migrations::embedded_migrator`).

/// A migration file that is not in its backend's list would silently never run.
#[test]
fn every_migration_file_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let backends = [
        ("sqlite", crate::store::sqlite::MIGRATIONS),
        ("postgres", crate::store::postgres::MIGRATIONS),
    ];
    assert_eq!(
        shared::migrations::missing_from(&dir, &backends).unwrap(),
        None
    );
}
