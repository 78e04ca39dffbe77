//! Tests of the server glue: the operator token hash, the list of served services.

use std::path::Path;

use shared::secrets::hash_token;

use super::*;

fn settings(dir: &Path) -> Settings {
    Settings {
        data_dir: dir.to_owned(),
        ..Settings::default()
    }
}

/// The file handling (configured, blank and existing tokens) is tested in
/// `shared::operator_token`; this checks the glue: this service's prefix, encoding and hash.
#[test]
fn the_operator_token_hash_is_of_the_generated_or_configured_token() {
    let dir = tempfile::tempdir().unwrap();
    let generated = operator_token_hash(&settings(dir.path())).unwrap();
    let token = std::fs::read_to_string(operator_token_path(dir.path())).unwrap();
    let token = token.trim();
    // 256 random bits, base64url.
    assert!(token.starts_with(OPERATOR_PREFIX), "{token}");
    assert_eq!(token.len(), OPERATOR_PREFIX.len() + 43, "{token}");
    assert_eq!(generated, hash_token(token));
    assert_eq!(
        operator_token_hash(&settings(dir.path())).unwrap(),
        generated
    );
}

#[test]
fn every_identity_service_of_the_protos_is_named() {
    use prost::Message as _;
    let fds = prost_types::FileDescriptorSet::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut in_protos: Vec<String> = fds
        .file
        .iter()
        .filter(|f| f.package() == "identity.v1")
        .flat_map(|f| {
            f.service
                .iter()
                .map(|s| format!("identity.v1.{}", s.name()))
        })
        .collect();
    in_protos.sort();
    let mut named: Vec<String> = SERVICE_NAMES.iter().map(|s| (*s).to_owned()).collect();
    named.sort();
    assert_eq!(in_protos, named);
}
