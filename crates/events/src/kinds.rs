//! Platform and event-kind enumerations with their fixed string forms.

use crate::EventError;
use std::fmt;

/// Largest amount in yuan one event carries: an order or a gift, an item's price. Above
/// the dearest goods sold through live rooms (cars, jewellery, a house deposit); a larger
/// figure is a unit mistake (fen sent as yuan) or garbage. One event then adds at most
/// 10^9 fen to a window sum, so a sum would need over 9 * 10^9 such events to reach
/// `i64::MAX` (sums saturate there all the same).
pub const MAX_YUAN: f64 = 10_000_000.0;

/// Longest watch time one `leave` carries, in seconds: 7 days. Longer than any stream
/// (round-the-clock rooms included, with a client left open for days); more is a broken
/// clock or a unit mistake (milliseconds sent as seconds).
pub const MAX_WATCH_SECONDS: f64 = 7.0 * 86_400.0;

/// A live-commerce platform. The string forms are part of the event contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Platform {
    /// Taobao Live (淘宝).
    Taobao,
    /// Douyin (抖音).
    Douyin,
    /// Kuaishou (快手).
    Kuaishou,
    /// Xiaohongshu (小红书), planned.
    Xiaohongshu,
    /// WeChat Channels (视频号), planned.
    WechatChannels,
}

impl Platform {
    /// Every platform, in contract order (the order of per-platform features).
    pub const ALL: [Platform; 5] =
        [Platform::Taobao, Platform::Douyin, Platform::Kuaishou, Platform::Xiaohongshu, Platform::WechatChannels];

    /// The contract string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Taobao => "taobao",
            Platform::Douyin => "douyin",
            Platform::Kuaishou => "kuaishou",
            Platform::Xiaohongshu => "xiaohongshu",
            Platform::WechatChannels => "wechat_channels",
        }
    }

    /// Position in [`Platform::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Parses a contract string.
    pub fn parse(s: &str) -> Result<Self, EventError> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| EventError::UnknownPlatform(s.to_owned()))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user did. The string forms are part of the event contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    /// Entered a live room.
    Enter,
    /// Left a live room; value = watch seconds.
    Leave,
    /// Liked the stream.
    Like,
    /// Commented.
    Comment,
    /// Shared the room.
    Share,
    /// Followed the host.
    Follow,
    /// Sent a gift; value = yuan.
    Gift,
    /// Viewed an item; value = price in yuan.
    ViewItem,
    /// Favourited an item.
    Favorite,
    /// Added an item to the cart; value = price in yuan.
    AddToCart,
    /// Ordered; value = amount in yuan.
    Order,
    /// A coupon was offered to the user (in a room or outside one); carries no value.
    /// Stored and counted like every event and moves the user's recency, but feeds no
    /// window sum or visit feature (the feature schemas predate it).
    CouponOffer,
}

impl EventKind {
    /// Every kind, in contract order.
    pub const ALL: [EventKind; 12] = [
        EventKind::Enter,
        EventKind::Leave,
        EventKind::Like,
        EventKind::Comment,
        EventKind::Share,
        EventKind::Follow,
        EventKind::Gift,
        EventKind::ViewItem,
        EventKind::Favorite,
        EventKind::AddToCart,
        EventKind::Order,
        EventKind::CouponOffer,
    ];

    /// The contract string.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Enter => "enter",
            EventKind::Leave => "leave",
            EventKind::Like => "like",
            EventKind::Comment => "comment",
            EventKind::Share => "share",
            EventKind::Follow => "follow",
            EventKind::Gift => "gift",
            EventKind::ViewItem => "view_item",
            EventKind::Favorite => "favorite",
            EventKind::AddToCart => "add_to_cart",
            EventKind::Order => "order",
            EventKind::CouponOffer => "coupon_offer",
        }
    }

    /// Parses a contract string.
    pub fn parse(s: &str) -> Result<Self, EventError> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| EventError::UnknownKind(s.to_owned()))
    }

    /// Whether `value` is meaningful for this kind (otherwise it must be 0).
    pub const fn carries_value(self) -> bool {
        matches!(
            self,
            EventKind::Leave | EventKind::Gift | EventKind::Order | EventKind::ViewItem | EventKind::AddToCart
        )
    }

    /// The largest value an event of this kind may carry, with its unit: watch seconds
    /// on `leave` ([`MAX_WATCH_SECONDS`]), yuan on `gift`, `order`, `view_item` and
    /// `add_to_cart` ([`MAX_YUAN`]); `None` for kinds that carry no value.
    pub const fn max_value(self) -> Option<(f64, &'static str)> {
        match self {
            EventKind::Leave => Some((MAX_WATCH_SECONDS, "seconds")),
            EventKind::Gift | EventKind::Order | EventKind::ViewItem | EventKind::AddToCart => Some((MAX_YUAN, "yuan")),
            _ => None,
        }
    }

    /// Whether the event only makes sense inside a live room.
    pub const fn needs_room(self) -> bool {
        matches!(
            self,
            EventKind::Enter
                | EventKind::Leave
                | EventKind::Like
                | EventKind::Comment
                | EventKind::Share
                | EventKind::Follow
                | EventKind::Gift
        )
    }

    /// Likes, comments, shares, follows and gifts: the room interactions.
    pub const fn is_interaction(self) -> bool {
        matches!(self, EventKind::Like | EventKind::Comment | EventKind::Share | EventKind::Follow | EventKind::Gift)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()).unwrap(), p);
            assert_eq!(Platform::ALL[p.index()], p);
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()).unwrap(), k);
        }
        assert_eq!(EventKind::parse("coupon_offer").unwrap(), EventKind::CouponOffer);
    }

    #[test]
    fn exactly_the_kinds_that_carry_a_value_have_a_limit() {
        for k in EventKind::ALL {
            assert_eq!(k.max_value().is_some(), k.carries_value(), "{k}");
        }
        assert_eq!(EventKind::Order.max_value(), Some((10_000_000.0, "yuan")));
        assert_eq!(EventKind::Leave.max_value(), Some((604_800.0, "seconds")));
        let offer = EventKind::CouponOffer;
        assert!(!offer.carries_value() && !offer.needs_room() && !offer.is_interaction());
    }

    #[test]
    fn unknown_strings_are_named_in_the_error() {
        let e = Platform::parse("weibo").unwrap_err();
        assert_eq!(e.to_string(), "unknown platform \"weibo\"");
        let e = EventKind::parse("buy").unwrap_err();
        assert_eq!(e.to_string(), "unknown event kind \"buy\"");
    }
}
