//! `identity.v1.Stages`.

use shared::proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Api, command, convert, etag, respond, to_status};
use crate::domain::names;
use crate::method;
use crate::rules;

fn valid_key(k: &str) -> bool {
    (1..=40).contains(&k.len())
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[tonic::async_trait]
impl pb::stages_server::Stages for Api {
    async fn list_stages(
        &self,
        request: Request<pb::ListStagesRequest>,
    ) -> Result<Response<pb::ListStagesResponse>, Status> {
        let a = self
            .enter(request, method!("Stages/ListStages"), "parent", |r| {
                &r.parent
            })
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(convert::stages(&st), st.seq))
    }

    async fn create_stage(
        &self,
        request: Request<pb::CreateStageRequest>,
    ) -> Result<Response<pb::Stage>, Status> {
        let a = self
            .enter(request, method!("Stages/CreateStage"), "parent", |r| {
                &r.parent
            })
            .await?;
        let name = command(|v| {
            if names::org(&a.req.parent).is_none() {
                v.add("parent", "must be organizations/{organization}");
            }
            if !valid_key(&a.req.stage_id) {
                v.add("stage_id", "must be 1 to 40 characters of a-z, 0-9 and -");
            }
            Some(v.required_text(
                "stage.display_name",
                a.req.stage.as_ref().map_or("", |s| s.display_name.as_str()),
                50,
            ))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let key = a.req.stage_id.clone();
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::stages::create_stage(d, &key, name.clone())
            })
            .await
            .map_err(to_status)?;
        Ok(respond(convert::stage(a.org, &c.value), c.seq))
    }

    async fn update_stage(
        &self,
        request: Request<pb::UpdateStageRequest>,
    ) -> Result<Response<pb::Stage>, Status> {
        let a = self
            .enter(request, method!("Stages/UpdateStage"), "stage.name", |r| {
                r.stage.as_ref().map_or("", |s| s.name.as_str())
            })
            .await?;
        let s = a.req.stage.clone().unwrap_or_default();
        let (key, name) = command(|v| {
            let key = v.check(
                "stage.name",
                names::stage(&s.name).ok_or("must be organizations/{organization}/stages/{stage}"),
            );
            v.mask_paths(a.req.update_mask.as_ref(), &["display_name"]);
            let name = v.required_text("stage.display_name", &s.display_name, 50);
            Some((key?.1, name))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::stages::rename_stage(d, &key, name.clone(), etag(&s.etag))
            })
            .await
            .map_err(to_status)?;
        Ok(respond(convert::stage(a.org, &c.value), c.seq))
    }

    async fn reorder_stages(
        &self,
        request: Request<pb::ReorderStagesRequest>,
    ) -> Result<Response<pb::ListStagesResponse>, Status> {
        let a = self
            .enter(request, method!("Stages/ReorderStages"), "parent", |r| {
                &r.parent
            })
            .await?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let keys = a.req.stage_ids.clone();
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::stages::reorder_stages(d, &keys)
            })
            .await
            .map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(convert::stages(&st), c.seq))
    }

    async fn delete_stage(
        &self,
        request: Request<pb::DeleteStageRequest>,
    ) -> Result<Response<pb::DeleteStageResponse>, Status> {
        let a = self
            .enter(request, method!("Stages/DeleteStage"), "name", |r| &r.name)
            .await?;
        let key = names::stage(&a.req.name).map(|(_, k)| k).ok_or_else(|| {
            to_status(crate::error::Error::field(
                "name",
                "must be organizations/{organization}/stages/{stage}",
            ))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| rules::stages::delete_stage(d, &key))
            .await
            .map_err(to_status)?;
        Ok(respond(pb::DeleteStageResponse {}, c.seq))
    }
}
