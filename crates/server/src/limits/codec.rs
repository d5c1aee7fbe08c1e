//! The protobuf codec of every generated service and client (set as the codec path in
//! `build.rs`): tonic's prost codec, with two changes on the server side. A request's
//! encoded length is admitted against the [`RequestBudget`](super::RequestBudget) before
//! it is decoded, and a request that cannot be decoded is INVALID_ARGUMENT (the caller's
//! fault) where tonic answers INTERNAL.

use super::budget::Call;
use liveprofile_client::codec::decode_contiguous;
use prost::Message;
use prost::bytes::Buf;
use std::marker::PhantomData;
use std::time::Instant;
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_prost::ProstEncoder;

/// How every message that cannot be decoded on the server begins.
pub const UNDECODABLE: &str = "request could not be decoded: ";

/// A prost codec bound to the call it serves. Generated code makes one per call with
/// `Codec::default()`; inside a server call it picks the call's budget up (a service driven
/// directly, outside the limits layer, has none).
#[derive(Debug)]
pub struct Codec<T, U> {
    call: Option<Call>,
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec { call: Call::current(), _types: PhantomData }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = MessageEncoder<T>;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> MessageEncoder<T> {
        let trace = self.call.as_ref().and_then(|c| c.trace.clone());
        MessageEncoder { inner: ProstEncoder::default(), trace }
    }

    fn decoder(&mut self) -> MessageDecoder<U> {
        MessageDecoder { call: self.call.clone(), _type: PhantomData }
    }
}

/// Decodes one message: admitted by its encoded length first when serving a call.
#[derive(Debug)]
pub struct MessageDecoder<U> {
    call: Option<Call>,
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // Outside the limits layer (a service driven directly) there is no budget to take.
        if let Some(call) = &self.call {
            call.admit(src.remaining())?;
            if let Some(trace) = &call.trace {
                let (start, bytes) = (Instant::now(), src.remaining());
                let decoded = decode_contiguous(src);
                trace.phase("decode", start, Instant::now(), vec![("rpc.message.uncompressed_size", bytes.into())]);
                return decoded.map(Some).map_err(|e| Status::invalid_argument(format!("{UNDECODABLE}{e}")));
            }
        }
        decode_contiguous(src).map(Some).map_err(|e| Status::invalid_argument(format!("{UNDECODABLE}{e}")))
    }
}

/// Encodes one message: tonic's prost encoder, timed as the `encode` phase of a traced
/// call. It holds the call's trace until the answer has been sent (the encoder lives in
/// the response body), so the call's span ends when its answer has left.
#[derive(Debug)]
pub struct MessageEncoder<T> {
    inner: ProstEncoder<T>,
    trace: Option<std::sync::Arc<crate::traces::RequestTrace>>,
}

impl<T: Message> Encoder for MessageEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match &self.trace {
            None => self.inner.encode(item, dst),
            Some(trace) => {
                let (start, bytes) = (Instant::now(), item.encoded_len());
                let encoded = self.inner.encode(item, dst);
                trace.phase("encode", start, Instant::now(), vec![("rpc.message.uncompressed_size", bytes.into())]);
                encoded
            }
        }
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}
