//! `auth/cert/login`: a verified TLS client certificate mapped to a role of the roles file.
//!
//! rustls verifies the certificate chain against `tls_client_ca_file` (and its validity) at
//! the handshake; the server's `on_connect` hook stores the verified chain as
//! [`PeerCertificates`] in the connection's data. Here the leaf's names are matched against
//! the roles' `certs` mappings and a token of that role is issued.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest};
use rustls::pki_types::CertificateDer;

use super::request::{self, Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::{blocking, json_body, AppState};
use crate::core::roles::{CertIdentity, CertMatch};
use crate::core::token::{Issuer, TokenRequest};

/// The client certificate chain (leaf first) that rustls verified for this connection.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Vec<CertificateDer<'static>>);

/// Vault's answer to every certificate that yields no token.
const INVALID: &str = "invalid certificate or no client certificate supplied";

fn invalid() -> ApiError {
    ApiError::bad(INVALID)
}

/// `POST auth/cert/login` (unauthenticated: the certificate is the credential), optionally
/// with `{"name": "<role>"}` to pick the role.
pub async fn login(
    req: &HttpRequest,
    ctx: &Ctx,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    if ctx.op != Op::Write {
        return Err(ApiError::method_not_allowed());
    }
    let body = json_body(req, payload, st).await?;
    let wanted = request::field_string(&body, "name")?.filter(|n| !n.is_empty());
    // No certificate (or plain HTTP): nothing to map.
    let Some(leaf) = req
        .conn_data::<PeerCertificates>()
        .and_then(|p| p.0.first().cloned())
    else {
        return Err(invalid());
    };
    let vault = st.vault.clone();
    let issued = blocking(move || {
        let Ok(id) = CertIdentity::from_der(leaf.as_ref()) else {
            return Ok(None);
        };
        // rustls checked the validity at the handshake; a long-lived connection may outlast it.
        let now = vault.now().timestamp();
        if now >= id.not_after || now < id.not_before {
            return Ok(None);
        }
        let managed = vault.roles_managed()?;
        let role = match managed.cert_role(&id, wanted.as_deref()) {
            CertMatch::Role(r) => r,
            CertMatch::NoMatch | CertMatch::Ambiguous => return Ok(None),
        };
        let Some(token_role) = vault.token_role_get(&role.name)? else {
            return Ok(None);
        };
        let cn = id.common_name.clone().unwrap_or_default();
        let mut meta = BTreeMap::new();
        meta.insert("common_name".to_string(), cn.clone());
        meta.insert("role".to_string(), role.name.clone());
        let issuer = Issuer {
            parent: None,
            privileged: false,
            path: "auth/cert/login".into(),
            auth_method: "cert",
        };
        // Vault shows `cert-<CN>` with other characters as '-' (`cert-w1-etl-example-com`).
        let display: String = cn
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let req = TokenRequest {
            display_name: Some(display),
            meta: Some(meta),
            ..Default::default()
        };
        let issued = vault.token_create(&issuer, req, Some(&token_role))?;
        tracing::info!(role = %role.name, "certificate login");
        Ok(Some(issued))
    })
    .await?;
    match issued {
        Some(i) => Ok(response::auth(i.entry.auth_json(&i.token), i.warnings)),
        None => Err(invalid()),
    }
}
