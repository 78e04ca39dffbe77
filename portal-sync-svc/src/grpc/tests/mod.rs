//! In-process checks of the handlers over real gRPC (SQLite in a temporary directory): the
//! O11 add-member flow's validation, authentication and `x-acting-for`, cross-company
//! isolation, company admins, status, and held support cases. The cross-service behaviour
//! (ODC sync with identity) is tested in `/tests`.

use shared::auth::Secret;
use shared::proto::portal::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

use crate::config::Settings;

mod members;
mod odc;
mod support;

const OP: &str = "psync_op_test";
const SVC: &str = "psync_svc_test";

struct Server {
    channel: Channel,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Settings {
        data_dir: dir.path().to_owned(),
        operator_token: Some(Secret::new(OP)),
        service_tokens: vec![Secret::new(SVC)],
        ..Settings::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::serve(listener, settings, async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Server {
        channel,
        _stop: stop,
        _dir: dir,
    }
}

fn op<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {OP}").parse().unwrap());
    r
}

fn svc<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {SVC}").parse().unwrap());
    r
}

fn as_<T>(who: &str, msg: T) -> Request<T> {
    let mut r = svc(msg);
    r.metadata_mut()
        .insert("x-acting-for", who.parse().unwrap());
    r
}

fn bad_fields(s: &Status) -> Vec<String> {
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    s.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn reason(s: &Status) -> String {
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

struct Fixture {
    company: String,
    cloud: String,
    self_managed: String,
}

async fn company(s: &Server, name: &str, admin: &str) -> Fixture {
    let mut companies = pb::companies_client::CompaniesClient::new(s.channel.clone());
    let c = companies
        .create_company(op(pb::CreateCompanyRequest {
            company: Some(pb::Company {
                display_name: name.into(),
                ..Default::default()
            }),
            first_admin_email: admin.into(),
            first_admin_display_name: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let infra = |kind: pb::InfrastructureKind| {
        let mut companies = companies.clone();
        let parent = c.name.clone();
        async move {
            companies
                .create_infrastructure(op(pb::CreateInfrastructureRequest {
                    parent,
                    infrastructure: Some(pb::Infrastructure {
                        display_name: format!("{kind:?}"),
                        kind: kind.into(),
                        ..Default::default()
                    }),
                    identity_token: String::new(),
                }))
                .await
                .unwrap()
                .into_inner()
                .name
        }
    };
    let cloud = infra(pb::InfrastructureKind::O11Cloud).await;
    let self_managed = infra(pb::InfrastructureKind::O11SelfManaged).await;
    Fixture {
        company: c.name,
        cloud,
        self_managed,
    }
}

fn access(infra: &str, p: pb::InfrastructurePermission) -> pb::InfrastructureAccess {
    pb::InfrastructureAccess {
        infrastructure: infra.into(),
        permission: p.into(),
        ..Default::default()
    }
}
