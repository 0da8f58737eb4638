//! The operator's side: products with public/private resources, activation codes, apps, and the
//! things of a product. Every call is scoped to the panel account that owns the object; another
//! account's objects answer 404.

use std::collections::HashSet;

use serde::Deserialize;
use thingline_core::classes::IndexDeclarations;
use thingline_core::ids::{new_activation_code, new_id};
use thingline_core::keys::validate_key;
use thingline_core::model::{ActivationCode, App, PanelUser, Product, ResourceDecl, Thing};
use thingline_core::time::now_ms;
use thingline_core::{Error, Result};

use super::Platform;

const MAX_NAME: usize = 200;
const MAX_RESOURCES: usize = 1000;

/// Body of product create/update.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    pub name: Option<String>,
    pub resources: Option<Vec<ResourceDecl>>,
}

/// Body of app create/update.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInput {
    pub name: Option<String>,
    pub resources: Option<Vec<String>>,
    /// Fields of the app's shared collections that may be filtered and sorted on, by collection
    /// name: `{"Tracks":["genre","rank"]}` (validated by [`IndexDeclarations::from_json`]).
    pub indexes: Option<serde_json::Value>,
}

fn check_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() || n.len() > MAX_NAME {
        return Err(Error::bad_request("name must be 1 to 200 characters"));
    }
    Ok(n.to_owned())
}

fn check_resources(resources: Vec<ResourceDecl>) -> Result<Vec<ResourceDecl>> {
    if resources.len() > MAX_RESOURCES {
        return Err(Error::bad_request("at most 1000 resources per product"));
    }
    let mut seen = HashSet::new();
    for r in &resources {
        validate_key(&r.key)
            .map_err(|e| Error::bad_request(format!("resource {:?}: {}", r.key, e.public_message())))?;
        if !seen.insert(r.key.as_str()) {
            return Err(Error::bad_request(format!("resource {:?} is declared twice", r.key)));
        }
    }
    Ok(resources)
}

fn not_found(what: &str) -> Error {
    Error::not_found(format!("{what} not found"))
}

impl Platform {
    pub async fn create_product(&self, owner: &PanelUser, input: ProductInput) -> Result<Product> {
        let name = check_name(input.name.as_deref().ok_or_else(|| Error::bad_request("name is required"))?)?;
        let resources = check_resources(input.resources.unwrap_or_default())?;
        let product = Product { id: new_id(), owner_id: owner.id, name, resources, created_ms: now_ms() };
        self.store.create_product(&product).await?;
        Ok(product)
    }

    /// A product of this account, or 404.
    pub async fn owned_product(&self, owner: &PanelUser, id: &str) -> Result<Product> {
        self.store.product(id).await?.filter(|p| p.owner_id == owner.id).ok_or_else(|| not_found("Product"))
    }

    pub async fn list_products(&self, owner: &PanelUser) -> Result<Vec<Product>> {
        self.store.products_of(owner.id).await
    }

    pub async fn update_product(&self, owner: &PanelUser, id: &str, input: ProductInput) -> Result<Product> {
        let mut product = self.owned_product(owner, id).await?;
        if let Some(name) = input.name {
            product.name = check_name(&name)?;
        }
        if let Some(resources) = input.resources {
            product.resources = check_resources(resources)?;
        }
        if !self.store.update_product(&product).await? {
            return Err(not_found("Product"));
        }
        self.product_changed(&product.id);
        Ok(product)
    }

    pub async fn delete_product(&self, owner: &PanelUser, id: &str) -> Result<()> {
        self.owned_product(owner, id).await?;
        if !self.store.delete_product(id).await? {
            return Err(not_found("Product"));
        }
        self.product_changed(id);
        Ok(())
    }

    pub async fn create_activation_codes(
        &self,
        owner: &PanelUser,
        product_id: &str,
        count: i64,
    ) -> Result<Vec<String>> {
        self.owned_product(owner, product_id).await?;
        let max = self.limits.max_codes_per_call;
        if count < 1 || count > max as i64 {
            return Err(Error::bad_request(format!("count must be a whole number from 1 to {max}")));
        }
        let codes: Vec<String> = (0..count).map(|_| new_activation_code()).collect();
        self.store.create_activation_codes(product_id, &codes, now_ms()).await?;
        Ok(codes)
    }

    pub async fn list_activation_codes(&self, owner: &PanelUser, product_id: &str) -> Result<Vec<ActivationCode>> {
        self.owned_product(owner, product_id).await?;
        self.store.activation_codes(product_id).await
    }

    pub async fn list_product_things(&self, owner: &PanelUser, product_id: &str) -> Result<Vec<Thing>> {
        self.owned_product(owner, product_id).await?;
        self.store.things_of_product(product_id).await
    }

    /// A thing whose product belongs to this account, or 404.
    pub async fn owned_thing(&self, owner: &PanelUser, thing_id: &str) -> Result<Thing> {
        let thing = self.store.thing_by_id(thing_id).await?.ok_or_else(|| not_found("Thing"))?;
        self.owned_product(owner, &thing.product_id).await.map_err(|_| not_found("Thing"))?;
        Ok(thing)
    }

    pub async fn delete_owned_thing(&self, owner: &PanelUser, thing_id: &str) -> Result<()> {
        let thing = self.owned_thing(owner, thing_id).await?;
        self.delete_thing(&thing).await
    }

    /// Keys an app may ask for: those some product of the account declares public.
    async fn check_app_resources(&self, owner: &PanelUser, resources: Vec<String>) -> Result<Vec<String>> {
        if resources.len() > MAX_RESOURCES {
            return Err(Error::bad_request("at most 1000 resources per app"));
        }
        let public: HashSet<String> = self
            .store
            .products_of(owner.id)
            .await?
            .into_iter()
            .flat_map(|p| p.resources.into_iter().filter(|r| r.public).map(|r| r.key))
            .collect();
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(resources.len());
        for key in resources {
            if !public.contains(&key) {
                return Err(Error::bad_request(format!(
                    "resource {key:?} is not declared public by any product of this account"
                )));
            }
            if seen.insert(key.clone()) {
                out.push(key);
            }
        }
        Ok(out)
    }

    pub async fn create_app(&self, owner: &PanelUser, input: AppInput) -> Result<App> {
        let name = check_name(input.name.as_deref().ok_or_else(|| Error::bad_request("name is required"))?)?;
        let resources = self.check_app_resources(owner, input.resources.unwrap_or_default()).await?;
        let indexes = input.indexes.as_ref().map(IndexDeclarations::from_json).transpose()?.unwrap_or_default();
        let app = App { id: new_id(), owner_id: owner.id, name, resources, indexes, created_ms: now_ms() };
        self.store.create_app(&app).await?;
        Ok(app)
    }

    pub async fn owned_app(&self, owner: &PanelUser, id: &str) -> Result<App> {
        self.store.app(id).await?.filter(|a| a.owner_id == owner.id).ok_or_else(|| not_found("App"))
    }

    pub async fn list_apps(&self, owner: &PanelUser) -> Result<Vec<App>> {
        self.store.apps_of(owner.id).await
    }

    pub async fn update_app(&self, owner: &PanelUser, id: &str, input: AppInput) -> Result<App> {
        let mut app = self.owned_app(owner, id).await?;
        if let Some(name) = input.name {
            app.name = check_name(&name)?;
        }
        if let Some(resources) = input.resources {
            app.resources = self.check_app_resources(owner, resources).await?;
        }
        if let Some(indexes) = &input.indexes {
            // Replaces the whole declaration; the store indexes the shared collections anew
            // (objects already stored included) and drops fields no longer declared.
            app.indexes = IndexDeclarations::from_json(indexes)?;
        }
        let updated = self.store.update_app(&app).await;
        // Also after a failure: the store may have committed the app before failing to bring
        // its shared collections in line with a new index declaration.
        self.app_changed(&app.id);
        if !updated? {
            return Err(not_found("App"));
        }
        Ok(app)
    }

    pub async fn delete_app(&self, owner: &PanelUser, id: &str) -> Result<()> {
        self.owned_app(owner, id).await?;
        if !self.store.delete_app(id).await? {
            return Err(not_found("App"));
        }
        self.app_changed(id);
        Ok(())
    }
}
