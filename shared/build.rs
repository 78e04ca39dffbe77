//! Compiles every `.proto` file under `../proto` once for the whole workspace.
//!
//! * `protox` parses the files in pure Rust, so no `protoc` has to be installed.
//! * `tonic-prost-build` generates messages, clients and servers into `OUT_DIR/<package>.rs`.
//! * `OUT_DIR/descriptor.bin` is the encoded `FileDescriptorSet` (with imports and comments) that
//!   the reflection service serves. It is written here because `compile_fds` never writes the
//!   `file_descriptor_set_path` itself (that only happens when prost-build runs `protoc`).
//! * `OUT_DIR/mods.rs` nests one `pub mod` per protobuf package (`identity.v1` →
//!   `identity::v1`), so a new package appears in `shared::proto` without touching `lib.rs`.

use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

const PROTO_DIR: &str = "../proto";

/// Lints that fire on (or are meaningless for) generated code.
const GENERATED_ALLOWS: &str = "#[allow(clippy::all, clippy::pedantic, missing_docs, \
     missing_debug_implementations, unreachable_pub, rust_2018_idioms)]";

fn main() -> Result<(), Box<dyn Error>> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let proto_dir = Path::new(PROTO_DIR);

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={PROTO_DIR}");

    let mut files = Vec::new();
    if proto_dir.is_dir() {
        collect_protos(proto_dir, &mut files)?;
    }
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    if files.is_empty() {
        // Nothing to generate yet; an empty buffer decodes as an empty FileDescriptorSet.
        fs::write(out_dir.join("descriptor.bin"), [])?;
        fs::write(
            out_dir.join("mods.rs"),
            "// No .proto files found under ../proto.\n",
        )?;
        return Ok(());
    }

    // Same settings as `protox::compile(files, [PROTO_DIR])`, but keeping the compiler around so
    // the descriptor set can be encoded by protox itself: that keeps custom options (e.g.
    // `google.api.field_behavior`) that a round trip through `prost_types` would drop.
    let mut compiler = protox::Compiler::new([PROTO_DIR])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(&files)?;
    let fds = compiler.file_descriptor_set();
    fs::write(
        out_dir.join("descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // Packages of our own files only; imports such as `google.protobuf` map to `prost_types`.
    let own_files: HashSet<&str> = compiler
        .files()
        .filter(|f| !f.is_import())
        .map(protox::file::FileMetadata::name)
        .collect();
    let mut packages = Vec::new();
    for file in fds.file.iter().filter(|f| own_files.contains(f.name())) {
        let package = file.package();
        if package.is_empty() {
            println!(
                "cargo:warning={} has no `package`; it is not exposed in shared::proto",
                file.name()
            );
        } else if !package.split('.').all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }) {
            // prost-build snake-cases package segments in cross-package paths; insisting on
            // lower_snake_case (the protobuf style guide) keeps our module names identical.
            return Err(format!(
                "{}: package `{package}` must consist of lower_snake_case segments",
                file.name()
            )
            .into());
        } else {
            packages.push(package.to_owned());
        }
    }
    packages.sort();
    packages.dedup();

    // `file_descriptor_set_path` is not set: prost-build only writes it when it runs `protoc`
    // itself, never from `compile_fds`, so `descriptor.bin` is written above instead.
    // Every message implements `prost::Name`, so the codec can find a request's descriptor;
    // the codec (shared/src/codec.rs) refuses undecodable requests and control characters
    // cleanly where prost's answers INTERNAL.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::ProtoCodec")
        .compile_fds_with_config(fds, config)?;

    fs::write(out_dir.join("mods.rs"), render_mods(&packages))?;
    Ok(())
}

/// Appends every `*.proto` below `dir` (recursively) to `out`.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

/// A node of the package tree: child segments and whether a package ends here.
#[derive(Default)]
struct Node {
    children: BTreeMap<String, Node>,
    package: Option<String>,
}

fn render_mods(packages: &[String]) -> String {
    let mut root = Node::default();
    for package in packages {
        let mut node = &mut root;
        for segment in package.split('.') {
            node = node.children.entry(segment.to_owned()).or_default();
        }
        node.package = Some(package.clone());
    }

    let mut out =
        String::from("// @generated by shared/build.rs: one module per protobuf package.\n");
    for (name, child) in &root.children {
        out.push_str(GENERATED_ALLOWS);
        out.push('\n');
        render_node(name, child, 0, &mut out);
    }
    out
}

fn render_node(name: &str, node: &Node, depth: usize, out: &mut String) {
    let indent = "    ".repeat(depth);
    let _ = writeln!(out, "{indent}pub mod {} {{", module_ident(name));
    if let Some(package) = &node.package {
        // prost-build names the file after the sanitized segments (`r#type.v1.rs`).
        let file: Vec<String> = package.split('.').map(module_ident).collect();
        let _ = writeln!(
            out,
            "{indent}    include!(concat!(env!(\"OUT_DIR\"), \"/{}.rs\"));",
            file.join(".")
        );
    }
    for (child_name, child) in &node.children {
        render_node(child_name, child, depth + 1, out);
    }
    let _ = writeln!(out, "{indent}}}");
}

/// Module name for a (lower_snake_case) package segment, spelled exactly as prost-build's
/// `sanitize_identifier` spells it in cross-package paths.
fn module_ident(segment: &str) -> String {
    const RAW: &[&str] = &[
        "as", "break", "const", "continue", "else", "enum", "false", "fn", "for", "if", "impl",
        "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static",
        "struct", "trait", "true", "type", "unsafe", "use", "where", "while", "dyn", "abstract",
        "become", "box", "do", "final", "macro", "override", "priv", "typeof", "unsized",
        "virtual", "yield", "async", "await", "try", "gen",
    ];
    const SUFFIXED: &[&str] = &["_", "super", "self", "extern", "crate"];
    if RAW.contains(&segment) {
        format!("r#{segment}")
    } else if SUFFIXED.contains(&segment) {
        format!("{segment}_")
    } else if segment.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{segment}")
    } else {
        segment.to_owned()
    }
}
