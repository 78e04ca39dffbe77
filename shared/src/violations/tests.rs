//! Tests of collecting violations and of reading the common request fields.

use tonic::Code;
use tonic_types::StatusExt as _;

use super::Violations;

#[test]
fn empty_is_ok_and_one_is_an_error() {
    assert_eq!(Violations::new().finish(), Ok(()));
    let err = Violations::one("name", "is required").finish().unwrap_err();
    assert_eq!(err.to_string(), "name: is required");
}

#[test]
fn check_passes_values_and_records_errors_in_order() {
    let mut v = Violations::new();
    assert_eq!(v.check("a", Ok::<_, String>(1)), Some(1));
    assert_eq!(v.check::<u8, _>("b", Err("too big")), None);
    v.add("c", "is required");
    assert_eq!(
        v.iter().collect::<Vec<_>>(),
        [("b", "too big"), ("c", "is required")]
    );
    assert_eq!(
        Vec::<(String, String)>::from(v),
        [
            ("b".to_owned(), "too big".to_owned()),
            ("c".to_owned(), "is required".to_owned())
        ]
    );
}

#[test]
fn into_status_is_a_bad_request_under_the_domain() {
    let mut v = Violations::new();
    v.add("email", "is required");
    v.add("role", "unknown");
    let status = v.into_status("identity.odc");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "request has invalid fields: email, role");
    let fields: Vec<_> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|f| (f.field, f.description))
        .collect();
    assert_eq!(
        fields,
        [
            ("email".to_owned(), "is required".to_owned()),
            ("role".to_owned(), "unknown".to_owned())
        ]
    );
    assert_eq!(
        status.get_details_error_info().unwrap().domain,
        "identity.odc"
    );
}

#[test]
fn texts_are_trimmed_and_bounded() {
    let mut v = Violations::new();
    assert_eq!(v.required_text("name", "  Ada  ", 3), "Ada");
    assert_eq!(v.required_text("title", "   ", 3), "");
    assert_eq!(v.required_text("city", "Paris", 3), "Paris");
    assert_eq!(v.optional_text("note", "", 3), "");
    assert_eq!(v.optional_text("bio", " long ", 3), "long");
    assert_eq!(
        v.iter().collect::<Vec<_>>(),
        [
            ("title", "is required"),
            ("city", "must be at most 3 characters"),
            ("bio", "must be at most 3 characters")
        ]
    );
}

#[test]
fn an_empty_mask_is_every_allowed_path() {
    let mut v = Violations::new();
    assert_eq!(v.mask_paths(None, &["a", "b"]), ["a", "b"]);
    let mask = prost_types::FieldMask {
        paths: vec!["b".into(), "c".into()],
    };
    assert_eq!(v.mask_paths(Some(&mask), &["a", "b"]), ["b", "c"]);
    assert_eq!(
        v.iter().collect::<Vec<_>>(),
        [("update_mask", "\"c\" cannot be updated; allowed: a, b")]
    );
}

#[test]
fn page_sizes_and_cursors() {
    let mut v = Violations::new();
    assert_eq!(v.page_size("page_size", 0, 50, 1000), 50);
    assert_eq!(v.page_size("page_size", 5000, 50, 1000), 1000);
    assert_eq!(v.page_size("page_size", -1, 50, 1000), 50);
    assert_eq!(v.page_cursor::<u64>("page_token", ""), None);
    let token = crate::page_token::try_encode(&7_u64).unwrap();
    assert_eq!(v.page_cursor::<u64>("page_token", &token), Some(7));
    assert_eq!(v.page_cursor::<u64>("page_token", "not a token"), None);
    assert_eq!(
        v.iter().collect::<Vec<_>>(),
        [
            ("page_size", "must not be negative"),
            ("page_token", "is not a page token of this list")
        ]
    );
}
