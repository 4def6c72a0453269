//! OAuth 2.0 as Salesforce serves it: the authorize endpoint (web-server flow with PKCE),
//! the token endpoint (authorization code, refresh token, JWT bearer), revoke and the identity URL.

use super::*;

impl Org {
    pub(super) fn token(&mut self, prefix: &str) -> String {
        let mut s = String::from(prefix);
        for _ in 0..40 {
            s.push(self.rng.alphanumeric());
        }
        s
    }

    pub(crate) fn user_for_access_token(&self, token: &str) -> Option<String> {
        self.access_tokens.get(token).cloned()
    }

    /// The authorize step: a code for the login user, or an error, as redirect parameters.
    pub fn authorize(
        &mut self,
        params: &HashMap<String, String>,
    ) -> Result<Vec<(String, String)>, (String, String)> {
        let state = params.get("state").cloned().unwrap_or_default();
        let with_state = |mut v: Vec<(String, String)>| {
            if !state.is_empty() {
                v.push(("state".into(), state.clone()));
            }
            v
        };
        if params.get("client_id") != Some(&self.opts.client_id) {
            return Err((
                "invalid_client_id".into(),
                "client identifier invalid".into(),
            ));
        }
        if let Some((e, d)) = self.authorize_error.clone() {
            return Err((e, d));
        }
        if params.get("response_type").map(String::as_str) != Some("code") {
            return Err((
                "unsupported_response_type".into(),
                "response type not supported".into(),
            ));
        }
        if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
            return Err((
                "invalid_request".into(),
                "code_challenge_method must be S256".into(),
            ));
        }
        let challenge = params.get("code_challenge").cloned().unwrap_or_default();
        let code = self.token("aPrx");
        self.codes.insert(
            code.clone(),
            PendingCode {
                challenge,
                redirect_uri: params.get("redirect_uri").cloned().unwrap_or_default(),
                user_id: self.login_user.clone(),
            },
        );
        Ok(with_state(vec![("code".into(), code)]))
    }

    /// A token for the login user without the browser dance (`/__sim/token`, for curl).
    pub(crate) fn direct_token(&mut self) -> Value {
        let user = self.login_user.clone();
        self.token_response(&user, true)
    }

    pub(super) fn token_response(&mut self, user_id: &str, with_refresh: bool) -> Value {
        let secret = self.token("AQ");
        let access = format!("{}!{secret}", self.org_id);
        self.access_tokens.insert(access.clone(), user_id.into());
        let issued = self.now().timestamp_millis().to_string();
        let mut v = json!({
            "access_token": access,
            "signature": "c2ltdWxhdGVkLXNpZ25hdHVyZQ==",
            "scope": "refresh_token api id",
            "instance_url": self.base_url,
            "id": format!("{}/id/{}/{}", self.base_url, self.org_id, user_id),
            "token_type": "Bearer",
            "issued_at": issued,
        });
        if with_refresh {
            let refresh = self.token("5Aep");
            self.refresh_tokens.insert(refresh.clone(), user_id.into());
            v["refresh_token"] = json!(refresh);
        }
        v
    }

    /// `POST /services/oauth2/token`.
    pub(crate) fn token_endpoint(&mut self, form: &HashMap<String, String>) -> (u16, Value) {
        self.token_requests += 1;
        let bad = |e: &str, d: &str| (400, json!({"error": e, "error_description": d}));
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let Some(code) = form.get("code").and_then(|c| self.codes.remove(c)) else {
                    return bad("invalid_grant", "invalid authorization code");
                };
                if form.get("client_id") != Some(&self.opts.client_id) {
                    return bad("invalid_client_id", "client identifier invalid");
                }
                if form.get("redirect_uri") != Some(&code.redirect_uri) {
                    return bad(
                        "redirect_uri_mismatch",
                        "redirect_uri must match configuration",
                    );
                }
                let Some(verifier) = form.get("code_verifier") else {
                    return bad("invalid_grant", "invalid code verifier");
                };
                use base64::Engine as _;
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(verifier.as_bytes());
                let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
                if expected != code.challenge {
                    return bad("invalid_request", "invalid code verifier");
                }
                (200, self.token_response(&code.user_id, true))
            }
            Some("refresh_token") => {
                let Some(rt) = form.get("refresh_token") else {
                    return bad("invalid_request", "refresh_token required");
                };
                if let Some((e, d)) = self.authorize_error.clone() {
                    return bad(&e, &d);
                }
                let Some(user) = self.refresh_tokens.get(rt).cloned() else {
                    return bad("invalid_grant", "expired access/refresh token");
                };
                let rotate = self.opts.rotate_refresh_tokens;
                if rotate {
                    self.refresh_tokens.remove(rt);
                }
                (200, self.token_response(&user, rotate))
            }
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                let Some(assertion) = form.get("assertion") else {
                    return bad("invalid_request", "assertion required");
                };
                match self.check_jwt(assertion) {
                    Ok(user) => (200, self.token_response(&user, false)),
                    Err((e, d)) => bad(&e, &d),
                }
            }
            _ => bad("unsupported_grant_type", "grant type not supported"),
        }
    }

    /// Checks a JWT bearer assertion as Salesforce does (HELP remoteaccess_oauth_jwt_flow):
    /// an RS256 signature by the certificate uploaded to the connected app, `iss` the consumer
    /// key, `aud` `https://login.salesforce.com` (`https://test.salesforce.com` for a sandbox)
    /// whatever host the request went to, `exp` in the future, and `sub` a user who approved
    /// the app.
    pub(super) fn check_jwt(&self, assertion: &str) -> Result<String, (String, String)> {
        use base64::Engine as _;
        let grant = |d: &str| ("invalid_grant".to_owned(), d.to_owned());
        let Some(key_pem) = self.opts.jwt_public_key_pem.as_deref() else {
            // The app has no certificate: it does not use digital signatures.
            return Err(("invalid_client".into(), "invalid client credentials".into()));
        };
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts.as_slice() else {
            return Err(grant("invalid assertion"));
        };
        let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|h| h["alg"].as_str().map(str::to_owned));
        if alg.as_deref() != Some("RS256") {
            return Err(grant("invalid assertion"));
        }
        let signed = jsonwebtoken::DecodingKey::from_rsa_pem(key_pem.as_bytes())
            .ok()
            .and_then(|key| {
                jsonwebtoken::crypto::verify(
                    signature,
                    format!("{header}.{claims}").as_bytes(),
                    &key,
                    jsonwebtoken::Algorithm::RS256,
                )
                .ok()
            })
            .unwrap_or(false);
        if !signed {
            return Err(grant("invalid assertion"));
        }
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(|| grant("invalid assertion"))?;
        if claims["iss"].as_str() != Some(&self.opts.client_id) {
            return Err((
                "invalid_client_id".into(),
                "client identifier invalid".into(),
            ));
        }
        let audience = if self.opts.sandbox {
            "https://test.salesforce.com"
        } else {
            "https://login.salesforce.com"
        };
        if claims["aud"].as_str() != Some(audience) {
            return Err(grant("audience is invalid"));
        }
        if claims["exp"]
            .as_i64()
            .is_none_or(|e| e < self.now().timestamp())
        {
            return Err(grant("expired authorization code"));
        }
        let sub = claims["sub"].as_str().unwrap_or_default();
        self.objects
            .get("User")
            .and_then(|u| {
                u.values()
                    .find(|r| r.get("Username").and_then(Value::as_str) == Some(sub))
            })
            .and_then(|r| r.get("Id").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| grant("user hasn't approved this consumer"))
    }

    pub fn revoke(&mut self, token: &str) -> bool {
        let a = self.access_tokens.remove(token).is_some();
        let r = self.refresh_tokens.remove(token).is_some();
        if r {
            // Revoking a refresh token also kills its access tokens (simplified: all of them).
            self.access_tokens.clear();
        }
        a || r
    }

    pub fn identity(&self, user_id: &str) -> Option<Value> {
        let u = self.get_row("User", user_id)?;
        let v = &self.opts.api_version;
        Some(json!({
            "id": format!("{}/id/{}/{}", self.base_url, self.org_id, user_id),
            "user_id": user_id,
            "organization_id": self.org_id,
            "username": u.get("Username"),
            "display_name": u.get("Name"),
            "nick_name": "agent",
            "active": true,
            "user_type": "STANDARD",
            "language": "ja",
            "locale": "ja_JP",
            "timezone": "Asia/Tokyo",
            "utcOffset": 32_400_000,
            "urls": {
                "rest": format!("{}/services/data/v{v}/", self.base_url),
                "sobjects": format!("{}/services/data/v{v}/sobjects/", self.base_url),
                "query": format!("{}/services/data/v{v}/query/", self.base_url),
            },
        }))
    }
}
