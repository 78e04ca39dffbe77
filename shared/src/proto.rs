//! Code generated from the workspace's `.proto` files, one module per protobuf package.
//!
//! `build.rs` compiles every file under `proto/` with `protox` (no `protoc` needed) and
//! `tonic-prost-build`, and writes a module tree mirroring the package names: package
//! `identity.v1` becomes `shared::proto::identity::v1`, a later `portal.v1` would appear as
//! `proto::portal::v1` without any change here. Generated code is exempt from the workspace's
//! pedantic lints (the allow list is in `build.rs`).

/// Encoded `google.protobuf.FileDescriptorSet` of all our `.proto` files and their imports,
/// including comments, for the gRPC reflection service.
///
/// Empty (a valid, empty set) while there are no `.proto` files.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

include!(concat!(env!("OUT_DIR"), "/mods.rs"));

#[cfg(test)]
mod tests {
    use prost::Message as _;

    #[test]
    fn descriptor_set_decodes() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        // Every file we ship must carry its package, or it would be missing from the module tree.
        for file in &fds.file {
            assert!(file.package.is_some(), "{:?} has no package", file.name);
        }
    }
}
