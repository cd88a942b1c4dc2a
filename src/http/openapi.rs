//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! `utoipa::path` attributes and the wire types, so it cannot describe an
//! API the code does not serve. Served at `GET /openapi.json`, printed by
//! the `openapi` subcommand and committed as `openapi.json`, which
//! `tests/export_openapi.rs` keeps equal to what the code produces.
use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{
        ClientCredentials, Flow, Http, HttpAuthScheme, OAuth2, Scopes, SecurityScheme,
    },
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Customer registration",
        description = "The legacy REST contract of customer registration for an e-money \
            platform (`/b2b/customer/...`), and the OAuth 2.0 token endpoint its hosts get \
            bearer tokens from. Every error is one JSON object (`ErrorBody`) whose `code` \
            clients match on; the codes and where this API answers differently from the \
            legacy spec are listed in the repository's `docs/ERRORS.md` and \
            `docs/API-DESIGN.md`. The same operations are also served over GraphQL at \
            `/graphql`."
    ),
    paths(
        super::rest::register,
        super::rest::confirm,
        super::rest::verify_username,
        super::rest::verify_email,
        super::rest::resend_sms,
        super::rest::resend_email,
        super::oauth::token,
        super::oauth::revoke,
        super::receipts::receive,
    ),
    modifiers(&SecuritySchemes, &NoLicense),
    tags(
        (name = "registration", description = "The legacy registration operations; each needs a host's bearer token."),
        (name = "oauth", description = "Access tokens for hosts (RFC 6749 client credentials grant, RFC 7009 revocation)."),
        (name = "delivery", description = "Delivery receipts from SMS providers, signed by the provider instead of a bearer token."),
    )
)]
struct ApiDoc;

/// The schemes the operations name: the registration operations take a
/// bearer token, which hosts get from `/oauth/token` (described both as the
/// OAuth 2.0 flow and as plain HTTP bearer, for tools that know only one);
/// the token endpoint itself takes the client's credentials by HTTP Basic
/// or in the form.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::ClientCredentials(ClientCredentials::new(
                    "/oauth/token",
                    Scopes::new(),
                ))],
                "A host's client credentials, exchanged at `/oauth/token` for a bearer token.",
            )),
        );
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description =
            Some("`Authorization: Bearer <access_token>` from `POST /oauth/token`.".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "The host's `client_id` and `client_secret` (RFC 6749 §2.3.1), instead of the form \
             fields."
                .to_owned(),
        );
        components.add_security_scheme("clientBasic", SecurityScheme::Http(basic));
    }
}

/// utoipa copies the package's license into `info`, and this package
/// names none: an empty license name would only look like a mistake.
struct NoLicense;

impl Modify for NoLicense {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.license = None;
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as committed in `openapi.json`: pretty-printed, with a
/// final newline.
pub fn pretty_json() -> serde_json::Result<String> {
    let mut json = document().to_pretty_json()?;
    json.push('\n');
    Ok(json)
}

/// `GET /openapi.json`, without a token: it describes the API, nothing of
/// any host.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
