//! The W3C trace context of a call (`traceparent`, `tracestate` in gRPC metadata).

/// The caller's span, from a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace the call belongs to.
    pub trace_id: [u8; 16],
    /// The caller's span.
    pub span_id: [u8; 8],
    /// Whether the caller records this trace (flag bit 0).
    pub sampled: bool,
}

/// Longest `tracestate` kept (the W3C limit is 32 members of at most 256 bytes; longer
/// values are dropped rather than cut, as the recommendation allows).
pub const MAX_TRACE_STATE_BYTES: usize = 512;

/// Reads a `traceparent` header: `VV-TTTT...(32)-SSSS...(16)-FF`, lowercase hex. Version
/// `ff`, ids of all zeros, upper case, or the wrong length make it invalid (`None`); a
/// version after `00` may carry more fields after the flags, which are ignored.
pub fn parse_traceparent(value: &str) -> Option<Parent> {
    let b = value.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = u8::from_str_radix(lower_hex(&value[0..2])?, 16).ok()?;
    if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    decode_hex(lower_hex(&value[3..35])?, &mut trace_id)?;
    decode_hex(lower_hex(&value[36..52])?, &mut span_id)?;
    let flags = u8::from_str_radix(lower_hex(&value[53..55])?, 16).ok()?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent { trace_id, span_id, sampled: flags & 1 == 1 })
}

/// Most `tracestate` members (the W3C limit).
pub const MAX_TRACE_STATE_MEMBERS: usize = 32;

/// Reads the `tracestate` header values (several headers are one list, joined by
/// commas): the list with empty members left out, or `None` when any member is not a
/// valid `key=value` of the W3C grammar, there are more than [`MAX_TRACE_STATE_MEMBERS`],
/// or it is longer than [`MAX_TRACE_STATE_BYTES`] (the whole value is then dropped, as
/// the recommendation allows, never cut).
pub fn parse_tracestate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut members: Vec<&str> = Vec::new();
    for value in values {
        for member in value.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let (key, val) = member.split_once('=')?;
            if !valid_key(key) || !valid_value(val) {
                return None;
            }
            members.push(member);
        }
    }
    let joined = members.join(",");
    (members.len() <= MAX_TRACE_STATE_MEMBERS && joined.len() <= MAX_TRACE_STATE_BYTES).then_some(joined)
}

/// A `tracestate` key: `lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`, or a
/// multi-tenant `tenant@system` (`(lcalpha / DIGIT) 0*240(...)` @ `lcalpha 0*13(...)`).
fn valid_key(key: &str) -> bool {
    let rest = |s: &[u8]| s.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(c));
    match key.split_once('@') {
        None => {
            let b = key.as_bytes();
            !b.is_empty() && b.len() <= 256 && b[0].is_ascii_lowercase() && rest(&b[1..])
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            !t.is_empty()
                && t.len() <= 241
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && rest(&t[1..])
                && !s.is_empty()
                && s.len() <= 14
                && s[0].is_ascii_lowercase()
                && rest(&s[1..])
        }
    }
}

/// A `tracestate` value: up to 256 printable ASCII characters other than `,` and `=`,
/// not ending in a space.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() <= 256
        && b.iter().all(|c| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=')
        && b.last().is_none_or(|c| *c != b' ')
}

/// `s` when it is all lowercase hex digits.
fn lower_hex(s: &str) -> Option<&str> {
    s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)).then_some(s)
}

fn decode_hex(s: &str, out: &mut [u8]) -> Option<()> {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Random ids: SplitMix64 over a counter seeded from the clock and the process id. Ids
/// need to be unique and evenly spread (the sampler compares them with the ratio), not
/// unpredictable.
#[derive(Debug)]
pub(crate) struct Ids {
    state: std::sync::atomic::AtomicU64,
}

impl Ids {
    pub(crate) fn new() -> Self {
        let seed = super::now_unix_ns() ^ (u64::from(std::process::id()) << 32);
        Ids { state: std::sync::atomic::AtomicU64::new(seed) }
    }

    pub(crate) fn next(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A span id (never all zeros).
    pub(crate) fn span_id(&self) -> [u8; 8] {
        loop {
            let n = self.next();
            if n != 0 {
                return n.to_be_bytes();
            }
        }
    }

    /// A trace id (never all zeros).
    pub(crate) fn trace_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_be_bytes());
        id[8..].copy_from_slice(&self.span_id());
        id
    }
}

/// Whether a new trace is recorded at `ratio`: by the low 8 bytes of its id, as
/// OpenTelemetry's trace-id ratio sampler does, so the decision is the same wherever the
/// id is seen.
pub(crate) fn sampled_at(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
    // The top 63 bits against the ratio's share of 2^63.
    (low >> 1) < (ratio * (1u64 << 63) as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_follows_the_w3c_format() {
        let p = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&p.span_id), "00f067aa0ba902b7");
        assert!(p.sampled);
        let p = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!p.sampled);
        // A later version may add fields after the flags.
        let p = parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-extra").unwrap();
        assert!(p.sampled);
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_ratio_sampler_keeps_its_share() {
        let ids = Ids::new();
        let kept = (0..100_000).filter(|_| sampled_at(&ids.trace_id(), 0.25)).count();
        assert!((23_500..26_500).contains(&kept), "{kept}");
        assert!(sampled_at(&ids.trace_id(), 1.0));
        assert!(!sampled_at(&ids.trace_id(), 0.0));
    }

    #[test]
    fn tracestate_members_follow_the_w3c_grammar_or_the_whole_value_is_dropped() {
        assert_eq!(
            parse_tracestate(["congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"]).as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        // Several headers are one list; empty members are left out.
        assert_eq!(parse_tracestate(["a=1,,", "t@vendor=x"]).as_deref(), Some("a=1,t@vendor=x"));
        for bad in ["Upper=1", "1abc=2", "a=b=c", "a", "a=x,y", "t@Vendor=1", "a=\u{7f}"] {
            assert_eq!(parse_tracestate([bad]), None, "{bad:?}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_tracestate(many.iter().map(String::as_str)), None, "33 members");
        assert!(parse_tracestate(many[..32].iter().map(String::as_str)).is_some());
        let long = format!("a={}", "x".repeat(256));
        assert_eq!(parse_tracestate([long.as_str(), long.as_str()]), None, "over 512 bytes");
    }
}
