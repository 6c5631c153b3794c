import { readFileSync } from 'node:fs'

const dir = new URL('../fixtures/tls/', import.meta.url)

/** The self-signed TLS fixture (CN=localhost, SAN localhost and 127.0.0.1); clients pass `cert` as `ca`. */
export const fixture = {
  key: readFileSync(new URL('key.pem', dir)),
  cert: readFileSync(new URL('cert.pem', dir)),
}
