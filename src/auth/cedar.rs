//! Cedar authorization of MCP operations: ToolHive's `cedarv1` authz config
//! and entity model, so that ToolHive policies keep working under berth.
//!
//! [`Authorizer::new`] parses the policies and the static entities once;
//! [`Authorizer::allows`] answers one question per call ("may this caller call
//! this tool, get this prompt, read this resource?"), and
//! [`Authorizer::caller`] + [`Authorizer::allows_caller`] let a list filter
//! build the caller's side once for a whole `tools/list` response.
//!
//! # Entity model (ToolHive's `authorizers/cedar`)
//!
//! - Principal `Client::"<subject>"` (`Client::"anonymous"` without an
//!   identity). Attributes: `claim_<name>` for every claim; for each name in
//!   `multi_valued_claims`, `claim_<name>` is the space-joined string (a string
//!   claim verbatim, an array's string elements joined by one space) and
//!   `claimset_<name>` the set of its elements (a string split on
//!   whitespace). Parents: one `<group_entity_type>::"<g>"` per value of the
//!   group claim (`group_claim_name` if present in the token, else the first
//!   present of `groups`, `roles`, `cognito:groups`; a name is looked up as a
//!   top-level key, then as a dot-separated path) and of `role_claim_name`.
//!   Only arrays count as group claims; their string elements are the groups.
//! - Action `Action::"call_tool" | "get_prompt" | "read_resource"` with
//!   attribute `operation` (the same string).
//! - Resource `Tool::"<name>"`, `Prompt::"<name>"` or `Resource::"<id>"`,
//!   parent `MCP::"<server>"`. Attributes `name`, `operation` (`call`, `get`,
//!   `read`), `feature` (`tool`, `prompt`, `resource`), `uri` (resources), the
//!   tool's annotations `readOnlyHint`, `destructiveHint`, `idempotentHint`,
//!   `openWorldHint` (booleans only, tools only), and the arguments: scalar
//!   `arg_<key>` or `arg_<key>_present = true` for objects, arrays and null.
//!   When a scalar `<key>_present` and an object `<key>` collide, the
//!   presence marker (`true`) wins.
//! - Resource ids are ToolHive's: a resource URI is *sanitized* (`:` `/` `\`
//!   `?` `&` `=` `#` space `.` become `_`), so `file:///a.txt` is
//!   `Resource::"file____a_txt"`, exactly what ToolHive policies name. The
//!   mapping is lossy (`a.b` and `a_b` share an id); a policy that must match
//!   one URI exactly tests `resource.uri`. Tool and prompt names are used as
//!   they are.
//! - Context: the same `claim_*`, `claimset_*` and `arg_*` values.
//! - Values: strings, booleans; numbers as `decimal` when representable
//!   (at most 4 fractional digits, within ±922337203685477), else as a Long
//!   when integral and within i64, else the attribute is left out; arrays as
//!   sets, objects as records. `null` claims are left out.
//! - Static `entities_json` entities are merged with the per-request ones;
//!   on a uid collision the per-request entity wins (as in ToolHive), so
//!   entities_json cannot give a `Client` parents: group them through claims.
//!
//! Every id is built with the typed API ([`EntityUid::from_type_name_and_id`]),
//! never by formatting Cedar source, so a name holding quotes or `::` stays
//! one opaque id. Any error (building entities, evaluating any policy)
//! denies: a policy that reads a missing attribute denies every request it is
//! evaluated for, so guard optional attributes with `has`.
//!
//! # Limits
//!
//! - Nesting: a value inside more than [`MAX_DEPTH`] records or sets is left
//!   out (ToolHive's limit).
//! - Size: a claim whose value has more than [`MAX_ATTRIBUTE_VALUES`] values
//!   (counting every element and field) is left out, and claims beyond
//!   [`MAX_CLAIM_VALUES`] values in total are left out. A left-out attribute
//!   makes `has` false, so a `forbid` guarded by `has` does not apply to it.
//! - A group claim plus role claim with more than [`MAX_GROUPS`] values, or
//!   a call with more than [`MAX_ARGUMENTS`] arguments, is denied outright:
//!   dropping a group or an argument could lift a `forbid`.
//! - `primary_upstream_provider` is accepted and ignored: the claims are
//!   those berth verified on the request's own token.
//!
//! # Cost
//!
//! Measured in release on the 2-core dev machine (with another build
//! running), for a token of ~10 claims and 3 groups and three policies:
//! [`Authorizer::caller`] ~25 µs; one check without arguments ~11 µs with no
//! static entities, ~23 µs with 20, ~130 µs with 200 (merging the request's
//! entities into `entities_json` re-closes the hierarchy, linear in its
//! size); so filtering a 100-tool list costs 1–3 ms, and one `tools/call`
//! with arguments ~80 µs.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use cedar_policy::{
    Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, Request, RestrictedExpression,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use crate::auth::Identity;

#[cfg(test)]
mod tests;

/// The only authorizer type berth runs (`type` in the config).
pub const CEDAR_V1: &str = "cedarv1";

/// The group entity type when `group_entity_type` is not set.
pub const DEFAULT_GROUP_ENTITY_TYPE: &str = "THVGroup";

/// Claims tried, in order, when `group_claim_name` is unset or absent.
const DEFAULT_GROUP_CLAIMS: [&str; 3] = ["groups", "roles", "cognito:groups"];

/// The deepest nesting of records and sets converted; deeper values are left out.
pub const MAX_DEPTH: usize = 10;

/// The most values (elements and fields, at every depth) one claim may hold.
pub const MAX_ATTRIBUTE_VALUES: usize = 4096;

/// The most values all claims together may hold; claims past it are left out.
pub const MAX_CLAIM_VALUES: usize = 16384;

/// The most groups plus roles a caller may have; more denies every request.
pub const MAX_GROUPS: usize = 1024;

/// The most arguments a call may have; more denies it.
pub const MAX_ARGUMENTS: usize = 1024;

/// The tool annotations copied onto a `Tool` resource (booleans only).
const ANNOTATIONS: [&str; 4] = [
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
];

/// The principal of a request without an identity.
const ANONYMOUS: &str = "anonymous";

// === config ===

/// ToolHive's authz config: `{"version": "1.0", "type": "cedarv1", "cedar": {…}}`.
///
/// Read it with [`AuthzConfig::from_value`], which names an unsupported
/// `type` before anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    /// The config format's version (ToolHive writes `"1.0"`); must not be empty.
    pub version: String,
    /// The authorizer; only `cedarv1`.
    #[serde(rename = "type")]
    pub kind: AuthzType,
    /// The Cedar policies and how claims map onto entities.
    pub cedar: CedarConfig,
}

/// The authorizer a config selects. ToolHive also has `httpv1` (an external
/// PDP), which berth refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthzType {
    /// Cedar policies evaluated in process.
    #[default]
    CedarV1,
}

impl Serialize for AuthzType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(CEDAR_V1)
    }
}

impl<'de> Deserialize<'de> for AuthzType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let kind = String::deserialize(deserializer)?;
        if kind == CEDAR_V1 {
            Ok(Self::CedarV1)
        } else {
            Err(serde::de::Error::custom(unsupported_type(&kind)))
        }
    }
}

/// The `cedar` object of [`AuthzConfig`] (field names as in ToolHive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CedarConfig {
    /// Cedar policies, one policy per string (ids `policy0`, `policy1`, …).
    #[serde(default)]
    pub policies: Vec<String>,
    /// Static entities in Cedar's JSON entity format (a JSON array, as a string).
    #[serde(default = "default_entities_json")]
    pub entities_json: String,
    /// The claim holding the caller's groups; when unset or absent from the
    /// token, the first present of `groups`, `roles`, `cognito:groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_claim_name: Option<String>,
    /// A claim holding roles, merged into the groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_claim_name: Option<String>,
    /// The entity type of the principal's group parents (an unqualified
    /// Cedar identifier).
    #[serde(default = "default_group_entity_type")]
    pub group_entity_type: String,
    /// Claims also exposed as `claimset_<name>` sets (and as a space-joined
    /// `claim_<name>` string): OAuth scopes and the like.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multi_valued_claims: Vec<String>,
    /// Set by ToolHive's embedded auth server; accepted and ignored (berth
    /// reads the claims of the token it verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_upstream_provider: Option<String>,
}

fn default_entities_json() -> String {
    "[]".to_owned()
}

fn default_group_entity_type() -> String {
    DEFAULT_GROUP_ENTITY_TYPE.to_owned()
}

impl CedarConfig {
    /// A config with these policies and every other field at its default.
    pub fn new(policies: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            policies: policies.into_iter().map(Into::into).collect(),
            entities_json: default_entities_json(),
            group_claim_name: None,
            role_claim_name: None,
            group_entity_type: default_group_entity_type(),
            multi_valued_claims: Vec::new(),
            primary_upstream_provider: None,
        }
    }
}

impl AuthzConfig {
    /// A `cedarv1` config, version `1.0`, with these Cedar options.
    pub fn cedar(cedar: CedarConfig) -> Self {
        Self {
            version: "1.0".to_owned(),
            kind: AuthzType::CedarV1,
            cedar,
        }
    }

    /// Reads a config from JSON (a YAML file must be converted by its
    /// reader). A `type` other than `cedarv1` is refused before any other
    /// field is looked at, so an `httpv1` config gets that answer rather than
    /// "unknown field `pdp`".
    pub fn from_value(value: Value) -> Result<Self, AuthzError> {
        if let Some(kind) = value.get("type") {
            match kind.as_str() {
                Some(CEDAR_V1) => {}
                Some(other) => return Err(AuthzError::UnsupportedType(other.to_owned())),
                None => return Err(AuthzError::UnsupportedType(kind.to_string())),
            }
        }
        serde_json::from_value(value).map_err(|err| AuthzError::Config(err.to_string()))
    }
}

fn unsupported_type(kind: &str) -> String {
    format!("authz type `{kind}`: only {CEDAR_V1} is supported")
}

/// Why an authz config was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthzError {
    /// The JSON does not have the config's shape.
    #[error("invalid authz config: {0}")]
    Config(String),
    /// `type` is not `cedarv1`.
    #[error("{}", unsupported_type(.0))]
    UnsupportedType(String),
    /// `version` is empty.
    #[error("invalid authz config: version is required")]
    MissingVersion,
    /// `policies` is empty.
    #[error("no policies: every request would be denied")]
    NoPolicies,
    /// A policy does not parse (Cedar's message).
    #[error("policy {index} (policy{index}): {message}")]
    Policy {
        /// Its position in `policies`.
        index: usize,
        /// Cedar's parse errors.
        message: String,
    },
    /// `entities_json` is not a valid Cedar entity list (Cedar's message).
    #[error("entities_json: {0}")]
    Entities(String),
    /// `group_entity_type` is not a plain Cedar identifier.
    #[error("group_entity_type `{value}`: {message}")]
    GroupEntityType {
        /// The configured value.
        value: String,
        /// What is wrong with it.
        message: String,
    },
}

// === impl Operation ===

/// An MCP operation that Cedar policies decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `tools/call`: `Action::"call_tool"` on `Tool::"<name>"`.
    CallTool,
    /// `prompts/get`: `Action::"get_prompt"` on `Prompt::"<name>"`.
    GetPrompt,
    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe`:
    /// `Action::"read_resource"` on `Resource::"<id>"`.
    ReadResource,
}

impl Operation {
    /// The operation an MCP method performs: `tools/call` → `CallTool`,
    /// `prompts/get` → `GetPrompt`, `resources/read|subscribe|unsubscribe` →
    /// `ReadResource`; any other method → `None`.
    pub fn of_method(method: &str) -> Option<Self> {
        match method {
            "tools/call" => Some(Self::CallTool),
            "prompts/get" => Some(Self::GetPrompt),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Some(Self::ReadResource)
            }
            _ => None,
        }
    }

    /// The Cedar action id: `call_tool`, `get_prompt`, `read_resource`.
    pub fn action(self) -> &'static str {
        match self {
            Self::CallTool => "call_tool",
            Self::GetPrompt => "get_prompt",
            Self::ReadResource => "read_resource",
        }
    }

    /// The resource's `operation` attribute: `call`, `get`, `read`.
    fn verb(self) -> &'static str {
        match self {
            Self::CallTool => "call",
            Self::GetPrompt => "get",
            Self::ReadResource => "read",
        }
    }

    /// The resource's `feature` attribute: `tool`, `prompt`, `resource`.
    fn feature(self) -> &'static str {
        match self {
            Self::CallTool => "tool",
            Self::GetPrompt => "prompt",
            Self::ReadResource => "resource",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::CallTool => 0,
            Self::GetPrompt => 1,
            Self::ReadResource => 2,
        }
    }
}

const OPERATIONS: [Operation; 3] = [
    Operation::CallTool,
    Operation::GetPrompt,
    Operation::ReadResource,
];

// === impl Authorizer ===

/// The entity types of the model, parsed once.
struct Types {
    client: EntityTypeName,
    group: EntityTypeName,
    tool: EntityTypeName,
    prompt: EntityTypeName,
    resource: EntityTypeName,
}

/// One workload's compiled policies and static entities.
///
/// Built once in [`Authorizer::new`]; every check reuses them. Send + Sync,
/// share it in an `Arc`.
pub struct Authorizer {
    cedar: cedar_policy::Authorizer,
    policies: PolicySet,
    /// The static entities (`entities_json`), transitively closed once.
    entities: Entities,
    types: Types,
    /// `Action::"call_tool"`, `"get_prompt"`, `"read_resource"` (by [`Operation::index`]).
    actions: [(EntityUid, Entity); 3],
    /// `MCP::"<server>"`, every resource's parent.
    server: EntityUid,
    group_claim: Option<String>,
    role_claim: Option<String>,
    multi_valued: Vec<String>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("server", &self.server)
            .field("policies", &self.policies.policies().count())
            .field("entities", &self.entities.iter().count())
            .finish_non_exhaustive()
    }
}

/// The caller's side of a request (principal entity, claims for the
/// context), built once by [`Authorizer::caller`] and reused for every item
/// of a list.
#[derive(Clone)]
pub struct Caller {
    uid: EntityUid,
    /// `None` when the caller cannot be represented (too many groups): every
    /// check denies.
    entity: Option<Entity>,
    /// The `claim_*` and `claimset_*` context entries.
    claims: Vec<(String, RestrictedExpression)>,
    /// The same entries as a context, evaluated once: the whole context of
    /// a check without arguments (every item of a list).
    context: Context,
}

impl fmt::Debug for Caller {
    // Claim values stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("uid", &self.uid)
            .field("claims", &self.claims.len())
            .field("representable", &self.entity.is_some())
            .finish()
    }
}

impl Authorizer {
    /// Parses and validates `config` for the workload `server` (the
    /// resources' parent `MCP::"<server>"`).
    pub fn new(config: &AuthzConfig, server: &str) -> Result<Self, AuthzError> {
        if config.version.trim().is_empty() {
            return Err(AuthzError::MissingVersion);
        }
        let cedar = &config.cedar;
        if cedar.policies.is_empty() {
            return Err(AuthzError::NoPolicies);
        }
        let mut policies = PolicySet::new();
        for (index, text) in cedar.policies.iter().enumerate() {
            let policy = Policy::parse(Some(PolicyId::new(format!("policy{index}"))), text)
                .map_err(|errors| AuthzError::Policy {
                    index,
                    message: errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                })?;
            policies.add(policy).map_err(|err| AuthzError::Policy {
                index,
                message: err.to_string(),
            })?;
        }
        let entities = if cedar.entities_json.trim().is_empty() {
            Entities::empty()
        } else {
            Entities::from_json_str(&cedar.entities_json, None)
                .map_err(|err| AuthzError::Entities(error_chain(&err)))?
        };
        let group = if cedar.group_entity_type.is_empty() {
            DEFAULT_GROUP_ENTITY_TYPE
        } else {
            cedar.group_entity_type.as_str()
        };
        let types = Types {
            client: entity_type("Client")?,
            group: entity_type(group)?,
            tool: entity_type("Tool")?,
            prompt: entity_type("Prompt")?,
            resource: entity_type("Resource")?,
        };
        let action_type = entity_type("Action")?;
        let actions = OPERATIONS.map(|op| {
            let uid =
                EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(op.action()));
            let entity = Entity::new_with_tags(
                uid.clone(),
                [(
                    "operation".to_owned(),
                    RestrictedExpression::new_string(op.action().to_owned()),
                )],
                [],
                [],
            )
            // A string attribute cannot fail to evaluate; keep the entity
            // without it rather than panic.
            .unwrap_or_else(|_| Entity::with_uid(uid.clone()));
            (uid, entity)
        });
        let server = EntityUid::from_type_name_and_id(entity_type("MCP")?, EntityId::new(server));
        if cedar
            .primary_upstream_provider
            .as_deref()
            .is_some_and(|p| !p.is_empty())
        {
            tracing::warn!(
                "Authz config sets primary_upstream_provider; berth ignores it and authorizes on the claims of the request's token."
            );
        }
        let non_empty = |name: &Option<String>| name.clone().filter(|n| !n.is_empty());
        Ok(Self {
            cedar: cedar_policy::Authorizer::new(),
            policies,
            entities,
            types,
            actions,
            server,
            group_claim: non_empty(&cedar.group_claim_name),
            role_claim: non_empty(&cedar.role_claim_name),
            multi_valued: cedar.multi_valued_claims.clone(),
        })
    }

    /// Whether `identity` may perform `op` on `name` (a tool or prompt name,
    /// a resource URI). `arguments` is the call's `arguments` object
    /// (`tools/call`, `prompts/get`), `annotations` the tool's `annotations`
    /// from the server's `tools/list`. No identity is `Client::"anonymous"`
    /// without claims. Any error denies.
    pub fn allows(
        &self,
        identity: Option<&Identity>,
        op: Operation,
        name: &str,
        arguments: Option<&Value>,
        annotations: Option<&Value>,
    ) -> bool {
        self.allows_caller(&self.caller(identity), op, name, arguments, annotations)
    }

    /// The caller's side of a request, to check many items with
    /// [`Authorizer::allows_caller`] (a list filter builds it once per
    /// response, not once per item).
    pub fn caller(&self, identity: Option<&Identity>) -> Caller {
        let Some(identity) = identity else {
            let uid = self.uid(&self.types.client, ANONYMOUS);
            return Caller {
                entity: Some(Entity::with_uid(uid.clone())),
                uid,
                claims: Vec::new(),
                context: Context::empty(),
            };
        };
        let uid = self.uid(&self.types.client, &identity.subject);
        let claims = self.claim_attributes(&identity.claims);
        let entity = match self.groups(&identity.claims) {
            Some(groups) => {
                let parents = groups.into_iter().map(|g| self.uid(&self.types.group, g));
                match Entity::new_with_tags(uid.clone(), claims.iter().cloned(), parents, []) {
                    Ok(entity) => Some(entity),
                    Err(err) => {
                        tracing::debug!(error = %err, "Cedar principal could not be built; denying.");
                        None
                    }
                }
            }
            None => {
                tracing::debug!(
                    max = MAX_GROUPS,
                    "Caller has too many groups and roles; denying."
                );
                None
            }
        };
        // Claim keys are unique and their values well formed, so this
        // cannot fail; if it did, the caller is denied.
        let (entity, context) = match Context::from_pairs(claims.iter().cloned()) {
            Ok(context) => (entity, context),
            Err(err) => {
                tracing::debug!(error = %err, "Cedar context could not be built; denying.");
                (None, Context::empty())
            }
        };
        Caller {
            uid,
            entity,
            claims,
            context,
        }
    }

    /// [`Authorizer::allows`] for a caller built by [`Authorizer::caller`].
    pub fn allows_caller(
        &self,
        caller: &Caller,
        op: Operation,
        name: &str,
        arguments: Option<&Value>,
        annotations: Option<&Value>,
    ) -> bool {
        match self.decide(caller, op, name, arguments, annotations) {
            Ok(allowed) => allowed,
            Err(reason) => {
                tracing::debug!(
                    action = op.action(),
                    %reason,
                    "Cedar check failed; denying."
                );
                false
            }
        }
    }

    fn decide(
        &self,
        caller: &Caller,
        op: Operation,
        name: &str,
        arguments: Option<&Value>,
        annotations: Option<&Value>,
    ) -> Result<bool, String> {
        let principal = caller
            .entity
            .clone()
            .ok_or("the caller could not be represented")?;
        let args = argument_attributes(arguments)?;
        let (action_uid, action) = &self.actions[op.index()];

        let (resource_type, resource_id) = match op {
            Operation::CallTool => (&self.types.tool, name.to_owned()),
            Operation::GetPrompt => (&self.types.prompt, name.to_owned()),
            Operation::ReadResource => (&self.types.resource, resource_id(name)),
        };
        let resource_uid =
            EntityUid::from_type_name_and_id(resource_type.clone(), EntityId::new(resource_id));
        let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
        if op == Operation::CallTool
            && let Some(Value::Object(annotations)) = annotations
        {
            for key in ANNOTATIONS {
                if let Some(Value::Bool(hint)) = annotations.get(key) {
                    attrs.insert(key.to_owned(), RestrictedExpression::new_bool(*hint));
                }
            }
        }
        attrs.extend(args.iter().cloned());
        let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
        attrs.insert("name".to_owned(), string(name));
        attrs.insert("operation".to_owned(), string(op.verb()));
        attrs.insert("feature".to_owned(), string(op.feature()));
        if op == Operation::ReadResource {
            attrs.insert("uri".to_owned(), string(name));
        }
        let resource =
            Entity::new_with_tags(resource_uid.clone(), attrs, [self.server.clone()], [])
                .map_err(|err| format!("resource entity: {err}"))?;

        let entities = self
            .entities
            .clone()
            .upsert_entities([principal, action.clone(), resource], None)
            .map_err(|err| format!("entities: {}", error_chain(&err)))?;
        let context = if args.is_empty() {
            caller.context.clone()
        } else {
            Context::from_pairs(caller.claims.iter().cloned().chain(args))
                .map_err(|err| format!("context: {err}"))?
        };
        let request = Request::new(
            caller.uid.clone(),
            action_uid.clone(),
            resource_uid,
            context,
            None,
        )
        .map_err(|err| format!("request: {err}"))?;

        let response = self
            .cedar
            .is_authorized(&request, &self.policies, &entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(response.decision() == Decision::Allow)
    }

    fn uid(&self, kind: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
    }

    /// The caller's groups and roles, deduplicated in order; `None` when
    /// there are more than [`MAX_GROUPS`].
    fn groups<'a>(&self, claims: &'a Map<String, Value>) -> Option<Vec<&'a str>> {
        let groups = self
            .group_claim
            .as_deref()
            .and_then(|name| group_claim(claims, name))
            .or_else(|| {
                DEFAULT_GROUP_CLAIMS
                    .iter()
                    .find_map(|name| group_claim(claims, name))
            })
            .unwrap_or_default();
        let roles = self
            .role_claim
            .as_deref()
            .and_then(|name| group_claim(claims, name))
            .unwrap_or_default();
        if groups.len() + roles.len() > MAX_GROUPS {
            return None;
        }
        let mut out: Vec<&str> = Vec::with_capacity(groups.len() + roles.len());
        for group in groups.into_iter().chain(roles) {
            if !out.contains(&group) {
                out.push(group);
            }
        }
        Some(out)
    }

    /// `claim_<name>` for every claim and `claimset_<name>` for the
    /// multi-valued ones, within the size limits.
    fn claim_attributes(&self, claims: &Map<String, Value>) -> Vec<(String, RestrictedExpression)> {
        let mut total = MAX_CLAIM_VALUES;
        let mut out = Vec::with_capacity(claims.len() + self.multi_valued.len());
        let mut push = |key: String, value: &Value, out: &mut Vec<_>| {
            let allowed = MAX_ATTRIBUTE_VALUES.min(total);
            let mut budget = allowed;
            match convert(value, 0, &mut budget) {
                Ok(Some(expr)) => {
                    total -= allowed - budget;
                    out.push((key, expr));
                }
                Ok(None) => {}
                Err(TooLarge) => {
                    tracing::debug!(attribute = %key, "Claim too large for Cedar; left out.");
                }
            }
        };
        for (name, value) in claims {
            let key = format!("claim_{name}");
            if self.multi_valued.contains(name) {
                match value {
                    Value::String(_) => push(key, value, &mut out),
                    Value::Array(items) => {
                        let joined = items
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ");
                        push(key, &Value::String(joined), &mut out);
                    }
                    other => push(key, other, &mut out),
                }
            } else {
                push(key, value, &mut out);
            }
        }
        for name in &self.multi_valued {
            let elements: Vec<Value> = match claims.get(name) {
                Some(Value::String(s)) => s
                    .split_whitespace()
                    .map(|e| Value::String(e.to_owned()))
                    .collect(),
                Some(Value::Array(items)) => {
                    items.iter().filter(|v| v.is_string()).cloned().collect()
                }
                _ => continue,
            };
            push(
                format!("claimset_{name}"),
                &Value::Array(elements),
                &mut out,
            );
        }
        out
    }
}

fn entity_type(name: &str) -> Result<EntityTypeName, AuthzError> {
    let invalid = |message: String| AuthzError::GroupEntityType {
        value: name.to_owned(),
        message,
    };
    if name.contains("::") {
        return Err(invalid(
            "namespaced entity types are not supported".to_owned(),
        ));
    }
    EntityTypeName::from_str(name)
        .map_err(|err| invalid(format!("not a Cedar entity type name ({err})")))
}

/// The id ToolHive gives a resource: its URI with `:` `/` `\` `?` `&` `=`
/// `#` space `.` replaced by `_`.
fn resource_id(uri: &str) -> String {
    uri.chars()
        .map(|c| match c {
            ':' | '/' | '\\' | '?' | '&' | '=' | '#' | ' ' | '.' => '_',
            c => c,
        })
        .collect()
}

/// The string elements of the claim `name` (a top-level key, else a
/// dot-separated path); `None` when absent or not an array.
fn group_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<Vec<&'a str>> {
    let value = match claims.get(name) {
        Some(value) => value,
        None if name.contains('.') => {
            let mut parts = name.split('.');
            let first = claims.get(parts.next()?)?;
            parts.try_fold(first, |value, part| value.as_object()?.get(part))?
        }
        None => return None,
    };
    Some(value.as_array()?.iter().filter_map(Value::as_str).collect())
}

/// `arg_<key>` for scalars, `arg_<key>_present = true` for the rest.
fn argument_attributes(
    arguments: Option<&Value>,
) -> Result<Vec<(String, RestrictedExpression)>, String> {
    let Some(Value::Object(arguments)) = arguments else {
        return Ok(Vec::new());
    };
    if arguments.len() > MAX_ARGUMENTS {
        return Err(format!("more than {MAX_ARGUMENTS} arguments"));
    }
    let mut out: HashMap<String, RestrictedExpression> = HashMap::with_capacity(arguments.len());
    for (key, value) in arguments {
        let scalar = match value {
            Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
            Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
            Value::Number(n) => {
                // An unrepresentable number is left out, as in ToolHive.
                let Some(expr) = number(n) else { continue };
                Some(expr)
            }
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        };
        match scalar {
            // A presence marker already there (from an object `<k>` when this
            // is `<k>_present`) wins over the scalar.
            Some(expr) => {
                out.entry(format!("arg_{key}")).or_insert(expr);
            }
            None => {
                out.insert(
                    format!("arg_{key}_present"),
                    RestrictedExpression::new_bool(true),
                );
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// A value over its size budget.
struct TooLarge;

/// A JSON value as a Cedar value: `Ok(None)` when left out (null, too deep,
/// an unrepresentable number), `Err` when over `budget` values.
fn convert(
    value: &Value,
    depth: usize,
    budget: &mut usize,
) -> Result<Option<RestrictedExpression>, TooLarge> {
    if depth > MAX_DEPTH {
        return Ok(None);
    }
    *budget = budget.checked_sub(1).ok_or(TooLarge)?;
    Ok(match value {
        Value::Null => None,
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Number(n) => number(n),
        Value::Array(items) => {
            if items.len() > *budget {
                return Err(TooLarge);
            }
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                set.extend(convert(item, depth + 1, budget)?);
            }
            Some(RestrictedExpression::new_set(set))
        }
        Value::Object(fields) => {
            if fields.len() > *budget {
                return Err(TooLarge);
            }
            let mut record = Vec::with_capacity(fields.len());
            for (key, field) in fields {
                if let Some(expr) = convert(field, depth + 1, budget)? {
                    record.push((key.clone(), expr));
                }
            }
            // Keys of a JSON object are unique, so this cannot fail.
            RestrictedExpression::new_record(record).ok()
        }
    })
}

/// A JSON number as a Cedar `decimal` when exact (at most 4 fractional
/// digits, within the i64 / 10⁴ range), else a Long when integral and within
/// i64, else `None`.
fn number(n: &Number) -> Option<RestrictedExpression> {
    if let Some(i) = n.as_i64() {
        let text = format!("{i}.0");
        return Some(if fits_decimal(&text) {
            RestrictedExpression::new_decimal(text)
        } else {
            RestrictedExpression::new_long(i)
        });
    }
    if n.is_u64() {
        // Above i64::MAX: neither a decimal nor a Long.
        return None;
    }
    let f = n.as_f64()?;
    if !f.is_finite() {
        return None;
    }
    // Display gives the shortest digits that round-trip, never an exponent.
    let mut text = if f == 0.0 {
        "0".to_owned()
    } else {
        f.to_string()
    };
    if !text.contains('.') {
        text.push_str(".0");
    }
    if fits_decimal(&text) {
        return Some(RestrictedExpression::new_decimal(text));
    }
    // Integral but beyond a decimal: a Long if it fits.
    let int = text.strip_suffix(".0")?;
    int.parse::<i64>().ok().map(RestrictedExpression::new_long)
}

/// Whether `-?digits.digits` is a Cedar decimal: 1 to 4 fractional digits,
/// and the value times 10⁴ within i64.
fn fits_decimal(text: &str) -> bool {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let Some((int, frac)) = unsigned.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) || frac.len() > 4 || int.len() > 19 {
        return false;
    }
    let (Ok(int), Ok(frac)) = (int.parse::<i128>(), format!("{frac:0<4}").parse::<i128>()) else {
        return false;
    };
    let scaled = int * 10_000 + frac;
    if negative {
        -scaled >= i128::from(i64::MIN)
    } else {
        scaled <= i128::from(i64::MAX)
    }
}

/// An error and its sources, one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
