// Keycloak's own Node adapter, keycloak-connect, in bearer-only mode, protecting Express routes by
// realm role and by client role; run against a LocalRealm by test_node_clients.py.
//
//   node connect.mjs '<json config>' [--exit-with-stdin]
//
// config: {authServerUrl, realm, resource, publicKey}. Two copies of the adapter guard the same
// routes: under /jwks it fetches the realm's certs by kid, under /pem it uses the public key of
// the realm page and also checks the token's audience. Prints {"ready": true, "port": N} once
// listening. --exit-with-stdin: exit when stdin closes, so a test runner that dies leaks nothing.
import express from 'express';
import Keycloak from 'keycloak-connect';

const config = JSON.parse(process.argv[2]);
const app = express();

function guarded(prefix, adapterConfig) {
  const keycloak = new Keycloak({}, {
    realm: config.realm,
    'auth-server-url': config.authServerUrl,
    resource: config.resource,
    'bearer-only': true,
    'ssl-required': 'none',
    ...adapterConfig,
  });
  const router = express.Router();
  const caller = (request, response) => {
    const token = request.kauth.grant.access_token.content;
    response.json({ azp: token.azp, via: prefix });
  };
  router.use(keycloak.middleware());
  router.get('/any', keycloak.protect(), caller);
  router.get('/realm-role', keycloak.protect('realm:reporter'), caller);
  // A role of this adapter's own client (resource), and one of another client.
  router.get('/own-role', keycloak.protect('read'), caller);
  router.get('/billing-role', keycloak.protect('billing:pay'), caller);
  app.use(prefix, router);
}

guarded('/jwks', {});
guarded('/pem', { 'realm-public-key': config.publicKey, 'verify-token-audience': true });

const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ ready: true, port: server.address().port })}\n`);
});

if (process.argv.includes('--exit-with-stdin')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
