//! Stable reason codes and the client response each denial turns into.

/// Why a request was refused. The `code()` strings are a public contract: access logs,
/// dashboards and client error handling depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MissingToken,
    InvalidToken,
    TokenExpired,
    UnknownTenant,
    TenantSuspended,
    /// The token's provider is not one of the tenant's `providers`.
    TenantProviderMismatch,
    /// An unlisted tenant (admitted by `default_tenant`) whose id is a listed tenant's
    /// namespace.
    TenantNamespaceConflict,
    TenantHeaderMismatch,
    RequestQuotaExceeded,
    TokenQuotaExceeded,
    BudgetExceeded,
    /// The user's own request window (`per_user`) is full.
    UserRequestQuotaExceeded,
    /// The user's own token window (`per_user`) is full.
    UserTokenQuotaExceeded,
    /// The user's own monthly budget (`per_user`) is spent.
    UserBudgetExceeded,
    /// The global rate-limit service did not answer (or not sensibly) in time.
    RateLimitServiceUnavailable,
    /// The path cannot be normalised safely (encoded `/` or `\`, backslash, NUL, …).
    InvalidPath,
    /// The path addresses another tenant's namespace.
    CrossTenantPath,
    /// A vector-store request names another tenant's namespace or collection in its body.
    CrossTenantNamespace,
    /// A vector-store operation that cannot be confined to one tenant.
    VectorOperationNotAllowed,
    /// A body the filter must rewrite is larger than its cap.
    BodyTooLarge,
    /// A body the filter must rewrite is not what the endpoint expects (not JSON, wrong shape).
    InvalidBody,
    /// The request names a provider-side object that is not the tenant's (answered as if it
    /// did not exist).
    ProviderObjectNotFound,
    /// An API key that is not one of the policy's, or a request carrying a credential twice or
    /// two different ones.
    InvalidApiKey,
    ApiKeyRevoked,
    ApiKeyExpired,
    /// The request goes to an upstream that needs a credential, and neither the tenant nor the
    /// platform has one for it.
    NoUpstreamCredential,
    /// The request names a model its tenant's list (`models`) does not allow.
    ModelNotAllowed,
    /// A model list applies and the body names no model, or not as a string.
    ModelRequired,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::InvalidToken => "invalid_token",
            Reason::TokenExpired => "token_expired",
            Reason::UnknownTenant => "unknown_tenant",
            Reason::TenantSuspended => "tenant_suspended",
            Reason::TenantProviderMismatch => "tenant_provider_mismatch",
            Reason::TenantNamespaceConflict => "tenant_namespace_conflict",
            Reason::TenantHeaderMismatch => "tenant_header_mismatch",
            Reason::RequestQuotaExceeded => "request_quota_exceeded",
            Reason::TokenQuotaExceeded => "token_quota_exceeded",
            Reason::BudgetExceeded => "budget_exceeded",
            Reason::UserRequestQuotaExceeded => "user_request_quota_exceeded",
            Reason::UserTokenQuotaExceeded => "user_token_quota_exceeded",
            Reason::UserBudgetExceeded => "user_budget_exceeded",
            Reason::RateLimitServiceUnavailable => "rate_limit_service_unavailable",
            Reason::InvalidPath => "invalid_path",
            Reason::CrossTenantPath => "cross_tenant_path",
            Reason::CrossTenantNamespace => "cross_tenant_namespace",
            Reason::VectorOperationNotAllowed => "vector_operation_not_allowed",
            Reason::BodyTooLarge => "body_too_large",
            Reason::InvalidBody => "invalid_body",
            Reason::ProviderObjectNotFound => "provider_object_not_found",
            Reason::InvalidApiKey => "invalid_api_key",
            Reason::ApiKeyRevoked => "api_key_revoked",
            Reason::ApiKeyExpired => "api_key_expired",
            Reason::NoUpstreamCredential => "no_upstream_credential",
            Reason::ModelNotAllowed => "model_not_allowed",
            Reason::ModelRequired => "model_required",
        }
    }
}

/// A local reply to send instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The client's answer to a denial: status, RFC 6750 challenge for token problems, and a body
/// in the OpenAI error shape so LLM client libraries surface `code` and `message`.
pub fn reply(reason: Reason) -> LocalReply {
    let (status, kind, message) = match reason {
        Reason::MissingToken => (401, "authentication_error", "A bearer token is required."),
        Reason::InvalidToken => (401, "authentication_error", "The token is not valid."),
        Reason::TokenExpired => (401, "authentication_error", "The token has expired."),
        Reason::UnknownTenant => (403, "permission_error", "The tenant is not known."),
        Reason::TenantSuspended => (403, "permission_error", "The tenant is suspended."),
        Reason::TenantProviderMismatch => (
            403,
            "permission_error",
            "The token's issuer may not act for this tenant.",
        ),
        Reason::TenantNamespaceConflict => (
            403,
            "permission_error",
            "The tenant id is reserved for another tenant.",
        ),
        Reason::TenantHeaderMismatch => (
            403,
            "permission_error",
            "The tenant header does not match the token's tenant.",
        ),
        Reason::RequestQuotaExceeded => (
            429,
            "rate_limit_error",
            "The tenant's request quota is exhausted.",
        ),
        Reason::TokenQuotaExceeded => (
            429,
            "rate_limit_error",
            "The tenant's token quota is exhausted.",
        ),
        Reason::BudgetExceeded => (
            429,
            "rate_limit_error",
            "The tenant's monthly budget is exhausted.",
        ),
        Reason::UserRequestQuotaExceeded => (
            429,
            "rate_limit_error",
            "Your own request quota within the tenant is exhausted.",
        ),
        Reason::UserTokenQuotaExceeded => (
            429,
            "rate_limit_error",
            "Your own token quota within the tenant is exhausted.",
        ),
        Reason::UserBudgetExceeded => (
            429,
            "rate_limit_error",
            "Your own monthly budget within the tenant is exhausted.",
        ),
        Reason::RateLimitServiceUnavailable => (
            503,
            "api_error",
            "The rate-limit service is unavailable; try again.",
        ),
        Reason::InvalidPath => (
            400,
            "invalid_request_error",
            "The request path is not allowed (encoded separators or backslashes).",
        ),
        Reason::CrossTenantPath => (
            403,
            "permission_error",
            "The path addresses another tenant's namespace.",
        ),
        Reason::CrossTenantNamespace => (
            403,
            "permission_error",
            "The request names another tenant's namespace.",
        ),
        Reason::VectorOperationNotAllowed => (
            403,
            "permission_error",
            "This vector-store operation is not available through the gateway.",
        ),
        Reason::BodyTooLarge => (
            413,
            "invalid_request_error",
            "The request body is larger than the gateway can inspect.",
        ),
        Reason::InvalidBody => (
            400,
            "invalid_request_error",
            "The request body is not valid for this endpoint.",
        ),
        Reason::ProviderObjectNotFound => (404, "invalid_request_error", "No such object."),
        Reason::InvalidApiKey => (401, "authentication_error", "The API key is not valid."),
        Reason::ApiKeyRevoked => (401, "authentication_error", "The API key has been revoked."),
        Reason::ApiKeyExpired => (401, "authentication_error", "The API key has expired."),
        Reason::NoUpstreamCredential => (
            403,
            "permission_error",
            "The tenant has no credential for this upstream.",
        ),
        Reason::ModelNotAllowed => (
            403,
            "permission_error",
            "The model is not available on the tenant's plan.",
        ),
        Reason::ModelRequired => (
            400,
            "invalid_request_error",
            "The request must name its model.",
        ),
    };
    let mut headers = vec![("content-type", "application/json".to_string())];
    match reason {
        Reason::MissingToken => {
            headers.push(("www-authenticate", "Bearer realm=\"tenant-guard\"".into()))
        }
        Reason::InvalidToken
        | Reason::TokenExpired
        | Reason::InvalidApiKey
        | Reason::ApiKeyRevoked
        | Reason::ApiKeyExpired => headers.push((
            "www-authenticate",
            "Bearer realm=\"tenant-guard\", error=\"invalid_token\"".into(),
        )),
        _ => {}
    }
    let body = serde_json::json!({
        "error": {"type": kind, "code": reason.code(), "message": message}
    })
    .to_string();
    LocalReply {
        status,
        headers,
        body,
    }
}

/// [`reply`] with a message of its own (one naming what the client sent, such as the model).
pub fn reply_saying(reason: Reason, message: &str) -> LocalReply {
    let mut reply = reply(reason);
    if let Ok(mut body) =
        crate::policy::json::from_slice::<serde_json::Value>(reply.body.as_bytes())
    {
        if let Some(error) = body.get_mut("error").and_then(|e| e.as_object_mut()) {
            error.insert("message".into(), message.into());
            reply.body = body.to_string();
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn header<'a>(r: &'a LocalReply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn missing_token_challenges_without_an_error() {
        let r = reply(Reason::MissingToken);
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"tenant-guard\"")
        );
    }

    #[test]
    fn expired_token_is_an_invalid_token_challenge_with_its_own_code() {
        let r = reply(Reason::TokenExpired);
        assert_eq!(r.status, 401);
        assert!(header(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["code"], "token_expired");
        assert_eq!(body["error"]["type"], "authentication_error");
    }

    #[test]
    fn tenant_problems_are_403_permission_errors_in_openai_shape() {
        for reason in [
            Reason::UnknownTenant,
            Reason::TenantSuspended,
            Reason::TenantProviderMismatch,
            Reason::TenantNamespaceConflict,
            Reason::TenantHeaderMismatch,
        ] {
            let r = reply(reason);
            assert_eq!(r.status, 403);
            assert_eq!(header(&r, "www-authenticate"), None);
            assert_eq!(header(&r, "content-type"), Some("application/json"));
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["error"]["type"], "permission_error");
            assert_eq!(body["error"]["code"], reason.code());
        }
    }

    #[test]
    fn api_key_problems_are_401_authentication_errors_with_their_own_codes() {
        for (reason, code) in [
            (Reason::InvalidApiKey, "invalid_api_key"),
            (Reason::ApiKeyRevoked, "api_key_revoked"),
            (Reason::ApiKeyExpired, "api_key_expired"),
        ] {
            let r = reply(reason);
            assert_eq!(r.status, 401);
            assert!(header(&r, "www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\""));
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["error"]["type"], "authentication_error");
            assert_eq!(body["error"]["code"], code);
        }
    }

    #[test]
    fn a_missing_upstream_credential_is_a_403_of_its_own() {
        let r = reply(Reason::NoUpstreamCredential);
        assert_eq!(r.status, 403);
        assert_eq!(header(&r, "www-authenticate"), None);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["code"], "no_upstream_credential");
        assert_eq!(body["error"]["type"], "permission_error");
    }
}
