//! The server's side of the plugins' `events` import: `emit` dispatches a trigger instance
//! (StackStorm's `sensor_service.dispatch`) and `request-execution` requests an execution
//! (`action_service`), both on behalf of a running plugin.
//!
//! Work a plugin starts is one link deeper than the work it runs for: the new trigger
//! instance carries `depth + 1`, and so do the executions rules request for it; an execution a
//! plugin requests carries `context.depth = depth + 1` and `context.parent`. The runtime
//! refuses a link past [`stormhook_runtime::RuntimeConfig::max_chain_depth`], so a loop of
//! plugins starting each other ends with a clear `denied` error instead of running forever.

use std::sync::{Arc, Weak};

use serde_json::{Map, Value, json};
use stormhook_runtime::services::{
    Events, EventsError, EventsFuture, Origin, PackConfigs, PluginConfig,
};
use stormhook_storage::ingest::Ingest;
use stormhook_storage::{InstanceStatus, NewEvent, Store, Trace, TriggerInstance, ids};

use crate::executions::{Executor, Request, RequestError, SYSTEM_USER};
use crate::packs::PackManager;

/// Largest payload or parameters document a plugin may hand over, in bytes of JSON text.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// [`Events`] over the store and the executor.
pub struct PluginEvents {
    store: Arc<dyn Store>,
    ingest: Ingest,
    /// Weak: the executor owns (through its catalog) the runtime that holds this.
    executor: Weak<Executor>,
}

impl PluginEvents {
    /// Events stored through `ingest`, executions requested from `executor`.
    pub fn new(store: Arc<dyn Store>, ingest: Ingest, executor: &Arc<Executor>) -> Self {
        Self {
            store,
            ingest,
            executor: Arc::downgrade(executor),
        }
    }
}

fn object(what: &str, text: &str) -> Result<Map<String, Value>, EventsError> {
    if text.len() > MAX_EVENT_BYTES {
        return Err(EventsError::Invalid(format!(
            "{what} is {} bytes, more than the {MAX_EVENT_BYTES} byte limit",
            text.len()
        )));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(EventsError::Invalid(format!(
            "{what} must be a JSON object, got {}",
            crate::triggers::python_repr(&other)
        ))),
        Err(e) => Err(EventsError::Invalid(format!("{what} is not JSON: {e}"))),
    }
}

impl Events for PluginEvents {
    fn emit<'a>(
        &'a self,
        origin: &'a Origin,
        trigger: &'a str,
        payload: &'a str,
    ) -> EventsFuture<'a, String> {
        Box::pin(async move {
            let payload = object("the payload", payload)?;
            let trigger_type = self
                .store
                .trigger_type(trigger)
                .await
                .map_err(|e| EventsError::Failed(e.to_string()))?
                .ok_or_else(|| {
                    EventsError::Invalid(format!(
                        "Trigger type with reference \"{trigger}\" doesn't exist in the database"
                    ))
                })?;
            let payload = Value::Object(payload);
            if let Some(schema) = trigger_type.payload_schema.as_object()
                && !schema.is_empty()
            {
                crate::schema::validate(&trigger_type.payload_schema, &payload).map_err(|e| {
                    EventsError::Invalid(format!(
                        "Trigger payload validation failed for \"{trigger}\": {e}"
                    ))
                })?;
            }
            let now = ids::now();
            // The chain keeps the tag of the work that started it, so `st2 trace list
            // --trace-tag` shows every link.
            let trace_tag = origin.trace_tag.clone().unwrap_or_else(|| {
                format!("plugin-{}-{}", origin.plugin, uuid::Uuid::now_v7().simple())
            });
            let trace = Trace {
                id: ids::object_id(),
                trace_tag,
                start_timestamp: now.clone(),
                trigger_instances: Vec::new(),
            };
            let instance = TriggerInstance {
                id: ids::object_id(),
                trigger: trigger.to_owned(),
                trigger_type: Some(trigger_type.reference.clone()),
                payload,
                occurrence_time: now,
                status: InstanceStatus::Pending,
                trace_id: Some(trace.id.clone()),
                depth: origin.depth + 1,
            };
            let id = instance.id.clone();
            self.ingest
                .submit_waiting(NewEvent::new(trace, vec![instance]))
                .await
                .map_err(|e| EventsError::Failed(e.to_string()))?;
            Ok(id)
        })
    }

    fn request_execution<'a>(
        &'a self,
        origin: &'a Origin,
        action: &'a str,
        parameters: &'a str,
    ) -> EventsFuture<'a, String> {
        Box::pin(async move {
            let parameters = object("the parameters", parameters)?;
            let executor = self
                .executor
                .upgrade()
                .ok_or_else(|| EventsError::Failed("the server is shutting down".into()))?;
            let user = origin
                .user
                .clone()
                .unwrap_or_else(|| SYSTEM_USER.to_owned());
            let mut context = Map::new();
            context.insert(
                "parent".into(),
                json!({"execution_id": origin.execution_id, "user": user, "plugin": origin.plugin}),
            );
            context.insert("depth".into(), json!(origin.depth + 1));
            if let Some(tag) = &origin.trace_tag {
                context.insert("trace_context".into(), json!({"trace_tag": tag}));
            }
            let request = Request {
                action: action.to_owned(),
                parameters,
                user,
                context,
                delay: 0,
            };
            match executor.request(request).await {
                Ok(execution) => Ok(execution.id),
                Err(RequestError::RenderFailed { message, execution }) => {
                    Err(EventsError::Invalid(format!(
                        "execution {} failed at once: {message}",
                        execution.id
                    )))
                }
                Err(e @ RequestError::Store(_)) => Err(EventsError::Failed(e.to_string())),
                Err(e) => Err(EventsError::Invalid(e.to_string())),
            }
        })
    }
}

/// [`PackConfigs`] over the pack manager's validated pack configurations.
pub struct PackConfigSource {
    /// Weak: the pack manager owns the runtime that holds this.
    packs: Weak<PackManager>,
}

impl PackConfigSource {
    /// Configurations as `packs` loads them (hot-reloaded with the packs).
    pub fn new(packs: &Arc<PackManager>) -> Self {
        Self {
            packs: Arc::downgrade(packs),
        }
    }
}

impl PackConfigs for PackConfigSource {
    fn config(&self, pack: &str) -> Option<PluginConfig> {
        let config = self.packs.upgrade()?.config(pack)?;
        Some(PluginConfig {
            values: Arc::new(config.values.clone()),
            secrets: config.secret_values().into(),
        })
    }
}
