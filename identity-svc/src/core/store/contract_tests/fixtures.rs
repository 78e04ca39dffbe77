//! What the contract cases build on: entities, changes and commits at fixed times, an
//! organization seeded with three entities, and readers of what a store holds.

use shared::email::Email;
use uuid::Uuid;

use crate::core::store::{Commit, EventRecord, Store, TokenKind, TokenRecord};
use crate::domain::model::{
    Change, Entity, Micros, Organization, Principal, Stage, StagePurpose, User, UserState,
};

pub(super) const T0: Micros = 1_700_000_000_000_000;

pub(super) const SECOND: Micros = 1_000_000;

pub(super) fn organization(id: Uuid, name: &str) -> Entity {
    Entity::Organization(Organization {
        id,
        display_name: name.to_owned(),
        create_time: T0,
        update_time: T0,
        rev: 1,
    })
}

pub(super) fn user(id: Uuid, email: &str, name: &str) -> Entity {
    Entity::User(User {
        id,
        email: Some(Email::parse(email).unwrap()),
        display_name: name.to_owned(),
        state: UserState::Active,
        registered: true,
        create_time: T0,
        update_time: T0,
        rev: 1,
    })
}

pub(super) fn stage(key: &str, order: u32, purpose: StagePurpose) -> Entity {
    Entity::Stage(Stage {
        key: key.to_owned(),
        display_name: key.to_uppercase(),
        order,
        purpose,
        rev: 1,
    })
}

pub(super) fn target(entity: &Entity) -> String {
    format!("{}s/{}", entity.kind(), entity.key())
}

pub(super) fn created(entity: &Entity) -> Change {
    Change {
        action: format!("{}.created", entity.kind()),
        target: target(entity),
        before: None,
        after: Some(entity.clone()),
        affected_users: Vec::new(),
    }
}

pub(super) fn updated(before: &Entity, after: &Entity) -> Change {
    Change {
        action: format!("{}.updated", after.kind()),
        target: target(after),
        before: Some(before.clone()),
        after: Some(after.clone()),
        affected_users: Vec::new(),
    }
}

pub(super) fn deleted(entity: &Entity) -> Change {
    Change {
        action: format!("{}.deleted", entity.kind()),
        target: target(entity),
        before: Some(entity.clone()),
        after: None,
        affected_users: Vec::new(),
    }
}

/// A commit of `changes` at `expected_seq`, by `operator` at [`T0`], without secrets.
pub(super) fn commit(org: Uuid, expected_seq: u64, changes: &[Change]) -> Commit<'_> {
    Commit {
        org,
        expected_seq,
        create_org: false,
        actor: "operator",
        request_id: None,
        time: T0,
        changes,
        secrets: &[],
    }
}

/// The entities of a new organization: itself, a user and a stage.
pub(super) struct Seed {
    pub(super) org: Uuid,
    pub(super) user: Uuid,
    pub(super) entities: Vec<Entity>,
}

/// Creates an organization of three entities; its sequence is then 3.
pub(super) async fn seed_org(store: &dyn Store) -> Seed {
    let org = Uuid::new_v4();
    let user_id = Uuid::new_v4();
    let entities = vec![
        organization(org, "Acme"),
        user(user_id, "Ada@Example.com", "Ada"),
        stage("development", 0, StagePurpose::Development),
    ];
    let changes: Vec<Change> = entities.iter().map(created).collect();
    let seq = store
        .commit(Commit {
            create_org: true,
            ..commit(org, 0, &changes)
        })
        .await
        .unwrap();
    assert_eq!(seq, 3);
    Seed {
        org,
        user: user_id,
        entities,
    }
}

pub(super) fn sorted(mut entities: Vec<Entity>) -> Vec<Entity> {
    entities.sort_by_key(|e| (e.kind(), e.key()));
    entities
}

pub(super) async fn current(store: &dyn Store, org: Uuid) -> (u64, Vec<Entity>) {
    let loaded = store.load_organization(org).await.unwrap().unwrap();
    (loaded.seq, sorted(loaded.entities))
}

pub(super) fn seqs(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

pub(super) fn token(
    org: Uuid,
    principal: Principal,
    kind: TokenKind,
    created: Micros,
) -> TokenRecord {
    let id = Uuid::new_v4();
    TokenRecord {
        id,
        hash: format!("hash-{}", id.simple()),
        kind,
        org,
        principal,
        create_time: created,
        expire_time: created + 3600 * SECOND,
        revoke_time: None,
    }
}
