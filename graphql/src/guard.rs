//! Authorization helpers used on root fields, `node(id)` and every edge.

use crate::context::Viewer;
use crate::errors::coded;
use async_graphql::Context;
use shared::settings::Environment;

/// Operations meant for development and tests only (the demo job) refuse production.
pub fn require_non_production(ctx: &Context<'_>) -> async_graphql::Result<()> {
    let env = ctx
        .data_opt::<shared::core::Core>()
        .map(|c| c.settings.environment)
        .unwrap_or(Environment::Production);
    if env == Environment::Production {
        Err(coded("FORBIDDEN", "not available in production"))
    } else {
        Ok(())
    }
}

/// The request's viewer (anonymous when none was set).
pub fn viewer<'a>(ctx: &'a Context<'_>) -> &'a Viewer {
    static ANON: Viewer = Viewer::Anonymous;
    ctx.data_opt::<Viewer>().unwrap_or(&ANON)
}
