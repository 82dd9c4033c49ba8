// A real upstream OpenID provider for Gatehouse's federation tests: panva's certified
// oidc-provider on a loopback port, with one client (Gatehouse) and its development
// login form (any login name signs in as that account). Prints "LISTENING <issuer>".
//
// Two test hooks sit beside the provider, under /__test/ (never part of a real one):
// - PUT /__test/accounts/<id> sets the claims an account shows (email, email_verified…);
//   an account not set has <id>@example.com, verified.
// - PUT /__test/mode sets how the next token responses misbehave, to test that Gatehouse
//   refuses them: its ID token re-signed with a changed claim (wrong_aud, wrong_nonce,
//   no_nonce, expired, extra_aud_no_azp) or by a key the JWKS does not hold (unknown_kid),
//   or an HTML or 500 answer instead of JSON (html, server_error); or an ID token without
//   the address, which userinfo still gives (email_in_userinfo_only), or gives for
//   another subject (userinfo_other_sub). "" restores it.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const clientId = process.env.IDP_CLIENT_ID || 'gatehouse';
const clientSecret = process.env.IDP_CLIENT_SECRET || 'gatehouse-secret';
const redirectUris = (process.env.IDP_REDIRECT_URIS || 'http://gatehouse.test/login/callback').split(',');

function rsaKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, jwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' } };
}
const signing = rsaKey('idp-key-1');
// Never published: a token signed with it names a kid the JWKS does not hold.
const rogue = rsaKey('rogue-key');

const accounts = new Map();
let mode = '';

const b64url = (buf) => Buffer.from(buf).toString('base64url');
function resign(idToken, change, key) {
  const claims = JSON.parse(Buffer.from(idToken.split('.')[1], 'base64url').toString());
  change(claims);
  const header = { alg: 'RS256', typ: 'JWT', kid: key.jwk.kid };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = crypto.sign('RSA-SHA256', Buffer.from(input), key.privateKey);
  return `${input}.${b64url(signature)}`;
}

const tamper = {
  wrong_aud: (c) => { c.aud = 'another-client'; },
  extra_aud_no_azp: (c) => { c.aud = [c.aud, 'another-client']; delete c.azp; },
  wrong_nonce: (c) => { c.nonce = 'not-the-nonce'; },
  no_nonce: (c) => { delete c.nonce; },
  expired: (c) => { c.iat -= 7200; c.exp = Math.floor(Date.now() / 1000) - 3600; },
  email_in_userinfo_only: (c) => { delete c.email; delete c.email_verified; },
  userinfo_other_sub: (c) => { delete c.email; delete c.email_verified; },
};

function readJson(req) {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(body ? JSON.parse(body) : {}));
  });
}

let providerCallback;
const server = http.createServer(async (req, res) => {
  if (req.url.startsWith('/__test/')) {
    const body = await readJson(req);
    if (req.url === '/__test/mode') mode = body.mode || '';
    else if (req.url.startsWith('/__test/accounts/')) {
      accounts.set(decodeURIComponent(req.url.slice('/__test/accounts/'.length)), body);
    } else if (req.url === '/__test/reset') { mode = ''; accounts.clear(); }
    res.writeHead(204).end();
    return;
  }
  providerCallback(req, res);
});

server.listen(Number(process.env.IDP_PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      token_endpoint_auth_method: process.env.IDP_AUTH_METHOD || 'client_secret_basic',
    }],
    jwks: { keys: [signing.jwk] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name'],
    },
    // The claims the scopes ask for go into the ID token too (as Google's do).
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          const set = accounts.get(id) || { email: `${id}@example.com`, email_verified: true };
          return { sub: id, name: `Test ${id}`, ...set };
        },
      };
    },
    // No consent screen: the one client is first-party here (oidc-provider's recipe).
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
  });
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/me' && mode === 'userinfo_other_sub' && ctx.body && ctx.body.sub) {
      ctx.body = { ...ctx.body, sub: `${ctx.body.sub}-other` };
      return;
    }
    if (ctx.path !== '/token' || !mode) return;
    if (mode === 'html') {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = '<html><body>Maintenance</body></html>';
    } else if (mode === 'server_error') {
      ctx.status = 500;
      ctx.type = 'text';
      ctx.body = 'Internal Server Error';
    } else if (ctx.body && ctx.body.id_token) {
      const key = mode === 'unknown_kid' ? rogue : signing;
      ctx.body = { ...ctx.body, id_token: resign(ctx.body.id_token, tamper[mode] || (() => {}), key) };
    }
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  providerCallback = provider.callback();
  console.log(`LISTENING ${issuer}`);
});
