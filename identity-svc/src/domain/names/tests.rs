//! Tests of resource-name parsing and formatting.

use super::*;

#[test]
fn names_round_trip_and_reject_other_shapes() {
    let o = Uuid::new_v4();
    let u = Uuid::new_v4();
    assert_eq!(user(&fmt::user(o, u)), Some((o, u)));
    assert_eq!(user(&format!("organizations/{o}/groups/{u}")), None);
    assert_eq!(user(&format!("organizations/{o}/users/")), None);
    assert_eq!(
        role(&fmt::role(o, "administrator")),
        Some((o, "administrator".into()))
    );
    assert_eq!(role(&fmt::role(o, "boss")), None);
    assert_eq!(stage(&fmt::stage(o, "qa")), Some((o, "qa".into())));
    assert_eq!(org("organizations/not-a-uuid"), None);
}

/// A principal name of `org` by the allocating parsers (as the gRPC layer's `parse_principal`).
fn principal_by_allocating(org: Uuid, name: &str) -> Option<Principal> {
    if let Some((o, u)) = user(name) {
        return (o == org).then_some(Principal::User(u));
    }
    service_account(name)
        .filter(|(o, _)| *o == org)
        .map(|(_, s)| Principal::ServiceAccount(s))
}

/// The allocation-free parsers of one organization's names give exactly what the allocating
/// ones give.
#[test]
fn name_parsers_agree_with_names() {
    let org = Uuid::new_v4();
    let other = Uuid::new_v4();
    let id = Uuid::new_v4();
    let mut ids: Vec<String> = Vec::new();
    for o in [org, other] {
        for form in [
            o.to_string(),
            o.to_string().to_uppercase(),
            o.simple().to_string(),
            o.braced().to_string(),
            o.urn().to_string(),
        ] {
            ids.push(form);
        }
    }
    ids.extend(["", "x", "not-a-uuid", "production", "development"].map(String::from));
    ids.push(id.to_string());
    let collections = [
        "users",
        "serviceAccounts",
        "stages",
        "apps",
        "roles",
        "",
        "Users",
    ];
    let mut names: Vec<String> = vec![
        String::new(),
        "/".into(),
        "organizations".into(),
        format!("organizations/{org}"),
        format!("organizations/{org}/"),
        format!("/organizations/{org}/users/{id}"),
    ];
    for o in &ids {
        for c in collections {
            for x in &ids {
                names.push(format!("organizations/{o}/{c}/{x}"));
                names.push(format!("organizations/{o}/{c}/{x}/"));
                names.push(format!("organizations/{o}/{c}/{x}/more/{x}"));
                names.push(format!("organisations/{o}/{c}/{x}"));
            }
        }
    }
    let mut hits = [0; 3];
    for name in &names {
        let want = principal_by_allocating(org, name);
        assert_eq!(principal_of(org, name), want, "{name}");
        let want_stage = stage(name).filter(|(o, _)| *o == org).map(|(_, k)| k);
        assert_eq!(stage_of(org, name).map(str::to_owned), want_stage, "{name}");
        let want_app = app(name).filter(|(o, _)| *o == org).map(|(_, a)| a);
        assert_eq!(app_of(org, name), want_app, "{name}");
        hits[0] += usize::from(want.is_some());
        hits[1] += usize::from(want_stage.is_some());
        hits[2] += usize::from(want_app.is_some());
    }
    // Every parser accepted something (the corpus is not all rejections).
    assert!(hits.iter().all(|h| *h > 0), "{hits:?}");
}
