//! Tests of the request codec: text policy and undecodable requests, on real generated types.

use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

use super::*;
use crate::proto::identity::v1 as id;
use crate::proto::portal::v1 as portal;

fn bad_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

fn reason(status: &Status) -> (String, String) {
    let info = status.get_error_details().error_info().cloned().unwrap();
    (info.reason, info.domain)
}

fn decode<U: Message + Name + Default>(bytes: &[u8]) -> Result<U, Status> {
    decode_request::<U>(request_descriptor(U::PACKAGE, U::NAME).unwrap(), bytes)
}

fn create_user(display_name: &str) -> Vec<u8> {
    id::CreateUserRequest {
        parent: "organizations/x".into(),
        user: Some(id::User {
            email: "a@x.com".into(),
            display_name: display_name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn a_clean_request_decodes() {
    let r: id::CreateUserRequest = decode(&create_user("Zoë 日本 🦀")).unwrap();
    assert_eq!(r.user.unwrap().display_name, "Zoë 日本 🦀");
}

#[test]
fn a_control_character_anywhere_names_its_field() {
    for c in ['\0', '\n', '\u{1b}', '\u{7f}', '\u{85}'] {
        let err = decode::<id::CreateUserRequest>(&create_user(&format!("a{c}b"))).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{c:?}");
        assert_eq!(bad_fields(&err), ["user.display_name"]);
        assert_eq!(
            reason(&err),
            ("INVALID_ARGUMENT".into(), "identity.odc".into())
        );
    }
    let invite = id::InviteUserRequest {
        parent: "organizations/x".into(),
        email: "a@x.com".into(),
        groups: vec!["g".into(), "g\u{0}".into()],
        app_roles: vec![id::AppRoleAssignment {
            app: String::new(),
            role: "r\t".into(),
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let err = decode::<id::InviteUserRequest>(&invite).unwrap_err();
    assert_eq!(bad_fields(&err), ["app_roles[0].role", "groups[1]"]);
    let case = portal::CreateSupportCaseRequest {
        parent: "companies/x".into(),
        support_case: Some(portal::SupportCase {
            subject: "s".into(),
            cc: vec!["a@x.com".into(), "b@x.com".into(), "\u{0}".into()],
            ..Default::default()
        }),
    }
    .encode_to_vec();
    let err = decode::<portal::CreateSupportCaseRequest>(&case).unwrap_err();
    assert_eq!(bad_fields(&err), ["support_case.cc[2]"]);
    assert_eq!(reason(&err).1, "portal.odc");
}

#[test]
fn multi_line_fields_keep_line_feeds_and_tabs_only() {
    let group = |description: &str| {
        id::CreateGroupRequest {
            parent: "organizations/x".into(),
            group: Some(id::Group {
                display_name: "G".into(),
                description: description.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    assert!(decode::<id::CreateGroupRequest>(&group("one\ntwo\tthree")).is_ok());
    let err = decode::<id::CreateGroupRequest>(&group("nul\0")).unwrap_err();
    assert_eq!(bad_fields(&err), ["group.description"]);
    let err = decode::<id::CreateGroupRequest>(&group("cr\r\n")).unwrap_err();
    assert_eq!(bad_fields(&err), ["group.description"]);
}

#[test]
fn invalid_utf8_is_a_malformed_request_naming_the_field() {
    let mut bytes = create_user("MARK");
    let at = bytes.windows(4).position(|w| w == b"MARK").unwrap();
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    let err = decode::<id::CreateUserRequest>(&bytes).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        reason(&err),
        ("MALFORMED_REQUEST".into(), "identity.odc".into())
    );
    assert_eq!(bad_fields(&err), ["user.display_name"]);
}

#[test]
fn broken_wire_format_is_a_malformed_request() {
    let valid = create_user("Ada");
    let cases: Vec<Vec<u8>> = vec![
        valid[..valid.len() - 1].to_vec(),  // truncated
        vec![0x08 | 0x02, 0x05, b'a'],      // length past the end
        vec![0x0a | 0x07],                  // wire type 7
        vec![0x08, 0xff],                   // truncated varint
        vec![0x00, 0x00],                   // field number 0
        vec![0x0d, 0x01, 0x02, 0x03, 0x04], // `parent` as fixed32
        vec![0x0b, 0x08, 0x01],             // unterminated group
        [0xffu8; 11].to_vec(),              // varint over 64 bits
    ];
    for bytes in cases {
        let err = decode::<id::CreateUserRequest>(&bytes).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bytes:?}");
        assert_eq!(reason(&err).0, "MALFORMED_REQUEST", "{bytes:?}");
    }
}

#[test]
fn unknown_fields_and_groups_are_skipped_as_prost_does() {
    let mut bytes = create_user("Ada");
    // Field 99 as a group holding a varint, then field 98 as a string with a NUL.
    bytes.extend([0x9b, 0x06, 0x08, 0x01, 0x9c, 0x06]);
    bytes.extend([0x92, 0x06, 0x01, 0x00]);
    assert!(decode::<id::CreateUserRequest>(&bytes).is_ok());
}

#[test]
fn requests_are_known_and_never_responses() {
    let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut inputs = 0;
    for service in pool.services() {
        for method in service.methods() {
            let input = method.input();
            assert!(
                request_descriptor(input.package_name(), input.name()).is_some(),
                "{}",
                input.full_name()
            );
            inputs += 1;
            let output = method.output();
            assert!(
                request_descriptor(output.package_name(), output.name()).is_none(),
                "{} is both a request and a response",
                output.full_name()
            );
        }
    }
    assert!(inputs > 80, "{inputs}");
}

#[test]
fn multi_line_fields_exist_and_are_strings() {
    let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
    for full in crate::text::MULTI_LINE_FIELDS {
        let (message, field) = full.rsplit_once('.').unwrap();
        let field = pool
            .get_message_by_name(message)
            .and_then(|m| m.get_field_by_name(field))
            .unwrap_or_else(|| panic!("{full} is not a field"));
        assert!(
            matches!(field.kind(), prost_reflect::Kind::String),
            "{full}"
        );
    }
}

#[test]
fn domains_follow_the_package() {
    assert_eq!(error_domain("identity.v1"), "identity.odc");
    assert_eq!(error_domain("portal.v1"), "portal.odc");
}
