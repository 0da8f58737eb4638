//! What the web panel shows beyond the panel API's objects: a product's things one page at a time
//! (with each row's newest values), a thing's overview, a timeline downsampled for a chart, things
//! created in bulk, an app's users with their roles, and the live stream of the things a page
//! shows. Every call is scoped to the panel account, as in [`super::panel`]: another account's
//! objects answer 404.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use thingline_core::ids::{new_id, new_thing_token, token_digest};
use thingline_core::keys::validate_key;
use thingline_core::model::{PanelUser, Thing};
use thingline_core::query::TimelineQuery;
use thingline_core::time::now_ms;
use thingline_core::{Error, Result};
use thingline_store::{AppUserSummary, NewThing, Series, ThingPage, ThingPageQuery};

use super::subscriptions::{Inbox, Subscriber, Target, thing_channel};
use super::{Platform, ReadOut};

/// Things created by one bulk call at most.
pub const MAX_BULK_THINGS: i64 = 10_000;
/// Things of one live panel stream at most.
pub const MAX_LIVE_THINGS: usize = 100;
/// Live panel streams per panel account at most (browser tabs).
pub const MAX_LIVE_STREAMS_PER_ACCOUNT: usize = 16;
/// Chart widths (points of a series) accepted.
pub const SERIES_POINTS: std::ops::RangeInclusive<u32> = 10..=4000;

/// The newest value of a key: (key, datetime, JSON text).
pub type Latest = (String, i64, String);

/// One row of the things table: the row and the newest value of each declared resource.
pub struct ThingsTable {
    pub page: ThingPage,
    pub latest: Vec<Vec<Latest>>,
    /// Unused activation codes of the product.
    pub pending_codes: u64,
}

/// A thing's overview for its page.
pub struct ThingOverview {
    pub thing: Arc<Thing>,
    pub product: thingline_core::model::Product,
    pub name: Option<String>,
    pub settings: Value,
    pub keys: Vec<String>,
    pub latest: Vec<Latest>,
    pub geo: Option<Value>,
}

/// A user of an app with what the panel shows of it.
pub struct AppUserRow {
    pub summary: AppUserSummary,
    pub roles: Value,
}

/// A live stream of the panel: its subscriber, its queue, which thing each channel is, and its
/// place among the account's streams (released when dropped).
pub struct PanelLive {
    pub subscriber: Subscriber,
    pub inbox: Inbox,
    pub things_by_channel: HashMap<Arc<str>, String>,
    pub _slot: PanelStreamSlot,
}

/// One of an account's live panel streams; frees its place when dropped.
pub struct PanelStreamSlot {
    platform: Arc<Platform>,
    account: i64,
}

impl Drop for PanelStreamSlot {
    fn drop(&mut self) {
        let mut streams = self.platform.panel_streams.lock();
        if let Some(n) = streams.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.account);
            }
        }
    }
}

impl Platform {
    /// A page of a product's things, each with its newest value of every resource the product
    /// declares.
    pub async fn things_table(&self, owner: &PanelUser, product_id: &str, q: &ThingPageQuery) -> Result<ThingsTable> {
        let product = self.owned_product(owner, product_id).await?;
        let page = self.store.things_page(product_id, q).await?;
        let keys: Vec<&str> = product.resources.iter().map(|r| r.key.as_str()).collect();
        let mut latest = Vec::with_capacity(page.rows.len());
        for row in &page.rows {
            latest.push(self.latest_of(&row.thing, &keys).await?);
        }
        let pending_codes = self.store.unused_activation_codes(product_id).await?;
        Ok(ThingsTable { page, latest, pending_codes })
    }

    /// The newest value of each of `keys` that has one.
    async fn latest_of(&self, thing: &Thing, keys: &[&str]) -> Result<Vec<Latest>> {
        let mut out = Vec::new();
        for key in keys {
            if key.starts_with('$') {
                continue;
            }
            match self.read_values(thing, key, &TimelineQuery::default()).await {
                Ok(ReadOut::Timeline(items)) => {
                    out.extend(items.into_iter().next().map(|i| (i.key, i.ts, i.value)));
                }
                Ok(ReadOut::Document { .. }) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A thing of this account with its product, name, settings, keys, newest values and place.
    pub async fn thing_overview(&self, owner: &PanelUser, thing_id: &str) -> Result<ThingOverview> {
        let thing = self.owned_thing(owner, thing_id).await?;
        let product = self.owned_product(owner, &thing.product_id).await?;
        let thing = Arc::new(thing);
        let settings = self.store.thing_settings(thing.seq).await?;
        let name = settings.get("name").and_then(Value::as_str).map(str::to_owned);
        let keys = self.resource_keys(&thing).await?;
        let mut wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
        for r in &product.resources {
            if !wanted.contains(&r.key.as_str()) {
                wanted.push(&r.key);
            }
        }
        let latest = self.latest_of(&thing, &wanted).await?;
        let geo = match self.read_values(&thing, "$geo", &TimelineQuery::default()).await {
            Ok(ReadOut::Timeline(items)) => items.first().and_then(|i| serde_json::from_str(&i.value).ok()),
            Ok(ReadOut::Document { .. }) | Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(ThingOverview { thing, product, name, settings, keys, latest, geo })
    }

    /// A thing's numeric values of `key` in [start, end), at most `points` of them or as many
    /// buckets (min, max, average).
    pub async fn thing_series(
        &self,
        owner: &PanelUser,
        thing_id: &str,
        key: &str,
        start_ms: i64,
        end_ms: i64,
        points: u32,
    ) -> Result<Series> {
        validate_key(key)?;
        if !SERIES_POINTS.contains(&points) {
            return Err(Error::bad_request(format!(
                "points must be a whole number from {} to {}",
                SERIES_POINTS.start(),
                SERIES_POINTS.end()
            )));
        }
        if end_ms <= start_ms {
            return Err(Error::bad_request("endDate must be after startDate"));
        }
        let thing = self.owned_thing(owner, thing_id).await?;
        self.store.series(thing.seq, key, start_ms, end_ms, points).await?.ok_or_else(|| Error::resource_not_found(key))
    }

    /// Creates `count` things of a product of this account at once (no activation codes): their
    /// ids and tokens, shown this once.
    pub async fn create_things(&self, owner: &PanelUser, product_id: &str, count: i64) -> Result<Vec<Thing>> {
        self.owned_product(owner, product_id).await?;
        if !(1..=MAX_BULK_THINGS).contains(&count) {
            return Err(Error::bad_request(format!("count must be a whole number from 1 to {MAX_BULK_THINGS}")));
        }
        let now = now_ms();
        let things: Vec<NewThing> =
            (0..count).map(|_| NewThing { id: new_id(), token: new_thing_token(), now_ms: now }).collect();
        self.store.create_things(product_id, &things, now).await
    }

    /// The users of an app of this account with their last login, linked things and roles.
    pub async fn app_user_rows(&self, owner: &PanelUser, app_id: &str) -> Result<Vec<AppUserRow>> {
        self.owned_app(owner, app_id).await?;
        let summaries = self.store.app_user_summaries(app_id).await?;
        let mut rows = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let roles = self.roles_of(app_id, summary.user.id).await?;
            rows.push(AppUserRow { summary, roles });
        }
        Ok(rows)
    }

    /// Subscribes to every write of the given things of this account (the things a panel page
    /// shows): 404 for a thing the account does not own, 429 past the account's streams or a
    /// thing's streams.
    pub async fn panel_live(self: &Arc<Self>, owner: &PanelUser, thing_ids: &[String]) -> Result<PanelLive> {
        if thing_ids.len() > MAX_LIVE_THINGS {
            return Err(Error::bad_request(format!("at most {MAX_LIVE_THINGS} things per live stream")));
        }
        let slot = self.reserve_panel_stream(owner.id)?;
        let mut targets = Vec::with_capacity(thing_ids.len());
        let mut things_by_channel = HashMap::with_capacity(thing_ids.len());
        for id in thing_ids {
            let thing = self.owned_thing(owner, id).await?;
            things_by_channel.insert(thing_channel(&thing.token), thing.id.clone());
            targets.push(Target::Thing { token: thing.token });
        }
        let (subscriber, inbox) = self.subscribe_operator_queue(targets).await?;
        Ok(PanelLive { subscriber, inbox, things_by_channel, _slot: slot })
    }

    /// Takes one of the account's live panel streams, or 429 (reserved before anything opens).
    fn reserve_panel_stream(self: &Arc<Self>, account: i64) -> Result<PanelStreamSlot> {
        let mut streams = self.panel_streams.lock();
        let n = streams.entry(account).or_insert(0);
        if *n >= MAX_LIVE_STREAMS_PER_ACCOUNT {
            super::metrics::rate_limited("panel-live-streams");
            return Err(Error::TooManyRequests(format!(
                "too many live panel streams for this account (at most {MAX_LIVE_STREAMS_PER_ACCOUNT})"
            )));
        }
        *n += 1;
        Ok(PanelStreamSlot { platform: Arc::clone(self), account })
    }

    /// Fires with each panel session that ends (its token digest), on any node.
    pub fn panel_session_ends(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.panel_ends.subscribe()
    }

    /// Whether a panel session token is still live.
    pub async fn panel_session_live(&self, token: &str) -> Result<bool> {
        Ok(self.store.panel_session_user(&token_digest(token), now_ms()).await?.is_some())
    }
}

/// Parses the things table's query parameters: `limit` (1..=1000, default 100), `skip`, `sort`
/// (`activatedAt`, `thingId`, `name`), `order` (`asc`/`desc`; default desc for `activatedAt`,
/// asc otherwise) and `q`.
pub fn things_page_query(
    limit: Option<&str>,
    skip: Option<&str>,
    sort: Option<&str>,
    order: Option<&str>,
    search: Option<&str>,
) -> Result<ThingPageQuery> {
    use thingline_store::ThingSort;
    let limit = match limit {
        None => 100,
        Some(s) => match s.trim().parse::<u32>() {
            Ok(n @ 1..=1000) => n,
            _ => return Err(Error::bad_request("limit must be a whole number from 1 to 1000")),
        },
    };
    let skip = match skip {
        None => 0,
        Some(s) => s.trim().parse::<u64>().map_err(|_| Error::bad_request("skip must be a whole number from 0"))?,
    };
    let sort = match sort {
        None | Some("activatedAt") => ThingSort::Activated,
        Some("thingId") => ThingSort::Id,
        Some("name") => ThingSort::Name,
        Some(_) => return Err(Error::bad_request("sort must be activatedAt, thingId or name")),
    };
    let descending = match order {
        None => matches!(sort, ThingSort::Activated),
        Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(Error::bad_request("order must be asc or desc")),
    };
    let search = match search.map(str::trim) {
        None | Some("") => None,
        Some(s) if s.len() > 200 => return Err(Error::bad_request("q must be at most 200 characters")),
        Some(s) => Some(s.to_owned()),
    };
    Ok(ThingPageQuery { sort, descending, search, skip, limit })
}
