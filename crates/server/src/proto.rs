//! Code generated from `proto/`.

#![allow(missing_docs, clippy::all)]

/// `liveprofile.v1`: scoring and model admin.
pub mod v1 {
    tonic::include_proto!("liveprofile.v1");
}

/// `inference`: the KServe v2 / Open Inference Protocol.
pub mod inference {
    tonic::include_proto!("inference");
}

/// Encoded file descriptor set of every proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
