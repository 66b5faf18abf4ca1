// Checks a proof-of-cover token the way any verifier would, with a standard JOSE library (jose):
// the EdDSA signature against ShiftCover's published JWK set, the issuer, and the token's
// lifetime (`nbf`, `exp`). Prints one JSON line; exits 1 when the token does not verify.
//
//   node verify-proof-token.mjs https://api.example/.well-known/shiftcover-cover-key.json TOKEN
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, token] = process.argv.slice(2);
if (!jwksUrl || !token) {
  console.error('usage: node verify-proof-token.mjs JWKS_URL TOKEN');
  process.exit(2);
}
const keys = createRemoteJWKSet(new URL(jwksUrl));
try {
  const { payload, protectedHeader } = await jwtVerify(token, keys, {
    issuer: 'shiftcover',
    algorithms: ['EdDSA'],
  });
  console.log(JSON.stringify({ ok: true, header: protectedHeader, claims: payload }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, code: e.code ?? String(e) }));
  process.exitCode = 1;
}
