// oidc-provider (panva) as an independent issuer for the keycloak-m2m interoperability tests.
//
//   INTEROP_CLIENT_SECRET=... node provider.mjs [port] [--exit-with-stdin]
//
// Listens on 127.0.0.1 only (port from argv, else INTEROP_PORT, else 0 = any free port) and prints
// one JSON line on stdout when ready: {"ready": true, "issuer": ..., "port": ...}.
// --exit-with-stdin: exit when stdin reaches EOF, so a test runner that dies never leaks us.
//
// Clients (all confidential, client_credentials only, secret from INTEROP_CLIENT_SECRET):
//   m2m-basic (client_secret_basic), m2m-post (client_secret_post), m2m-dpop-nonce
//   (client_secret_basic; its DPoP proofs must carry a server nonce, RFC 9449 section 8).
// DPoP (RFC 9449): a token request with a proof gets a token bound to the proof's key
// (cnf.jkt, token_type DPoP).
// Resource servers (resource indicator = JWT access token audience, RFC 9068 / RFC 8707):
//   https://api.example.test          RS256     https://ps256.api.example.test  PS256
//   https://es256.api.example.test    ES256     https://eddsa.api.example.test  EdDSA
//   https://ed25519.api.example.test  Ed25519 (RFC 9864: the same signature, fully-specified name)
//   https://other.example.test        RS256 (a second API, for wrong-audience tests)
//
// Key rotation. oidc-provider fixes its key set when it is constructed, so a rotation builds a new
// Provider (same issuer, clients, adapter) and swaps it in behind the same HTTP server: no restart,
// no port reuse, no window where the port is closed. Test-only routes, never part of a real issuer:
//   POST /__interop/rotate  new keys sign from now on; the previous signing keys stay published
//   POST /__interop/retire  unpublish every key but the current signing keys
//   GET  /__interop/state   signing kids, published kids, request counts per path
// Each answers after the swap with the state document.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const SECRET = process.env.INTEROP_CLIENT_SECRET;
if (!SECRET) {
  process.stderr.write('INTEROP_CLIENT_SECRET must be set\n');
  process.exit(2);
}
const portArgument = process.argv.slice(2).find((argument) => /^\d+$/.test(argument));
const PORT = Number(portArgument ?? process.env.INTEROP_PORT ?? 0);
const ACCESS_TOKEN_TTL = 300;

const RESOURCE_SERVERS = {
  'https://api.example.test': 'RS256',
  'https://ps256.api.example.test': 'PS256',
  'https://es256.api.example.test': 'ES256',
  'https://eddsa.api.example.test': 'EdDSA',
  'https://ed25519.api.example.test': 'Ed25519', // RFC 9864's fully-specified name for EdDSA
  'https://other.example.test': 'RS256',
};
// JWS algorithm -> the key type that signs it in each generation.
const KEY_TYPE_BY_ALG = {
  RS256: 'RSA', PS256: 'RSA', ES256: 'EC', EdDSA: 'OKP', Ed25519: 'OKP',
};

// --- keys ----------------------------------------------------------------------------------------

// RFC 7638 thumbprint, as oidc-provider derives a missing kid: required members, sorted, no spaces.
function thumbprint(jwk) {
  const members = {
    RSA: { e: jwk.e, kty: jwk.kty, n: jwk.n },
    EC: { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y },
    OKP: { crv: jwk.crv, kty: jwk.kty, x: jwk.x },
  }[jwk.kty];
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function privateJwk(type, options) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: thumbprint(jwk), use: 'sig' };
}

// One generation: a key per key type. No `alg` member, so the RSA key serves RS256 and PS256.
function generation() {
  return {
    RSA: privateJwk('rsa', { modulusLength: 2048 }),
    EC: privateJwk('ec', { namedCurve: 'P-256' }),
    OKP: privateJwk('ed25519'),
  };
}

let signing = generation();
let published = Object.values(signing);

// --- storage -------------------------------------------------------------------------------------

// A small in-memory adapter shared by every Provider generation. (The built-in one works too but
// warns that it is for development; client-credentials JWTs are not stored at all.)
const storage = new Map();
class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload) {
    storage.set(this.key(id), payload);
  }

  async find(id) {
    return storage.get(this.key(id));
  }

  async findByUserCode() {
    return undefined;
  }

  async findByUid() {
    return undefined;
  }

  async consume(id) {
    const payload = storage.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    storage.delete(this.key(id));
  }

  async revokeByGrantId() {}
}

// --- the provider --------------------------------------------------------------------------------

const NONCE_CLIENT = 'm2m-dpop-nonce';
const NONCE_SECRET = crypto.randomBytes(32);

// Called before the client is authenticated: read its id from the Basic credentials.
function asksForNonce(ctx) {
  const [scheme, value] = (ctx.get('authorization') || '').split(' ');
  if (scheme?.toLowerCase() !== 'basic' || !value) return false;
  const id = Buffer.from(value, 'base64').toString('utf8').split(':')[0];
  return decodeURIComponent(id) === NONCE_CLIENT;
}

function buildProvider(issuer) {
  const client = (clientId, method) => ({
    client_id: clientId,
    client_secret: SECRET,
    token_endpoint_auth_method: method,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: 'notifications:send reports:read',
  });
  return new Provider(issuer, {
    adapter: MemoryAdapter,
    clients: [
      client('m2m-basic', 'client_secret_basic'),
      client('m2m-post', 'client_secret_post'),
      client(NONCE_CLIENT, 'client_secret_basic'),
    ],
    jwks: { keys: published },
    scopes: ['notifications:send', 'reports:read'],
    features: {
      devInteractions: { enabled: false },
      dPoP: { enabled: true, nonceSecret: NONCE_SECRET, requireNonce: asksForNonce },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => false,
        getResourceServerInfo(ctx, resourceIndicator) {
          const alg = RESOURCE_SERVERS[resourceIndicator];
          if (!alg) throw new errors.InvalidTarget();
          return {
            scope: 'notifications:send reports:read',
            audience: resourceIndicator,
            accessTokenTTL: ACCESS_TOKEN_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg, kid: signing[KEY_TYPE_BY_ALG[alg]].kid } },
          };
        },
      },
    },
    ttl: {
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? ACCESS_TOKEN_TTL,
    },
  });
}

// --- the HTTP server -----------------------------------------------------------------------------

const counts = {};
let handler;
let issuer;

function state() {
  return {
    issuer,
    signing: Object.fromEntries(
      Object.entries(KEY_TYPE_BY_ALG).map(([alg, type]) => [alg, signing[type].kid]),
    ),
    published: published.map((jwk) => jwk.kid),
    counts,
  };
}

function swap() {
  handler = buildProvider(issuer).callback();
}

function admin(request, response) {
  const action = `${request.method} ${request.url}`;
  if (action === 'POST /__interop/rotate') {
    const previous = Object.values(signing);
    signing = generation();
    published = [...Object.values(signing), ...previous];
    swap();
  } else if (action === 'POST /__interop/retire') {
    published = Object.values(signing);
    swap();
  } else if (action !== 'GET /__interop/state') {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(state()));
}

const server = http.createServer((request, response) => {
  const path = new URL(request.url, 'http://127.0.0.1').pathname;
  if (path.startsWith('/__interop/')) {
    admin(request, response);
    return;
  }
  counts[path] = (counts[path] ?? 0) + 1;
  handler(request, response);
});

server.listen(PORT, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  swap();
  process.stdout.write(`${JSON.stringify({ ready: true, issuer, port })}\n`);
});

if (process.argv.includes('--exit-with-stdin')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
