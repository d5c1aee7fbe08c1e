//! Scoring requests: protobuf `ScoreTagsRequest`, `ScoreConversionRequest`,
//! `ScoreStreamRequest` and KServe `ModelInferRequest`, decoded as the server's codec does
//! and answered by the server's own services (`ScoringService`, `KServeService`) over the
//! bundled models (`models/`) and a profile store holding two users: feature rows built
//! from named or dense features or from profiles, checked, batched and scored. Any answer
//! (a score or a status) is fine; a panic, hang or huge allocation is not.
//!
//! Input: a mode byte (0 tags, 1 conversion, 2 stream request, 3 KServe infer), then the
//! message.
#![no_main]

use liveprofile_fuzz::{Input, fresh_dir, repo_root, seeds};
use liveprofile_runtime::{ModelRepository, RepositoryConfig};
use liveprofile_server::ServerConfig;
use liveprofile_server::kserve::KServeService;
use liveprofile_server::proto::inference::{self as pb, grpc_inference_service_server::GrpcInferenceService};
use liveprofile_server::proto::v1::{self, scoring_server::Scoring};
use liveprofile_server::scoring::ScoringService;
use liveprofile_server::state::AppState;
use liveprofile_store::ProfileStore;
use prost::Message;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

struct Server {
    runtime: tokio::runtime::Runtime,
    state: Arc<AppState>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let models = repo_root().join("models");
        let mut config = ServerConfig::for_tests(&models);
        config.batching.max_queue_delay = Duration::ZERO;
        config.batching.threads = 1;
        config.profiles.data_dir = fresh_dir("scoring-store");
        let store = ProfileStore::open(seeds::store_options(&config.profiles.data_dir, 2)).expect("store");
        store.ingest(&seeds::incoming_events()).expect("profiles");
        let state = Arc::new(AppState::new(config, store, None));
        let repo = ModelRepository::open(RepositoryConfig::new(&models)).expect("models");
        state.set_repository(repo);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Server { runtime, state }
    })
}

fn init() {
    liveprofile_fuzz::start("proto_scoring", || {
        let repo = server().state.repository().expect("models").clone();
        let names = |m: &str| -> (Vec<String>, String) {
            let model = repo.get(m, None).expect("bundled model");
            (model.schema().names().into_iter().map(str::to_owned).collect(), model.schema().hash.clone())
        };
        let (tags, hash) = names("user_tags");
        let (conversion, _) = names("conversion");
        seeds::proto_scoring(&tags, &conversion, &hash)
    });
    server();
}

libfuzzer_sys::fuzz_target!(init: init(), |data: &[u8]| {
    let s = server();
    let mut input = Input::new(data);
    let mode = input.byte() % 4;
    let body = input.rest();
    s.runtime.block_on(async {
        match mode {
            0 => {
                let Ok(r) = v1::ScoreTagsRequest::decode(body) else { return };
                let _ = ScoringService::new(s.state.clone()).score_tags(tonic::Request::new(r)).await;
            }
            1 => {
                let Ok(r) = v1::ScoreConversionRequest::decode(body) else { return };
                let _ = ScoringService::new(s.state.clone()).score_conversion(tonic::Request::new(r)).await;
            }
            2 => {
                let Ok(r) = v1::ScoreStreamRequest::decode(body) else { return };
                match r.request {
                    Some(v1::score_stream_request::Request::Tags(t)) => {
                        let _ = liveprofile_server::scoring::score_tags(&s.state, &t, None, None).await;
                    }
                    Some(v1::score_stream_request::Request::Conversion(c)) => {
                        let _ = liveprofile_server::scoring::score_conversion(&s.state, &c, None, None).await;
                    }
                    None => {}
                }
            }
            _ => {
                let Ok(r) = pb::ModelInferRequest::decode(body) else { return };
                let _ = KServeService::new(s.state.clone()).model_infer(tonic::Request::new(r)).await;
            }
        }
    });
});
