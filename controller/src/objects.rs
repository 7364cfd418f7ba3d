//! Create-if-absent and delete-if-present, the two idempotent writes every reconciler makes
//! of the objects it owns: a reconcile may run twice, or after another replica's.

use kube::Resource;
use kube::api::{Api, DeleteParams, PostParams};

use crate::Error;

/// Creates `object`, or when one of its name exists, returns that one.
pub async fn create_or_get<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(api
            .get(&object.meta().name.clone().unwrap_or_default())
            .await?),
        Err(e) => Err(e.into()),
    }
}

/// Creates `object` unless one of its name exists (which is kept as it is).
pub async fn create_or_keep<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the object `name` (in the background), if it exists.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
