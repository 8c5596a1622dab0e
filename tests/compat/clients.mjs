// npm clients nobody on this project wrote, run against a LocalRealm by test_node_clients.py:
// openid-client (discovery, client credentials, userinfo, introspection, revocation) and jose
// (a remote key set, verification).
//
//   node clients.mjs '<json config>'
//
// config: {issuer, clientId, secret, auth: "basic"|"post", audience, expiredToken}. Prints one
// JSON line with what each step saw; a step that throws is reported by its error code.
import * as client from 'openid-client';
import * as jose from 'jose';

const config = JSON.parse(process.argv[2]);

async function outcome(step) {
  try {
    return { ok: true, value: await step() };
  } catch (error) {
    return { ok: false, code: error.code ?? error.name, message: String(error.message) };
  }
}

const auth = config.auth === 'post'
  ? client.ClientSecretPost(config.secret)
  : client.ClientSecretBasic(config.secret);
// LocalRealm serves plain HTTP on 127.0.0.1; openid-client wants that said out loud.
const discovered = await client.discovery(new URL(config.issuer), config.clientId, undefined, auth, {
  execute: [client.allowInsecureRequests],
});
const metadata = discovered.serverMetadata();
const tokens = await client.clientCredentialsGrant(discovered, { scope: 'openid' });
const accessToken = tokens.access_token;
const keySet = jose.createRemoteJWKSet(new URL(metadata.jwks_uri));
const verifyOptions = { issuer: config.issuer, audience: config.audience };

const result = {
  discovery: {
    issuer: metadata.issuer,
    revocation_endpoint: metadata.revocation_endpoint,
    introspection_endpoint: metadata.introspection_endpoint,
  },
  token: { token_type: tokens.token_type, scope: tokens.scope, has_id_token: 'id_token' in tokens },
  id_token_claims: tokens.claims() ?? null,
  userinfo: await outcome(() => client.fetchUserInfo(discovered, accessToken, client.skipSubjectCheck)),
  introspection: await outcome(() => client.tokenIntrospection(discovered, accessToken)),
  verified: await outcome(async () => {
    const { payload, protectedHeader } = await jose.jwtVerify(accessToken, keySet, verifyOptions);
    return { azp: payload.azp, alg: protectedHeader.alg, kid: protectedHeader.kid };
  }),
  expired: await outcome(() => jose.jwtVerify(config.expiredToken, keySet, verifyOptions)),
  wrong_audience: await outcome(() => jose.jwtVerify(accessToken, keySet, { ...verifyOptions, audience: 'nobody' })),
  revocation: await outcome(() => client.tokenRevocation(discovered, accessToken)),
  after_revocation: await outcome(() => client.tokenIntrospection(discovered, accessToken)),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
