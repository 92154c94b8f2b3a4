//! Execution, trigger-instance and enforcement statuses (kept by the store, named as in
//! StackStorm).

pub use stormhook_storage::status::{
    EnforcementStatus, ExecutionStatus, InstanceStatus, UnknownStatus,
};
