//! The KServe v2 / Open Inference Protocol (`inference.GRPCInferenceService`), so that
//! existing inference clients (tritonclient, KServe clients) score against the bundled
//! models unchanged. Calls of Triton's extensions are not part of the service and answer
//! UNIMPLEMENTED.
//!
//! A model takes one FP32 input `[rows, features]` in schema order; tensors come in typed
//! `contents` or in `raw_input_contents` (little-endian), and the answer uses the same form
//! as the request. Without a version the stable one answers, or the traffic policy's arm
//! for the request parameter `user_id` when given.

use crate::batcher::Job;
use crate::experiments::{AnswerContext, ExperimentRouter};
use crate::predictions;
use crate::proto::inference::{
    self as pb, grpc_inference_service_server::GrpcInferenceService, infer_parameter::ParameterChoice,
};
use crate::proto::v1;
use crate::scoring::arm_name;
use crate::state::{AppState, bounded, deadline_of, echo, input_status, route_status};
use liveprofile_runtime::manifest::TensorDtype;
use liveprofile_runtime::{InputError, LoadedModel};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The KServe v2 service.
#[derive(Debug, Clone)]
pub struct KServeService {
    state: Arc<AppState>,
}

impl KServeService {
    /// Creates the service.
    pub fn new(state: Arc<AppState>) -> Self {
        KServeService { state }
    }
}

fn parse_version(model: &str, version: &str) -> Result<Option<u32>, Status> {
    if version.is_empty() {
        return Ok(None);
    }
    version.parse::<u32>().map(Some).map_err(|_| {
        Status::invalid_argument(format!(
            "model {:?}: version {:?} is not a non-negative integer",
            echo(model),
            echo(version)
        ))
    })
}

fn tensor_meta(spec: &liveprofile_runtime::manifest::TensorSpec) -> pb::model_metadata_response::TensorMetadata {
    pb::model_metadata_response::TensorMetadata {
        name: spec.name.clone(),
        datatype: datatype(spec.dtype).to_owned(),
        shape: spec.shape.clone(),
    }
}

/// The KServe v2 name of a tensor type.
fn datatype(dtype: TensorDtype) -> &'static str {
    match dtype {
        TensorDtype::Float32 => "FP32",
        TensorDtype::Float64 => "FP64",
        TensorDtype::Float16 => "FP16",
        TensorDtype::Int32 => "INT32",
        TensorDtype::Int64 => "INT64",
        TensorDtype::Bool => "BOOL",
        TensorDtype::String => "BYTES",
    }
}

fn string_param(params: &HashMap<String, pb::InferParameter>, key: &str) -> Result<Option<String>, Status> {
    match params.get(key).and_then(|p| p.parameter_choice.as_ref()) {
        None => Ok(None),
        Some(ParameterChoice::StringParam(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Status::invalid_argument(format!("parameter {key:?} must be a string"))),
    }
}

fn param(s: impl Into<String>) -> pb::InferParameter {
    pb::InferParameter { parameter_choice: Some(ParameterChoice::StringParam(s.into())) }
}

fn int_param(v: u64) -> pb::InferParameter {
    pb::InferParameter { parameter_choice: Some(ParameterChoice::Int64Param(v.min(i64::MAX as u64) as i64)) }
}

/// Reads the single FP32 input tensor; returns rows, values and whether it came raw.
fn read_input(model: &LoadedModel, r: &pb::ModelInferRequest) -> Result<(usize, Vec<f32>, bool), Status> {
    let spec = &model.manifest().inputs[0];
    if r.inputs.len() != 1 {
        let names: Vec<String> = r.inputs.iter().take(8).map(|i| format!("{:?}", echo(&i.name))).collect();
        return Err(Status::invalid_argument(format!(
            "model {} takes one input {:?}, got {} ({}{})",
            model.name(),
            spec.name,
            r.inputs.len(),
            names.join(", "),
            if r.inputs.len() > names.len() { ", ..." } else { "" }
        )));
    }
    let input = &r.inputs[0];
    if input.name != spec.name {
        return Err(Status::invalid_argument(format!(
            "unknown input {:?}; model {} takes {:?}",
            echo(&input.name),
            model.name(),
            spec.name
        )));
    }
    if input.datatype != "FP32" {
        return Err(Status::invalid_argument(format!(
            "input {:?} has datatype {:?}; the model takes FP32",
            input.name,
            echo(&input.datatype)
        )));
    }
    let width = model.width();
    if input.shape.len() != 2 || input.shape[0] < 1 || input.shape[1] != width as i64 {
        return Err(Status::invalid_argument(format!(
            "input {:?} has shape {}; the model takes [rows, {width}] with rows >= 1",
            input.name,
            echo(&format!("{:?}", input.shape))
        )));
    }
    let rows = usize::try_from(input.shape[0]).map_err(|_| Status::invalid_argument("row count out of range"))?;
    let expected = rows.checked_mul(width).ok_or_else(|| Status::invalid_argument("shape too large"))?;
    if !r.raw_input_contents.is_empty() {
        if input.contents.is_some() {
            return Err(Status::invalid_argument(format!(
                "input {:?} has both typed contents and raw_input_contents",
                input.name
            )));
        }
        if r.raw_input_contents.len() != 1 {
            return Err(Status::invalid_argument(format!(
                "{} raw_input_contents for one input",
                r.raw_input_contents.len()
            )));
        }
        let raw = &r.raw_input_contents[0];
        if raw.len() != expected * 4 {
            return Err(Status::invalid_argument(format!(
                "input {:?}: raw contents of {} bytes; shape {:?} of FP32 needs {}",
                input.name,
                raw.len(),
                input.shape,
                expected * 4
            )));
        }
        let values = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        return Ok((rows, values, true));
    }
    let Some(c) = &input.contents else {
        return Err(Status::invalid_argument(format!("input {:?} has no contents", input.name)));
    };
    let others = c.bool_contents.len()
        + c.int_contents.len()
        + c.int64_contents.len()
        + c.uint_contents.len()
        + c.uint64_contents.len()
        + c.fp64_contents.len()
        + c.bytes_contents.len();
    if others > 0 {
        return Err(Status::invalid_argument(format!(
            "input {:?} is FP32: its values go in fp32_contents",
            input.name
        )));
    }
    if c.fp32_contents.len() != expected {
        return Err(Status::invalid_argument(format!(
            "input {:?}: {} values in fp32_contents; shape {:?} needs {expected}",
            input.name,
            c.fp32_contents.len(),
            input.shape
        )));
    }
    Ok((rows, c.fp32_contents.clone(), false))
}

#[tonic::async_trait]
impl GrpcInferenceService for KServeService {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: self.state.is_ready() }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let version = parse_version(&r.name, &r.version)?;
        let repo = self.state.repo()?;
        let ready = match repo.get(&r.name, version) {
            Ok(_) => !self.state.is_stopping(),
            Err(liveprofile_runtime::RouteError::UnknownModel(_)) => {
                return Err(Status::not_found(format!("unknown model {:?}", echo(&r.name))));
            }
            Err(_) => false,
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "liveprofile".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let version = parse_version(&r.name, &r.version)?;
        let repo = self.state.repo()?;
        let model = repo.get(&r.name, version).map_err(|e| route_status(&e))?;
        let versions = repo
            .models()
            .into_iter()
            .find(|m| m.name == r.name)
            .map(|m| m.versions.iter().map(|v| v.version().to_string()).collect())
            .unwrap_or_default();
        let m = model.manifest();
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name.clone(),
            versions,
            platform: "tract_onnx".to_owned(),
            inputs: m.inputs.iter().map(tensor_meta).collect(),
            outputs: m.outputs.iter().map(tensor_meta).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let trace = crate::scoring::enter_trace(request.metadata());
        let deadline = deadline_of(request.metadata())?;
        let header_id = predictions::request_id_of(request.metadata()).map(str::to_owned);
        let r = request.into_inner();
        if let Some(t) = &trace
            && !r.id.is_empty()
            && r.id.len() <= predictions::MAX_REQUEST_ID_BYTES
        {
            t.set([("liveprofile.request_id", r.id.as_str().into())]);
        }
        let given = if r.id.is_empty() { header_id.as_deref() } else { Some(r.id.as_str()) };
        let call = predictions::call(&self.state, "kserve.ModelInfer", given);
        let result = self.infer(&r, deadline, call.as_ref()).await;
        if let Err(s) = &result {
            self.state.count(
                &r.model_name,
                parse_version(&r.model_name, &r.model_version).ok().flatten(),
                "",
                Err(s.code()),
            );
        }
        result.map(Response::new).map_err(bounded)
    }
}

impl KServeService {
    async fn infer(
        &self,
        r: &pb::ModelInferRequest,
        deadline: Option<std::time::Instant>,
        call: Option<&predictions::Call>,
    ) -> Result<pb::ModelInferResponse, Status> {
        let repo = self.state.repo()?;
        let version = parse_version(&r.model_name, &r.model_version)?;
        let user = string_param(&r.parameters, "user_id")?;
        if let Some(user) = &user {
            crate::scoring::check_user_id(0, user)?;
        }
        // Where the answer is used (parameters `platform`, `category`, `room_id`), held to the
        // event contract's limits as in liveprofile.v1: a request for one user may fall in an
        // experiment, and the prediction log keeps the platform and room.
        let context = AnswerContext::parse(
            0,
            &string_param(&r.parameters, "platform")?.unwrap_or_default(),
            &string_param(&r.parameters, "category")?.unwrap_or_default(),
            &string_param(&r.parameters, "room_id")?.unwrap_or_default(),
        )?;
        let router = if version.is_none() { ExperimentRouter::for_model(&self.state, &r.model_name) } else { None };
        let mut experiment = None;
        if let Some(user) = &user
            && let Some(router) = &router
        {
            experiment = router.route(user, &context);
        }
        let (model, arm, compare) = match (version, user.as_deref()) {
            (None, Some(_)) if experiment.is_some() => {
                let routed = experiment.as_ref().expect("checked");
                (
                    repo.get(&r.model_name, routed.version).map_err(|e| route_status(&e))?,
                    arm_name(v1::Arm::Experiment),
                    vec![],
                )
            }
            (Some(v), _) => {
                (repo.get(&r.model_name, Some(v)).map_err(|e| route_status(&e))?, arm_name(v1::Arm::Pinned), vec![])
            }
            (None, Some(user)) => {
                let route = repo.route(&r.model_name, user).map_err(|e| route_status(&e))?;
                (route.model, route.arm.as_str(), route.compare)
            }
            (None, None) => {
                (repo.get(&r.model_name, None).map_err(|e| route_status(&e))?, arm_name(v1::Arm::Stable), vec![])
            }
        };
        let outputs = &model.manifest().outputs;
        let mut wanted = Vec::new();
        for o in &r.outputs {
            match outputs.iter().position(|s| s.name == o.name) {
                Some(i) => wanted.push(i),
                None => {
                    let names: Vec<&str> = outputs.iter().map(|s| s.name.as_str()).collect();
                    return Err(Status::invalid_argument(format!(
                        "unknown output {:?}; model {} has {}",
                        echo(&o.name),
                        model.name(),
                        names.join(", ")
                    )));
                }
            }
        }
        if wanted.is_empty() {
            wanted = (0..outputs.len()).collect();
        }
        let (rows, values, raw) = read_input(&model, r)?;
        self.state.check_rows(rows)?;
        model.validate(&values, rows).map_err(|e: InputError| input_status(&e))?;
        let trace = crate::traces::current();
        if let Some(t) = &trace {
            t.validated(vec![("liveprofile.rows", rows.into())]);
        }
        let labels = experiment.as_ref().map(|x| (x.experiment.to_owned(), x.arm.to_owned()));
        crate::experiments::record_exposures(&self.state, experiment.and_then(|x| x.exposure).into_iter().collect())
            .await?;
        // The values as scored, for the prediction log.
        let logged = call.map(|_| values.clone());
        let job = Job { model: model.clone(), values, rows, compare, deadline };
        let outcome = self.state.score(job).await?;
        self.state.count(model.name(), Some(model.version()), arm, Ok(()));
        if let Some(t) = &trace {
            let attributes = crate::scoring::traced_group(&model, arm, rows);
            t.set(attributes.iter().cloned());
            crate::traces::scored(t, &outcome, attributes);
        }
        if let (Some(call), Some(values)) = (call, logged) {
            let answered = predictions::Answered {
                model: &model,
                arm,
                experiment: labels.as_ref().map(|(x, a)| (x.as_str(), a.as_str())),
                queue: outcome.queue,
                compute: outcome.compute,
            };
            let origin = predictions::RowOrigin {
                user_id: user.as_deref().unwrap_or(""),
                platform: context.platform.map_or("", |p| p.as_str()),
                room_id: &context.room_id,
                as_of_ms: None,
            };
            let mut records = Vec::with_capacity(rows);
            predictions::records(
                &mut records,
                call,
                &answered,
                std::iter::repeat_n(origin, rows),
                &values,
                &outcome.scores,
            );
            predictions::offer(&self.state, &records);
        }
        let mut response = pb::ModelInferResponse {
            model_name: model.name().to_owned(),
            model_version: model.version().to_string(),
            id: r.id.clone(),
            parameters: HashMap::from([
                ("arm".to_owned(), param(arm)),
                ("queue_us".to_owned(), int_param(outcome.queue.as_micros() as u64)),
                ("compute_us".to_owned(), int_param(outcome.compute.as_micros() as u64)),
            ]),
            outputs: Vec::with_capacity(wanted.len()),
            raw_output_contents: Vec::new(),
        };
        if let Some((name, arm)) = labels {
            response.parameters.insert("experiment".to_owned(), param(&name));
            response.parameters.insert("experiment_arm".to_owned(), param(&arm));
        }
        for i in wanted {
            let spec = &outputs[i];
            let out = &outcome.scores.outputs[i];
            let mut tensor = pb::model_infer_response::InferOutputTensor {
                name: spec.name.clone(),
                datatype: "FP32".to_owned(),
                shape: vec![rows as i64, out.width as i64],
                parameters: HashMap::new(),
                contents: None,
            };
            if raw {
                let mut bytes = Vec::with_capacity(out.values.len() * 4);
                for v in &out.values {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                response.raw_output_contents.push(bytes);
            } else {
                tensor.contents =
                    Some(pb::InferTensorContents { fp32_contents: out.values.clone(), ..Default::default() });
            }
            response.outputs.push(tensor);
        }
        Ok(response)
    }
}
