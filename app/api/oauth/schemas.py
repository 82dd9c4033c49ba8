"""Shapes of the OAuth surface: token requests and responses, discovery documents."""

from __future__ import annotations

import marshmallow as ma

from app.api.fields import OutputSchema


class TokenRequestSchema(ma.Schema):
    """Standard clients send extra parameters (scope, audience): they are ignored."""

    class Meta:
        unknown = ma.EXCLUDE

    grant_type = ma.fields.String(required=True, validate=ma.validate.Length(max=64))
    username = ma.fields.String(validate=ma.validate.Length(max=255))
    email = ma.fields.String(validate=ma.validate.Length(max=255))
    password = ma.fields.String(load_only=True, validate=ma.validate.Length(max=1024))
    otp = ma.fields.String(load_only=True, validate=ma.validate.Length(max=16))
    refresh_token = ma.fields.String(load_only=True, validate=ma.validate.Length(max=512))
    client_id = ma.fields.String(validate=ma.validate.Length(max=64))
    client_secret = ma.fields.String(load_only=True, validate=ma.validate.Length(max=512))
    scope = ma.fields.String(validate=ma.validate.Length(max=2048))
    code = ma.fields.String(load_only=True, validate=ma.validate.Length(max=512))
    redirect_uri = ma.fields.String(validate=ma.validate.Length(max=2048))
    code_verifier = ma.fields.String(load_only=True, validate=ma.validate.Length(max=256))


class RevokeRequestSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=4096))
    token_type_hint = ma.fields.String(validate=ma.validate.Length(max=64))


class EmptySchema(OutputSchema):
    """`{}`: revocation answers nothing more (RFC 7009)."""


class TokenResponseSchema(OutputSchema):
    access_token = ma.fields.String()
    id_token = ma.fields.String()
    refresh_token = ma.fields.String()
    token_type = ma.fields.String()
    expires_in = ma.fields.Integer()
    scope = ma.fields.String()


class JwksSchema(OutputSchema):
    keys = ma.fields.List(ma.fields.Dict())


class UserInfoSchema(OutputSchema):
    """OIDC standard claims (tokens.claims.user_claims): those the token's scopes ask for;
    a claim without a value is left out (Core §5.3.2)."""

    sub = ma.fields.String(required=True)
    name = ma.fields.String()
    given_name = ma.fields.String()
    family_name = ma.fields.String()
    preferred_username = ma.fields.String()
    picture = ma.fields.String()
    email = ma.fields.String()
    email_verified = ma.fields.Boolean()
    phone_number = ma.fields.String()
    updated_at = ma.fields.Integer()


class OpenIdConfigurationSchema(OutputSchema):
    issuer = ma.fields.String()
    authorization_endpoint = ma.fields.String()
    token_endpoint = ma.fields.String()
    userinfo_endpoint = ma.fields.String()
    jwks_uri = ma.fields.String()
    revocation_endpoint = ma.fields.String()
    end_session_endpoint = ma.fields.String()
    grant_types_supported = ma.fields.List(ma.fields.String())
    response_types_supported = ma.fields.List(ma.fields.String())
    response_modes_supported = ma.fields.List(ma.fields.String())
    code_challenge_methods_supported = ma.fields.List(ma.fields.String())
    prompt_values_supported = ma.fields.List(ma.fields.String())
    authorization_response_iss_parameter_supported = ma.fields.Boolean()
    subject_types_supported = ma.fields.List(ma.fields.String())
    id_token_signing_alg_values_supported = ma.fields.List(ma.fields.String())
    token_endpoint_auth_methods_supported = ma.fields.List(ma.fields.String())
    revocation_endpoint_auth_methods_supported = ma.fields.List(ma.fields.String())
    scopes_supported = ma.fields.List(ma.fields.String())
    claims_supported = ma.fields.List(ma.fields.String())
