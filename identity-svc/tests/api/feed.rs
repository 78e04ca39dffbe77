//! The change feed and audit trail: gap-free, commit-ordered, resumable, filterable.

use std::time::Duration;

use shared::proto::identity::v1 as pb;
use shared::proto::identity::v1::resource::Kind;
use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::helpers::*;

crate::api_tests!(
    a_watcher_from_zero_receives_every_event_in_order_without_gaps,
    resuming_at_cursor_n_yields_exactly_the_events_after_n,
    a_cursor_ahead_of_the_organization_is_out_of_range,
    every_event_carries_the_typed_resource_before_and_after,
    the_audit_trail_filters_by_actor_action_target_and_time,
    writes_answer_with_a_consistency_token,
);

/// A scripted scenario touching most kinds of change; returns how many mutations it made.
async fn scenario(app: &TestApp, admin: &Session) {
    let a = app.app(admin, "Orders").await;
    let clerk = app.end_user_role(admin, &a, "Clerk").await;
    let dev = app.member(admin, "dev@acme.example", "developer").await;
    let g = app
        .groups(Some(&admin.token))
        .create_group(pb::CreateGroupRequest {
            parent: admin.org.clone(),
            group: Some(pb::Group {
                display_name: "G".into(),
                stage: stage(&admin.org, "development"),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    app.groups(Some(&admin.token))
        .add_group_roles(pb::AddGroupRolesRequest {
            group: g.name.clone(),
            end_user_roles: vec![pb::EndUserRoleInStage {
                end_user_role: clerk,
                stage: String::new(),
            }],
        })
        .await
        .unwrap();
    app.groups(Some(&admin.token))
        .add_group_members(pb::AddGroupMembersRequest {
            group: g.name.clone(),
            users: vec![dev.user.clone()],
        })
        .await
        .unwrap();
    app.users(Some(&admin.token))
        .deactivate_user(pb::DeactivateUserRequest {
            name: dev.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    app.users(Some(&admin.token))
        .delete_user(pb::DeleteUserRequest {
            name: dev.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    app.apps(Some(&admin.token))
        .delete_app(pb::DeleteAppRequest { name: a })
        .await
        .unwrap();
}

async fn all_events(app: &TestApp, by: &Session) -> Vec<pb::ChangeEvent> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .audit(Some(&by.token))
            .list_change_events(pb::ListChangeEventsRequest {
                parent: by.org.clone(),
                page_size: 7,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.events);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Reads from a watch stream until `last` has been seen (with a deadline).
async fn collect_until(
    stream: &mut tonic::Streaming<pb::ChangeEvent>,
    last: i64,
) -> Vec<pb::ChangeEvent> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got
        .last()
        .is_none_or(|e: &pb::ChangeEvent| e.sequence < last)
    {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("watch stalled")
            .expect("stream ended")
            .unwrap();
        got.push(next);
    }
    got
}

async fn a_watcher_from_zero_receives_every_event_in_order_without_gaps(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let mut stream = app
        .audit(Some(&admin.token))
        .watch_changes(pb::WatchChangesRequest {
            parent: admin.org.clone(),
            after_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    scenario(&app, &admin).await;
    let stored = all_events(&app, &admin).await;
    let last = stored.last().unwrap().sequence;
    let watched = collect_until(&mut stream, last).await;
    let seqs: Vec<i64> = watched.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "gap-free, in order");
    assert_eq!(
        watched, stored,
        "the feed and the audit trail are the same events"
    );
    assert!(watched.iter().any(|e| e.action == "user.deleted"));
    // No secret ever appears in an event.
    for e in &watched {
        let text = format!("{e:?}");
        assert!(
            !text.contains("odc_inv_") && !text.contains("argon2"),
            "{text}"
        );
    }
}

async fn resuming_at_cursor_n_yields_exactly_the_events_after_n(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    scenario(&app, &admin).await;
    let stored = all_events(&app, &admin).await;
    let n = stored[stored.len() / 2].sequence;
    let mut stream = app
        .audit(Some(&admin.token))
        .watch_changes(pb::WatchChangesRequest {
            parent: admin.org.clone(),
            after_sequence: n,
        })
        .await
        .unwrap()
        .into_inner();
    let last = stored.last().unwrap().sequence;
    let replayed = collect_until(&mut stream, last).await;
    assert_eq!(
        replayed,
        stored
            .iter()
            .filter(|e| e.sequence > n)
            .cloned()
            .collect::<Vec<_>>()
    );
    // Then it follows live.
    let extra = app.app(&admin, "Live").await;
    let live = collect_until(&mut stream, last + 1).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].target, extra);
    assert_eq!(live[0].action, "app.created");
}

async fn a_cursor_ahead_of_the_organization_is_out_of_range(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let r = app
        .audit(Some(&admin.token))
        .watch_changes(pb::WatchChangesRequest {
            parent: admin.org.clone(),
            after_sequence: 1_000_000,
        })
        .await;
    assert_code(r.map(|_| ()), Code::OutOfRange, None);
    let r = app
        .audit(Some(&admin.token))
        .watch_changes(pb::WatchChangesRequest {
            parent: admin.org.clone(),
            after_sequence: -1,
        })
        .await;
    assert_bad_field(r.map(|_| ()), "after_sequence");
}

async fn the_audit_trail_filters_by_actor_action_target_and_time(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let t0 = app.clock.clone();
    scenario(&app, &admin).await;
    let all = all_events(&app, &admin).await;
    let list = |f: pb::ListChangeEventsRequest| async {
        app.audit(Some(&admin.token))
            .list_change_events(f)
            .await
            .unwrap()
            .into_inner()
            .events
    };
    let by_actor = list(pb::ListChangeEventsRequest {
        parent: admin.org.clone(),
        actor: admin.user.clone(),
        page_size: 1000,
        ..Default::default()
    })
    .await;
    assert!(!by_actor.is_empty() && by_actor.iter().all(|e| e.actor == admin.user));
    assert_eq!(
        by_actor.len(),
        all.iter().filter(|e| e.actor == admin.user).count()
    );
    let created = list(pb::ListChangeEventsRequest {
        parent: admin.org.clone(),
        action: "app.created".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(created.len(), 1);
    let on_target = list(pb::ListChangeEventsRequest {
        parent: admin.org.clone(),
        target: created[0].target.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        on_target
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        vec!["app.created", "app.deleted"]
    );
    // Time: everything so far is before a moment one hour on.
    t0.advance(Duration::from_hours(1));
    let later = app.app(&admin, "Later").await;
    let since = all.last().unwrap().create_time.unwrap();
    let mut start = since;
    start.seconds += 1800;
    let recent = list(pb::ListChangeEventsRequest {
        parent: admin.org.clone(),
        start_time: Some(start),
        ..Default::default()
    })
    .await;
    assert_eq!(
        recent.iter().map(|e| e.target.clone()).collect::<Vec<_>>(),
        vec![later]
    );
    let bad = app
        .audit(Some(&admin.token))
        .list_change_events(pb::ListChangeEventsRequest {
            parent: admin.org.clone(),
            start_time: Some(start),
            end_time: Some(since),
            ..Default::default()
        })
        .await;
    assert_code(bad, Code::InvalidArgument, None);
}

async fn writes_answer_with_a_consistency_token(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let r = app
        .apps(Some(&admin.token))
        .create_app(pb::CreateAppRequest {
            parent: admin.org.clone(),
            app: Some(pb::App {
                display_name: "T".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let token: i64 = r
        .metadata()
        .get("x-consistency-token")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let all = all_events(&app, &admin).await;
    assert_eq!(token, all.last().unwrap().sequence);
}

/// The action prefix of the events that carry a resource of this kind.
fn kind_of(r: Option<&pb::Resource>) -> Option<&'static str> {
    Some(match r?.kind.as_ref()? {
        Kind::Organization(_) => "organization",
        Kind::Stage(_) => "stage",
        Kind::App(_) => "app",
        Kind::EndUserRole(_) => "end_user_role",
        Kind::User(_) => "user",
        Kind::Invitation(_) => "invitation",
        Kind::Role(_) => "role",
        Kind::RoleAssignment(_) => "role_assignment",
        Kind::EndUserRoleGrant(_) => "end_user_grant",
        Kind::Group(_) => "group",
        Kind::GroupMember(_) => "group_member",
        Kind::GroupRole(_) => "group_role",
        Kind::ServiceAccount(_) => "service_account",
        Kind::IdentityProvider(_) => "identity_provider",
        Kind::ProviderProfile(_) => "provider_profile",
    })
}

/// The one event with this action; its resource after (or, when deleted, before) the change.
fn only(events: &[pb::ChangeEvent], action: &str) -> (pb::ChangeEvent, Kind) {
    let mut found = events.iter().filter(|e| e.action == action);
    let e = found.next().unwrap_or_else(|| panic!("no {action}"));
    assert!(found.next().is_none(), "one {action}");
    let r = e.after.as_ref().or(e.before.as_ref()).unwrap();
    (e.clone(), r.kind.clone().unwrap())
}

async fn every_event_carries_the_typed_resource_before_and_after(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    scenario(&app, &admin).await;
    let events = all_events(&app, &admin).await;
    for e in &events {
        let (before, after) = (kind_of(e.before.as_ref()), kind_of(e.after.as_ref()));
        let kind = after.or(before).unwrap_or_else(|| panic!("{e:?}"));
        assert!(
            before.is_none() || after.is_none() || before == after,
            "one kind: {e:?}"
        );
        assert_eq!(e.action.split('.').next(), Some(kind), "{e:?}");
        let verb = e.action.rsplit('.').next().unwrap();
        if ["created", "added", "invited"].contains(&verb) {
            assert!(e.before.is_none(), "{e:?}");
        }
        if ["deleted", "removed"].contains(&verb) {
            assert!(e.after.is_none(), "{e:?}");
        }
    }

    let (e, Kind::App(created)) = only(&events, "app.created") else {
        panic!("an app")
    };
    assert_eq!(
        (created.name, created.display_name),
        (e.target, "Orders".into())
    );

    // The user, as it was committed: its facets (derived from other resources) are unset.
    let (e, Kind::User(gone)) = only(&events, "user.deleted") else {
        panic!("a user")
    };
    assert_eq!(gone.name, e.target);
    assert_eq!(gone.email, "dev@acme.example");
    assert_eq!(gone.state(), pb::UserState::Inactive);
    assert!(!gone.is_member && !gone.is_end_user && gone.invitation_expire_time.is_none());
    let dev = gone.name;

    let on_dev: Vec<_> = events.iter().filter(|e| e.target == dev).cloned().collect();
    let (_, Kind::Invitation(inv)) = only(&on_dev, "invitation.created") else {
        panic!("an invitation")
    };
    assert_eq!(inv.user, dev);
    assert!(inv.expire_time.unwrap().seconds > inv.create_time.unwrap().seconds);

    let assigned = events
        .iter()
        .filter(|e| e.action == "role_assignment.created")
        .filter_map(|e| match e.after.as_ref()?.kind.as_ref()? {
            Kind::RoleAssignment(a) if a.principal == dev => Some(a.clone()),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(assigned.len(), 1);
    assert_eq!(assigned[0].role, format!("{}/roles/developer", admin.org));
    assert_eq!(
        assigned[0].scope.as_ref().unwrap().kind,
        Some(pb::scope::Kind::Organization(true))
    );

    let (_, Kind::Group(group)) = only(&events, "group.created") else {
        panic!("a group")
    };
    assert_eq!(group.stage, stage(&admin.org, "development"));
    assert!(group.end_user_roles.is_empty() && group.member_count == 0);
    let (_, Kind::EndUserRole(clerk)) = only(&events, "end_user_role.created") else {
        panic!("an end-user role")
    };
    let (_, Kind::GroupRole(held)) = only(&events, "group_role.added") else {
        panic!("a group role")
    };
    assert_eq!(
        held,
        pb::GroupRole {
            group: group.name.clone(),
            end_user_role: clerk.name,
        }
    );
    let (e, Kind::GroupMember(member)) = only(&events, "group_member.added") else {
        panic!("a group member")
    };
    assert_eq!((member.group, member.user), (group.name, dev));
    assert_eq!(e.target, held.group);
}
