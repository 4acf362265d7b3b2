//! The product catalogue (credit packs and plans). Prices are read only from here.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::models::Product;
use super::schema::products;

pub async fn list_active(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Product>> {
    products::table
        .filter(products::active.eq(true))
        .order((products::sort_order, products::id))
        .select(Product::as_select())
        .load(conn)
        .await
}

/// An active product by id.
pub async fn find_active(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<Product>> {
    products::table
        .find(id)
        .filter(products::active.eq(true))
        .select(Product::as_select())
        .first(conn)
        .await
        .optional()
}
