//! The protobuf codec of the generated clients (set as the codec path in `build.rs`):
//! tonic's prost codec, except that an answer whose bytes arrive in one piece (tonic hands a
//! message over in one buffer) is decoded from them as one slice. The server's codec decodes
//! its requests with the same [`decode_contiguous`].

use prost::Message;
use prost::bytes::Buf;
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// A prost codec whose decoder reads a contiguous message as one slice.
#[derive(Debug)]
pub struct Codec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec { _types: PhantomData }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> ProstEncoder<T> {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> SliceDecoder<U> {
        SliceDecoder { _type: PhantomData }
    }
}

/// Decodes one answer with [`decode_contiguous`]; an undecodable answer is INTERNAL, as
/// with tonic's own codec.
#[derive(Debug)]
pub struct SliceDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode_contiguous(src).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

/// Decodes a message from the bytes as one slice when they are one, else through the
/// buffer: prost reads a slice with inlined pointer moves, where through [`DecodeBuf`]
/// every field and every packed number is a call into the buffer (a fifth of the server's
/// CPU under 100-user `ScoreTags` calls, and of the load generator's under their answers;
/// README, scoring service). The buffer is consumed either way.
pub fn decode_contiguous<U: Message + Default>(src: &mut DecodeBuf<'_>) -> Result<U, prost::DecodeError> {
    let len = src.remaining();
    let chunk = src.chunk();
    if chunk.len() < len {
        return U::decode(src);
    }
    let decoded = U::decode(&chunk[..len]);
    src.advance(len);
    decoded
}
