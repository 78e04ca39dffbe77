// A real OpenID provider for the ES256 sign-in tests: the certified `oidc-provider` (npm),
// configured here and started by identity-svc/tests/api/oidc_node_provider.rs.
//
//   node oidc_node_provider.mjs NODE_MODULES PORT ACCOUNTS_JSON
//
// NODE_MODULES is the directory `oidc-provider` is installed in (.ci/.tools/oidc-provider/
// node_modules), PORT the port of 127.0.0.1 to listen on (the issuer is http://127.0.0.1:PORT),
// ACCOUNTS_JSON an object mapping each subject to its claims (email, email_verified, name, ...).
//
// The key set holds two keys made at start, an EC P-256 key and an RSA key, so a restart is a
// key rotation. Client `odc-portal` gets ID tokens signed ES256 (with the EC key), client
// `odc-portal-rs256` RS256 (with the RSA key); both authenticate with `client_secret_post` and
// the secret `secret`. The interaction (login and consent) is this script's: it signs in the
// account the authorization request names in `login_hint` and grants the requested scopes, with
// no page in between, so a client follows redirects only.

import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [nodeModules, port, accountsJson] = process.argv.slice(2);
if (!nodeModules || !port || !accountsJson) {
  console.error('usage: node oidc_node_provider.mjs NODE_MODULES PORT ACCOUNTS_JSON');
  process.exit(2);
}
const require = createRequire(join(nodeModules, 'resolve.js'));
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')).href);

const accounts = JSON.parse(accountsJson);
const redirectUris = ['http://127.0.0.1/callback'];
const privateJwk = (type, options) =>
  generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'odc-portal',
      client_secret: 'secret',
      redirect_uris: redirectUris,
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
    },
    {
      client_id: 'odc-portal-rs256',
      client_secret: 'secret',
      redirect_uris: redirectUris,
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'RS256',
    },
  ],
  jwks: {
    keys: [
      privateJwk('ec', { namedCurve: 'P-256' }),
      privateJwk('rsa', { modulusLength: 2048 }),
    ],
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // The ID token of the code flow carries the scopes' claims (the clients here read no
  // userinfo).
  conformIdTokenClaims: false,
  cookies: { keys: ['oidc-node-provider-test-cookies'] },
  features: { devInteractions: { enabled: false } },
  async findAccount(_ctx, sub) {
    const claims = accounts[sub];
    return claims && { accountId: sub, claims: async () => ({ ...claims, sub }) };
  },
});

// The interaction: sign in `login_hint`, grant what was asked, back to the authorization.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || !ctx.path.startsWith('/interaction/')) {
    return next();
  }
  const { params } = await provider.interactionDetails(ctx.req, ctx.res);
  const accountId = params.login_hint;
  if (!accountId || !(accountId in accounts)) {
    ctx.status = 400;
    ctx.body = `unknown login_hint ${JSON.stringify(accountId)}`;
    return undefined;
  }
  const grant = new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  const grantId = await grant.save();
  const returnTo = await provider.interactionResult(
    ctx.req,
    ctx.res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
  ctx.redirect(returnTo);
  return undefined;
});

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
