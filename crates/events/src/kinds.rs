//! Platform and event-kind enumerations with their fixed string forms.

use crate::EventError;
use std::fmt;

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
}

impl EventKind {
    /// Every kind, in contract order.
    pub const ALL: [EventKind; 11] = [
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
    }

    #[test]
    fn unknown_strings_are_named_in_the_error() {
        let e = Platform::parse("weibo").unwrap_err();
        assert_eq!(e.to_string(), "unknown platform \"weibo\"");
        let e = EventKind::parse("buy").unwrap_err();
        assert_eq!(e.to_string(), "unknown event kind \"buy\"");
    }
}
