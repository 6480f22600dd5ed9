//! W3C trace context at berth's edges: the caller's `traceparent` and
//! `tracestate`, read through the SDK's `TraceContextPropagator` once their
//! size is known to be sane, and the headers naming a berth span as the
//! parent of an upstream request.

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The W3C header naming the parent span.
pub(super) const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor state along a trace.
pub(super) const TRACESTATE: &str = "tracestate";
/// Longest `traceparent` handed to the parser (version 00 is 55 bytes; later
/// versions may append fields). A longer one is ignored: the request starts a
/// new trace.
pub(super) const MAX_TRACEPARENT: usize = 256;
/// Longest `tracestate` handed to the parser (W3C: at most 32 members;
/// vendors propagate at least 512 characters). A longer one is ignored while
/// the `traceparent` is kept.
pub(super) const MAX_TRACESTATE: usize = 1024;

/// The caller's span context, when `headers` carry a valid `traceparent`.
pub(super) fn remote_parent(headers: &HeaderMap) -> Option<Context> {
    if !headers.contains_key(TRACEPARENT) {
        return None;
    }
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), &Bounded(headers));
    cx.has_active_span().then_some(cx)
}

/// Hands the propagator the trace-context headers when they are of a sane
/// size and appear once (a repeated `traceparent` is ambiguous, W3C).
struct Bounded<'a>(&'a HeaderMap);

impl Extractor for Bounded<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let limit = match key {
            TRACEPARENT => MAX_TRACEPARENT,
            TRACESTATE => MAX_TRACESTATE,
            _ => return None,
        };
        let mut values = self.0.get_all(key).iter();
        let value = values.next()?;
        if (key == TRACEPARENT && values.next().is_some()) || value.len() > limit {
            return None;
        }
        value.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The trace-context headers naming `context` as the parent span.
pub(super) fn fields_of(context: &SpanContext) -> Fields {
    let cx = Context::new().with_remote_span_context(context.clone());
    let mut fields = Fields::default();
    TraceContextPropagator::new().inject_context(&cx, &mut fields);
    fields
}

/// Collects what the propagator injects.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) traceparent: Option<String>,
    pub(super) tracestate: Option<String>,
}

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value),
            _ => {}
        }
    }
}
