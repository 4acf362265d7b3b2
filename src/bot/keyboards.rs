//! The bot's inline keyboards (`reply_markup`) and the callback data of their buttons.

use serde_json::{Value, json};

use super::texts::{self, Lang};
use crate::db::models::Product;

pub const CLEAR_YES: &str = "clear:yes";
pub const DELETE_YES: &str = "delete:yes";
pub const CANCEL: &str = "cancel";
pub const BUY_PREFIX: &str = "buy:";

/// One button that opens the Mini App.
pub fn open_app(l: Lang, web_app_url: &str) -> Value {
    json!({"inline_keyboard": [[
        {"text": texts::open_app_button(l), "web_app": {"url": web_app_url}}
    ]]})
}

pub fn confirm(l: Lang, yes: &str) -> Value {
    json!({"inline_keyboard": [[
        {"text": texts::confirm_button(l), "callback_data": yes},
        {"text": texts::cancel_button(l), "callback_data": CANCEL},
    ]]})
}

/// A button per way to buy each product: Stars in the chat (an invoice on press), roubles in
/// the Mini App's payment screen.
pub fn catalogue(l: Lang, products: &[Product], web_app_url: &str) -> Value {
    let shop = shop_url(web_app_url);
    let mut rows = Vec::new();
    for p in products {
        if let Some(stars) = p.price_stars {
            rows.push(json!([{
                "text": texts::stars_button(&p.title, stars),
                "callback_data": format!("{BUY_PREFIX}{}", p.id),
            }]));
        }
        if p.currency == "RUB" && p.price_minor > 0 {
            rows.push(json!([{
                "text": texts::roubles_button(l, &p.title, p.price_minor),
                "web_app": {"url": format!("{shop}product={}", p.id)},
            }]));
        }
    }
    json!({ "inline_keyboard": rows })
}

/// The Mini App's payment screen, ready for more query parameters.
fn shop_url(web_app_url: &str) -> String {
    let sep = if web_app_url.contains('?') { '&' } else { '?' };
    format!("{web_app_url}{sep}screen=buy&")
}

/// One link button that opens a Stars invoice.
pub fn pay(l: Lang, stars: i64, link: &str) -> Value {
    json!({"inline_keyboard": [[{"text": texts::pay_button(l, stars), "url": link}]]})
}
