//! User tags: binary labels defined on a user's *future* window (the label window after
//! the cut-off). The simulator computes the true probability of each from its latent
//! traits, so models can be compared with the best possible score.

use liveprofile_events::DAY_MS;

/// Length of the label window after the cut-off.
pub const LABEL_WINDOW_MS: i64 = 7 * DAY_MS;
/// Order amount (yuan) at or above which an order is "high value".
pub const HIGH_VALUE_YUAN: f64 = 300.0;
/// Night visits (22:00-01:59 China time) needed for `night_owl`.
pub const NIGHT_OWL_VISITS: u32 = 3;
/// Visits to one host needed for `loyal_fan`.
pub const LOYAL_FAN_VISITS: u32 = 3;
/// China-time hours that count as night for `night_owl`.
pub const NIGHT_HOURS: [u32; 4] = [22, 23, 0, 1];

/// A user tag. The order of [`Tag::ALL`] is the order of the `user_tags` model outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    /// Orders in an apparel room in the label window.
    BuysApparel,
    /// Orders in a beauty room in the label window.
    BuysBeauty,
    /// Orders in a home room in the label window.
    BuysHome,
    /// Orders in a food room in the label window.
    BuysFood,
    /// Orders in an electronics room in the label window.
    BuysElectronics,
    /// Orders in a maternal & baby room in the label window.
    BuysMaternalBaby,
    /// Places an order with a coupon in the label window.
    PriceSensitive,
    /// Places an order of at least [`HIGH_VALUE_YUAN`] in the label window.
    HighValue,
    /// Enters no live room in the label window.
    ChurnRisk,
    /// Enters live rooms on two or more platforms in the label window.
    CrossPlatform,
    /// Enters at least [`NIGHT_OWL_VISITS`] live rooms at night in the label window.
    NightOwl,
    /// Sends a gift in the label window.
    Gifter,
    /// Enters rooms of a single host at least [`LOYAL_FAN_VISITS`] times in the window.
    LoyalFan,
}

impl Tag {
    /// Every tag, in model output order.
    pub const ALL: [Tag; 13] = [
        Tag::BuysApparel,
        Tag::BuysBeauty,
        Tag::BuysHome,
        Tag::BuysFood,
        Tag::BuysElectronics,
        Tag::BuysMaternalBaby,
        Tag::PriceSensitive,
        Tag::HighValue,
        Tag::ChurnRisk,
        Tag::CrossPlatform,
        Tag::NightOwl,
        Tag::Gifter,
        Tag::LoyalFan,
    ];

    /// Column / output name.
    pub const fn name(self) -> &'static str {
        match self {
            Tag::BuysApparel => "buys_apparel_7d",
            Tag::BuysBeauty => "buys_beauty_7d",
            Tag::BuysHome => "buys_home_7d",
            Tag::BuysFood => "buys_food_7d",
            Tag::BuysElectronics => "buys_electronics_7d",
            Tag::BuysMaternalBaby => "buys_maternal_baby_7d",
            Tag::PriceSensitive => "price_sensitive",
            Tag::HighValue => "high_value",
            Tag::ChurnRisk => "churn_risk",
            Tag::CrossPlatform => "cross_platform",
            Tag::NightOwl => "night_owl",
            Tag::Gifter => "gifter",
            Tag::LoyalFan => "loyal_fan",
        }
    }

    /// One-sentence definition, written into the feature schema.
    pub const fn definition(self) -> &'static str {
        match self {
            Tag::BuysApparel => "The user orders in an apparel live room within 7 days after the cut-off.",
            Tag::BuysBeauty => "The user orders in a beauty live room within 7 days after the cut-off.",
            Tag::BuysHome => "The user orders in a home live room within 7 days after the cut-off.",
            Tag::BuysFood => "The user orders in a food live room within 7 days after the cut-off.",
            Tag::BuysElectronics => "The user orders in an electronics live room within 7 days after the cut-off.",
            Tag::BuysMaternalBaby => "The user orders in a maternal & baby live room within 7 days after the cut-off.",
            Tag::PriceSensitive => "The user places at least one order with a coupon within 7 days after the cut-off.",
            Tag::HighValue => "The user places an order of 300 yuan or more within 7 days after the cut-off.",
            Tag::ChurnRisk => "The user enters no live room within 7 days after the cut-off.",
            Tag::CrossPlatform => {
                "The user enters live rooms on two or more platforms within 7 days after the cut-off."
            }
            Tag::NightOwl => {
                "The user enters live rooms at least 3 times between 22:00 and 01:59 China time within 7 days after the cut-off."
            }
            Tag::Gifter => "The user sends at least one gift within 7 days after the cut-off.",
            Tag::LoyalFan => "The user enters the rooms of one host at least 3 times within 7 days after the cut-off.",
        }
    }

    /// The live category a `buys_*` tag is about.
    pub const fn category(self) -> Option<&'static str> {
        match self {
            Tag::BuysApparel => Some("apparel"),
            Tag::BuysBeauty => Some("beauty"),
            Tag::BuysHome => Some("home"),
            Tag::BuysFood => Some("food"),
            Tag::BuysElectronics => Some("electronics"),
            Tag::BuysMaternalBaby => Some("maternal_baby"),
            _ => None,
        }
    }
}
